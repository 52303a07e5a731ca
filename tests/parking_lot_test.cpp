// Unit tests of the parking lot: fibers and OS threads as waiters and wakers, timeouts, and
// wake-ups racing timeouts across threads; and the lifetime rules of the condition variables
// and barriers built on it (run under ASan in the sanitizer build).
#include <pthread.h>

#include <atomic>
#include <functional>
#include <thread>
#include <vector>

#include "carrier_fixture.h"
#include "hooks/hooks.h"
#include "runtime/parking_lot.h"
#include "runtime/spinlock.h"

using namespace green;
using parking_lot::Parked;

TEST(ParkingLot, AFiberWakesAFiberParkedOnTheSameAddress) {
    on_carrier([] {
        int word = 0;
        Parked seen = Parked::kInvalid;
        auto waiter = [&] {
            seen = parking_lot::park(&word, [&] { return word == 0; }, kNoDeadline,
                                     ParkReason::kFutex);
        };
        Fiber* f = go(&waiter);
        yield();
        word = 1;
        EXPECT_EQ(parking_lot::unpark(&word, 1), 1u);
        join(f, nullptr, kNoDeadline);
        EXPECT_EQ(seen, Parked::kWoken);
    });
}

TEST(ParkingLot, ValidateFalseDoesNotPark) {
    on_carrier([] {
        int word = 5;
        EXPECT_EQ(parking_lot::park(&word, [&] { return word == 0; }, kNoDeadline,
                                    ParkReason::kFutex),
                  Parked::kInvalid);
    });
}

TEST(ParkingLot, TimesOutAndLeavesTheQueue) {
    on_carrier([] {
        int word = 0;
        uint64_t deadline = deadline_after_ns(10000000);
        EXPECT_EQ(parking_lot::park(&word, [] { return true; }, deadline, ParkReason::kFutex),
                  Parked::kTimedOut);
        EXPECT_GE(monotonic_now_ns(), deadline);
        EXPECT_EQ(parking_lot::unpark(&word, 1), 0u);  // nobody left to wake
    });
}

TEST(ParkingLot, UnparkWakesOldestFirstAndOnlyThatKey) {
    on_carrier([] {
        int a = 0, b = 0;
        std::vector<int> order;
        auto on_a1 = [&] {
            parking_lot::park(&a, [] { return true; }, kNoDeadline, ParkReason::kFutex);
            order.push_back(1);
        };
        auto on_b = [&] {
            parking_lot::park(&b, [] { return true; }, kNoDeadline, ParkReason::kFutex);
            order.push_back(9);
        };
        auto on_a2 = [&] {
            parking_lot::park(&a, [] { return true; }, kNoDeadline, ParkReason::kFutex);
            order.push_back(2);
        };
        Fiber* f1 = go(&on_a1);
        Fiber* f9 = go(&on_b);
        Fiber* f2 = go(&on_a2);
        yield();
        EXPECT_EQ(parking_lot::unpark(&a, 1), 1u);
        yield();
        EXPECT_EQ(parking_lot::unpark(&a, parking_lot::kAll), 1u);
        yield();
        EXPECT_EQ(parking_lot::unpark(&b, 5), 1u);
        join(f1, nullptr, kNoDeadline);
        join(f2, nullptr, kNoDeadline);
        join(f9, nullptr, kNoDeadline);
        EXPECT_EQ(order, (std::vector<int>{1, 2, 9}));
    });
}

TEST(ParkingLot, AnOsThreadWakesParkedFibers) {
    on_carrier([] {
        std::atomic<int> word{0};
        const int n = 100;
        std::atomic<int> woken{0};
        auto waiter = [&] {
            if (parking_lot::park(&word, [&] { return word.load() == 0; }, kNoDeadline,
                                  ParkReason::kFutex) != Parked::kTimedOut)
                ++woken;
        };
        std::vector<Fiber*> fibers;
        for (int i = 0; i < n; ++i) fibers.push_back(go(&waiter));
        yield();
        std::thread other([&] {
            word = 1;
            parking_lot::unpark(&word, parking_lot::kAll);
        });
        for (Fiber* f : fibers) join(f, nullptr, kNoDeadline);
        other.join();
        EXPECT_EQ(woken.load(), n);
    });
}

TEST(ParkingLot, AFiberWakesAnOsThread) {
    on_carrier([] {
        std::atomic<int> word{0};
        std::atomic<bool> parked{false};
        Parked seen = Parked::kInvalid;
        std::thread other([&] {
            seen = parking_lot::park(&word, [&] {
                parked = true;
                return word.load() == 0;
            }, kNoDeadline, ParkReason::kFutex);
        });
        while (!parked.load()) sleep_until(deadline_after_ns(1000000), ParkReason::kSleep);
        word = 1;
        while (parking_lot::unpark(&word, 1) == 0) yield();
        other.join();
        EXPECT_EQ(seen, Parked::kWoken);
    });
}

