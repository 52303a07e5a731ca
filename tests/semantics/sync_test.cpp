// Mutexes, condition variables, rwlocks, semaphores, barriers, pthread_once, spinlocks and
// futex-based C++ primitives: results, error numbers and timeouts as glibc gives them.
#include <gtest/gtest.h>
#include <linux/futex.h>
#include <pthread.h>
#include <semaphore.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <threads.h>

#include <atomic>
#include <climits>
#include <condition_variable>
#include <future>
#include <mutex>
#include <semaphore>
#include <shared_mutex>
#include <vector>

#include "common.h"

using namespace sem;

namespace {

timespec after_ms(clockid_t clock, long ms) {
    timespec t;
    clock_gettime(clock, &t);
    t.tv_sec += ms / 1000;
    t.tv_nsec += (ms % 1000) * 1000000L;
    if (t.tv_nsec >= 1000000000L) {
        t.tv_sec++;
        t.tv_nsec -= 1000000000L;
    }
    return t;
}

pthread_mutex_t make_mutex(int type) {
    pthread_mutexattr_t attr;
    pthread_mutexattr_init(&attr);
    pthread_mutexattr_settype(&attr, type);
    pthread_mutex_t m;
    pthread_mutex_init(&m, &attr);
    pthread_mutexattr_destroy(&attr);
    return m;
}

// Runs fn on a new thread and returns its int result.
int on_thread(std::function<int()> fn) {
    int result = -1;
    std::thread t([&] { result = fn(); });
    t.join();
    return result;
}

}  // namespace

TEST(Mutex, StaticInitialisersWork) {
    static pthread_mutex_t normal = PTHREAD_MUTEX_INITIALIZER;
    static pthread_mutex_t recursive = PTHREAD_RECURSIVE_MUTEX_INITIALIZER_NP;
    static pthread_mutex_t check = PTHREAD_ERRORCHECK_MUTEX_INITIALIZER_NP;
    static pthread_mutex_t adaptive = PTHREAD_ADAPTIVE_MUTEX_INITIALIZER_NP;
    EXPECT_EQ(pthread_mutex_lock(&normal), 0);
    EXPECT_EQ(pthread_mutex_unlock(&normal), 0);
    EXPECT_EQ(pthread_mutex_lock(&recursive), 0);
    EXPECT_EQ(pthread_mutex_lock(&recursive), 0);
    EXPECT_EQ(pthread_mutex_unlock(&recursive), 0);
    EXPECT_EQ(pthread_mutex_unlock(&recursive), 0);
    EXPECT_EQ(pthread_mutex_lock(&check), 0);
    EXPECT_EQ(pthread_mutex_lock(&check), EDEADLK);
    EXPECT_EQ(pthread_mutex_unlock(&check), 0);
    EXPECT_EQ(pthread_mutex_lock(&adaptive), 0);
    EXPECT_EQ(pthread_mutex_unlock(&adaptive), 0);
}

TEST(Mutex, TrylockIsBusyWhileAnotherThreadHoldsIt) {
    pthread_mutex_t m = make_mutex(PTHREAD_MUTEX_NORMAL);
    ASSERT_EQ(pthread_mutex_lock(&m), 0);
    EXPECT_EQ(on_thread([&] { return pthread_mutex_trylock(&m); }), EBUSY);
    ASSERT_EQ(pthread_mutex_unlock(&m), 0);
    EXPECT_EQ(on_thread([&] {
                  int r = pthread_mutex_trylock(&m);
                  if (r == 0) pthread_mutex_unlock(&m);
                  return r;
              }),
              0);
    EXPECT_EQ(pthread_mutex_destroy(&m), 0);
}

TEST(Mutex, ErrorcheckReportsOwnerErrors) {
    pthread_mutex_t m = make_mutex(PTHREAD_MUTEX_ERRORCHECK);
    EXPECT_EQ(pthread_mutex_unlock(&m), EPERM);
    ASSERT_EQ(pthread_mutex_lock(&m), 0);
    EXPECT_EQ(pthread_mutex_lock(&m), EDEADLK);
    EXPECT_EQ(pthread_mutex_trylock(&m), EBUSY);
    EXPECT_EQ(on_thread([&] { return pthread_mutex_unlock(&m); }), EPERM);
    EXPECT_EQ(pthread_mutex_unlock(&m), 0);
}

TEST(Mutex, RecursiveCountsAndChecksTheOwner) {
    pthread_mutex_t m = make_mutex(PTHREAD_MUTEX_RECURSIVE);
    ASSERT_EQ(pthread_mutex_lock(&m), 0);
    ASSERT_EQ(pthread_mutex_trylock(&m), 0);
    EXPECT_EQ(on_thread([&] { return pthread_mutex_trylock(&m); }), EBUSY);
    EXPECT_EQ(on_thread([&] { return pthread_mutex_unlock(&m); }), EPERM);
    EXPECT_EQ(pthread_mutex_unlock(&m), 0);
    EXPECT_EQ(on_thread([&] { return pthread_mutex_trylock(&m); }), EBUSY);
    EXPECT_EQ(pthread_mutex_unlock(&m), 0);
    EXPECT_EQ(pthread_mutex_unlock(&m), EPERM);
}

TEST(Mutex, DestroyOfALockedMutexIsBusy) {
    pthread_mutex_t m = make_mutex(PTHREAD_MUTEX_NORMAL);
    ASSERT_EQ(pthread_mutex_lock(&m), 0);
    EXPECT_EQ(pthread_mutex_destroy(&m), EBUSY);
    ASSERT_EQ(pthread_mutex_unlock(&m), 0);
    EXPECT_EQ(pthread_mutex_destroy(&m), 0);
}

TEST(Mutex, LockWaitsForTheHolderWhileItBlocksInIo) {
    // The holder parks in read() while holding the lock: the waiter must not stop it.
    pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
    Pair p = socket_pair();
    std::atomic<bool> locked{false};
    std::thread holder([&] {
        pthread_mutex_lock(&m);
        locked = true;
        char c;
        ASSERT_EQ(read(p.a, &c, 1), 1);
        pthread_mutex_unlock(&m);
    });
    while (!locked) usleep(1000);
    std::thread waiter([&] {
        EXPECT_EQ(pthread_mutex_lock(&m), 0);
        pthread_mutex_unlock(&m);
    });
    usleep(20000);
    ASSERT_EQ(write(p.b, "x", 1), 1);
    holder.join();
    waiter.join();
}

