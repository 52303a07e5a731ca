// Nothing allocates while a runtime spinlock is held (an allocator preloaded beside libgreen
// may take locks that park, and a fiber that parks holding a spinlock deadlocks its carrier).
// The sanitizer build counts the spinlocks each thread holds; this binary's operator new
// notes every allocation made while one is held. In the other build the test is skipped.
#include <atomic>
#include <cstdlib>
#include <new>
#include <thread>
#include <vector>

#include "carrier_fixture.h"
#include "runtime/parking_lot.h"
#include "runtime/spinlock.h"

namespace {
std::atomic<int> g_allocations_under_spinlock{0};
}

#ifdef GREEN_SANITIZE
// The replacement pair allocates with malloc and frees with free, which GCC's
// -Wmismatched-new-delete cannot see through.
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
void* operator new(size_t size) {
    if (green::spinlocks_held() > 0) g_allocations_under_spinlock.fetch_add(1);
    if (void* p = malloc(size ? size : 1)) return p;
    throw std::bad_alloc();
}
void operator delete(void* p) noexcept { free(p); }
void operator delete(void* p, size_t) noexcept { free(p); }
#endif

using namespace green;

TEST(SpinLock, NothingAllocatesWhileOneIsHeld) {
#ifndef GREEN_SANITIZE
    GTEST_SKIP() << "counted in the sanitizer build (scripts/test.sh runs it)";
#endif
    static std::atomic<int> parked{0};
    static int key;
    on_carrier([] {
        // Fibers of several stack sizes are made, parked in the parking lot, woken from
        // another OS thread (remote wake-ups), and ended (their stacks go back to the pool),
        // twice, so the second round reuses what the first released.
        for (int round = 0; round < 2; ++round) {
            std::vector<Fiber*> fibers;
            for (int i = 0; i < 200; ++i) {
                SpawnOptions options;
                options.stack_size = (64 + 16 * (i % 4)) * 1024;
                Fiber* f = nullptr;
                ASSERT_EQ(spawn(
                              [](void*) -> void* {
                                  parked.fetch_add(1);
                                  parking_lot::park(&key, [] { return true; }, kNoDeadline,
                                                    ParkReason::kFutex);
                                  return nullptr;
                              },
                              nullptr, options, &f),
                          0);
                fibers.push_back(f);
            }
            while (parked.load() < 200 * (round + 1)) yield();
            std::thread waker([] {
                size_t woken = 0;
                while (woken < 200) woken += parking_lot::unpark(&key, 7);
            });
            for (Fiber* f : fibers) EXPECT_EQ(join(f, nullptr, kNoDeadline), 0);
            waker.join();
        }
    });
    EXPECT_EQ(g_allocations_under_spinlock.load(), 0);
}
