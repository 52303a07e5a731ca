// Parsing of the GREEN_* settings. Runs before main: no allocation, no stdio.
#include "shim/settings.h"

#include <arpa/inet.h>
#include <limits.h>
#include <signal.h>
#include <strings.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "runtime/log.h"
#include "runtime/runtime.h"

extern char** environ;

namespace green::shim {
namespace {

constexpr size_t kMinStack = 16 * 1024;              // PTHREAD_STACK_MIN
constexpr size_t kMaxStack = 1024ull * 1024 * 1024;  // 1 GiB

const char* const kKnown[] = {"GREEN_DISABLE",      "GREEN_STACK_SIZE", "GREEN_LOG",
                              "GREEN_LOG_FILE",     "GREEN_DNS_SERVERS", "GREEN_STATS",
                              "GREEN_STATS_SIGNAL", "GREEN_MONITOR_MS", "GREEN_DEADLOCK",
                              "GREEN_PREEMPT",      "GREEN_TIMESLICE_US", "GREEN_CARRIERS"};

char g_stats_path[PATH_MAX];  // copies: the program may change its environment later

bool is_yes(const char* v) { return !strcmp(v, "1") || !strcmp(v, "yes") || !strcmp(v, "true"); }
bool is_no(const char* v) {
    return !*v || !strcmp(v, "0") || !strcmp(v, "no") || !strcmp(v, "false");
}

bool parse_bool(const char* name, const char* value, bool fallback) {
    if (is_yes(value)) return true;
    if (is_no(value)) return false;
    log::write_line("%s='%s' is not 0 or 1; using %d", name, value, fallback ? 1 : 0);
    return fallback;
}

// A whole number from `min` to `max`, nothing else.
bool parse_number(const char* value, unsigned long min, unsigned long max, unsigned long* out) {
    char* end = nullptr;
    errno = 0;
    unsigned long n = strtoul(value, &end, 10);
    if (errno || end == value || *end || *value == '-' || n < min || n > max) return false;
    *out = n;
    return true;
}

// Bytes, or a number with a K, M or G suffix (powers of 1024).
bool parse_size(const char* value, size_t* out) {
    errno = 0;
    char* end = nullptr;
    unsigned long long n = strtoull(value, &end, 10);
    if (errno || end == value || *value == '-') return false;
    unsigned long long scale = 1;
    if (*end == 'k' || *end == 'K')
        scale = 1024, ++end;
    else if (*end == 'm' || *end == 'M')
        scale = 1024 * 1024, ++end;
    else if (*end == 'g' || *end == 'G')
        scale = 1024 * 1024 * 1024, ++end;
    if (*end == 'i' || *end == 'B') ++end;
    if (*end == 'B') ++end;
    if (*end != '\0' || n > kMaxStack / scale) return false;
    *out = static_cast<size_t>(n * scale);
    return true;
}

// One GREEN_DNS_SERVERS entry: IPV4[:PORT], IPV6, or [IPV6][:PORT] (c-ares's csv form).
bool valid_server(const char* entry, size_t len) {
    char host[INET6_ADDRSTRLEN + 1];
    const char* port = nullptr;
    size_t host_len = len;
    const char* start = entry;
    if (len && entry[0] == '[') {
        const char* close = static_cast<const char*>(memchr(entry, ']', len));
        if (!close) return false;
        start = entry + 1;
        host_len = static_cast<size_t>(close - start);
        size_t rest = len - static_cast<size_t>(close + 1 - entry);
        if (rest) {
            if (close[1] != ':') return false;
            port = close + 2;
        }
    } else {
        const char* colon = static_cast<const char*>(memchr(entry, ':', len));
        bool one_colon =
            colon && !memchr(colon + 1, ':', len - static_cast<size_t>(colon + 1 - entry));
        if (one_colon) {  // IPv4 with a port; several colons: a bare IPv6 address
            host_len = static_cast<size_t>(colon - entry);
            port = colon + 1;
        }
    }
    if (host_len == 0 || host_len >= sizeof host) return false;
    memcpy(host, start, host_len);
    host[host_len] = '\0';
    unsigned char addr[16];
    int family = start != entry || memchr(host, ':', host_len) ? AF_INET6 : AF_INET;
    if (inet_pton(family, host, addr) != 1) return false;
    if (port) {
        size_t port_len = len - static_cast<size_t>(port - entry);
        if (port_len == 0 || port_len > 5) return false;
        unsigned n = 0;
        for (size_t i = 0; i < port_len; ++i) {
            if (port[i] < '0' || port[i] > '9') return false;
            n = n * 10 + static_cast<unsigned>(port[i] - '0');
        }
        if (n == 0 || n > 65535) return false;
    }
    return true;
}

bool valid_servers(const char* value) {
    if (!*value) return false;
    for (const char* p = value;;) {
        const char* comma = strchr(p, ',');
        size_t len = comma ? static_cast<size_t>(comma - p) : strlen(p);
        if (!valid_server(p, len)) return false;
        if (!comma) return true;
        p = comma + 1;
    }
}

// One of `count` words: its index into *out; false (and *out untouched) for anything else.
bool pick(const char* value, const char* const* words, int count, int* out) {
    for (int i = 0; i < count; ++i) {
        if (!strcmp(value, words[i])) {
            *out = i;
            return true;
        }
    }
    return false;
}

// A signal for GREEN_STATS_SIGNAL: USR2, SIGUSR2, 12, RTMIN+3. Not one the runtime or the
// kernel keeps (KILL, STOP, URG, the synchronous faults). 0 if unusable.
int parse_signal(const char* value) {
    const char* name = strncasecmp(value, "SIG", 3) == 0 ? value + 3 : value;
    int sig = 0;
    char* end = nullptr;
    if (*name >= '0' && *name <= '9') {
        long n = strtol(name, &end, 10);
        sig = *end || n <= 0 || n >= NSIG ? 0 : static_cast<int>(n);
    } else if (strncasecmp(name, "RTMIN+", 6) == 0 && name[6] >= '0' && name[6] <= '9') {
        long n = strtol(name + 6, &end, 10);
        sig = *end || n > SIGRTMAX - SIGRTMIN ? 0 : SIGRTMIN + static_cast<int>(n);
    } else {
        for (int i = 1; i < SIGRTMIN && !sig; ++i)
            if (const char* abbrev = sigabbrev_np(i); abbrev && !strcasecmp(abbrev, name)) sig = i;
    }
    switch (sig) {
    case SIGKILL: case SIGSTOP: case SIGURG: case SIGSEGV: case SIGBUS: case SIGILL:
    case SIGFPE: case SIGTRAP: case SIGSYS:
        return 0;
    default:
        return sig;
    }
}

void read_diagnostics(Settings& s) {
    if (const char* v = getenv("GREEN_STATS")) {
        if (is_yes(v) || !strcmp(v, "stderr")) {
            s.stats = true;
        } else if (!is_no(v)) {
            if (strlen(v) < sizeof g_stats_path && log::can_append(v)) {
                strcpy(g_stats_path, v);
                s.stats = true;
                s.stats_path = g_stats_path;
            } else {
                log::write_line("GREEN_STATS='%s' cannot be opened for appending (%m); the "
                                "stats go to stderr", v);
                s.stats = true;
            }
        }
    }
    if (const char* v = getenv("GREEN_STATS_SIGNAL")) {
        s.stats_signal = parse_signal(v);
        if (!s.stats_signal)
            log::write_line("GREEN_STATS_SIGNAL='%s' is not a signal the runtime can take (a "
                            "name such as USR2, a number, RTMIN+N; not KILL, STOP, URG or a "
                            "fault); no stats on a signal", v);
        else if (!s.stats)
            s.stats = true;  // a signal alone asks for the stats, on stderr
    }
    if (const char* v = getenv("GREEN_MONITOR_MS")) {
        unsigned long ms;
        if (!parse_number(v, 0, 3600000, &ms))
            log::write_line("GREEN_MONITOR_MS='%s' is not a number of milliseconds from 0 to "
                            "3600000; no watchdog", v);
        else
            s.monitor_ms = static_cast<unsigned>(ms);
    }
    if (const char* v = getenv("GREEN_DEADLOCK")) {
        static const char* const modes[] = {"off", "report", "abort"};
        if (!pick(v, modes, 3, &s.deadlock))
            log::write_line("GREEN_DEADLOCK='%s' is not off, report or abort; using report", v);
    }
}

}  // namespace

Settings read_settings() {
    Settings s;
    if (const char* v = getenv("GREEN_LOG")) {
        static const char* const levels[] = {"error", "warn", "info", "debug"};
        if (!pick(v, levels, 4, &s.log_level))
            log::write_line("GREEN_LOG='%s' is not error, warn, info or debug; using warn", v);
    }
    log::set_level(static_cast<log::Level>(s.log_level));
    if (const char* v = getenv("GREEN_DISABLE")) s.disable = parse_bool("GREEN_DISABLE", v, false);
    if (const char* v = getenv("GREEN_STACK_SIZE")) {
        size_t size = 0;
        if (!parse_size(v, &size) || size < kMinStack) {
            log::write_line(
                "GREEN_STACK_SIZE='%s' is not a size from 16K to 1G (bytes, or "
                "with a K, M or G suffix); using glibc's default thread stack size",
                v);
        } else {
            s.stack_size = size;
        }
    }
    if (const char* v = getenv("GREEN_DNS_SERVERS")) {
        if (valid_servers(v))
            s.dns_servers = v;
        else
            log::write_line(
                "GREEN_DNS_SERVERS='%s' is not a comma-separated list of IPV4[:PORT], "
                "IPV6 or [IPV6]:PORT; using the nameservers of /etc/resolv.conf",
                v);
    }
    if (const char* v = getenv("GREEN_PREEMPT")) {
        static const char* const modes[] = {"0", "1", "calls", "off", "on"};
        int mode = 1;
        if (!pick(v, modes, 5, &mode))
            log::write_line("GREEN_PREEMPT='%s' is not 0 (off), 1 (on) or calls; using 1", v);
        s.preempt = mode == 0 || mode == 3 ? Preempt::kOff
                    : mode == 2            ? Preempt::kAtCalls
                                           : Preempt::kFull;
    }
    if (const char* v = getenv("GREEN_TIMESLICE_US")) {
        unsigned long us;
        if (!parse_number(v, kMinSliceUs, kMaxSliceUs, &us))
            log::write_line("GREEN_TIMESLICE_US='%s' is not a number of microseconds from %lu "
                            "to %lu; using %lu", v, kMinSliceUs, kMaxSliceUs, s.timeslice_us);
        else
            s.timeslice_us = us;
    }
    if (const char* v = getenv("GREEN_CARRIERS")) {
        unsigned long n;
        if (!parse_number(v, 1, green::kMaxCarriers, &n))
            log::write_line("GREEN_CARRIERS='%s' is not a number of carrier threads from 1 to "
                            "%u; using one per CPU", v, green::kMaxCarriers);
        else
            s.carriers = static_cast<unsigned>(n);
    }
    read_diagnostics(s);
    // A misspelt setting would otherwise be ignored silently.
    for (char** e = environ; e && *e; ++e) {
        if (strncmp(*e, "GREEN_", 6) != 0) continue;
        const char* eq = strchr(*e, '=');
        size_t len = eq ? static_cast<size_t>(eq - *e) : strlen(*e);
        bool known = false;
        for (const char* k : kKnown) known |= strlen(k) == len && !strncmp(k, *e, len);
        if (!known) log::write_line("unknown setting %.*s ignored", static_cast<int>(len), *e);
    }
    // Last: the lines above about bad settings stay on stderr.
    if (const char* v = getenv("GREEN_LOG_FILE")) {
        if (!*v || !log::set_file(v))
            log::write_line("GREEN_LOG_FILE='%s' cannot be opened for appending (%m); logging "
                            "to stderr", v);
    }
    return s;
}

}  // namespace green::shim
