// Helpers shared by the blocking hooks (see wait.h).
#include "hooks/wait.h"

#include "runtime/fork.h"

#include <linux/futex.h>
#include <pthread.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include <atomic>
#include <climits>
#include <cstring>

namespace green::hooks {

namespace {
std::atomic<pid_t> g_pid{0};
}  // namespace

pid_t own_pid() {
    pid_t pid = g_pid.load(std::memory_order_relaxed);
    if (pid == 0) {
        static pthread_once_t once = PTHREAD_ONCE_INIT;
        // Every child forgets it, also one made by _Fork() or a raw fork (runtime/fork.h).
        pthread_once(&once, [] { add_fork_child_hook([] { g_pid.store(0); }); });
        pid = getpid();
        g_pid.store(pid, std::memory_order_relaxed);
    }
    return pid;
}

namespace {

// An address no futex of ours lives at: FUTEX_CMP_REQUEUE needs a second key.
int g_probe_target;

// Whether the page holding `word` (4-byte aligned) is readable, asked of the kernel:
// FUTEX_CMP_REQUEUE reads the word and compares it (0 or EAGAIN), or fails with EFAULT; with
// nothing to wake or requeue it has no other effect, and it never sleeps.
bool readable_word(const void* word) {
    const int saved = errno;
    for (;;) {
        long r = real::get().syscall(SYS_futex, word, FUTEX_CMP_REQUEUE_PRIVATE, 0, 0,
                                     &g_probe_target, 0);
        if (r >= 0 || errno == EAGAIN) {
            errno = saved;
            return true;
        }
        if (errno != EINTR) return false;
    }
}

}  // namespace

// How to read memory the program names without crashing where the kernel would say EFAULT.
// Readability is decided per page, so one probe per page the range touches tells it; a
// futex compare (above) is the probe: about 260 ns here, no fd, no state, and futex is one
// system call no seccomp policy can deny a threaded program. Rejected: process_vm_readv
// (what this was: 550 ns, denied by systemd's @debug filter group, and fatal under a
// kill-by-default filter), a write() into a pipe (needs fds of ours, and a lock or one pipe
// per carrier, redone after fork), /proc/self/mem (an fd per call, and /proc may be absent),
// and a fault-catching copy (a SIGSEGV handler of ours beside the program's). The one gap:
// memory unmapped by another thread between the probe and the copy faults here, where the
// kernel would have said EFAULT; a program that frees what it passes to a call has a bug of
// its own either way.
bool user_readable(const void* src, size_t len) {
    const uintptr_t from = reinterpret_cast<uintptr_t>(src);
    if (len == 0) return true;
    if (from + len < from) {  // wraps past the end of the address space
        errno = EFAULT;
        return false;
    }
    // Most pointers we are given are the calling fiber's own locals (a timespec, a
    // sigaction): its stack is mapped.
    if (const Fiber* self = current_fiber()) {
        const uintptr_t low = reinterpret_cast<uintptr_t>(self->stack.limit);
        const uintptr_t high = reinterpret_cast<uintptr_t>(self->stack.top);
        if (low != 0 && from >= low && from <= high && len <= high - from) return true;
    }
    constexpr uintptr_t kPage = 4096;  // the smallest unit of protection on x86-64
    const uintptr_t last = (from + len - 1) & ~(kPage - 1);
    for (uintptr_t page = from & ~(kPage - 1);; page += kPage) {
        if (!readable_word(reinterpret_cast<const void*>(page))) {
            errno = EFAULT;
            return false;
        }
        if (page == last) break;
    }
    return true;
}

bool copy_from_user(void* dst, const void* src, size_t len) {
    if (!user_readable(src, len)) return false;
    if (len) memcpy(dst, src, len);
    return true;
}

IovCursor::IovCursor(const iovec* iov, int count) : all_(small_), cur_(small_), count_(0) {
    if (count <= 0 || count > IOV_MAX) return;
    if (count > static_cast<int>(sizeof small_ / sizeof small_[0])) all_ = new iovec[count];
    if (!copy_from_user(all_, iov, sizeof(iovec) * static_cast<size_t>(count))) return;
    take(count);
}

IovCursor::IovCursor(const iovec* iov, int count, KernelChecked)
    : all_(small_), cur_(small_), count_(0) {
    if (count <= 0 || count > IOV_MAX) return;
    if (count > static_cast<int>(sizeof small_ / sizeof small_[0])) all_ = new iovec[count];
    memcpy(all_, iov, sizeof(iovec) * static_cast<size_t>(count));
    take(count);
}

void IovCursor::take(int count) {
    for (int i = 0; i < count; ++i) total_ += all_[i].iov_len;
    cur_ = all_;
    count_ = count;
    valid_ = true;
}

IovCursor::~IovCursor() {
    if (all_ != small_) delete[] all_;
}

void IovCursor::advance(size_t bytes) {
    while (count_ > 0 && bytes >= cur_->iov_len) {
        bytes -= cur_->iov_len;
        ++cur_;
        --count_;
    }
    if (count_ > 0 && bytes > 0) {
        cur_->iov_base = static_cast<char*>(cur_->iov_base) + bytes;
        cur_->iov_len -= bytes;
    }
}

int IovCursor::slice(size_t limit, iovec* out, int max) const {
    int n = 0;
    for (int i = 0; i < count_ && n < max && limit > 0; ++i) {
        if (cur_[i].iov_len == 0) continue;
        size_t take = cur_[i].iov_len < limit ? cur_[i].iov_len : limit;
        out[n++] = iovec{cur_[i].iov_base, take};
        limit -= take;
    }
    return n;
}

}  // namespace green::hooks