TEST(Mutex, TimedlockTimesOutAndRejectsABadTime) {
    pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
    ASSERT_EQ(pthread_mutex_lock(&m), 0);
    int r = on_thread([&] {
        timespec t = after_ms(CLOCK_REALTIME, 50);
        auto start = Clock::now();
        int err = pthread_mutex_timedlock(&m, &t);
        return err == ETIMEDOUT && ms_since(start) >= 45 ? 0 : err ? err : -1;
    });
    EXPECT_EQ(r, 0);
    EXPECT_EQ(on_thread([&] {
                  timespec bad{0, 2000000000L};
                  return pthread_mutex_timedlock(&m, &bad);
              }),
              EINVAL);
    EXPECT_EQ(on_thread([&] {
                  timespec t = after_ms(CLOCK_MONOTONIC, 20);
                  return pthread_mutex_clocklock(&m, CLOCK_MONOTONIC, &t);
              }),
              ETIMEDOUT);
    EXPECT_EQ(on_thread([&] {
                  timespec t = after_ms(CLOCK_MONOTONIC, 20);
                  return pthread_mutex_clocklock(&m, CLOCK_PROCESS_CPUTIME_ID, &t);
              }),
              EINVAL);
    ASSERT_EQ(pthread_mutex_unlock(&m), 0);
    timespec bad{0, -1};
    EXPECT_EQ(pthread_mutex_timedlock(&m, &bad), 0);  // free: taken without looking at the time
    pthread_mutex_unlock(&m);
}

TEST(Mutex, ManyThreadsCountExactly) {
    pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
    long counter = 0;
    std::vector<std::thread> threads;
    for (int i = 0; i < 64; ++i)
        threads.emplace_back([&] {
            for (int k = 0; k < 2000; ++k) {
                pthread_mutex_lock(&m);
                long v = counter;
                if (k % 100 == 0) sched_yield();  // hand over while holding the lock
                counter = v + 1;
                pthread_mutex_unlock(&m);
            }
        });
    for (auto& t : threads) t.join();
    EXPECT_EQ(counter, 64L * 2000);
}

TEST(Cond, SignalWakesAWaiterHoldingTheMutexAgain) {
    pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
    pthread_cond_t c = PTHREAD_COND_INITIALIZER;
    bool ready = false;
    std::thread waiter([&] {
        pthread_mutex_lock(&m);
        while (!ready) EXPECT_EQ(pthread_cond_wait(&c, &m), 0);
        EXPECT_EQ(pthread_mutex_trylock(&m), EBUSY);  // held by us again
        pthread_mutex_unlock(&m);
    });
    usleep(20000);
    pthread_mutex_lock(&m);
    ready = true;
    pthread_cond_signal(&c);
    pthread_mutex_unlock(&m);
    waiter.join();
}

TEST(Cond, BroadcastWakesEveryWaiter) {
    pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
    pthread_cond_t c = PTHREAD_COND_INITIALIZER;
    int generation = 0, woken = 0;
    std::vector<std::thread> threads;
    for (int i = 0; i < 50; ++i)
        threads.emplace_back([&] {
            pthread_mutex_lock(&m);
            while (generation == 0) pthread_cond_wait(&c, &m);
            ++woken;
            pthread_mutex_unlock(&m);
        });
    usleep(30000);
    pthread_mutex_lock(&m);
    generation = 1;
    pthread_cond_broadcast(&c);
    pthread_mutex_unlock(&m);
    for (auto& t : threads) t.join();
    EXPECT_EQ(woken, 50);
}

TEST(Cond, TimedwaitTimesOutWithTheMutexHeld) {
    pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
    pthread_cond_t c = PTHREAD_COND_INITIALIZER;
    pthread_mutex_lock(&m);
    timespec t = after_ms(CLOCK_REALTIME, 50);
    auto start = Clock::now();
    EXPECT_EQ(pthread_cond_timedwait(&c, &m, &t), ETIMEDOUT);
    EXPECT_GE(ms_since(start), 45);
    EXPECT_EQ(on_thread([&] { return pthread_mutex_trylock(&m); }), EBUSY);
    timespec bad{0, 1000000000L};
    EXPECT_EQ(pthread_cond_timedwait(&c, &m, &bad), EINVAL);
    pthread_mutex_unlock(&m);
}

TEST(Cond, MonotonicClockAttributeAndClockwait) {
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    ASSERT_EQ(pthread_condattr_setclock(&attr, CLOCK_MONOTONIC), 0);
    pthread_cond_t c;
    ASSERT_EQ(pthread_cond_init(&c, &attr), 0);
    pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
    pthread_mutex_lock(&m);
    timespec t = after_ms(CLOCK_MONOTONIC, 30);
    auto start = Clock::now();
    EXPECT_EQ(pthread_cond_timedwait(&c, &m, &t), ETIMEDOUT);
    EXPECT_GE(ms_since(start), 25);
    EXPECT_LT(ms_since(start), 1000);
    t = after_ms(CLOCK_REALTIME, 20);
    EXPECT_EQ(pthread_cond_clockwait(&c, &m, CLOCK_REALTIME, &t), ETIMEDOUT);
    EXPECT_EQ(pthread_cond_clockwait(&c, &m, CLOCK_THREAD_CPUTIME_ID, &t), EINVAL);
    pthread_mutex_unlock(&m);
    EXPECT_EQ(pthread_cond_destroy(&c), 0);
    pthread_condattr_destroy(&attr);
}

TEST(Cond, WaitWithAnUnownedErrorcheckMutexIsEperm) {
    pthread_mutex_t m = make_mutex(PTHREAD_MUTEX_ERRORCHECK);
    pthread_cond_t c = PTHREAD_COND_INITIALIZER;
    EXPECT_EQ(pthread_cond_wait(&c, &m), EPERM);
}

TEST(Rwlock, ReadersShareWritersExclude) {
    pthread_rwlock_t l = PTHREAD_RWLOCK_INITIALIZER;
    ASSERT_EQ(pthread_rwlock_rdlock(&l), 0);
    EXPECT_EQ(on_thread([&] {
                  int r = pthread_rwlock_tryrdlock(&l);
                  if (r == 0) pthread_rwlock_unlock(&l);
                  return r;
              }),
              0);
    EXPECT_EQ(on_thread([&] { return pthread_rwlock_trywrlock(&l); }), EBUSY);
    EXPECT_EQ(pthread_rwlock_unlock(&l), 0);
    ASSERT_EQ(pthread_rwlock_wrlock(&l), 0);
    EXPECT_EQ(pthread_rwlock_wrlock(&l), EDEADLK);
    EXPECT_EQ(pthread_rwlock_rdlock(&l), EDEADLK);
    EXPECT_EQ(on_thread([&] { return pthread_rwlock_tryrdlock(&l); }), EBUSY);
    EXPECT_EQ(on_thread([&] {
                  timespec t = after_ms(CLOCK_REALTIME, 30);
                  return pthread_rwlock_timedrdlock(&l, &t);
              }),
              ETIMEDOUT);
    EXPECT_EQ(on_thread([&] {
                  timespec t = after_ms(CLOCK_MONOTONIC, 30);
                  return pthread_rwlock_clockwrlock(&l, CLOCK_MONOTONIC, &t);
              }),
              ETIMEDOUT);
    EXPECT_EQ(pthread_rwlock_unlock(&l), 0);
    EXPECT_EQ(pthread_rwlock_destroy(&l), 0);
}

