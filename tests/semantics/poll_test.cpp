// poll and select: readiness, timeouts, and the error cases a real thread sees.
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/epoll.h>
#include <sys/select.h>

#include <atomic>
#include <climits>
#include <vector>

#include "common.h"

using namespace sem;

TEST(Poll, TimesOutWithZero) {
    Pair p = socket_pair();
    pollfd fds{p.a, POLLIN, 0};
    auto start = Clock::now();
    EXPECT_EQ(poll(&fds, 1, 80), 0);
    EXPECT_GE(ms_since(start), 78);
    EXPECT_EQ(fds.revents, 0);
}

TEST(Poll, WakesWhenAnotherThreadWrites) {
    Pair p = pipe_pair();
    After writer(30, [&] { ASSERT_EQ(write(p.b, "x", 1), 1); });
    pollfd fds{p.a, POLLIN, 0};
    EXPECT_EQ(poll(&fds, 1, 5000), 1);
    EXPECT_EQ(fds.revents, POLLIN);
}

TEST(Poll, ReportsOnlyTheReadyEntries) {
    Pair x = socket_pair(), y = socket_pair();
    After writer(20, [&] { ASSERT_EQ(write(y.b, "x", 1), 1); });
    pollfd fds[3] = {{x.a, POLLIN, 0}, {-1, POLLIN, 0}, {y.a, POLLIN, 0}};
    EXPECT_EQ(poll(fds, 3, 5000), 1);
    EXPECT_EQ(fds[0].revents, 0);
    EXPECT_EQ(fds[1].revents, 0);
    EXPECT_EQ(fds[2].revents, POLLIN);
}

TEST(Poll, ReportsHangupAfterPeerClose) {
    Pair p = socket_pair();
    After closer(20, [&] {
        close(p.b);
        p.b = -1;
    });
    pollfd fds{p.a, POLLIN, 0};
    EXPECT_EQ(poll(&fds, 1, 5000), 1);
    EXPECT_TRUE(fds.revents & (POLLHUP | POLLIN));
}

TEST(Poll, ClosedFdIsPollnval) {
    pollfd fds{closed_fd(), POLLIN, 0};
    EXPECT_EQ(poll(&fds, 1, 1000), 1);
    EXPECT_EQ(fds.revents, POLLNVAL);
}

TEST(Poll, NoFdsSleepsForTheTimeout) {
    auto start = Clock::now();
    EXPECT_EQ(poll(opaque<pollfd*>(nullptr), 0, 60), 0);
    EXPECT_GE(ms_since(start), 58);
}

TEST(Poll, BadPointerGivesEfault) {
    EXPECT_EQ(poll(bad_pointer<pollfd>(), 1, 100), -1);
    EXPECT_EQ(errno, EFAULT);
}

TEST(Poll, TooManyFdsGivesEinval) {
    rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    EXPECT_EQ(poll(opaque<pollfd*>(nullptr), rl.rlim_cur + 1, 0), -1);
    EXPECT_EQ(errno, EINVAL);
}

TEST(Poll, ZeroTimeoutReturnsAtOnce) {
    Pair p = socket_pair();
    pollfd fds{p.b, POLLOUT, 0};
    EXPECT_EQ(poll(&fds, 1, 0), 1);
    EXPECT_EQ(fds.revents, POLLOUT);
}

TEST(Select, TimesOutAndClearsTheSets) {
    Pair p = socket_pair();
    fd_set r;
    FD_ZERO(&r);
    FD_SET(p.a, &r);
    timeval tv{0, 80000};
    auto start = Clock::now();
    EXPECT_EQ(select(p.a + 1, &r, nullptr, nullptr, &tv), 0);
    EXPECT_GE(ms_since(start), 78);
    EXPECT_FALSE(FD_ISSET(p.a, &r));
    EXPECT_EQ(tv.tv_sec, 0);
    EXPECT_EQ(tv.tv_usec, 0);
}

TEST(Select, WakesForReadabilityAndReportsTimeLeft) {
    Pair p = socket_pair();
    After writer(30, [&] { ASSERT_EQ(write(p.b, "x", 1), 1); });
    fd_set r, w;
    FD_ZERO(&r);
    FD_ZERO(&w);
    FD_SET(p.a, &r);
    timeval tv{5, 0};
    EXPECT_EQ(select(p.a + 1, &r, &w, nullptr, &tv), 1);
    EXPECT_TRUE(FD_ISSET(p.a, &r));
    EXPECT_LT(tv.tv_sec, 5);
    EXPECT_GE(tv.tv_sec, 4);
}

TEST(Select, ClosedFdGivesEbadf) {
    fd_set r;
    FD_ZERO(&r);
    int fd = closed_fd();
    FD_SET(fd, &r);
    timeval tv{1, 0};
    EXPECT_EQ(select(fd + 1, &r, nullptr, nullptr, &tv), -1);
    EXPECT_EQ(errno, EBADF);
}

