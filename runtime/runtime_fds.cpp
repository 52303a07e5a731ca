// The runtime's own fds (see runtime_fds.h).
//
// Where they go: just above the program's soft RLIMIT_NOFILE when the hard limit leaves room
// (the soft limit is raised for the moment of the dup only, so the program keeps every number
// it had: getdtablesize() and sysconf(_SC_OPEN_MAX) loops never reach ours, and a dup2 onto
// one fails with EBADF exactly as it would natively); otherwise just below the soft limit (or
// below 64 Ki when the limit is larger, so that neither the kernel's fd table nor libuv's
// watcher array grows huge), where the close hooks keep them.
#include "runtime/runtime_fds.h"

#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <climits>

#include "runtime/spinlock.h"

namespace green {
namespace {

constexpr int kReserve = static_cast<int>(kMaxRuntimeFds);
constexpr rlim_t kHighestBase = 65536;

std::atomic<int> g_fds[kMaxRuntimeFds];  // the runtime's fds; 0 = free slot (0 is never ours)
std::atomic<int> g_lowest{INT_MAX};      // bounds of what was ever recorded: a quick reject
std::atomic<int> g_highest{-1};
SpinLock g_adopt_lock;  // one adoption at a time: the soft limit is raised and put back
__thread int t_scope __attribute__((tls_model("initial-exec"))) = 0;

void record(int fd) {
    for (auto& slot : g_fds) {
        int free_slot = 0;
        if (slot.compare_exchange_strong(free_slot, fd)) break;
    }
    int lo = g_lowest.load();
    while (fd < lo && !g_lowest.compare_exchange_weak(lo, fd)) {
    }
    int hi = g_highest.load();
    while (fd > hi && !g_highest.compare_exchange_weak(hi, fd)) {
    }
}

// A close-on-exec copy of `fd` at a high number, or -1.
int dup_high(int fd) {
    rlimit limit;
    if (getrlimit(RLIMIT_NOFILE, &limit) != 0) return -1;
    if (limit.rlim_cur < limit.rlim_max && limit.rlim_cur <= kHighestBase) {
        // Above the program's limit, which is raised for the moment of the dup only.
        const int base = static_cast<int>(limit.rlim_cur);
        rlimit raised = limit;
        raised.rlim_cur = std::min<rlim_t>(limit.rlim_max, limit.rlim_cur + kReserve);
        if (setrlimit(RLIMIT_NOFILE, &raised) == 0) {
            int moved = fcntl(fd, F_DUPFD_CLOEXEC, base);
            setrlimit(RLIMIT_NOFILE, &limit);
            if (moved >= 0) return moved;
        }
    }
    const rlim_t top = std::min(limit.rlim_cur, kHighestBase);
    if (top < static_cast<rlim_t>(4 * kReserve)) return -1;  // a tiny limit: stay where we are
    return fcntl(fd, F_DUPFD_CLOEXEC, static_cast<int>(top) - kReserve);
}

}  // namespace

int adopt_runtime_fd(int fd) {
    if (fd < 0) return fd;
    int moved;
    {
        SpinGuard hold(g_adopt_lock);
        moved = dup_high(fd);
    }
    if (moved < 0) {
        fcntl(fd, F_SETFD, FD_CLOEXEC);
        record(fd);
        return fd;
    }
    RuntimeFdScope scope;  // a real close, whatever hooks this process has
    close(fd);
    record(moved);
    return moved;
}

bool is_runtime_fd(int fd) {
    if (fd < g_lowest.load(std::memory_order_relaxed) ||
        fd > g_highest.load(std::memory_order_relaxed))
        return false;
    for (const auto& slot : g_fds)
        if (slot.load(std::memory_order_relaxed) == fd) return true;
    return false;
}

void release_runtime_fd(int fd) {
    if (fd <= 0) return;
    for (auto& slot : g_fds) {
        int expected = fd;
        if (slot.compare_exchange_strong(expected, 0)) return;
    }
}

void close_runtime_fd(int fd) {
    if (fd < 0) return;
    release_runtime_fd(fd);
    RuntimeFdScope scope;
    close(fd);
}

RuntimeFdScope::RuntimeFdScope() { ++t_scope; }
RuntimeFdScope::~RuntimeFdScope() { --t_scope; }
void enter_runtime_fd_scope() { ++t_scope; }
void leave_runtime_fd_scope() { --t_scope; }
bool in_runtime_fd_scope() { return t_scope != 0; }

size_t runtime_fds_between(unsigned first, unsigned last, int* out, size_t max) {
    size_t n = 0;
    for (const auto& slot : g_fds) {
        int fd = slot.load(std::memory_order_relaxed);
        if (fd > 0 && static_cast<unsigned>(fd) >= first && static_cast<unsigned>(fd) <= last &&
            n < max)
            out[n++] = fd;
    }
    std::sort(out, out + n);
    return n;
}

}  // namespace green
