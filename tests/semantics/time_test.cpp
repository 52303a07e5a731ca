// sleep, usleep, nanosleep, clock_nanosleep: durations, validation and error reporting.
#include <gtest/gtest.h>
#include <sys/time.h>
#include <time.h>

#include <atomic>
#include <climits>
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

// Far-future sleeps: the kernel clamps a timer's expiry at KTIME_MAX nanoseconds of
// CLOCK_MONOTONIC, so the time left after a signal is KTIME_MAX minus the time of the
// interruption, whatever larger value was asked for.
namespace {

void on_alarm(int) {}

// Interrupts the calling thread's sleep with SIGALRM (no SA_RESTART) after `ms`.
class AlarmIn {
public:
    explicit AlarmIn(int ms) {
        struct sigaction act {};
        act.sa_handler = on_alarm;
        sigemptyset(&act.sa_mask);
        sigaction(SIGALRM, &act, nullptr);
        itimerval t{};
        t.it_value.tv_usec = ms * 1000;
        setitimer(ITIMER_REAL, &t, nullptr);
    }
    ~AlarmIn() {
        itimerval off{};
        setitimer(ITIMER_REAL, &off, nullptr);
        signal(SIGALRM, SIG_DFL);
    }
};

// KTIME_MAX less CLOCK_MONOTONIC now, in seconds.
long long seconds_to_ktime_max() {
    timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (LLONG_MAX - (static_cast<long long>(now.tv_sec) * 1000000000LL + now.tv_nsec)) /
           1000000000LL;
}

}  // namespace

TEST(FarFuture, InterruptedNanosleepReportsTheTimeLeftToTheClampedExpiry) {
    const timespec far[] = {{LONG_MAX, 0}, {18446744073L, 710551616L}};
    for (const timespec& req : far) {
        timespec rem{};
        {
            AlarmIn alarm(50);
            EXPECT_EQ(nanosleep(&req, &rem), -1);
            EXPECT_EQ(errno, EINTR);
        }
        long long expected = seconds_to_ktime_max();
        EXPECT_GE(rem.tv_sec, expected - 2);
        EXPECT_LE(rem.tv_sec, expected + 1);
        rem = {};
        {
            AlarmIn alarm(50);
            EXPECT_EQ(clock_nanosleep(CLOCK_MONOTONIC, 0, &req, &rem), EINTR);
        }
        EXPECT_GE(rem.tv_sec, expected - 2);
        EXPECT_LE(rem.tv_sec, expected + 1);
    }
}

TEST(FarFuture, AbsoluteClockNanosleepUntilTheFarFutureIsInterruptible) {
    for (clockid_t clock : {CLOCK_REALTIME, CLOCK_MONOTONIC}) {
        for (const timespec& until : {timespec{LONG_MAX, 0}, timespec{LLONG_MAX / 1000, 0}}) {
            AlarmIn alarm(50);
            auto start = Clock::now();
            EXPECT_EQ(clock_nanosleep(clock, TIMER_ABSTIME, &until, nullptr), EINTR);
            EXPECT_GE(ms_since(start), 30);
        }
    }
}

// Timers have the clock's precision, not whole milliseconds: 200 sleeps of 50 us take about
// 200 x (50 us + the kernel's timer slack), 25-40 ms natively (they took over 200 ms when each
// sleep was rounded up to a millisecond). Also while other threads sleep longer.
TEST(Precision, SubMillisecondSleepsAreNotRoundedUpToAMillisecond) {
    std::atomic<bool> stop{false};
    std::thread other([&] {
        while (!stop) usleep(3000);
    });
    auto start = Clock::now();
    for (int i = 0; i < 200; ++i) usleep(50);
    long usleeps = ms_since(start);
    start = Clock::now();
    for (int i = 0; i < 200; ++i) {
        timespec ts{0, 50000};
        nanosleep(&ts, nullptr);
    }
    long nanosleeps = ms_since(start);
    stop = true;
    other.join();
    EXPECT_LT(usleeps, 150);
    EXPECT_LT(nanosleeps, 150);
}