TEST(Rwlock, AWriterWaitsForReadersToLeave) {
    pthread_rwlock_t l;
    ASSERT_EQ(pthread_rwlock_init(&l, nullptr), 0);
    ASSERT_EQ(pthread_rwlock_rdlock(&l), 0);
    std::atomic<bool> wrote{false};
    std::thread writer([&] {
        ASSERT_EQ(pthread_rwlock_wrlock(&l), 0);
        wrote = true;
        pthread_rwlock_unlock(&l);
    });
    usleep(30000);
    EXPECT_FALSE(wrote.load());
    pthread_rwlock_unlock(&l);
    writer.join();
    EXPECT_TRUE(wrote.load());
}

TEST(Semaphore, PostWakesAWaiterAndTrywaitIsEagain) {
    sem_t s;
    ASSERT_EQ(sem_init(&s, 0, 0), 0);
    EXPECT_EQ(sem_trywait(&s), -1);
    EXPECT_EQ(errno, EAGAIN);
    After poster(30, [&] { sem_post(&s); });
    auto start = Clock::now();
    EXPECT_EQ(sem_wait(&s), 0);
    EXPECT_GE(ms_since(start), 25);
    int value = -1;
    sem_getvalue(&s, &value);
    EXPECT_EQ(value, 0);
    sem_destroy(&s);
}

TEST(Semaphore, TimedwaitTimesOutAndValidates) {
    sem_t s;
    ASSERT_EQ(sem_init(&s, 0, 0), 0);
    timespec t = after_ms(CLOCK_REALTIME, 40);
    EXPECT_EQ(sem_timedwait(&s, &t), -1);
    EXPECT_EQ(errno, ETIMEDOUT);
    timespec bad{0, -3};
    EXPECT_EQ(sem_timedwait(&s, &bad), -1);
    EXPECT_EQ(errno, EINVAL);
    t = after_ms(CLOCK_MONOTONIC, 20);
    EXPECT_EQ(sem_clockwait(&s, CLOCK_MONOTONIC, &t), -1);
    EXPECT_EQ(errno, ETIMEDOUT);
    ASSERT_EQ(sem_post(&s), 0);
    EXPECT_EQ(sem_timedwait(&s, &bad), -1);  // glibc checks the time first, even when available
    EXPECT_EQ(errno, EINVAL);
    EXPECT_EQ(sem_timedwait(&s, &t), 0);
    sem_destroy(&s);
}

TEST(Semaphore, CountsExactlyUnderContention) {
    sem_t s;
    ASSERT_EQ(sem_init(&s, 0, 0), 0);
    std::atomic<int> taken{0};
    std::vector<std::thread> takers;
    for (int i = 0; i < 20; ++i)
        takers.emplace_back([&] {
            for (int k = 0; k < 50; ++k) {
                sem_wait(&s);
                ++taken;
            }
        });
    for (int k = 0; k < 1000; ++k) sem_post(&s);
    for (auto& t : takers) t.join();
    EXPECT_EQ(taken.load(), 1000);
    sem_destroy(&s);
}

// sem_post is async-signal-safe: posted from a 20 kHz timer's handler, which interrupts
// threads inside sem_wait, mutexes and condition variables at any instruction (under the
// shim: inside the parking lot's locks and the carrier's run queue), every post is taken and
// nothing hangs.
sem_t g_timer_sem;
std::atomic<long> g_timer_posts{0};

void post_from_handler(int) {
    int saved = errno;
    if (sem_post(&g_timer_sem) == 0) g_timer_posts.fetch_add(1, std::memory_order_relaxed);
    errno = saved;
}

TEST(Semaphore, PostsFromAFastTimersHandlerAreAllTakenWhileLocksAreBusy) {
    ASSERT_EQ(sem_init(&g_timer_sem, 0, 0), 0);
    g_timer_posts = 0;
    struct sigaction act {}, before{};
    act.sa_handler = post_from_handler;
    act.sa_flags = SA_RESTART;
    sigemptyset(&act.sa_mask);
    ASSERT_EQ(sigaction(SIGALRM, &act, &before), 0);

    std::atomic<bool> stop{false};
    std::atomic<long> taken{0};
    std::vector<std::thread> threads;
    for (int i = 0; i < 3; ++i)
        threads.emplace_back([&] {
            while (!stop) {
                if (sem_wait(&g_timer_sem) == 0) taken.fetch_add(1);
                else ASSERT_EQ(errno, EINTR);
            }
        });
    pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
    pthread_cond_t c = PTHREAD_COND_INITIALIZER;
    long shared_count = 0;
    for (int i = 0; i < 4; ++i)
        threads.emplace_back([&] {
            // Each turn waits (a fiber that never waited would hold its carrier).
            while (!stop) {
                pthread_mutex_lock(&m);
                ++shared_count;
                pthread_cond_broadcast(&c);
                timespec t = after_ms(CLOCK_REALTIME, 1);
                pthread_cond_timedwait(&c, &m, &t);
                pthread_mutex_unlock(&m);
            }
        });

    itimerval every_50us{{0, 50}, {0, 50}};
    ASSERT_EQ(setitimer(ITIMER_REAL, &every_50us, nullptr), 0);
    auto start = Clock::now();
    while (ms_since(start) < 1000) usleep(10000);
    itimerval off{};
    setitimer(ITIMER_REAL, &off, nullptr);

    // A SIGALRM already pending when the timer stopped may still run its handler: the count
    // is compared once every thread is gone.
    start = Clock::now();
    while (taken.load() < g_timer_posts.load() && ms_since(start) < 20000) usleep(1000);
    EXPECT_GE(taken.load(), g_timer_posts.load())
        << "posts not taken: a wake-up from the handler was lost";
    stop = true;
    for (int i = 0; i < 3; ++i) sem_post(&g_timer_sem);  // the takers' last sem_wait
    for (auto& t : threads) t.join();
    const long posted = g_timer_posts.load();
    // A taker that saw `stop` before its last sem_wait leaves its post in the semaphore.
    int left = -1;
    sem_getvalue(&g_timer_sem, &left);
    EXPECT_EQ(taken.load() + left, posted + 3);
    EXPECT_GT(posted, 100);
    sigaction(SIGALRM, &before, nullptr);
    EXPECT_GT(shared_count, 0);
    sem_destroy(&g_timer_sem);
}

// A handler that runs while a thread waits in sem_wait, sem_timedwait or sem_clockwait ends
// the wait with EINTR, except that glibc restarts the untimed sem_wait under SA_RESTART (its
// futex wait restarts; the timed ones use absolute timeouts, which never do).
std::atomic<int> g_sem_handled{0};
void count_sem_signal(int) { g_sem_handled.fetch_add(1); }