// What a signal handler's unpark() (sem_post's) meets: the code it interrupted may hold a
// bucket's lock or be changing the carrier's run queue. These tests mark the thread as in a
// handler, as the trampoline does, and as holding a runtime lock.
class AsInAHandler {
public:
    explicit AsInAHandler(bool holding_a_lock) : holding_(holding_a_lock) {
        ++t_signal_handler_depth;
        if (holding_) ++t_spinlocks_held;
    }
    ~AsInAHandler() {
        --t_signal_handler_depth;
        if (holding_) --t_spinlocks_held;
    }

private:
    bool holding_;
};

TEST(ParkingLot, AnUnparkInAHandlerOnTheCarrierIsDeferredToItsLoop) {
    on_carrier([] {
        int word = 0;
        Parked seen = Parked::kInvalid;
        auto waiter = [&] {
            seen = parking_lot::park(&word, [] { return true; }, kNoDeadline, ParkReason::kFutex);
        };
        Fiber* f = go(&waiter);
        yield();
        {
            AsInAHandler handler(true);
            EXPECT_EQ(parking_lot::unpark(&word, 1), 0u);  // deferred, nothing touched
        }
        join(f, nullptr, kNoDeadline);  // the loop runs the wake-up
        EXPECT_EQ(seen, Parked::kWoken);
    });
}

TEST(ParkingLot, AnUnparkInAHandlerOnAnOsThreadHoldingALockReachesTheFibersCarrier) {
    on_carrier([] {
        int word = 0;
        Parked seen = Parked::kInvalid;
        auto waiter = [&] {
            seen = parking_lot::park(&word, [] { return true; }, kNoDeadline, ParkReason::kFutex);
        };
        Fiber* f = go(&waiter);
        yield();
        std::thread other([&] {
            AsInAHandler handler(true);
            parking_lot::unpark(&word, 1);
        });
        join(f, nullptr, kNoDeadline);
        other.join();
        EXPECT_EQ(seen, Parked::kWoken);
    });
}

TEST(ParkingLot, AnUnparkInAHandlerOnAnOsThreadWakesThreadsAndFibers) {
    on_carrier([] {
        std::atomic<int> word{0};
        std::atomic<bool> parked{false};
        Parked thread_seen = Parked::kInvalid, fiber_seen = Parked::kInvalid;
        std::thread waiting_thread([&] {
            thread_seen = parking_lot::park(&word, [&] {
                parked = true;
                return true;
            }, kNoDeadline, ParkReason::kFutex);
        });
        while (!parked.load()) sleep_until(deadline_after_ns(1000000), ParkReason::kSleep);
        auto waiter = [&] {
            fiber_seen =
                parking_lot::park(&word, [] { return true; }, kNoDeadline, ParkReason::kFutex);
        };
        Fiber* f = go(&waiter);
        yield();
        std::thread other([&] {
            AsInAHandler handler(false);
            EXPECT_EQ(parking_lot::unpark(&word, 2), 1u);  // the thread now, the fiber deferred
        });
        join(f, nullptr, kNoDeadline);
        other.join();
        waiting_thread.join();
        EXPECT_EQ(thread_seen, Parked::kWoken);
        EXPECT_EQ(fiber_seen, Parked::kWoken);
    });
}

TEST(ParkingLot, MoreHandlerWakeupsThanSlotsWakeEveryone) {
    on_carrier([] {
        constexpr int n = 300;
        static int words[n];
        std::atomic<int> woken{0};
        std::vector<std::function<void()>> bodies;
        std::vector<Fiber*> fibers;
        bodies.reserve(n);
        for (int i = 0; i < n; ++i) {
            bodies.emplace_back([&, i] {
                if (parking_lot::park(&words[i], [] { return true; }, kNoDeadline,
                                      ParkReason::kFutex) == Parked::kWoken)
                    ++woken;
            });
        }
        for (auto& body : bodies) fibers.push_back(go(&body));
        yield();
        {
            AsInAHandler handler(true);
            for (int i = 0; i < n; ++i) parking_lot::unpark(&words[i], 1);
        }
        for (Fiber* f : fibers) join(f, nullptr, kNoDeadline);
        EXPECT_EQ(woken.load(), n);
    });
}

