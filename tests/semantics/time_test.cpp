// sleep, usleep, nanosleep, clock_nanosleep: durations, validation and error reporting.
#include <gtest/gtest.h>
#include <time.h>

#include <atomic>
#include <vector>

#include "common.h"

using namespace sem;

TEST(Nanosleep, SleepsAtLeastTheRequestedTime) {
    timespec ts{0, 50 * 1000000L};
    auto start = Clock::now();
    EXPECT_EQ(nanosleep(&ts, nullptr), 0);
    EXPECT_GE(ms_since(start), 50);
}

TEST(Nanosleep, InvalidNanosecondsGiveEinval) {
    timespec ts{0, 1000000000L};
    EXPECT_EQ(nanosleep(&ts, nullptr), -1);
    EXPECT_EQ(errno, EINVAL);
    timespec neg{-1, 0};
    EXPECT_EQ(nanosleep(&neg, nullptr), -1);
    EXPECT_EQ(errno, EINVAL);
}

TEST(Nanosleep, BadPointerGivesEfault) {
    EXPECT_EQ(nanosleep(bad_pointer<timespec>(), nullptr), -1);
    EXPECT_EQ(errno, EFAULT);
}

TEST(Nanosleep, ZeroReturnsAtOnce) {
    timespec ts{0, 0};
    EXPECT_EQ(nanosleep(&ts, nullptr), 0);
}

TEST(ClockNanosleep, RelativeMonotonicSleeps) {
    timespec ts{0, 40 * 1000000L};
    auto start = Clock::now();
    EXPECT_EQ(clock_nanosleep(CLOCK_MONOTONIC, 0, &ts, nullptr), 0);
    EXPECT_GE(ms_since(start), 40);
}

TEST(ClockNanosleep, AbsoluteDeadlineOnMonotonicAndRealtime) {
    for (clockid_t clock : {CLOCK_MONOTONIC, CLOCK_REALTIME}) {
        timespec until;
        clock_gettime(clock, &until);
        until.tv_nsec += 50 * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec += 1;
            until.tv_nsec -= 1000000000L;
        }
        EXPECT_EQ(clock_nanosleep(clock, TIMER_ABSTIME, &until, nullptr), 0);
        timespec now;
        clock_gettime(clock, &now);
        EXPECT_TRUE(now.tv_sec > until.tv_sec ||
                    (now.tv_sec == until.tv_sec && now.tv_nsec >= until.tv_nsec));
    }
}

TEST(ClockNanosleep, AbsoluteTimeInThePastReturnsAtOnce) {
    timespec past{1, 0};
    auto start = Clock::now();
    EXPECT_EQ(clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &past, nullptr), 0);
    EXPECT_LT(ms_since(start), 50);
}

TEST(ClockNanosleep, ReturnsErrorNumbersAndLeavesErrnoAlone) {
    timespec ts{0, 1000};
    errno = 1234;
    EXPECT_EQ(clock_nanosleep(CLOCK_THREAD_CPUTIME_ID, 0, &ts, nullptr), EINVAL);
    EXPECT_EQ(clock_nanosleep(static_cast<clockid_t>(99), 0, &ts, nullptr), EINVAL);
    timespec bad{0, -5};
    EXPECT_EQ(clock_nanosleep(CLOCK_MONOTONIC, 0, &bad, nullptr), EINVAL);
    EXPECT_EQ(clock_nanosleep(CLOCK_MONOTONIC, 0, bad_pointer<timespec>(), nullptr),
              EFAULT);
    EXPECT_EQ(errno, 1234);
}

TEST(Sleep, SleepAndUsleepWaitAndReturnZero) {
    auto start = Clock::now();
    EXPECT_EQ(usleep(30000), 0);
    EXPECT_GE(ms_since(start), 30);
    EXPECT_EQ(sleep(0), 0u);
    start = Clock::now();
    EXPECT_EQ(sleep(1), 0u);
    EXPECT_GE(ms_since(start), 1000);
}

TEST(Sleep, ManyThreadsSleepAtTheSameTime) {
    auto start = Clock::now();
    std::atomic<int> done{0};
    std::vector<std::thread> threads;
    for (int i = 0; i < 200; ++i)
        threads.emplace_back([&] {
            usleep(200000);
            ++done;
        });
    for (auto& t : threads) t.join();
    EXPECT_EQ(done.load(), 200);
    EXPECT_GE(ms_since(start), 200);
    EXPECT_LT(ms_since(start), 2000);
}
