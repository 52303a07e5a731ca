// GREEN_* settings: read once at start, parsed here and nowhere else. A bad value prints one
// line on stderr naming the variable, the value and what was done instead (docs/settings.md).
#pragma once

#include <cstddef>

namespace green::shim {

// GREEN_PREEMPT: time slices off (0), at hooked calls only (calls), or also by signal (1).
enum class Preempt { kOff, kAtCalls, kFull };
constexpr unsigned long kMinSliceUs = 500;
constexpr unsigned long kMaxSliceUs = 1000000;

struct Settings {
    bool disable = false;   // GREEN_DISABLE=1: every hook passes through
    size_t stack_size = 0;  // GREEN_STACK_SIZE; 0: glibc's default thread stack size
    int log_level = 1;      // GREEN_LOG: 0 error, 1 warn, 2 info, 3 debug
    const char* dns_servers = nullptr;  // GREEN_DNS_SERVERS, validated; null: resolv.conf's
    bool stats = false;                 // GREEN_STATS: dump the counters at exit
    const char* stats_path = nullptr;   // GREEN_STATS=PATH; null: the log's destination
    int stats_signal = 0;               // GREEN_STATS_SIGNAL: also dump on this signal
    unsigned monitor_ms = 0;            // GREEN_MONITOR_MS: the watchdog's threshold; 0: none
    int deadlock = 1;                   // GREEN_DEADLOCK: 0 off, 1 report, 2 abort
    Preempt preempt = Preempt::kFull;   // GREEN_PREEMPT
    unsigned long timeslice_us = 5000;   // GREEN_TIMESLICE_US
    unsigned carriers = 0;  // GREEN_CARRIERS; 0: the CPUs the process may run on
};

// Reads the environment; never allocates (runs in our constructor, before main).
Settings read_settings();

}  // namespace green::shim
