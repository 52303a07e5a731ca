// Unit tests of the parking lot: fibers and OS threads as waiters and wakers, timeouts, and
// wake-ups racing timeouts across threads.
#include <atomic>
#include <thread>
#include <vector>

#include "carrier_fixture.h"
#include "runtime/parking_lot.h"

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
