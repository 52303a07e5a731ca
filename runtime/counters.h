// Counters of one carrier. Only the carrier's own thread writes them, with a plain load and
// store (no locked instruction on the switch path); any thread may read them (the stats dump,
// the monitor), so they are relaxed atomics. Totals are summed over carriers in stats.cpp.
#pragma once

#include <atomic>
#include <cstdint>

#include "runtime/fiber.h"

namespace green {

struct CarrierCounters {
    std::atomic<uint64_t> fibers_created{0};  // the root fiber included
    std::atomic<uint64_t> fibers_live{0};
    std::atomic<uint64_t> fibers_peak{0};
    std::atomic<uint64_t> switches{0};
    std::atomic<uint64_t> blocked_calls{0};  // calls on a fiber that held the whole carrier
    // Time slices (preempt.cpp): fibers switched out at a hooked call, by the preemption
    // signal, and requests not carried out (the fiber was in libc or a libc callback).
    std::atomic<uint64_t> preempted_at_call{0};
    std::atomic<uint64_t> preempted_by_signal{0};
    std::atomic<uint64_t> preempt_declined{0};
    std::atomic<uint64_t> parks[static_cast<int>(ParkReason::kCount)]{};
    // Written by the monitor alone: the times it found the carrier held by a call no hook
    // reached (stuck), and the fibers it had not started that went to other carriers then.
    std::atomic<uint64_t> stuck{0};
    std::atomic<uint64_t> handed_over{0};
};

// Only on the owning carrier's thread.
inline void bump(std::atomic<uint64_t>& counter, uint64_t by = 1) {
    counter.store(counter.load(std::memory_order_relaxed) + by, std::memory_order_relaxed);
}

inline void fiber_started(CarrierCounters& c) {
    bump(c.fibers_created);
    bump(c.fibers_live);
    uint64_t live = c.fibers_live.load(std::memory_order_relaxed);
    if (live > c.fibers_peak.load(std::memory_order_relaxed))
        c.fibers_peak.store(live, std::memory_order_relaxed);
}

inline void fiber_ended(CarrierCounters& c) {
    c.fibers_live.store(c.fibers_live.load(std::memory_order_relaxed) - 1,
                        std::memory_order_relaxed);
}

}  // namespace green
