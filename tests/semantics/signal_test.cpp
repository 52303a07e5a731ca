// Signal handlers and blocked calls: EINTR, SA_RESTART, remaining sleep time, and sigaction's
// view of the program's own handlers.
#include <gtest/gtest.h>
#include <poll.h>
#include <pthread.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <sys/time.h>
#include <time.h>

#include <atomic>

#include "common.h"

using namespace sem;

namespace {

std::atomic<int> g_handled{0};
void count_signal(int) { ++g_handled; }

// Installs count_signal for SIGALRM (with or without SA_RESTART) and arms a one-shot timer;
// restores the default disposition when done.
class AlarmIn {
public:
    AlarmIn(int ms, bool restart) {
        g_handled = 0;
        struct sigaction act {};
        act.sa_handler = count_signal;
        act.sa_flags = restart ? SA_RESTART : 0;
        sigemptyset(&act.sa_mask);
        sigaction(SIGALRM, &act, nullptr);
        itimerval t{};
        t.it_value.tv_sec = ms / 1000;
        t.it_value.tv_usec = (ms % 1000) * 1000;
        setitimer(ITIMER_REAL, &t, nullptr);
    }
    ~AlarmIn() {
        itimerval off{};
        setitimer(ITIMER_REAL, &off, nullptr);
        signal(SIGALRM, SIG_DFL);
    }
};

}  // namespace

TEST(Signal, ReadIsInterruptedWithoutSaRestart) {
    Pair p = socket_pair();
    AlarmIn alarm(50, false);
    auto start = Clock::now();
    char c;
    EXPECT_EQ(read(p.a, &c, 1), -1);
    EXPECT_EQ(errno, EINTR);
    EXPECT_GE(ms_since(start), 40);
    EXPECT_EQ(g_handled.load(), 1);
}

TEST(Signal, ReadOnAPipeIsInterruptedWithoutSaRestart) {
    Pair p = pipe_pair();
    AlarmIn alarm(30, false);
    char c;
    EXPECT_EQ(read(p.a, &c, 1), -1);
    EXPECT_EQ(errno, EINTR);
}

TEST(Signal, ReadRestartsUnderSaRestart) {
    Pair p = socket_pair();
    AlarmIn alarm(30, true);
    After writer(150, [&] { ASSERT_EQ(write(p.b, "x", 1), 1); });
    char c;
    EXPECT_EQ(read(p.a, &c, 1), 1);
    EXPECT_EQ(g_handled.load(), 1);
}