TEST(Semaphore, AHandlerInterruptsTheWaitWithEintrUnlessAnUntimedWaitRestarts) {
    for (int restart = 0; restart < 2; ++restart) {
        for (int kind = 0; kind < 3; ++kind) {
            struct sigaction act {}, before{};
            act.sa_handler = count_sem_signal;
            act.sa_flags = restart ? SA_RESTART : 0;
            sigemptyset(&act.sa_mask);
            ASSERT_EQ(sigaction(SIGUSR1, &act, &before), 0);
            g_sem_handled = 0;
            sem_t s;
            ASSERT_EQ(sem_init(&s, 0, 0), 0);
            std::atomic<bool> entered{false}, done{false};
            int result = 0, err = 0;
            std::thread waiter([&] {
                entered = true;
                if (kind == 0) {
                    result = sem_wait(&s);
                } else if (kind == 1) {
                    timespec t = after_ms(CLOCK_REALTIME, 20000);
                    result = sem_timedwait(&s, &t);
                } else {
                    timespec t = after_ms(CLOCK_MONOTONIC, 20000);
                    result = sem_clockwait(&s, CLOCK_MONOTONIC, &t);
                }
                err = errno;
                done = true;
            });
            const bool restarts = restart && kind == 0;
            auto start = Clock::now();
            while (!entered && ms_since(start) < 5000) usleep(1000);
            // Until the wait ends, or (a restarting one) has outlived several handlers.
            while (!done && (!restarts || g_sem_handled < 5) && ms_since(start) < 10000) {
                pthread_kill(waiter.native_handle(), SIGUSR1);
                usleep(5000);
            }
            if (restarts) {
                EXPECT_FALSE(done.load()) << "sem_wait under SA_RESTART ended early";
            }
            sem_post(&s);  // ends a restarted wait; taken later by nobody otherwise
            waiter.join();
            if (restarts) {
                EXPECT_EQ(result, 0);
            } else {
                EXPECT_EQ(result, -1) << "restart " << restart << " kind " << kind;
                EXPECT_EQ(err, EINTR) << "restart " << restart << " kind " << kind;
            }
            sem_destroy(&s);
            sigaction(SIGUSR1, &before, nullptr);
        }
    }
}

TEST(Barrier, ReleasesEveryoneAndNamesOneSerialThread) {
    pthread_barrier_t b;
    EXPECT_EQ(pthread_barrier_init(&b, nullptr, 0), EINVAL);
    ASSERT_EQ(pthread_barrier_init(&b, nullptr, 8), 0);
    std::atomic<int> serial{0}, passed{0};
    std::vector<std::thread> threads;
    for (int i = 0; i < 8; ++i)
        threads.emplace_back([&] {
            for (int round = 0; round < 3; ++round) {
                int r = pthread_barrier_wait(&b);
                if (r == PTHREAD_BARRIER_SERIAL_THREAD) ++serial;
                else EXPECT_EQ(r, 0);
                ++passed;
            }
        });
    for (auto& t : threads) t.join();
    EXPECT_EQ(serial.load(), 3);
    EXPECT_EQ(passed.load(), 24);
    EXPECT_EQ(pthread_barrier_destroy(&b), 0);
}

namespace {
std::atomic<int> g_once_runs{0};
pthread_once_t g_once = PTHREAD_ONCE_INIT;
}  // namespace

TEST(Once, RunsOnceWhileOthersWaitForIt) {
    std::vector<std::thread> threads;
    std::atomic<int> after{0};
    for (int i = 0; i < 20; ++i)
        threads.emplace_back([&] {
            pthread_once(&g_once, [] {
                usleep(30000);  // the others must wait, not run it again
                ++g_once_runs;
            });
            EXPECT_EQ(g_once_runs.load(), 1);
            ++after;
        });
    for (auto& t : threads) t.join();
    EXPECT_EQ(g_once_runs.load(), 1);
    EXPECT_EQ(after.load(), 20);
}

TEST(Spinlock, ExcludesAndTrylockIsBusy) {
    pthread_spinlock_t s;
    ASSERT_EQ(pthread_spin_init(&s, PTHREAD_PROCESS_PRIVATE), 0);
    ASSERT_EQ(pthread_spin_lock(&s), 0);
    EXPECT_EQ(on_thread([&] { return pthread_spin_trylock(&s); }), EBUSY);
    long counter = 0;
    std::vector<std::thread> threads;
    for (int i = 0; i < 8; ++i)
        threads.emplace_back([&] {
            for (int k = 0; k < 1000; ++k) {
                pthread_spin_lock(&s);
                ++counter;
                pthread_spin_unlock(&s);
            }
        });
    usleep(10000);
    ASSERT_EQ(pthread_spin_unlock(&s), 0);
    for (auto& t : threads) t.join();
    EXPECT_EQ(counter, 8000);
    pthread_spin_destroy(&s);
}

TEST(Cxx, FutureAndPromiseAcrossThreads) {
    std::promise<int> p;
    std::future<int> f = p.get_future();
    std::thread t([&] {
        usleep(20000);
        p.set_value(42);
    });
    EXPECT_EQ(f.get(), 42);
    t.join();
}

TEST(Cxx, AtomicWaitAndNotify) {
    std::atomic<int> flag{0};
    std::thread t([&] {
        usleep(20000);
        flag.store(1);
        flag.notify_one();
    });
    flag.wait(0);
    EXPECT_EQ(flag.load(), 1);
    t.join();
}

TEST(Cxx, CountingSemaphoreLimitsConcurrency) {
    std::counting_semaphore<4> limit(4);
    std::atomic<int> inside{0}, peak{0};
    std::vector<std::thread> threads;
    for (int i = 0; i < 32; ++i)
        threads.emplace_back([&] {
            limit.acquire();
            int now = ++inside;
            int seen = peak.load();
            while (now > seen && !peak.compare_exchange_weak(seen, now)) {
            }
            usleep(5000);
            --inside;
            limit.release();
        });
    for (auto& t : threads) t.join();
    EXPECT_LE(peak.load(), 4);
    EXPECT_GE(peak.load(), 2);
}

TEST(Cxx, CallOnceAndStaticInitialisationUnderContention) {
    static std::once_flag flag;
    static std::atomic<int> calls{0};
    struct Slow {
        Slow() { usleep(20000); }
        int value = 7;
    };
    std::vector<std::thread> threads;
    std::atomic<int> sum{0};
    for (int i = 0; i < 16; ++i)
        threads.emplace_back([&] {
            std::call_once(flag, [] { ++calls; usleep(10000); });
            static Slow slow;  // a function-local static: one constructs, the others wait
            sum += slow.value;
        });
    for (auto& t : threads) t.join();
    EXPECT_EQ(calls.load(), 1);
    EXPECT_EQ(sum.load(), 16 * 7);
}