TEST(Select, NegativeNfdsGivesEinval) {
    timeval tv{0, 1000};
    EXPECT_EQ(select(-1, nullptr, nullptr, nullptr, &tv), -1);
    EXPECT_EQ(errno, EINVAL);
}

TEST(Select, NegativeTimeoutGivesEinval) {
    timeval tv{-1, 0};
    EXPECT_EQ(select(0, nullptr, nullptr, nullptr, &tv), -1);
    EXPECT_EQ(errno, EINVAL);
}

TEST(Select, BadSetPointerGivesEfault) {
    timeval tv{0, 1000};
    EXPECT_EQ(select(4, bad_pointer<fd_set>(), nullptr, nullptr, &tv), -1);
    EXPECT_EQ(errno, EFAULT);
}

TEST(Select, NoSetsSleepsForTheTimeout) {
    timeval tv{0, 60000};
    auto start = Clock::now();
    EXPECT_EQ(select(0, nullptr, nullptr, nullptr, &tv), 0);
    EXPECT_GE(ms_since(start), 58);
}

TEST(Ppoll, WaitsForDataAndTimesOutOnATimespec) {
    Pair p = socket_pair();
    pollfd fds{p.a, POLLIN, 0};
    timespec t{0, 60 * 1000000L};
    auto start = Clock::now();
    EXPECT_EQ(ppoll(&fds, 1, &t, nullptr), 0);
    EXPECT_GE(ms_since(start), 58);
    EXPECT_EQ(t.tv_nsec, 60 * 1000000L);  // glibc's ppoll leaves *timeout alone
    After writer(20, [&] { ASSERT_EQ(write(p.b, "x", 1), 1); });
    EXPECT_EQ(ppoll(&fds, 1, nullptr, nullptr), 1);
    EXPECT_EQ(fds.revents, POLLIN);
}

TEST(Ppoll, InvalidTimespecGivesEinval) {
    Pair p = socket_pair();
    pollfd fds{p.a, POLLIN, 0};
    timespec bad{0, 1000000000L};
    EXPECT_EQ(ppoll(&fds, 1, &bad, nullptr), -1);
    EXPECT_EQ(errno, EINVAL);
}

TEST(Pselect, TimesOutWithoutTouchingTheTimeout) {
    Pair p = socket_pair();
    fd_set r;
    FD_ZERO(&r);
    FD_SET(p.a, &r);
    timespec t{0, 50 * 1000000L};
    auto start = Clock::now();
    EXPECT_EQ(pselect(p.a + 1, &r, nullptr, nullptr, &t, nullptr), 0);
    EXPECT_GE(ms_since(start), 48);
    EXPECT_EQ(t.tv_nsec, 50 * 1000000L);
    FD_SET(p.a, &r);
    After writer(20, [&] { ASSERT_EQ(write(p.b, "x", 1), 1); });
    EXPECT_EQ(pselect(p.a + 1, &r, nullptr, nullptr, nullptr, nullptr), 1);
    EXPECT_TRUE(FD_ISSET(p.a, &r));
}

namespace {

int epoll_watching(int fd) {
    int ep = epoll_create1(EPOLL_CLOEXEC);
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = fd;
    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
    return ep;
}

}  // namespace

TEST(EpollWait, WakesWhenAWatchedSocketBecomesReadable) {
    Pair p = socket_pair();
    int ep = epoll_watching(p.a);
    After writer(30, [&] { ASSERT_EQ(write(p.b, "x", 1), 1); });
    epoll_event out[4];
    auto start = Clock::now();
    ASSERT_EQ(epoll_wait(ep, out, 4, 5000), 1);
    EXPECT_GE(ms_since(start), 25);
    EXPECT_EQ(out[0].data.fd, p.a);
    EXPECT_TRUE(out[0].events & EPOLLIN);
    close(ep);
}

TEST(EpollWait, TimesOutAndReportsErrorsAsTheKernel) {
    Pair p = socket_pair();
    int ep = epoll_watching(p.a);
    epoll_event out[4];
    auto start = Clock::now();
    EXPECT_EQ(epoll_wait(ep, out, 4, 60), 0);
    EXPECT_GE(ms_since(start), 58);
    EXPECT_EQ(epoll_wait(ep, out, opaque(0), 10), -1);
    EXPECT_EQ(errno, EINVAL);
    EXPECT_EQ(epoll_wait(closed_fd(), out, 4, 10), -1);
    EXPECT_EQ(errno, EBADF);
    EXPECT_EQ(epoll_wait(p.b, out, 4, 10), -1);  // not an epoll fd
    EXPECT_EQ(errno, EINVAL);
    timespec t{0, 30 * 1000000L};
    EXPECT_EQ(epoll_pwait2(ep, out, 4, &t, nullptr), 0);
    sigset_t none;
    sigemptyset(&none);
    EXPECT_EQ(epoll_pwait(ep, out, 4, 20, &none), 0);
    close(ep);
}