TEST(Signal, ASocketTimeoutMakesEvenSaRestartGiveEintr) {
    Pair p = socket_pair();
    timeval tv{2, 0};
    setsockopt(p.a, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    AlarmIn alarm(30, true);
    char c;
    EXPECT_EQ(read(p.a, &c, 1), -1);
    EXPECT_EQ(errno, EINTR);
}

TEST(Signal, AcceptIsInterruptedWithoutSaRestart) {
    int l = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(bind(l, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    ASSERT_EQ(listen(l, 4), 0);
    AlarmIn alarm(30, false);
    EXPECT_EQ(accept(l, nullptr, nullptr), -1);
    EXPECT_EQ(errno, EINTR);
    close(l);
}

TEST(Signal, PollAndSelectGiveEintrEvenUnderSaRestart) {
    Pair p = socket_pair();
    {
        AlarmIn alarm(30, true);
        pollfd fds{p.a, POLLIN, 0};
        EXPECT_EQ(poll(&fds, 1, 5000), -1);
        EXPECT_EQ(errno, EINTR);
    }
    {
        AlarmIn alarm(30, true);
        fd_set r;
        FD_ZERO(&r);
        FD_SET(p.a, &r);
        timeval tv{5, 0};
        EXPECT_EQ(select(p.a + 1, &r, nullptr, nullptr, &tv), -1);
        EXPECT_EQ(errno, EINTR);
        EXPECT_LT(tv.tv_sec, 5);  // Linux reports the time left
    }
}

TEST(Signal, NanosleepIsInterruptedAndReportsTheRemainingTime) {
    AlarmIn alarm(50, true);
    timespec req{1, 0}, rem{};
    EXPECT_EQ(nanosleep(&req, &rem), -1);
    EXPECT_EQ(errno, EINTR);
    long left_ms = rem.tv_sec * 1000 + rem.tv_nsec / 1000000;
    EXPECT_GT(left_ms, 800);
    EXPECT_LT(left_ms, 1000);
}

TEST(Signal, SleepReturnsTheWholeSecondsNotSlept) {
    AlarmIn alarm(50, true);
    EXPECT_EQ(sleep(3), 2u);
    EXPECT_EQ(g_handled.load(), 1);
}

TEST(Signal, ClockNanosleepReturnsEintr) {
    AlarmIn alarm(30, false);
    timespec req{1, 0}, rem{};
    EXPECT_EQ(clock_nanosleep(CLOCK_MONOTONIC, 0, &req, &rem), EINTR);
    EXPECT_GT(rem.tv_sec * 1000 + rem.tv_nsec / 1000000, 800);
}

TEST(Signal, PthreadKillInterruptsTheTargetThreadOnly) {
    Pair p = socket_pair(), q = socket_pair();
    struct sigaction act {};
    act.sa_handler = count_signal;
    sigemptyset(&act.sa_mask);
    sigaction(SIGUSR1, &act, nullptr);
    g_handled = 0;
    ssize_t got = 0;
    int err = 0;
    std::atomic<bool> started{false};
    pthread_t t;
    struct Args {
        int fd;
        ssize_t* got;
        int* err;
        std::atomic<bool>* started;
    } args{p.a, &got, &err, &started};
    pthread_create(&t, nullptr,
                   [](void* v) -> void* {
                       auto* a = static_cast<Args*>(v);
                       *a->started = true;
                       char c;
                       *a->got = read(a->fd, &c, 1);
                       *a->err = errno;
                       return nullptr;
                   },
                   &args);
    while (!started) usleep(1000);
    usleep(30000);
    ASSERT_EQ(pthread_kill(t, SIGUSR1), 0);
    pthread_join(t, nullptr);
    EXPECT_EQ(got, -1);
    EXPECT_EQ(err, EINTR);
    EXPECT_EQ(g_handled.load(), 1);
    signal(SIGUSR1, SIG_DFL);
}

TEST(Sigaction, ReportsTheProgramsOwnHandlerFlagsAndMask) {
    struct sigaction act {}, old{};
    act.sa_handler = count_signal;
    act.sa_flags = SA_RESTART;
    sigemptyset(&act.sa_mask);
    sigaddset(&act.sa_mask, SIGUSR2);
    ASSERT_EQ(sigaction(SIGUSR1, &act, nullptr), 0);
    ASSERT_EQ(sigaction(SIGUSR1, nullptr, &old), 0);
    EXPECT_EQ(old.sa_handler, count_signal);
    EXPECT_TRUE(old.sa_flags & SA_RESTART);
    EXPECT_FALSE(old.sa_flags & SA_SIGINFO);
    EXPECT_TRUE(sigismember(&old.sa_mask, SIGUSR2));
    EXPECT_EQ(signal(SIGUSR1, SIG_IGN), count_signal);
    EXPECT_EQ(signal(SIGUSR1, SIG_DFL), SIG_IGN);
    EXPECT_EQ(signal(-1, SIG_IGN), SIG_ERR);
    EXPECT_EQ(errno, EINVAL);
    EXPECT_EQ(sigaction(SIGKILL, &act, nullptr), -1);
    EXPECT_EQ(errno, EINVAL);
    if (under_shim()) {
        // glibc itself crashes here (it copies *act in user space); libgreen reports EFAULT.
        EXPECT_EQ(sigaction(SIGUSR1, bad_pointer<struct sigaction>(), nullptr), -1);
        EXPECT_EQ(errno, EFAULT);
    }
}

TEST(Sigaction, ResethandRunsOnceThenReportsTheDefault) {
    g_handled = 0;
    struct sigaction act {}, old{};
    act.sa_handler = count_signal;
    act.sa_flags = SA_RESETHAND;
    sigemptyset(&act.sa_mask);
    ASSERT_EQ(sigaction(SIGUSR2, &act, nullptr), 0);
    raise(SIGUSR2);
    EXPECT_EQ(g_handled.load(), 1);
    ASSERT_EQ(sigaction(SIGUSR2, nullptr, &old), 0);
    EXPECT_EQ(old.sa_handler, SIG_DFL);
}

TEST(Signal, EpollWaitGivesEintr) {
    Pair p = socket_pair();
    int ep = epoll_create1(0);
    epoll_event ev{};
    ev.events = EPOLLIN;
    epoll_ctl(ep, EPOLL_CTL_ADD, p.a, &ev);
    AlarmIn alarm(30, true);
    epoll_event out;
    EXPECT_EQ(epoll_wait(ep, &out, 1, 5000), -1);
    EXPECT_EQ(errno, EINTR);
    close(ep);
}
