// Time slices with the runtime used as a library: the monitor thread notices a fiber that has
// run a whole slice and the fiber gives way at its next preemption point (what every hooked
// call is under the shim). Run under TSan too: the monitor reads carriers from its own thread.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <vector>

#include "carrier_fixture.h"
#include "runtime/runtime.h"

using namespace green;

namespace {

using Clock = std::chrono::steady_clock;

long ms_since(Clock::time_point start) {
    return static_cast<long>(
        std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start).count());
}

// Slices of 10 ms given way at calls only: a signal would need the shim's trampoline.
void start_time_slices() {
    PreemptConfig preempt;
    preempt.slice_ns = 10000000;
    configure_preemption(preempt);
    MonitorConfig monitor;
    monitor.create_thread = pthread_create;
    ASSERT_TRUE(start_monitor(monitor));
    monitor_needed();
}

// A loop that makes no call but the preemption point a hooked call would be.
void spin_until(const std::atomic<bool>& flag) {
    while (!flag.load(std::memory_order_acquire)) preempt_point(current_fiber());
}

}  // namespace

TEST(Preempt, ASpinningFiberLetsTheFiberItWaitsForRun) {
    start_time_slices();
    on_carrier([] {
        std::atomic<bool> flag{false};
        auto setter = [&] {
            sleep_until(deadline_after_ns(20000000), ParkReason::kSleep);
            flag = true;
        };
        auto start = Clock::now();
        Fiber* f = go(&setter);
        spin_until(flag);
        EXPECT_LT(ms_since(start), 2000);
        EXPECT_EQ(join(f, nullptr, kNoDeadline), 0);
        EXPECT_GE(stats().preempted_at_call, 1u);
    });
}

TEST(Preempt, AWokenFiberRunsBeforeTheOthersThatComputeHaveEachHadASlice) {
    start_time_slices();
    on_carrier([] {
        std::atomic<bool> stop{false};
        auto hog = [&] { spin_until(stop); };
        std::vector<long> late_us;
        auto sleeper = [&] {
            for (int i = 0; i < 20; ++i) {
                auto start = Clock::now();
                sleep_until(deadline_after_ns(1000000), ParkReason::kSleep);
                late_us.push_back(static_cast<long>(
                    std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - start)
                        .count()) - 1000);
            }
            stop = true;
        };
        Fiber* h1 = go(&hog);
        Fiber* h2 = go(&hog);
        Fiber* s = go(&sleeper);
        join(s, nullptr, kNoDeadline);
        join(h1, nullptr, kNoDeadline);
        join(h2, nullptr, kNoDeadline);
        std::sort(late_us.begin(), late_us.end());
        // About one look of the monitor (2.5 ms: the sleeper's deadline makes it ask), not a
        // 10 ms slice per fiber that computes (20 ms); the rest is room for a loaded machine
        // (docs/benchmarks.md has the figures).
        EXPECT_LT(late_us[15], 15000) << "max " << late_us.back() << " us";
    });
}