TEST(Cxx, SharedMutexAndConditionVariableWaitFor) {
    std::shared_mutex sm;
    std::shared_lock<std::shared_mutex> reader(sm);
    std::thread other([&] { EXPECT_FALSE(sm.try_lock()); });
    other.join();
    reader.unlock();
    std::mutex m;
    std::condition_variable cv;
    std::unique_lock<std::mutex> lock(m);
    auto start = Clock::now();
    EXPECT_EQ(cv.wait_for(lock, std::chrono::milliseconds(30)), std::cv_status::timeout);
    EXPECT_GE(ms_since(start), 25);
}

// ---------------------------------------------------------------------------------------
// Far-future absolute timeouts: a deadline centuries away is a wait that the wake-up ends,
// never one that expires at once (the conversion to a deadline must saturate).

namespace {

// Far-future absolute times: the largest, and one whose nanoseconds overflow 64 bits.
const timespec kFarFuture[] = {{LONG_MAX, 0}, {LLONG_MAX / 1000, 0}, {LLONG_MAX / 1000000000, 0}};

// Runs `wait` (which must return 0) while `wake` runs on another thread 50 ms later.
void far_wait_is_woken(const std::function<int()>& wait, const std::function<void()>& wake) {
    After waker(50, wake);
    auto start = Clock::now();
    EXPECT_EQ(wait(), 0);
    EXPECT_GE(ms_since(start), 30);
}

// A mutex or rwlock held by another thread for 50 ms.
class HeldFor50Ms {
public:
    HeldFor50Ms(std::function<void()> take, std::function<void()> release)
        : thread_([this, take, release] {
              take();
              taken_ = true;
              usleep(50000);
              release();
          }) {
        auto start = Clock::now();
        while (!taken_ && ms_since(start) < 5000) usleep(1000);
    }
    ~HeldFor50Ms() { thread_.join(); }

private:
    std::atomic<bool> taken_{false};
    std::thread thread_;
};

}  // namespace

TEST(FarFuture, CondTimedwaitAndClockwaitWaitForTheSignal) {
    for (const timespec& t : kFarFuture) {
        for (clockid_t clock : {CLOCK_REALTIME, CLOCK_MONOTONIC}) {
            pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
            pthread_cond_t c = PTHREAD_COND_INITIALIZER;
            bool ready = false;
            far_wait_is_woken(
                [&] {
                    pthread_mutex_lock(&m);
                    int r = 0;
                    while (!ready && r == 0)
                        r = clock == CLOCK_REALTIME ? pthread_cond_timedwait(&c, &m, &t)
                                                    : pthread_cond_clockwait(&c, &m, clock, &t);
                    pthread_mutex_unlock(&m);
                    return r;
                },
                [&] {
                    pthread_mutex_lock(&m);
                    ready = true;
                    pthread_cond_signal(&c);
                    pthread_mutex_unlock(&m);
                });
        }
    }
}

TEST(FarFuture, SemTimedwaitAndClockwaitWaitForThePost) {
    for (const timespec& t : kFarFuture) {
        sem_t s;
        ASSERT_EQ(sem_init(&s, 0, 0), 0);
        far_wait_is_woken([&] { return sem_timedwait(&s, &t); }, [&] { sem_post(&s); });
        far_wait_is_woken([&] { return sem_clockwait(&s, CLOCK_MONOTONIC, &t); },
                          [&] { sem_post(&s); });
        sem_destroy(&s);
    }
}

TEST(FarFuture, MutexTimedlockAndClocklockWaitForTheUnlock) {
    for (const timespec& t : kFarFuture) {
        for (clockid_t clock : {CLOCK_REALTIME, CLOCK_MONOTONIC}) {
            pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
            int r;
            {
                HeldFor50Ms held([&] { pthread_mutex_lock(&m); },
                                 [&] { pthread_mutex_unlock(&m); });
                r = clock == CLOCK_REALTIME ? pthread_mutex_timedlock(&m, &t)
                                            : pthread_mutex_clocklock(&m, clock, &t);
            }
            EXPECT_EQ(r, 0);
            if (r == 0) pthread_mutex_unlock(&m);
        }
    }
}

TEST(FarFuture, RwlockTimedLocksWaitForTheUnlock) {
    for (const timespec& t : kFarFuture) {
        for (int variant = 0; variant < 4; ++variant) {
            pthread_rwlock_t l = PTHREAD_RWLOCK_INITIALIZER;
            int r;
            {
                HeldFor50Ms held([&] { pthread_rwlock_wrlock(&l); },
                                 [&] { pthread_rwlock_unlock(&l); });
                switch (variant) {
                    case 0: r = pthread_rwlock_timedrdlock(&l, &t); break;
                    case 1: r = pthread_rwlock_timedwrlock(&l, &t); break;
                    case 2: r = pthread_rwlock_clockrdlock(&l, CLOCK_MONOTONIC, &t); break;
                    default: r = pthread_rwlock_clockwrlock(&l, CLOCK_MONOTONIC, &t); break;
                }
            }
            EXPECT_EQ(r, 0) << "variant " << variant;
            if (r == 0) pthread_rwlock_unlock(&l);
        }
    }
}

TEST(FarFuture, TimedjoinWaitsForTheThread) {
    for (const timespec& t : kFarFuture) {
        for (bool clock_variant : {false, true}) {
            pthread_t th;
            ASSERT_EQ(pthread_create(&th, nullptr,
                                     [](void*) -> void* {
                                         usleep(50000);
                                         return reinterpret_cast<void*>(7);
                                     },
                                     nullptr),
                      0);
            void* result = nullptr;
            int r = clock_variant ? pthread_clockjoin_np(th, &result, CLOCK_MONOTONIC, &t)
                                  : pthread_timedjoin_np(th, &result, &t);
            EXPECT_EQ(r, 0);
            if (r == 0)
                EXPECT_EQ(result, reinterpret_cast<void*>(7));
            else
                pthread_join(th, nullptr);
        }
    }
}

TEST(FarFuture, FutexWaitsRelativeAndAbsolute) {
    // Relative timeouts whose nanoseconds overflow 64 bits (one of them wraps to about 1 ms),
    // and absolute FUTEX_WAIT_BITSET times far away on both clocks.
    const timespec relative[] = {{LONG_MAX, 0}, {18446744073L, 710551616L}};
    for (const timespec& t : relative) {
        std::atomic<uint32_t> word{0};
        far_wait_is_woken(
            [&] {
                while (word.load() == 0) {
                    long r = syscall(SYS_futex, &word, FUTEX_WAIT_PRIVATE, 0, &t, nullptr, 0);
                    if (r != 0 && errno != EAGAIN && errno != EINTR) return static_cast<int>(errno);
                }
                return 0;
            },
            [&] {
                word = 1;
                syscall(SYS_futex, &word, FUTEX_WAKE_PRIVATE, 1, nullptr, nullptr, 0);
            });
    }
    for (const timespec& t : kFarFuture) {
        for (int op :
             {FUTEX_WAIT_BITSET_PRIVATE, FUTEX_WAIT_BITSET_PRIVATE | FUTEX_CLOCK_REALTIME}) {
            std::atomic<uint32_t> word{0};
            far_wait_is_woken(
                [&] {
                    while (word.load() == 0) {
                        long r = syscall(SYS_futex, &word, op, 0, &t, nullptr,
                                         FUTEX_BITSET_MATCH_ANY);
                        if (r != 0 && errno != EAGAIN && errno != EINTR)
                            return static_cast<int>(errno);
                    }
                    return 0;
                },
                [&] {
                    word = 1;
                    syscall(SYS_futex, &word, FUTEX_WAKE_PRIVATE, 1, nullptr, nullptr, 0);
                });
        }
    }
}

