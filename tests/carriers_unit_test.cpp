// Several carriers (runtime/carrier_pool.cpp) used as a library: fibers spread over the
// carriers' threads, and every way one fiber wakes another (locks, conditions, semaphores,
// futexes, joins, the parking lot with deadlines) holds when the two run on different ones.
// The pool's threads live for the rest of the test process; a test's own carrier joins it.
#include <linux/futex.h>
#include <pthread.h>
#include <semaphore.h>
#include <sys/syscall.h>

#include <atomic>
#include <functional>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include "carrier_fixture.h"
#include "hooks/hooks.h"
#include "runtime/parking_lot.h"

using namespace green;
using parking_lot::Parked;

namespace {

constexpr unsigned kCarriers = 3;  // this test's carrier and two of the pool's

template <typename Body>
void on_carriers(Body body) {
    on_carrier([&] {
        CarrierPoolConfig config;
        config.count = kCarriers;
        config.create_thread = pthread_create;  // no LD_PRELOAD here: the real one
        configure_carriers(config);
        carriers_needed();
        body();
    });
}

// Under ThreadSanitizer every fiber keeps a history: fewer of them there.
#ifdef GREEN_TSAN
constexpr int kManyFibers = 300;
#else
constexpr int kManyFibers = 10000;
#endif

}  // namespace

TEST(Carriers, NewFibersRunOnEveryCarrierAndAreJoinedFromAnother) {
    on_carriers([] {
        // carriers_needed waits 100 ms at most for the others to be ready; a slow machine
        // (or ThreadSanitizer) takes longer, and until then the ready ones take the fibers.
        const uint64_t give_up = deadline_after_ns(10ull * 1000 * 1000 * 1000);
        while (carriers_placeable() < kCarriers && monotonic_now_ns() < give_up)
            sleep_until(deadline_after_ns(1000 * 1000), ParkReason::kSleep);
        ASSERT_EQ(carriers_placeable(), kCarriers);
        std::mutex seen_lock;
        std::set<unsigned long> threads;
        std::atomic<bool> all_made{false};
        auto record = [&] {
            {
                std::lock_guard<std::mutex> hold(seen_lock);
                threads.insert(carrier_os_thread(current_fiber()));
            }
            // Alive until all are made: placement goes by the threads each carrier has now
            // (and making one can take longer than a short sleep on a loaded machine).
            while (!all_made) sleep_until(deadline_after_ns(1000 * 1000), ParkReason::kSleep);
        };
        std::vector<Fiber*> fibers;
        for (int i = 0; i < 12; ++i) fibers.push_back(go(&record));
        all_made = true;
        for (Fiber* f : fibers) EXPECT_EQ(join(f, nullptr, kNoDeadline), 0);
        EXPECT_EQ(threads.size(), kCarriers);
    });
}

TEST(Carriers, ManyFibersHammerLocksConditionsSemaphoresAndFutexesWithExactCounts) {
    on_carriers([] {
        constexpr int kRounds = 20;
        pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
        pthread_cond_t all_arrived = PTHREAD_COND_INITIALIZER;
        sem_t sem;
        ASSERT_EQ(sem_init(&sem, 0, 0), 0);
        long counter = 0;
        int arrived = 0;
        std::atomic<uint32_t> gate{0};
        std::atomic<long> posted_and_taken{0};
        auto hammer = [&] {
            for (int r = 0; r < kRounds; ++r) {
                hooks::pthread_mutex_lock(&m);
                ++counter;
                hooks::pthread_mutex_unlock(&m);
                hooks::sem_post(&sem);
                while (hooks::sem_wait(&sem) != 0) {
                }
                ++posted_and_taken;
            }
            // Everyone meets on a condition variable, then on a futex the last one opens.
            hooks::pthread_mutex_lock(&m);
            if (++arrived == kManyFibers) hooks::pthread_cond_broadcast(&all_arrived);
            while (arrived < kManyFibers) hooks::pthread_cond_wait(&all_arrived, &m);
            hooks::pthread_mutex_unlock(&m);
            if (gate.fetch_add(1) + 1 == kManyFibers) {
                gate.store(UINT32_MAX);
                hooks::futex_call(SYS_futex, reinterpret_cast<long>(&gate), FUTEX_WAKE_PRIVATE,
                                  INT32_MAX, 0, 0, 0);
            }
            for (uint32_t seen; (seen = gate.load()) != UINT32_MAX;)
                hooks::futex_call(SYS_futex, reinterpret_cast<long>(&gate), FUTEX_WAIT_PRIVATE,
                                  seen, 0, 0, 0);
        };
        std::vector<Fiber*> fibers;
        for (int i = 0; i < kManyFibers; ++i) fibers.push_back(go(&hammer));
        for (Fiber* f : fibers) ASSERT_EQ(join(f, nullptr, kNoDeadline), 0);
        EXPECT_EQ(counter, long{kManyFibers} * kRounds);
        EXPECT_EQ(posted_and_taken.load(), long{kManyFibers} * kRounds);
        int left = -1;
        sem_getvalue(&sem, &left);
        EXPECT_EQ(left, 0);
        sem_destroy(&sem);
    });
}

