// Threads that never block: spin-waits, busy loops and non-blocking polls still let the
// others run, as pre-emptive threads do. Natively the kernel's scheduler sees to it; under
// the shim, time slices (a fiber that has run a whole slice gives way at its next hooked
// call, or by signal where it stands). Without them every test here would hang.
#include <gtest/gtest.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <pthread.h>
#include <semaphore.h>
#include <sched.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/time.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <thread>
#include <vector>

#include "common.h"

using namespace sem;

namespace {

// A loop the compiler keeps: it reads the flag each time and makes no call.
void spin_until(const std::atomic<bool>& flag) {
    while (!flag.load(std::memory_order_acquire)) {
    }
}

std::atomic<bool> g_alarm{false};
void on_alarm(int) { g_alarm = true; }

// SIGALRM sets g_alarm in `us` microseconds.
void alarm_in(long us) {
    g_alarm = false;
    struct sigaction act {};
    act.sa_handler = on_alarm;
    sigemptyset(&act.sa_mask);
    ASSERT_EQ(sigaction(SIGALRM, &act, nullptr), 0);
    itimerval t{};
    t.it_value.tv_usec = us;
    ASSERT_EQ(setitimer(ITIMER_REAL, &t, nullptr), 0);
}

}  // namespace

TEST(Preempt, ASpinOnAnAtomicFlagEndsWhenAnotherThreadSetsIt) {
    std::atomic<bool> flag{false};
    auto start = Clock::now();
    After setter(50, [&] { flag = true; });
    spin_until(flag);
    long ms = ms_since(start);
    EXPECT_GE(ms, 45);
    EXPECT_LT(ms, 400) << "the spinning thread kept the setter from running";
}

TEST(Preempt, ASleeperWakesWithinASliceWhileTwoThreadsComputeWithoutBlocking) {
    std::atomic<bool> stop{false};
    std::thread hog1([&] { spin_until(stop); });
    std::thread hog2([&] { spin_until(stop); });
    std::vector<long> late_us;
    for (int i = 0; i < 30; ++i) {
        auto start = Clock::now();
        usleep(2000);
        long us = static_cast<long>(std::chrono::duration_cast<std::chrono::microseconds>(
                                        Clock::now() - start)
                                        .count());
        late_us.push_back(us - 2000);
    }
    stop = true;
    hog1.join();
    hog2.join();
    std::sort(late_us.begin(), late_us.end());
    // The default slice is 5 ms; natively the kernel's is a few ms on two cores. The 27th of
    // 30 leaves room for a loaded machine.
    EXPECT_LT(late_us[26], 25000) << "median " << late_us[15] << " us, max " << late_us[29];
}

TEST(Preempt, AHandlerRunsOnTheThreadThatTakesTheSignalWhileAnotherLoops) {
    std::atomic<bool> done{false}, blocked{false};
    // The loop blocks SIGALRM, so only main (waiting in join) can take it: the kernel must be
    // let to deliver it while the loop runs.
    std::thread loop([&] {
        sigset_t alarm;
        sigemptyset(&alarm);
        sigaddset(&alarm, SIGALRM);
        pthread_sigmask(SIG_BLOCK, &alarm, nullptr);
        blocked = true;
        while (!g_alarm.load()) {
        }
        done = true;
    });
    while (!blocked.load()) sched_yield();
    auto start = Clock::now();
    alarm_in(50000);
    loop.join();
    EXPECT_TRUE(done.load());
    EXPECT_LT(ms_since(start), 400);
    signal(SIGALRM, SIG_DFL);
}

TEST(Preempt, AHandlerInterruptsATightLoopOnItsOwnThread) {
    std::atomic<bool> stop{false};
    std::thread other([&] { spin_until(stop); });
    alarm_in(30000);
    auto start = Clock::now();
    while (!g_alarm.load()) {
    }
    EXPECT_LT(ms_since(start), 400);
    stop = true;
    other.join();
    signal(SIGALRM, SIG_DFL);
}

