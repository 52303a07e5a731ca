// Diagnostics: formats into a stack buffer and emits it with one raw write(2) syscall.
// Must never allocate or call an interposed function (it runs inside hooks and handlers).
#include "runtime/log.h"

#include <fcntl.h>
#include <limits.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace green::log {
namespace {

std::atomic<int> g_level{static_cast<int>(Level::kWarn)};
char g_file[PATH_MAX];  // GREEN_LOG_FILE, or empty for stderr; set before main
__thread int t_stderr_pidfd __attribute__((tls_model("initial-exec"))) = -1;

// Opens `path` for appending, "%p" replaced by the pid. Raw syscalls: not our hooks.
int open_append(const char* path) {
    char expanded[PATH_MAX];
    size_t out = 0;
    for (const char* p = path; *p && out < sizeof expanded - 1; ++p) {
        if (p[0] == '%' && p[1] == 'p') {
            out += static_cast<size_t>(snprintf(expanded + out, sizeof expanded - out, "%ld",
                                                static_cast<long>(syscall(SYS_getpid))));
            if (out >= sizeof expanded) out = sizeof expanded - 1;
            ++p;
        } else {
            expanded[out++] = *p;
        }
    }
    expanded[out] = '\0';
    return static_cast<int>(syscall(SYS_openat, AT_FDCWD, expanded,
                                    O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644));
}

void write_all(int fd, const char* data, size_t len) {
    while (len > 0) {
        long n = syscall(SYS_write, fd, data, len);
        if (n <= 0) {
            if (n < 0 && errno == EINTR) continue;
            return;
        }
        data += n;
        len -= static_cast<size_t>(n);
    }
}

void emit(const char* prefix, const char* fmt, va_list ap) {
    char line[512];
    int n = std::snprintf(line, sizeof line, "green: %s", prefix);
    int m = std::vsnprintf(line + n, sizeof line - n - 1, fmt, ap);
    size_t len = n + (m < 0 ? 0 : m);
    if (len > sizeof line - 2) len = sizeof line - 2;
    line[len++] = '\n';
    int saved = errno;
    write_raw(nullptr, line, len);
    errno = saved;
}

}  // namespace

void set_level(Level level) { g_level.store(static_cast<int>(level), std::memory_order_relaxed); }
Level level() { return static_cast<Level>(g_level.load(std::memory_order_relaxed)); }

bool can_append(const char* path) {
    if (strlen(path) >= PATH_MAX) {
        errno = ENAMETOOLONG;
        return false;
    }
    int fd = open_append(path);
    if (fd < 0) return false;
    syscall(SYS_close, fd);
    return true;
}

bool set_file(const char* path) {
    if (!can_append(path)) return false;
    strcpy(g_file, path);
    return true;
}

bool write_raw(const char* path, const char* data, size_t len) {
    if (!path && g_file[0]) path = g_file;
    int fd = 2;  // stderr, also when the file cannot be opened
    if (path) {
        fd = open_append(path);
    } else if (t_stderr_pidfd >= 0) {  // a thread with a private fd table: the program's fd 2
        fd = static_cast<int>(syscall(SYS_pidfd_getfd, t_stderr_pidfd, 2, 0));
        if (fd < 0) return false;
    }
    bool opened = fd != 2 && fd >= 0;
    write_all(fd >= 0 ? fd : 2, data, len);
    if (opened) syscall(SYS_close, fd);
    return !path || opened;
}

void use_program_stderr_via(int pidfd) { t_stderr_pidfd = pidfd; }

void write_line(const char* fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    emit("", fmt, ap);
    va_end(ap);
}

void info(const char* fmt, ...) {
    if (level() < Level::kInfo) return;
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