// A token goes back and forth between fibers on different carriers; each waits for it with a
// deadline so short that timeouts race the wake-ups all the time. A lost wake-up would leave
// the waiter to its next deadline, not hang it: what the test counts is that every hand-off
// arrives exactly once, and that waiters never wait out many deadlines in a row.
TEST(Carriers, HandOffsRacingTimeoutsAcrossCarriersLoseNone) {
    on_carriers([] {
#if defined(GREEN_TSAN)
        constexpr long kHandOffs = 20000;
#elif defined(GREEN_SANITIZE)
        constexpr long kHandOffs = 200000;
#else
        constexpr long kHandOffs = 1000000;
#endif
        constexpr int kPairs = 4;
        struct Pair {
            std::atomic<long> token{0};  // even: the first side's turn; odd: the second's
            std::atomic<long> timeouts{0};
            std::atomic<unsigned long> threads[2]{};
        } pairs[kPairs];
        const long per_pair = kHandOffs / kPairs;
        struct Side {
            Pair* pair;
            int parity;
        };
        auto play = [&](Side side) {
            Pair& p = *side.pair;
            p.threads[side.parity] = carrier_os_thread(current_fiber());
            for (;;) {
                long t = p.token.load(std::memory_order_acquire);
                if (t >= per_pair) return;
                if ((t & 1) != side.parity) {
                    Parked r = parking_lot::park(
                        &p.token, [&] { return p.token.load() == t; }, deadline_after_ns(20000),
                        ParkReason::kFutex);
                    if (r == Parked::kTimedOut) ++p.timeouts;
                    continue;
                }
                p.token.store(t + 1, std::memory_order_release);
                parking_lot::unpark(&p.token, parking_lot::kAll);
            }
        };
        std::vector<Side> sides;
        for (auto& p : pairs)
            for (int parity = 0; parity < 2; ++parity) sides.push_back(Side{&p, parity});
        std::vector<std::function<void()>> bodies;
        bodies.reserve(sides.size());
        for (Side s : sides) bodies.emplace_back([&play, s] { play(s); });
        std::vector<Fiber*> fibers;
        for (auto& b : bodies) fibers.push_back(go(&b));
        for (Fiber* f : fibers) ASSERT_EQ(join(f, nullptr, kNoDeadline), 0);
        long total = 0;
        int crossing = 0;
        for (auto& p : pairs) {
            total += p.token.load();
            crossing += p.threads[0].load() != p.threads[1].load();
        }
        EXPECT_EQ(total, per_pair * kPairs);
        EXPECT_GE(crossing, 1);  // some pairs really did cross carriers
    });
}

TEST(Carriers, AJoinRacingTheThreadsEndOnAnotherCarrierAlwaysReturnsItsValue) {
    on_carriers([] {
        for (int round = 0; round < 2000; ++round) {
            Fiber* f = nullptr;
            ASSERT_EQ(spawn([](void* arg) -> void* { return arg; },
                            reinterpret_cast<void*>(static_cast<intptr_t>(round + 1)), {}, &f),
                      0);
            void* result = nullptr;
            if (round % 3 == 0) {
                // A timed join that may time out first, then a plain one.
                int r = join(f, &result, deadline_after_ns(1000));
                if (r == ETIMEDOUT) r = join(f, &result, kNoDeadline);
                ASSERT_EQ(r, 0);
            } else {
                ASSERT_EQ(join(f, &result, kNoDeadline), 0);
            }
            EXPECT_EQ(result, reinterpret_cast<void*>(static_cast<intptr_t>(round + 1)));
        }
        // Detached ones end on their own carriers, racing the detach.
        for (int round = 0; round < 2000; ++round) {
            Fiber* f = nullptr;
            ASSERT_EQ(spawn([](void*) -> void* { return nullptr; }, nullptr, {}, &f), 0);
            EXPECT_EQ(detach(f), 0);
        }
        sleep_until(deadline_after_ns(20 * 1000 * 1000), ParkReason::kSleep);
    });
}
