// Unit tests of runtime/: carriers, fibers, stacks, parking, timers and fd waits.
#include "runtime/runtime.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "carrier_fixture.h"
#include "runtime/spinlock.h"
#include "runtime/stack_pool.h"

using namespace green;

TEST(Carrier, AdoptionMakesTheThreadsContextTheRootFiber) {
    on_carrier([] {
        Fiber* root = current_fiber();
        ASSERT_NE(root, nullptr);
        EXPECT_TRUE(root->is_root);
        EXPECT_TRUE(on_fiber());
    });
    EXPECT_FALSE(on_fiber());
}

TEST(Fiber, JoinReturnsTheStartRoutinesResult) {
    on_carrier([] {
        Fiber* f = nullptr;
        ASSERT_EQ(spawn([](void* a) -> void* { return static_cast<char*>(a) + 1; },
                        reinterpret_cast<void*>(41), {}, &f),
                  0);
        void* result = nullptr;
        EXPECT_EQ(join(f, &result, kNoDeadline), 0);
        EXPECT_EQ(reinterpret_cast<long>(result), 42);
    });
}

TEST(Fiber, RunnableFibersRunInCreationOrderAndYieldInterleaves) {
    on_carrier([] {
        std::string trace;
        auto a = [&] {
            trace += "a1";
            yield();
            trace += "a2";
        };
        auto b = [&] {
            trace += "b1";
            yield();
            trace += "b2";
        };
        Fiber* fa = go(&a);
        Fiber* fb = go(&b);
        join(fa, nullptr, kNoDeadline);
        join(fb, nullptr, kNoDeadline);
        EXPECT_EQ(trace, "a1b1a2b2");
    });
}

TEST(Fiber, JoinErrorsMatchGlibc) {
    on_carrier([] {
        EXPECT_EQ(join(current_fiber(), nullptr, kNoDeadline), EDEADLK);
        auto idle = [] { sleep_until(deadline_after_ns(20000000), ParkReason::kSleep); };
        Fiber* f = go(&idle);
        EXPECT_EQ(join(f, nullptr, 0), EBUSY);
        EXPECT_EQ(join(f, nullptr, deadline_after_ns(1000000)), ETIMEDOUT);
        EXPECT_EQ(join(f, nullptr, kNoDeadline), 0);
        Fiber* g = go(&idle);
        EXPECT_EQ(detach(g), 0);
        EXPECT_EQ(detach(g), EINVAL);
        EXPECT_EQ(join(g, nullptr, kNoDeadline), EINVAL);
        sleep_until(deadline_after_ns(40000000), ParkReason::kSleep);
    });
}

TEST(Fiber, ErrnoIsPerFiber) {
    on_carrier([] {
        auto other = [] {
            errno = 7;
            yield();
            EXPECT_EQ(errno, 7);
        };
        Fiber* f = go(&other);
        errno = 5;
        yield();
        EXPECT_EQ(errno, 5);
        join(f, nullptr, kNoDeadline);
        EXPECT_EQ(errno, 5);
    });
}

namespace {
int g_unwound = 0;
struct CountsUnwind {
    ~CountsUnwind() { ++g_unwound; }
};
}  // namespace

TEST(Fiber, ExitCurrentUnwindsTheStackAndDeliversTheValue) {
    on_carrier([] {
        g_unwound = 0;
        Fiber* f = nullptr;
        spawn(
            [](void*) -> void* {
                CountsUnwind guard;
                exit_current(reinterpret_cast<void*>(9));
            },
            nullptr, {}, &f);
        void* result = nullptr;
        EXPECT_EQ(join(f, &result, kNoDeadline), 0);
        EXPECT_EQ(reinterpret_cast<long>(result), 9);
        EXPECT_EQ(g_unwound, 1);
    });
}