TEST(Preempt, AZeroTimeoutPollLoopSeesWhatAnotherThreadWritesLater) {
    Pair p = pipe_pair();
    auto start = Clock::now();
    After writer(50, [&] { ASSERT_EQ(write(p.b, "x", 1), 1); });
    pollfd fd{p.a, POLLIN, 0};
    int polls = 0;
    while (poll(&fd, 1, 0) == 0) ++polls;
    EXPECT_EQ(fd.revents, POLLIN);
    EXPECT_GE(ms_since(start), 45);
    EXPECT_LT(ms_since(start), 400);
    EXPECT_GT(polls, 0);
}

TEST(Preempt, ANonBlockingRecvLoopGetsTheDataSentLater) {
    Pair p = socket_pair();
    After sender(50, [&] { ASSERT_EQ(send(p.b, "hello", 5, 0), 5); });
    char buf[8];
    ssize_t n;
    auto start = Clock::now();
    while ((n = recv(p.a, buf, sizeof buf, MSG_DONTWAIT)) < 0) ASSERT_EQ(errno, EAGAIN);
    EXPECT_EQ(n, 5);
    EXPECT_LT(ms_since(start), 400);
}

TEST(Preempt, ATrylockLoopGetsTheMutexAnotherThreadHoldsForAWhile) {
    pthread_mutex_t mutex = PTHREAD_MUTEX_INITIALIZER;
    std::atomic<bool> held{false};
    std::thread holder([&] {
        pthread_mutex_lock(&mutex);
        held = true;
        usleep(50000);
        pthread_mutex_unlock(&mutex);
    });
    while (!held.load()) sched_yield();
    auto start = Clock::now();
    int tries = 0;
    while (pthread_mutex_trylock(&mutex) == EBUSY) ++tries;
    EXPECT_GE(ms_since(start), 30);
    EXPECT_LT(ms_since(start), 400);
    EXPECT_GT(tries, 0);
    pthread_mutex_unlock(&mutex);
    holder.join();
}

TEST(Preempt, ASemTrywaitLoopGetsThePostOfAThreadThatSleptFirst) {
    sem_t sem;
    ASSERT_EQ(sem_init(&sem, 0, 0), 0);
    After poster(50, [&] { sem_post(&sem); });
    while (sem_trywait(&sem) != 0) ASSERT_EQ(errno, EAGAIN);
    sem_destroy(&sem);
}

// Each loop keeps its state in registers (floating point and integer) across many
// pre-emptions; the results must be those of an uninterrupted run, and errno is the thread's.
TEST(Preempt, ComputationsInterruptedManyTimesGiveExactResults) {
    constexpr int kThreads = 3;
    constexpr long kSteps = 15'000'000;
    auto compute = [](int seed) {
        double x = seed;
        uint64_t h = static_cast<uint64_t>(seed) * 0x9e3779b97f4a7c15ull;
        for (long i = 0; i < kSteps; ++i) {
            x = x * 1.0000001 + 0.5;
            x = std::fmod(x, 1000.0);
            h = (h ^ static_cast<uint64_t>(i)) * 0x100000001b3ull;
        }
        return std::make_pair(x, h);
    };
    std::pair<double, uint64_t> expected[kThreads];
    for (int i = 0; i < kThreads; ++i) expected[i] = compute(i + 1);
    std::pair<double, uint64_t> got[kThreads];
    int errnos[kThreads];
    std::vector<std::thread> threads;
    for (int i = 0; i < kThreads; ++i) {
        threads.emplace_back([&, i] {
            errno = 1000 + i;
            got[i] = compute(i + 1);
            errnos[i] = errno;
        });
    }
    for (auto& t : threads) t.join();
    for (int i = 0; i < kThreads; ++i) {
        EXPECT_EQ(got[i].first, expected[i].first) << "thread " << i;
        EXPECT_EQ(got[i].second, expected[i].second) << "thread " << i;
        EXPECT_EQ(errnos[i], 1000 + i) << "thread " << i;
    }
}

