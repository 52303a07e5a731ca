// poll and select: readiness, timeouts, and the error cases a real thread sees.
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/select.h>

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