TEST(FarFuture, CxxWaitUntilTimePointMaxWaitsForTheNotify) {
    std::mutex m;
    std::condition_variable cv;
    bool ready = false;
    After notifier(50, [&] {
        std::lock_guard<std::mutex> hold(m);
        ready = true;
        cv.notify_one();
    });
    std::unique_lock<std::mutex> lock(m);
    auto start = Clock::now();
    while (!ready)
        EXPECT_EQ(cv.wait_until(lock, std::chrono::steady_clock::time_point::max()),
                  std::cv_status::no_timeout);
    EXPECT_GE(ms_since(start), 30);
    ready = false;
    lock.unlock();
    After again(50, [&] {
        std::lock_guard<std::mutex> hold(m);
        ready = true;
        cv.notify_one();
    });
    lock.lock();
    while (!ready)
        EXPECT_EQ(cv.wait_until(lock, std::chrono::system_clock::time_point::max()),
                  std::cv_status::no_timeout);
    // A time point in whole seconds: libstdc++ hands {LLONG_MAX, 0} to pthread_cond_clockwait.
    // (Its own cv_status answer then overflows; only the wait itself is checked.)
    ready = false;
    lock.unlock();
    After third(50, [&] {
        std::lock_guard<std::mutex> hold(m);
        ready = true;
        cv.notify_one();
    });
    lock.lock();
    using Seconds = std::chrono::time_point<std::chrono::steady_clock, std::chrono::seconds>;
    int waits = 0;
    while (!ready && waits < 1000) {
        cv.wait_until(lock, Seconds::max());
        ++waits;
    }
    EXPECT_TRUE(ready);
    EXPECT_LE(waits, 3);  // woken by the notify, not returning at once again and again
    lock.unlock();        // the notifiers may still need the mutex before they are joined
}

// Times in the past, with negative seconds, time out at once; an invalid tv_nsec is EINVAL
// where glibc checks it: before the negative seconds for condvars, semaphores and rwlocks,
// after them for mutexes (and even on a free rwlock, but not on a free mutex).
TEST(PastTimes, NegativeSecondsTimeOutAndBadNanosecondsAreEinvalWhereGlibcSaysSo) {
    const timespec past{-1, 0}, past_bad{-1, 2000000000L}, bad{0, 2000000000L},
        min_bad{LONG_MIN, -5};
    pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
    pthread_cond_t c = PTHREAD_COND_INITIALIZER;
    pthread_mutex_lock(&m);
    EXPECT_EQ(pthread_cond_timedwait(&c, &m, &past), ETIMEDOUT);
    EXPECT_EQ(pthread_cond_timedwait(&c, &m, &past_bad), EINVAL);
    EXPECT_EQ(pthread_cond_clockwait(&c, &m, CLOCK_MONOTONIC, &min_bad), EINVAL);
    EXPECT_EQ(on_thread([&] { return pthread_mutex_timedlock(&m, &past); }), ETIMEDOUT);
    EXPECT_EQ(on_thread([&] { return pthread_mutex_timedlock(&m, &past_bad); }), ETIMEDOUT);
    EXPECT_EQ(on_thread([&] { return pthread_mutex_clocklock(&m, CLOCK_MONOTONIC, &min_bad); }),
              ETIMEDOUT);
    EXPECT_EQ(on_thread([&] { return pthread_mutex_timedlock(&m, &bad); }), EINVAL);
    pthread_mutex_unlock(&m);

    sem_t s;
    ASSERT_EQ(sem_init(&s, 0, 0), 0);
    errno = 0;
    EXPECT_EQ(sem_timedwait(&s, &past), -1);
    EXPECT_EQ(errno, ETIMEDOUT);
    EXPECT_EQ(sem_clockwait(&s, CLOCK_MONOTONIC, &past_bad), -1);
    EXPECT_EQ(errno, EINVAL);
    sem_destroy(&s);

    pthread_rwlock_t l = PTHREAD_RWLOCK_INITIALIZER;
    EXPECT_EQ(pthread_rwlock_timedrdlock(&l, &bad), EINVAL);  // free, still checked
    EXPECT_EQ(pthread_rwlock_timedwrlock(&l, &past_bad), EINVAL);
    ASSERT_EQ(pthread_rwlock_wrlock(&l), 0);
    EXPECT_EQ(on_thread([&] { return pthread_rwlock_timedrdlock(&l, &past); }), ETIMEDOUT);
    EXPECT_EQ(on_thread([&] { return pthread_rwlock_clockwrlock(&l, CLOCK_MONOTONIC, &past); }),
              ETIMEDOUT);
    EXPECT_EQ(on_thread([&] { return pthread_rwlock_timedwrlock(&l, &past_bad); }), EINVAL);
    pthread_rwlock_unlock(&l);
}

// ---------------------------------------------------------------------------------------
// Process-shared condition variables, rwlocks and barriers in MAP_SHARED memory: a waiter
// in one process is woken by the other.