// POSIX: between flockfile and funlockfile the stream is the thread's. A fiber is never
// pre-empted while it holds a FILE lock: glibc's is per OS thread, and another fiber of the
// carrier would walk into the middle of its line.
TEST(Preempt, LinesWrittenUnderFlockfileNeverMix) {
    char path[] = "/tmp/green-flockfile-XXXXXX";
    int fd = mkstemp(path);
    ASSERT_GE(fd, 0);
    FILE* out = fdopen(fd, "w");
    ASSERT_NE(out, nullptr);
    constexpr int kLines = 6, kLength = 1000 * 1000;
    auto writer = [&](int letter) {
        for (int l = 0; l < kLines; ++l) {
            flockfile(out);
            for (int i = 0; i < kLength; ++i) putc_unlocked(letter, out);
            putc_unlocked('\n', out);
            funlockfile(out);
        }
    };
    std::thread a(writer, 'a'), b(writer, 'b');
    a.join();
    b.join();
    fclose(out);
    FILE* in = fopen(path, "r");
    ASSERT_NE(in, nullptr);
    char* line = nullptr;
    size_t capacity = 0;
    int lines = 0, mixed = 0;
    for (ssize_t n; (n = getline(&line, &capacity, in)) > 0; ++lines)
        mixed += std::count(line, line + n - 1, line[0]) != n - 1;
    free(line);
    fclose(in);
    unlink(path);
    EXPECT_EQ(lines, 2 * kLines);
    EXPECT_EQ(mixed, 0);
}

// Two threads that keep waking each other through a condition variable leave the others
// their turn: main's 50 ms sleep ends on time.
TEST(Preempt, APairThatKeepsWakingEachOtherLetsASleeperWakeOnTime) {
    pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
    pthread_cond_t c = PTHREAD_COND_INITIALIZER;
    int turn = 0;
    std::atomic<bool> stop{false};
    long rounds[2] = {0, 0};
    auto player = [&](int me) {
        pthread_mutex_lock(&m);
        while (!stop) {
            while (turn != me && !stop) pthread_cond_wait(&c, &m);
            turn = !me;
            ++rounds[me];
            pthread_cond_signal(&c);
        }
        pthread_cond_broadcast(&c);
        pthread_mutex_unlock(&m);
    };
    auto start = Clock::now();
    std::thread a(player, 0), b(player, 1);
    usleep(50000);
    long slept = ms_since(start);
    stop = true;
    pthread_mutex_lock(&m);
    pthread_cond_broadcast(&c);
    pthread_mutex_unlock(&m);
    a.join();
    b.join();
    EXPECT_LT(slept, 400);
    EXPECT_GT(rounds[0] + rounds[1], 0);
}

// A sandbox that kills the process on calls a program rarely makes, installed on every
// thread (TSYNC) while threads run: time slices must make none of them from then on (a
// signal to a thread, pidfd_getfd). A spin-wait that polls still ends.
TEST(Preempt, ASandboxThatKillsOnRareCallsLeavesASpinWaitThatPolls) {
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
        Pair p = pipe_pair();
        std::atomic<bool> sandboxed{false};
        std::thread writer([&] {
            while (!sandboxed) usleep(1000);
            usleep(50000);
            if (write(p.b, "x", 1) != 1) _exit(101);
        });
        if (!refuse_calls({__NR_rt_tgsigqueueinfo, __NR_pidfd_open, __NR_pidfd_getfd},
                          SECCOMP_RET_KILL_PROCESS, SECCOMP_FILTER_FLAG_TSYNC))
            _exit(100);
        sandboxed = true;
        pollfd fd{p.a, POLLIN, 0};
        while (poll(&fd, 1, 0) == 0) {
        }
        writer.join();
        _exit(fd.revents == POLLIN ? 0 : 102);
    }
    int status = wait_child_within(pid, 10000);
    ASSERT_TRUE(WIFEXITED(status)) << "status " << status;
    EXPECT_EQ(WEXITSTATUS(status), 0);
}
