// Diagnostics: formats into a stack buffer and emits it with one raw write(2) syscall.
// Must never allocate or call an interposed function (it runs inside hooks and handlers).
#include "runtime/log.h"

#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>

namespace green::log {
namespace {

std::atomic<int> g_level{static_cast<int>(Level::kWarn)};

void emit(const char* prefix, const char* fmt, va_list ap) {
    char line[512];
    int n = std::snprintf(line, sizeof line, "green: %s", prefix);
    int m = std::vsnprintf(line + n, sizeof line - n - 1, fmt, ap);
    size_t len = n + (m < 0 ? 0 : m);
    if (len > sizeof line - 2) len = sizeof line - 2;
    line[len++] = '\n';
    // A raw syscall: not our write() hook, and not buffered stdio.
    syscall(SYS_write, 2, line, len);
}

}  // namespace

void set_level(Level level) { g_level.store(static_cast<int>(level), std::memory_order_relaxed); }
Level level() { return static_cast<Level>(g_level.load(std::memory_order_relaxed)); }

void write_line(const char* fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    emit("", fmt, ap);
    va_end(ap);
}

void warn(const char* fmt, ...) {
    if (level() < Level::kWarn) return;
    va_list ap;
    va_start(ap, fmt);
    emit("warning: ", fmt, ap);
    va_end(ap);
}

void debug(const char* fmt, ...) {
    if (level() < Level::kDebug) return;
    va_list ap;
    va_start(ap, fmt);
    emit("debug: ", fmt, ap);
    va_end(ap);
}

void fatal(const char* fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    emit("fatal: ", fmt, ap);
    va_end(ap);
    std::abort();
}

}  // namespace green::log
