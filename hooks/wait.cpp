// Helpers shared by the blocking hooks (see wait.h).
#include "hooks/wait.h"

#include <pthread.h>
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
        pthread_once(&once, [] { pthread_atfork(nullptr, nullptr, [] { g_pid.store(0); }); });
        pid = getpid();
        g_pid.store(pid, std::memory_order_relaxed);
    }
    return pid;
}

bool copy_from_user(void* dst, const void* src, size_t len) {
    // Most pointers we are given are the calling fiber's own locals (a timespec, a
    // sigaction): its stack is mapped, so a plain copy is safe.
    if (const Fiber* self = current_fiber()) {
        const char* from = static_cast<const char*>(src);
        if (self->stack.limit && from >= self->stack.limit &&
            len <= static_cast<size_t>(self->stack.top - from)) {
            memcpy(dst, src, len);
            return true;
        }
    }
    // Anything else: process_vm_readv on ourselves reads the memory through the kernel, which
    // reports a bad address as EFAULT instead of raising SIGSEGV in our code. (A child made
    // by a raw clone has a stale cached pid: ESRCH, or our parent's EPERM; ask again then.)
    iovec local{dst, len};
    iovec remote{const_cast<void*>(src), len};
    ssize_t n = process_vm_readv(own_pid(), &local, 1, &remote, 1, 0);
    if (n < 0 && (errno == ESRCH || errno == EPERM)) {
        g_pid.store(0);
        n = process_vm_readv(getpid(), &local, 1, &remote, 1, 0);
    }
    if (n == static_cast<ssize_t>(len)) return true;
    errno = EFAULT;
    return false;
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