namespace {

template <typename T>
T* shared_object() {
    void* p = mmap(nullptr, sizeof(T), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) abort();
    return new (p) T();
}

template <typename T>
void release_shared(T* p) {
    p->~T();
    munmap(p, sizeof(T));
}

// Runs `body` in a forked child that exits with its result.
pid_t fork_child(const std::function<int()>& body) {
    pid_t pid = fork();
    if (pid == 0) _exit(body());
    return pid;
}

// The child's exit status; a child still running after `ms` is killed and gives -1.
int child_status(pid_t pid, long ms) {
    auto start = Clock::now();
    int status = 0;
    while (waitpid(pid, &status, WNOHANG) == 0) {
        if (ms_since(start) > ms) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            return -1;
        }
        usleep(2000);
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : -2;
}

// Waits (up to 5 s) until `flag` reaches `value`.
bool await_value(const std::atomic<int>& flag, int value) {
    auto start = Clock::now();
    while (flag.load() != value)
        if (ms_since(start) > 5000) return false;
        else usleep(1000);
    return true;
}

struct SharedCond {
    pthread_mutex_t m;
    pthread_cond_t c;
    std::atomic<int> waiting{0};
    int ready = 0;
    SharedCond() {
        pthread_mutexattr_t ma;
        pthread_mutexattr_init(&ma);
        pthread_mutexattr_setpshared(&ma, PTHREAD_PROCESS_SHARED);
        pthread_mutex_init(&m, &ma);
        pthread_mutexattr_destroy(&ma);
        pthread_condattr_t ca;
        pthread_condattr_init(&ca);
        pthread_condattr_setpshared(&ca, PTHREAD_PROCESS_SHARED);
        pthread_cond_init(&c, &ca);
        pthread_condattr_destroy(&ca);
    }
    ~SharedCond() {
        pthread_cond_destroy(&c);
        pthread_mutex_destroy(&m);
    }
    // Waits (up to 5 s) for ready; 0 if it came before the wait timed out.
    int wait_ready() {
        timespec t = after_ms(CLOCK_REALTIME, 5000);
        pthread_mutex_lock(&m);
        waiting = 1;
        int r = 0;
        while (!ready && r == 0) r = pthread_cond_timedwait(&c, &m, &t);
        pthread_mutex_unlock(&m);
        return r == 0 ? 0 : 3;
    }
    // Once a waiter waits, and 100 ms later: sets ready and signals.
    int signal_ready() {
        if (!await_value(waiting, 1)) return 4;
        usleep(100000);
        pthread_mutex_lock(&m);
        ready = 1;
        pthread_cond_signal(&c);
        pthread_mutex_unlock(&m);
        return 0;
    }
};

}  // namespace

TEST(ProcessShared, CondSignalInTheParentWakesAWaiterInTheChild) {
    auto* s = shared_object<SharedCond>();
    pid_t pid = fork_child([&] { return s->wait_ready(); });
    auto start = Clock::now();
    EXPECT_EQ(s->signal_ready(), 0);
    EXPECT_EQ(child_status(pid, 3000), 0);
    EXPECT_LT(ms_since(start), 3000);
    release_shared(s);
}

TEST(ProcessShared, CondSignalInTheChildWakesTheParentsMain) {
    auto* s = shared_object<SharedCond>();
    pid_t pid = fork_child([&] { return s->signal_ready(); });
    auto start = Clock::now();
    EXPECT_EQ(s->wait_ready(), 0);
    EXPECT_LT(ms_since(start), 3000);
    EXPECT_EQ(child_status(pid, 3000), 0);
    release_shared(s);
}

TEST(ProcessShared, CondSignalInTheChildWakesAnOsThreadOfTheParent) {
    // thrd_create makes a real thread even under the shim: it waits in the kernel.
    auto* s = shared_object<SharedCond>();
    pid_t pid = fork_child([&] { return s->signal_ready(); });
    auto start = Clock::now();
    thrd_t t;
    ASSERT_EQ(thrd_create(&t, [](void* arg) { return static_cast<SharedCond*>(arg)->wait_ready(); },
                          s),
              thrd_success);
    int r = -1;
    thrd_join(t, &r);
    EXPECT_EQ(r, 0);
    EXPECT_LT(ms_since(start), 3000);
    EXPECT_EQ(child_status(pid, 3000), 0);
    release_shared(s);
}

namespace {

struct SharedRwlock {
    pthread_rwlock_t l;
    std::atomic<int> stage{0};
    SharedRwlock() {
        pthread_rwlockattr_t a;
        pthread_rwlockattr_init(&a);
        pthread_rwlockattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
        pthread_rwlock_init(&l, &a);
        pthread_rwlockattr_destroy(&a);
    }
    ~SharedRwlock() { pthread_rwlock_destroy(&l); }
};

}  // namespace

TEST(ProcessShared, RwlockUnlockInTheParentWakesAReaderInTheChild) {
    auto* s = shared_object<SharedRwlock>();
    ASSERT_EQ(pthread_rwlock_wrlock(&s->l), 0);
    pid_t pid = fork_child([&] {
        s->stage = 1;
        timespec t = after_ms(CLOCK_REALTIME, 5000);
        int r = pthread_rwlock_timedrdlock(&s->l, &t);
        if (r == 0) pthread_rwlock_unlock(&s->l);
        return r == 0 ? 0 : 3;
    });
    ASSERT_TRUE(await_value(s->stage, 1));
    usleep(100000);
    auto start = Clock::now();
    ASSERT_EQ(pthread_rwlock_unlock(&s->l), 0);
    EXPECT_EQ(child_status(pid, 3000), 0);
    EXPECT_LT(ms_since(start), 3000);
    release_shared(s);
}

TEST(ProcessShared, RwlockUnlockInTheChildWakesTheParentsWriter) {
    auto* s = shared_object<SharedRwlock>();
    pid_t pid = fork_child([&] {
        if (pthread_rwlock_rdlock(&s->l) != 0) return 5;
        s->stage = 1;
        if (!await_value(s->stage, 2)) return 4;
        usleep(100000);
        pthread_rwlock_unlock(&s->l);
        return 0;
    });
    ASSERT_TRUE(await_value(s->stage, 1));
    s->stage = 2;
    timespec t = after_ms(CLOCK_REALTIME, 5000);
    auto start = Clock::now();
    int r = pthread_rwlock_timedwrlock(&s->l, &t);
    EXPECT_EQ(r, 0);
    EXPECT_LT(ms_since(start), 3000);
    if (r == 0) pthread_rwlock_unlock(&s->l);
    EXPECT_EQ(child_status(pid, 3000), 0);
    release_shared(s);
}

namespace {

struct SharedBarrier {
    pthread_barrier_t b;
    SharedBarrier() {
        pthread_barrierattr_t a;
        pthread_barrierattr_init(&a);
        pthread_barrierattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
        pthread_barrier_init(&b, &a, 2);
        pthread_barrierattr_destroy(&a);
    }
    ~SharedBarrier() { pthread_barrier_destroy(&b); }
    int wait() {
        int r = pthread_barrier_wait(&b);
        return r == 0 || r == PTHREAD_BARRIER_SERIAL_THREAD ? 0 : 3;
    }
};

}  // namespace

TEST(ProcessShared, BarrierReleasesAWaiterInTheChild) {
    auto* s = shared_object<SharedBarrier>();
    pid_t pid = fork_child([&] { return s->wait(); });
    usleep(100000);
    auto start = Clock::now();
    EXPECT_EQ(s->wait(), 0);
    EXPECT_EQ(child_status(pid, 3000), 0);
    EXPECT_LT(ms_since(start), 3000);
    release_shared(s);
}

TEST(ProcessShared, BarrierReleasesTheParentsMain) {
    auto* s = shared_object<SharedBarrier>();
    pid_t pid = fork_child([&] {
        usleep(100000);
        return s->wait();
    });
    // Should the parent never be released, two more arrivals after 3 s end its wait (a new
    // round in this process), so that the test fails instead of hanging.
    std::atomic<bool> passed{false};
    std::thread rescue([&] {
        auto start = Clock::now();
        while (!passed && ms_since(start) < 3000) usleep(2000);
        if (passed) return;
        std::thread other([&] { s->wait(); });
        s->wait();
        other.join();
    });
    auto start = Clock::now();
    EXPECT_EQ(s->wait(), 0);
    passed = true;
    EXPECT_LT(ms_since(start), 3000);
    rescue.join();
    EXPECT_EQ(child_status(pid, 3000), 0);
    release_shared(s);
}

