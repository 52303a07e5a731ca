// Process-wide runtime counters (relaxed atomics): read by stats(), bumped by carriers.
#pragma once

#include <atomic>
#include <cstdint>

#include "runtime/fiber.h"

namespace green::counters {

extern std::atomic<uint64_t> fibers_created;
extern std::atomic<uint64_t> fibers_live;
extern std::atomic<uint64_t> fibers_peak;
extern std::atomic<uint64_t> switches;
extern std::atomic<uint64_t> parks[static_cast<int>(ParkReason::kCount)];

inline void fiber_started() {
    fibers_created.fetch_add(1, std::memory_order_relaxed);
    uint64_t live = fibers_live.fetch_add(1, std::memory_order_relaxed) + 1;
    uint64_t peak = fibers_peak.load(std::memory_order_relaxed);
    while (live > peak && !fibers_peak.compare_exchange_weak(peak, live)) {
    }
}

}  // namespace green::counters