TEST(Fiber, TenThousandFibersSleepAtOnce) {
    on_carrier(
        [] {
            const int n = 10000;
            std::vector<Fiber*> fibers(n);
            auto nap = [] { sleep_until(deadline_after_ns(100000000), ParkReason::kSleep); };
            uint64_t start = monotonic_now_ns();
            for (auto& f : fibers) f = go(&nap);
            for (auto* f : fibers) ASSERT_EQ(join(f, nullptr, kNoDeadline), 0);
            uint64_t took = monotonic_now_ns() - start;
            EXPECT_GE(took, 100000000u);
            EXPECT_LT(took, 3000000000u);
        },
        RuntimeConfig{64 * 1024});
}

TEST(Timer, SleepUntilNeverWakesBeforeTheDeadline) {
    on_carrier([] {
        for (uint64_t ns : {1000000ull, 3500000ull, 20000000ull}) {
            uint64_t deadline = deadline_after_ns(ns);
            EXPECT_EQ(sleep_until(deadline, ParkReason::kSleep), WaitResult::kTimedOut);
            EXPECT_GE(monotonic_now_ns(), deadline);
        }
    });
}

TEST(FdWait, ReadyWhenAnotherFiberWrites) {
    on_carrier([] {
        int p[2];
        ASSERT_EQ(pipe(p), 0);
        auto writer = [&] {
            sleep_until(deadline_after_ns(10000000), ParkReason::kSleep);
            ASSERT_EQ(write(p[1], "x", 1), 1);
        };
        Fiber* f = go(&writer);
        EXPECT_EQ(wait_fd(p[0], EPOLLIN, kNoDeadline, ParkReason::kRead), WaitResult::kReady);
        join(f, nullptr, kNoDeadline);
        close(p[0]);
        close(p[1]);
    });
}

TEST(FdWait, TimesOutAtTheDeadline) {
    on_carrier([] {
        int p[2];
        ASSERT_EQ(pipe(p), 0);
        uint64_t deadline = deadline_after_ns(15000000);
        EXPECT_EQ(wait_fd(p[0], EPOLLIN, deadline, ParkReason::kRead), WaitResult::kTimedOut);
        EXPECT_GE(monotonic_now_ns(), deadline);
        close(p[0]);
        close(p[1]);
    });
}

TEST(FdWait, ClosingTheFdWakesEveryWaiterWithClosed) {
    on_carrier([] {
        int p[2];
        ASSERT_EQ(pipe(p), 0);
        WaitResult seen[2] = {WaitResult::kReady, WaitResult::kReady};
        auto w0 = [&] { seen[0] = wait_fd(p[0], EPOLLIN, kNoDeadline, ParkReason::kRead); };
        auto w1 = [&] { seen[1] = wait_fd(p[0], EPOLLIN, kNoDeadline, ParkReason::kRead); };
        Fiber* a = go(&w0);
        Fiber* b = go(&w1);
        yield();
        fd_closing(p[0]);
        close(p[0]);
        join(a, nullptr, kNoDeadline);
        join(b, nullptr, kNoDeadline);
        EXPECT_EQ(seen[0], WaitResult::kClosed);
        EXPECT_EQ(seen[1], WaitResult::kClosed);
        close(p[1]);
    });
}

// close() in a signal handler (counted as the trampoline counts it) touches neither the
// carrier's fd records nor its run queue, which the handler may have interrupted: the waiters
// are woken by the carrier's loop, still with kClosed.
TEST(FdWait, ClosingInAHandlerWakesTheWaitersFromTheLoop) {
    on_carrier([] {
        int p[2];
        ASSERT_EQ(pipe(p), 0);
        WaitResult seen = WaitResult::kReady;
        auto waiter = [&] { seen = wait_fd(p[0], EPOLLIN, kNoDeadline, ParkReason::kRead); };
        Fiber* a = go(&waiter);
        yield();
        ++t_signal_handler_depth;
        fd_closing(p[0]);
        --t_signal_handler_depth;
        EXPECT_EQ(a->state, FiberState::kParked);  // not queued by the handler itself
        close(p[0]);
        join(a, nullptr, kNoDeadline);
        EXPECT_EQ(seen, WaitResult::kClosed);
        close(p[1]);
    });
}