// ---------------------------------------------------------------------------------------
// Destroy right after the wake-up: POSIX lets a program destroy a condvar once no thread
// is blocked on it (after a broadcast) and a barrier once its round is complete, and reuse
// the memory at once. The woken waiters must not touch it any more by then.

TEST(Cond, MemoryMayBeReusedAsSoonAsDestroyAfterBroadcastReturns) {
    constexpr int kWaiters = 8;
    for (int round = 0; round < 40; ++round) {
        auto* c = static_cast<pthread_cond_t*>(malloc(sizeof(pthread_cond_t)));
        ASSERT_EQ(pthread_cond_init(c, nullptr), 0);
        pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
        int waiting = 0;
        bool go = false;
        std::vector<std::thread> waiters;
        for (int i = 0; i < kWaiters; ++i)
            waiters.emplace_back([&] {
                pthread_mutex_lock(&m);
                ++waiting;
                while (!go) pthread_cond_wait(c, &m);
                pthread_mutex_unlock(&m);
            });
        auto start = Clock::now();
        for (;;) {
            pthread_mutex_lock(&m);
            int n = waiting;
            if (n == kWaiters) break;  // all inside pthread_cond_wait, the mutex held by us
            pthread_mutex_unlock(&m);
            ASSERT_LT(ms_since(start), 5000);
            usleep(500);
        }
        go = true;
        pthread_cond_broadcast(c);
        pthread_mutex_unlock(&m);
        ASSERT_EQ(pthread_cond_destroy(c), 0);
        std::memset(static_cast<void*>(c), 0xa5, sizeof *c);  // the memory is ours again
        for (auto& t : waiters) t.join();
        const auto* bytes = reinterpret_cast<const unsigned char*>(c);
        for (size_t i = 0; i < sizeof *c; ++i) ASSERT_EQ(bytes[i], 0xa5) << "byte " << i;
        free(c);
    }
}

TEST(Barrier, MemoryMayBeReusedAsSoonAsTheSerialThreadDestroysIt) {
    constexpr int kThreads = 6;
    for (int round = 0; round < 40; ++round) {
        auto* b = static_cast<pthread_barrier_t*>(malloc(sizeof(pthread_barrier_t)));
        ASSERT_EQ(pthread_barrier_init(b, nullptr, kThreads), 0);
        std::atomic<int> serial{0};
        std::vector<std::thread> threads;
        for (int i = 0; i < kThreads; ++i)
            threads.emplace_back([&] {
                if (pthread_barrier_wait(b) != PTHREAD_BARRIER_SERIAL_THREAD) return;
                EXPECT_EQ(pthread_barrier_destroy(b), 0);
                std::memset(static_cast<void*>(b), 0x5a, sizeof *b);
                ++serial;
            });
        for (auto& t : threads) t.join();
        EXPECT_EQ(serial.load(), 1);
        const auto* bytes = reinterpret_cast<const unsigned char*>(b);
        for (size_t i = 0; i < sizeof *b; ++i) ASSERT_EQ(bytes[i], 0x5a) << "byte " << i;
        free(b);
    }
}

// ---------------------------------------------------------------------------------------
// glibc's own lockers: C11 mtx_lock takes a pthread_mutex_t through glibc's internal
// functions (no PLT), and sleeps on the lock word in the kernel.

TEST(Mutex, UnlockWakesAC11ThreadBlockedInMtxLock) {
    static mtx_t mtx;
    ASSERT_EQ(mtx_init(&mtx, mtx_plain), thrd_success);
    auto* m = reinterpret_cast<pthread_mutex_t*>(&mtx);  // glibc: mtx_t is a pthread_mutex_t
    ASSERT_EQ(pthread_mutex_lock(m), 0);
    static std::atomic<int> got{0};
    got = 0;
    thrd_t t;
    ASSERT_EQ(thrd_create(&t,
                          [](void*) {
                              if (mtx_lock(&mtx) != thrd_success) return 1;
                              got = 1;
                              mtx_unlock(&mtx);
                              return 0;
                          },
                          nullptr),
              thrd_success);
    // glibc marks the word contended (2) before it sleeps in FUTEX_WAIT.
    auto start = Clock::now();
    while (__atomic_load_n(&m->__data.__lock, __ATOMIC_ACQUIRE) != 2 && ms_since(start) < 5000)
        usleep(1000);
    ASSERT_EQ(pthread_mutex_unlock(m), 0);
    start = Clock::now();
    while (!got && ms_since(start) < 2000) usleep(1000);
    EXPECT_EQ(got.load(), 1);
    if (!got) {  // a thread left asleep in the kernel: wake it so that the test can end
        while (!got) {
            syscall(SYS_futex, &m->__data.__lock, FUTEX_WAKE_PRIVATE, 1, nullptr, nullptr, 0);
            usleep(1000);
        }
    }
    int r = -1;
    thrd_join(t, &r);
    EXPECT_EQ(r, 0);
    mtx_destroy(&mtx);
}

// ---------------------------------------------------------------------------------------
// errno: the pthread_* calls never change it; the sem_* calls only when they fail.

TEST(Errno, LockAndWaitCallsOnAnOsThreadLeaveErrnoAlone) {
    // On a real thread (thrd_create, also under the shim) the waits sleep in the kernel,
    // whose own results (ETIMEDOUT, EAGAIN) must not leak into errno.
    thrd_t t;
    ASSERT_EQ(thrd_create(&t,
                          [](void*) {
                              int failures = 0;
                              pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
                              pthread_cond_t c = PTHREAD_COND_INITIALIZER;
                              pthread_mutex_lock(&m);
                              errno = 777;
                              timespec t = after_ms(CLOCK_REALTIME, 20);
                              failures += pthread_cond_timedwait(&c, &m, &t) != ETIMEDOUT;
                              failures += errno != 777;
                              pthread_mutex_unlock(&m);
                              sem_t s;
                              sem_init(&s, 1, 0);  // shared: its waits re-check
                              std::thread poster([&] {
                                  usleep(30000);
                                  sem_post(&s);
                              });
                              errno = 778;
                              failures += sem_wait(&s) != 0;
                              failures += errno != 778;
                              poster.join();
                              t = after_ms(CLOCK_REALTIME, 20);
                              errno = 779;
                              failures += sem_timedwait(&s, &t) != -1;
                              failures += errno != ETIMEDOUT;
                              sem_destroy(&s);
                              return failures;
                          },
                          nullptr),
              thrd_success);
    int failures = -1;
    thrd_join(t, &failures);
    EXPECT_EQ(failures, 0);
}
