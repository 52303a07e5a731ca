// Start-up of libgreen.so: resolve the real libc functions, read the settings and make the
// main thread a carrier whose current context (main's stack) is the root fiber. Runs as a
// constructor, before main; a hook called earlier passes through (no carrier yet).
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>

#include "hooks/hooks.h"
#include "runtime/log.h"
#include "runtime/resolver.h"
#include "runtime/runtime.h"
#include "shim/settings.h"

namespace {

const char* g_stats_path = nullptr;

void start_diagnostics(const green::shim::Settings& settings) {
    green::set_deadlock_mode(static_cast<green::DeadlockMode>(settings.deadlock));
    if (settings.stats) {
        green::set_count_blocked_calls(true);
        g_stats_path = settings.stats_path;
        atexit([] { green::write_stats(g_stats_path, "exit"); });
        if (settings.stats_signal &&
            !green::hooks::install_stats_signal(settings.stats_signal, settings.stats_path))
            green::log::write_line("cannot catch GREEN_STATS_SIGNAL (%m); no stats on a signal");
    }
    green::PreemptConfig preempt;
    if (settings.preempt != green::shim::Preempt::kOff) {
        preempt.slice_ns = settings.timeslice_us * 1000;
        preempt.by_signal = settings.preempt == green::shim::Preempt::kFull;
    }
    green::configure_preemption(preempt);
    // The monitor thread: the watchdog's, and the one that times slices (started at the
    // first pthread_create when there is no watchdog).
    green::MonitorConfig monitor;
    monitor.threshold_ms = settings.monitor_ms;
    monitor.create_thread = green::real::get().pthread_create;
    monitor.sample_thread = green::hooks::sample_thread;
    monitor.preempt_thread = green::hooks::preempt_thread;
    if (!green::start_monitor(monitor))
        green::log::write_line("cannot start the GREEN_MONITOR_MS watchdog; running without");
    char watchdog[32] = "off";
    if (settings.monitor_ms) snprintf(watchdog, sizeof watchdog, "%u ms", settings.monitor_ms);
    static const char* const deadlock[] = {"off", "report", "abort"};
    static const char* const preemption[] = {"off", "at calls", "at calls and by signal"};
    green::log::info("active: pid %ld, %u carriers, GREEN_STATS %s, watchdog %s, deadlock %s, "
                     "time slices of %lu us, preemption %s",
                     static_cast<long>(getpid()), green::carriers_wanted(),
                     settings.stats ? "on" : "off", watchdog,
                     deadlock[settings.deadlock], settings.timeslice_us,
                     preemption[static_cast<int>(settings.preempt)]);
}

__attribute__((constructor(101))) void green_start() {
    green::real::resolve();
    green::shim::Settings settings = green::shim::read_settings();
    if (settings.disable) return;
    if (getpid() != static_cast<pid_t>(syscall(SYS_gettid))) {
        // Loaded by dlopen on another thread: too late to make main a fiber.
        green::log::warn("not loaded at start-up (use LD_PRELOAD); passing every call through");
        return;
    }
    green::hooks::install();
    green::configure_resolver(settings.dns_servers);
    green::RuntimeConfig config;
    config.default_stack_size = settings.stack_size;
    if (!green::adopt_current_thread(config)) {
        green::log::write_line("cannot start the runtime (%m); passing every call through");
        return;
    }
    green::CarrierPoolConfig carriers;
    carriers.count = settings.carriers;
    carriers.runtime = config;
    carriers.create_thread = green::real::get().pthread_create;
    green::configure_carriers(carriers);
    green::hooks::adopt_standard_streams();
    start_diagnostics(settings);
}

}  // namespace