TEST(ParkingLot, WakeupsRacingTimeoutsNeverLoseOrLeakAFiber) {
    on_carrier([] {
        std::atomic<bool> stop{false};
        int word = 0;
        std::thread waker([&] {
            while (!stop.load()) parking_lot::unpark(&word, parking_lot::kAll);
        });
        int woken = 0, timed_out = 0;
        for (int round = 0; round < 300; ++round) {
            std::vector<Fiber*> fibers;
            auto waiter = [&] {
                Parked r = parking_lot::park(&word, [] { return true; },
                                             deadline_after_ns(50000), ParkReason::kFutex);
                (r == Parked::kWoken ? woken : timed_out)++;
            };
            for (int i = 0; i < 8; ++i) fibers.push_back(go(&waiter));
            for (Fiber* f : fibers) ASSERT_EQ(join(f, nullptr, kNoDeadline), 0);
        }
        stop = true;
        waker.join();
        // Drain wake-ups still in flight before the carrier retires.
        sleep_until(deadline_after_ns(5000000), ParkReason::kSleep);
        EXPECT_EQ(woken + timed_out, 300 * 8);
    });
}

// POSIX lets a program destroy a condition variable once no thread is blocked on it, and free
// its memory: after a broadcast, the woken waiters must be done with it before
// pthread_cond_destroy returns. Fibers and OS threads wait; under ASan any late touch of the
// freed condvar is a heap-use-after-free.
namespace {

void cond_freed_after_broadcast(bool shared) {
    on_carrier([shared] {
        constexpr int kFibers = 6, kThreads = 2;
        pthread_condattr_t attr;
        pthread_condattr_init(&attr);
        if (shared) pthread_condattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
        for (int round = 0; round < 30; ++round) {
            auto* c = new pthread_cond_t;
            ASSERT_EQ(hooks::pthread_cond_init(c, &attr), 0);
            pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
            int waiting = 0;
            bool released = false;
            auto waiter = [&] {
                hooks::pthread_mutex_lock(&m);
                ++waiting;
                while (!released) hooks::pthread_cond_wait(c, &m);
                hooks::pthread_mutex_unlock(&m);
            };
            std::vector<Fiber*> fibers;
            for (int i = 0; i < kFibers; ++i) fibers.push_back(go(&waiter));
            std::vector<std::thread> threads;
            for (int i = 0; i < kThreads; ++i) threads.emplace_back(waiter);
            for (;;) {
                hooks::pthread_mutex_lock(&m);
                if (waiting == kFibers + kThreads) break;  // all inside the wait
                hooks::pthread_mutex_unlock(&m);
                sleep_until(deadline_after_ns(200000), ParkReason::kSleep);
            }
            released = true;
            hooks::pthread_cond_broadcast(c);
            hooks::pthread_mutex_unlock(&m);
            EXPECT_EQ(hooks::pthread_cond_destroy(c), 0);
            delete c;
            for (Fiber* f : fibers) join(f, nullptr, kNoDeadline);
            for (auto& t : threads) t.join();
        }
        pthread_condattr_destroy(&attr);
    });
}

void barrier_freed_by_the_serial_waiter(bool shared) {
    on_carrier([shared] {
        constexpr int kFibers = 6, kThreads = 2;
        pthread_barrierattr_t attr;
        pthread_barrierattr_init(&attr);
        if (shared) pthread_barrierattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
        for (int round = 0; round < 30; ++round) {
            auto* b = new pthread_barrier_t;
            ASSERT_EQ(hooks::pthread_barrier_init(b, &attr, kFibers + kThreads), 0);
            std::atomic<int> serial{0};
            auto waiter = [&] {
                if (hooks::pthread_barrier_wait(b) != PTHREAD_BARRIER_SERIAL_THREAD) return;
                EXPECT_EQ(hooks::pthread_barrier_destroy(b), 0);
                delete b;
                ++serial;
            };
            std::vector<std::thread> threads;
            for (int i = 0; i < kThreads; ++i) threads.emplace_back(waiter);
            std::vector<Fiber*> fibers;
            for (int i = 0; i < kFibers; ++i) fibers.push_back(go(&waiter));
            for (Fiber* f : fibers) join(f, nullptr, kNoDeadline);
            for (auto& t : threads) t.join();
            EXPECT_EQ(serial.load(), 1);
        }
        pthread_barrierattr_destroy(&attr);
    });
}

}  // namespace

TEST(ParkingLot, ACondvarMayBeFreedAsSoonAsDestroyAfterBroadcastReturns) {
    cond_freed_after_broadcast(false);
}

TEST(ParkingLot, AProcessSharedCondvarMayBeFreedAsSoonAsDestroyReturns) {
    cond_freed_after_broadcast(true);
}

TEST(ParkingLot, ABarrierMayBeFreedByItsSerialWaiter) { barrier_freed_by_the_serial_waiter(false); }

TEST(ParkingLot, AProcessSharedBarrierMayBeFreedByItsSerialWaiter) {
    barrier_freed_by_the_serial_waiter(true);
}