TEST(EpollWait, SeveralThreadsEachBlockInTheirOwnEventLoop) {
    // The shape of memcached or any libevent worker pool: every worker sits in epoll_wait.
    const int workers = 8;
    std::vector<Pair> pairs;
    for (int i = 0; i < workers; ++i) pairs.push_back(socket_pair());
    std::atomic<int> served{0};
    std::vector<std::thread> threads;
    for (int i = 0; i < workers; ++i)
        threads.emplace_back([&, i] {
            int ep = epoll_watching(pairs[i].a);
            epoll_event ev;
            if (epoll_wait(ep, &ev, 1, 5000) == 1) {
                char c;
                if (read(pairs[i].a, &c, 1) == 1) ++served;
            }
            close(ep);
        });
    usleep(30000);
    for (int i = workers - 1; i >= 0; --i) ASSERT_EQ(write(pairs[i].b, "w", 1), 1);
    for (auto& t : threads) t.join();
    EXPECT_EQ(served.load(), workers);
}

// Far-future timeouts: relative times whose nanoseconds overflow 64 bits (these wrap to
// about 1 ms when multiplied out naively) are waits that readiness ends, not timeouts.
namespace {

const timespec kFarTimespecs[] = {{LONG_MAX, 0}, {18446744073L, 710551616L}};

}  // namespace

TEST(FarFuture, PpollAndPselectWaitForReadiness) {
    for (const timespec& t : kFarTimespecs) {
        Pair p = socket_pair();
        {
            After writer(50, [&] { ASSERT_EQ(write(p.b, "x", 1), 1); });
            pollfd fds{p.a, POLLIN, 0};
            EXPECT_EQ(ppoll(&fds, 1, &t, nullptr), 1);
            EXPECT_EQ(fds.revents, POLLIN);
        }
        char c;
        ASSERT_EQ(read(p.a, &c, 1), 1);
        After writer(50, [&] { ASSERT_EQ(write(p.b, "y", 1), 1); });
        fd_set r;
        FD_ZERO(&r);
        FD_SET(p.a, &r);
        EXPECT_EQ(pselect(p.a + 1, &r, nullptr, nullptr, &t, nullptr), 1);
        EXPECT_TRUE(FD_ISSET(p.a, &r));
    }
}

TEST(FarFuture, SelectWaitsForReadinessAndReportsTheTimeLeft) {
    const timeval far[] = {{LONG_MAX, 0}, {18446744073L, 710552}};
    for (const timeval& limit : far) {
        Pair p = socket_pair();
        After writer(50, [&] { ASSERT_EQ(write(p.b, "x", 1), 1); });
        fd_set r;
        FD_ZERO(&r);
        FD_SET(p.a, &r);
        timeval tv = limit;
        EXPECT_EQ(select(p.a + 1, &r, nullptr, nullptr, &tv), 1);
        // Linux writes back what is left of its end time (the seconds saturate on overflow).
        timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        long expected = limit.tv_sec == LONG_MAX ? LONG_MAX - now.tv_sec : limit.tv_sec;
        EXPECT_LE(tv.tv_sec, limit.tv_sec);
        EXPECT_GE(tv.tv_sec, expected - 2);
        EXPECT_LE(tv.tv_sec, expected);
    }
}

TEST(FarFuture, EpollPwait2WaitsForReadiness) {
    for (const timespec& t : kFarTimespecs) {
        Pair p = socket_pair();
        int ep = epoll_create1(EPOLL_CLOEXEC);
        ASSERT_GE(ep, 0);
        epoll_event ev{};
        ev.events = EPOLLIN;
        ev.data.fd = p.a;
        ASSERT_EQ(epoll_ctl(ep, EPOLL_CTL_ADD, p.a, &ev), 0);
        After writer(50, [&] { ASSERT_EQ(write(p.b, "x", 1), 1); });
        epoll_event out{};
        EXPECT_EQ(epoll_pwait2(ep, &out, 1, &t, nullptr), 1);
        EXPECT_EQ(out.data.fd, p.a);
        close(ep);
    }
}

// A huge SO_RCVTIMEO (the kernel keeps it; only MAX_SCHEDULE_TIMEOUT means "none") is a
// timeout decades away: a blocking recv waits for the data.
TEST(FarFuture, HugeSoRcvtimeoWaitsForData) {
    const timeval far[] = {{18446744073L, 712000}, {1000000000000L, 0}};
    for (const timeval& limit : far) {
        Pair p = socket_pair();
        ASSERT_EQ(setsockopt(p.a, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit), 0);
        After writer(50, [&] { ASSERT_EQ(write(p.b, "x", 1), 1); });
        char c = 0;
        auto start = Clock::now();
        EXPECT_EQ(recv(p.a, &c, 1, 0), 1);
        EXPECT_GE(ms_since(start), 30);
    }
}
