// The watchdog (GREEN_MONITOR_MS). One real OS thread, started only when asked for, wakes a
// few times per threshold and looks at every carrier's switch counter. A carrier whose fiber
// has held the thread past the threshold is reported once per incident, and at most once per
// second: the fiber, what it last parked on, and a backtrace taken on the carrier thread by
// a signal handler (the monitor cannot unwind another thread's stack itself).
// The monitor never touches a carrier's fibers: the sample copies what it needs on the carrier.
#include <execinfo.h>
#include <pthread.h>
#include <signal.h>
#include <time.h>

#include <cstring>

#include "runtime/carrier.h"
#include "runtime/log.h"
#include "runtime/symbolize.h"

namespace green {
namespace {

MonitorConfig g_config;
constexpr uint64_t kMinReportGapNs = 1000ull * 1000 * 1000;
constexpr int kMaxStalls = 64;

struct Stall {
    int index;
    int32_t tid;
    uint64_t held_ms;
    uint64_t suppressed;
};

struct Scan {
    uint64_t now_ns;
    uint64_t threshold_ns;
    Stall stalls[kMaxStalls];
    int count;
};

void look_at(Carrier* c, void* context) {
    auto* scan = static_cast<Scan*>(context);
    Carrier::MonitorView& v = c->monitor_view_;
    uint64_t switches = c->counters().switches.load(std::memory_order_relaxed);
    if (switches != v.switches || !c->fiber_running()) {
        v.switches = switches;
        v.since_ns = scan->now_ns;
        v.reported = false;  // a new incident may begin
        return;
    }
    uint64_t held = scan->now_ns - v.since_ns;
    if (v.reported || held < scan->threshold_ns) return;
    v.reported = true;
    if (v.last_report_ns && scan->now_ns - v.last_report_ns < kMinReportGapNs) {
        ++v.suppressed;
        return;
    }
    v.last_report_ns = scan->now_ns;
    if (scan->count < kMaxStalls)
        scan->stalls[scan->count++] = Stall{c->index(), c->tid(), held / 1000000, v.suppressed};
    v.suppressed = 0;
}

// Frames of the handler itself (take_stall_sample, the trampoline, the kernel's signal
// return) come first: the interrupted code starts after glibc's __restore_rt, which has no
// dynamic symbol but a fixed body: mov $SYS_rt_sigreturn, %rax; syscall.
int first_program_frame(const StallSample& s) {
    static const unsigned char kRestoreRt[] = {0x48, 0xc7, 0xc0, 0x0f, 0x00, 0x00, 0x00, 0x0f, 0x05};
    for (int i = 0; i < s.frames && i < 8; ++i)
        if (!memcmp(s.pcs[i], kRestoreRt, sizeof kRestoreRt)) return i + 1;
    return 0;
}

void report(const Stall& stall) {
    static StallSample sample;  // static: a late handler may still write into it
    new (&sample) StallSample();
    bool taken = g_config.sample_thread && g_config.sample_thread(stall.tid, &sample);
    char more[64] = "";
    if (stall.suppressed)
        snprintf(more, sizeof more, " (%llu earlier stalls not reported)",
                 static_cast<unsigned long long>(stall.suppressed));
    if (!taken) {
        log::write_line(
            "watchdog: carrier %d (thread %d) has not switched fibers for %llu ms; no "
            "backtrace (the thread did not answer the signal)%s",
            stall.index, stall.tid, static_cast<unsigned long long>(stall.held_ms), more);
        return;
    }
    if (!sample.on_fiber) {
        log::write_line("watchdog: carrier %d (thread %d) has not switched fibers for %llu ms%s",
                        stall.index, stall.tid, static_cast<unsigned long long>(stall.held_ms),
                        more);
    } else {
        char start[256] = "main";
        if (!sample.is_root)
            describe_code(reinterpret_cast<const void*>(sample.start), start, sizeof start);
        log::write_line(
            "watchdog: fiber %llu%s%s%s (%s) has held carrier %d (thread %d) for %llu ms "
            "without a switch; it last parked on %s%s",
            static_cast<unsigned long long>(sample.fiber_id), sample.name[0] ? " \"" : "",
            sample.name, sample.name[0] ? "\"" : "", start, stall.index, stall.tid,
            static_cast<unsigned long long>(stall.held_ms), park_reason_name(sample.last_park),
            more);
    }
    for (int i = first_program_frame(sample), n = 0; i < sample.frames; ++i, ++n) {
        char where[320];
        describe_code(sample.pcs[i], where, sizeof where);
        log::write_line("  #%d %p %s", n, sample.pcs[i], where);
    }
}

void* monitor_main(void*) {
    mark_internal_thread();
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, nullptr);  // program signals go to program threads
    pthread_setname_np(pthread_self(), "green-monitor");
    const uint64_t threshold_ns = g_config.threshold_ms * 1000000;
    // Several looks per threshold: a stall is reported between 1 and 1.25 thresholds in.
    uint64_t period_ns = threshold_ns / 4;
    if (period_ns < 1000000) period_ns = 1000000;
    timespec period{static_cast<time_t>(period_ns / 1000000000),
                    static_cast<long>(period_ns % 1000000000)};
    static Scan scan;
    for (;;) {
        clock_nanosleep(CLOCK_MONOTONIC, 0, &period, nullptr);
        scan.now_ns = monotonic_now_ns();
        scan.threshold_ns = threshold_ns;
        scan.count = 0;
        for_each_carrier(look_at, &scan);
        for (int i = 0; i < scan.count; ++i) report(scan.stalls[i]);
    }
    return nullptr;
}

bool create_monitor_thread() {
    pthread_t thread;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, 256 * 1024);
    int rc = g_config.create_thread(&thread, &attr, monitor_main, nullptr);
    pthread_attr_destroy(&attr);
    return rc == 0;
}

}  // namespace

void take_stall_sample(StallSample* sample) {
    Fiber* fiber = current_fiber();
    sample->on_fiber = fiber != nullptr;
    if (fiber) {
        sample->is_root = fiber->is_root;
        sample->fiber_id = fiber->id;
        sample->start = fiber->start;
        sample->last_park = fiber->park_reason;
        memcpy(sample->name, fiber->name, sizeof sample->name);
    }
    sample->frames = backtrace(sample->pcs, 48);
    sample->taken.store(true, std::memory_order_release);
}

bool start_monitor(const MonitorConfig& config) {
    g_config = config;
    // backtrace() loads libgcc_s on its first call: do that here, not in a signal handler.
    void* warm[2];
    backtrace(warm, 2);
    static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;
    pthread_once(&atfork_once, [] {
        pthread_atfork(nullptr, nullptr, [] {
            if (!create_monitor_thread()) log::warn("cannot restart the watchdog in the child");
        });
    });
    return create_monitor_thread();
}

}  // namespace green