TEST(FdWait, ReadersAndWritersOfOneFdWakeForTheirOwnEvent) {
    on_carrier([] {
        int sv[2];
        ASSERT_EQ(pipe2(sv, 0), 0);
        int rd = sv[0];
        int wr = sv[1];
        bool reader_woke = false;
        auto reader = [&] {
            reader_woke =
                wait_fd(rd, EPOLLIN, kNoDeadline, ParkReason::kRead) == WaitResult::kReady;
        };
        Fiber* r = go(&reader);
        yield();
        // The write end is writable at once; the reader must stay parked until data comes.
        EXPECT_EQ(wait_fd(wr, EPOLLOUT, kNoDeadline, ParkReason::kWrite), WaitResult::kReady);
        EXPECT_FALSE(reader_woke);
        ASSERT_EQ(write(wr, "x", 1), 1);
        join(r, nullptr, kNoDeadline);
        EXPECT_TRUE(reader_woke);
        close(rd);
        close(wr);
    });
}

TEST(FdWait, RegularFileCountsAsReady) {
    on_carrier([] {
        int fd = open("/proc/self/exe", O_RDONLY);
        ASSERT_GE(fd, 0);
        EXPECT_EQ(wait_fd(fd, EPOLLIN, kNoDeadline, ParkReason::kRead), WaitResult::kReady);
        close(fd);
    });
}

TEST(StackPool, StacksHaveAGuardPageAndAreReused) {
    Stack a;
    ASSERT_TRUE(StackPool::acquire(64 * 1024, &a));
    EXPECT_EQ(a.usable(), 64u * 1024);
    EXPECT_EQ(a.limit - a.base, static_cast<long>(StackPool::page_size()));
    // The guard page faults (a lightweight guard where the kernel has them, else a PROT_NONE
    // page): a write to it ends a forked child with SIGSEGV; the page above it is the stack's.
    a.limit[0] = 1;
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
        signal(SIGSEGV, SIG_DFL);
        *static_cast<volatile char*>(a.base) = 1;
        _exit(0);
    }
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGSEGV) << status;
    StackPool::release(a);
    Stack b;
    ASSERT_TRUE(StackPool::acquire(64 * 1024, &b));
    EXPECT_EQ(b.base, a.base);
    StackPool::release(b);
}

TEST(Stats, CountFibersAndParks) {
    on_carrier([] {
        RuntimeStats before = stats();
        auto nap = [] { sleep_until(deadline_after_ns(1000000), ParkReason::kSleep); };
        Fiber* f = go(&nap);
        join(f, nullptr, kNoDeadline);
        RuntimeStats after = stats();
        EXPECT_EQ(after.fibers_created - before.fibers_created, 1u);
        EXPECT_GE(after.parks[static_cast<int>(ParkReason::kSleep)] -
                      before.parks[static_cast<int>(ParkReason::kSleep)],
                  1u);
        EXPECT_GE(after.parks[static_cast<int>(ParkReason::kJoin)] -
                      before.parks[static_cast<int>(ParkReason::kJoin)],
                  1u);
    });
}

// Released stacks keep their pages for the next fibers (no madvise, no page faults), and give
// them back once they have waited unused for a while: a burst of fibers does not leave its
// stack memory resident for good.
TEST(StackPool, ReleasedStacksKeepTheirPagesUntilTheyWaitedLongEnough) {
    constexpr int kStacks = 40;
    constexpr size_t kSize = 96 * 1024;  // a size no other test uses: its own bucket
    Stack stacks[kStacks];
    for (Stack& s : stacks) {
        ASSERT_TRUE(StackPool::acquire(kSize, &s));
        s.top[-1] = 1;  // touch the top page, as a fiber's first frame does
    }
    for (Stack& s : stacks) StackPool::release(s);
    auto resident = [&] {
        int n = 0;
        for (Stack& s : stacks) {
            unsigned char in_core = 0;
            char* page = s.top - StackPool::page_size();
            EXPECT_EQ(mincore(page, StackPool::page_size(), &in_core), 0);
            n += in_core & 1;
        }
        return n;
    };
    EXPECT_EQ(resident(), kStacks);
    const uint64_t due = StackPool::scavenge_before_sleep(monotonic_now_ns());  // none yet
    ASSERT_NE(due, UINT64_MAX);
    EXPECT_GT(due, monotonic_now_ns());
    EXPECT_EQ(resident(), kStacks);
    StackPool::scavenge_before_sleep(due + 60000000000ull);  // a carrier a minute later
    EXPECT_EQ(resident(), 0);
    for (int i = 0; i < kStacks; ++i) ASSERT_TRUE(StackPool::acquire(kSize, &stacks[i]));
    for (Stack& s : stacks) StackPool::release(s);
}

// The dump is one block of green.stats.KEY=VALUE lines: this carrier's and the totals, with
// the fibers just made counted in both.
TEST(Stats, WriteStatsDumpsEachCarrierAndTheTotals) {
    char path[] = "/tmp/green-stats-XXXXXX";
    int fd = mkstemp(path);
    ASSERT_GE(fd, 0);
    close(fd);
    pid_t carrier_tid = 0;
    on_carrier([&] {
        carrier_tid = gettid();
        auto nap = [] { sleep_until(deadline_after_ns(1000000), ParkReason::kSleep); };
        for (int i = 0; i < 3; ++i) join(go(&nap), nullptr, kNoDeadline);
        write_stats(path, "test");
    });
    std::ifstream in(path);
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    unlink(path);
    EXPECT_NE(text.find("green.stats.reason=test\n"), std::string::npos);
    EXPECT_NE(text.find("green.stats.carriers="), std::string::npos);
    EXPECT_NE(text.find("green: stats at test: "), std::string::npos);
    // This carrier's block: root + 3 fibers created, 3 sleeps at least.
    size_t tid_line = text.find(".tid=" + std::to_string(carrier_tid) + "\n");
    ASSERT_NE(tid_line, std::string::npos);
    size_t scope_start = text.rfind("green.stats.carrier", tid_line) + 12;
    std::string scope = text.substr(scope_start, tid_line - scope_start);
    EXPECT_NE(text.find("green.stats." + scope + ".fibers_created=4\n"), std::string::npos)
        << text;
    EXPECT_NE(text.find("green.stats.total.parks.sleep="), std::string::npos);
    EXPECT_EQ(text.substr(text.size() - 18), "green.stats.end=1\n");
}

// A timer already due when the scheduler enters the loop (the fibers before it ran long)
// wakes its fiber, and the loop must not then block waiting for I/O: on a busy machine the
// woken fiber stayed runnable while the carrier slept in epoll for good.
TEST(Scheduler, ATimerDueBeforeTheLoopRunsIsNotLost) {
    on_carrier([] {
        auto sleeper = [] {
            green::sleep_until(green::deadline_after_ns(1'000'000), green::ParkReason::kSleep);
        };
        auto spinner = [] {
            uint64_t until = green::monotonic_now_ns() + 20'000'000;
            while (green::monotonic_now_ns() < until) {
            }
        };
        green::Fiber* a = go(&sleeper);
        green::Fiber* b = go(&spinner);
        uint64_t start = green::monotonic_now_ns();
        EXPECT_EQ(green::join(a, nullptr, green::deadline_after_ns(5'000'000'000)), 0);
        EXPECT_EQ(green::join(b, nullptr, green::kNoDeadline), 0);
        EXPECT_LT(green::monotonic_now_ns() - start, 1'000'000'000u);
    });
}
