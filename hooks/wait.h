// Shared steps of the blocking hooks: what the program asked of an fd (O_NONBLOCK,
// SO_RCVTIMEO/SO_SNDTIMEO) and the park-until-ready loop. These read the fd's state at the
// moment of the call instead of caching it: libgreen never changes an fd's flags, so the
// kernel's answer is always the program's own.
#pragma once

#include <fcntl.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "hooks/deadline.h"
#include "hooks/real.h"
#include "runtime/runtime.h"
#include "runtime/tls.h"

namespace green::hooks {

// True if the program made the fd non-blocking (fcntl, ioctl FIONBIO, SOCK_NONBLOCK, ...).
// Also true for a bad fd: the caller then makes the real call, which reports EBADF.
inline bool user_nonblocking(int fd) {
    int flags = fcntl(fd, F_GETFL);
    return flags < 0 || (flags & O_NONBLOCK);
}

// True if the real call would return at once instead of blocking: the fd is bad or
// non-blocking, or it was not opened for this direction (read on a write end: EBADF).
inline bool fails_or_returns_now(int fd, bool reading) {
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0 || (flags & (O_NONBLOCK | O_PATH))) return true;
    int mode = flags & O_ACCMODE;
    return reading ? mode == O_WRONLY : mode == O_RDONLY;
}

// The deadline a real blocking call would honour: SO_RCVTIMEO or SO_SNDTIMEO, none when
// unset or when the fd is not a socket. The kernel keeps huge values (only one beyond its
// longest timer reads back as 0, "none"): they are far deadlines, not overflows.
inline uint64_t socket_deadline(int fd, int option) {
    timeval tv{};
    socklen_t len = sizeof tv;
    if (getsockopt(fd, SOL_SOCKET, option, &tv, &len) != 0) return kNoDeadline;
    if (tv.tv_sec == 0 && tv.tv_usec == 0) return kNoDeadline;
    return deadline_in_ns(span_ns(tv.tv_sec, static_cast<int64_t>(tv.tv_usec) * 1000));
}

// getpid() without the system call (it is one each time in glibc): the pid, cached, and
// forgotten in a fork's child.
pid_t own_pid();

// Copies `len` bytes from a pointer the program gave us; false (errno EFAULT) when the
// memory is not readable, where a real syscall would fail with EFAULT instead of crashing.
// Needs no fd and no process_vm_readv (which seccomp policies deny); see wait.cpp.
bool copy_from_user(void* dst, const void* src, size_t len);
// Whether copy_from_user would succeed; for a word other threads change meanwhile (a futex),
// which is then read atomically.
bool user_readable(const void* src, size_t len);

// A timespec the program passes to a system call, checked as the kernel checks one
// (timespec64_valid): false with errno EFAULT (unreadable) or EINVAL (negative seconds,
// nanoseconds out of range).
inline bool kernel_timespec(const timespec* from, timespec* to) {
    if (!copy_from_user(to, from, sizeof *to)) return false;
    if (to->tv_sec >= 0 && valid_nsec(to->tv_nsec)) return true;
    errno = EINVAL;
    return false;
}

extern thread_local unsigned t_handlers_run;  // the program's handlers run (signal.cpp)

// A call that cannot block (a zero timeout) still fails with EINTR when a signal arrives
// during it, even one of the runtime's own (the monitor's preemption signal), which the
// program must never see. Repeats it then, unless a handler of the program ran.
template <typename Call>
int unless_ours_interrupted(Call call) {
    for (;;) {
        const unsigned before = tls::per_thread(t_handlers_run);
        int r = call();
        if (r >= 0 || errno != EINTR || tls::per_thread(t_handlers_run) != before) return r;
    }
}

// Whether a program's signal handler ran while the calling fiber ran, since the last mark
// (Fiber::handlers_ran). For waits that look again and again (a poll with back-off): such a
// handler, between two looks, interrupted no park and would be lost; it ends the call as it
// ends a blocked system call. One that comes while the fiber is parked interrupts the park.
class HandlerWatch {
public:
    HandlerWatch() { mark(); }
    void mark() { mark_ = count(); }
    bool ran() const { return count() != mark_; }

private:
    static uint32_t count() {
        std::atomic_signal_fence(std::memory_order_seq_cst);  // written by handlers
        Fiber* self = current_fiber();
        return self ? self->handlers_ran : 0;
    }
    uint32_t mark_;
};

// Readiness now, without waiting: what a real call would find.
inline bool ready_now(int fd, short events) {
    pollfd p{fd, events, 0};
    // Ready, or an error/POLLNVAL the call reports.
    return unless_ours_interrupted([&] { return real::get().poll(&p, 1, 0); }) != 0;
}

// The result of a wait, as the call that asked for it must report it.
enum class Waited { kReady, kTimedOut, kClosed, kInterrupted };

inline Waited wait_for(int fd, uint32_t events, uint64_t deadline, ParkReason reason) {
    switch (wait_fd(fd, events, deadline, reason)) {
        case WaitResult::kReady: return Waited::kReady;
        case WaitResult::kTimedOut: return Waited::kTimedOut;
        case WaitResult::kClosed: return Waited::kClosed;
        case WaitResult::kInterrupted: return Waited::kInterrupted;
    }
    return Waited::kReady;
}

// After a signal handler interrupted a blocking call's wait: true if the call goes on
// waiting. As signal(7): calls restart under SA_RESTART, except socket calls with a timeout
// (SO_RCVTIMEO / SO_SNDTIMEO), which fail with EINTR like calls without it.
inline bool restarts_after_signal(uint64_t deadline) {
    bool restart = interruption_restarts();
    return restart && deadline == kNoDeadline;
}

// Sleeps for *backoff_ms (never past `deadline`), then doubles it up to 64 ms: the wait of a
// call whose readiness no fd announces (a full Unix listener, a file lock another process
// holds). False with errno EINTR when a signal handler ended the sleep and the call does not
// restart.
inline bool backoff_sleep(unsigned* backoff_ms, uint64_t deadline, ParkReason reason) {
    uint64_t until = deadline_after_ns(*backoff_ms * 1000000ull);
    *backoff_ms = *backoff_ms < 64 ? *backoff_ms * 2 : 64;
    if (sleep_until(until < deadline ? until : deadline, reason) == WaitResult::kInterrupted &&
        !restarts_after_signal(deadline)) {
        errno = EINTR;
        return false;
    }
    return true;
}

// The sleeps of a polling wait for completions no fd announces (libaio's, an io_uring ring
// that has fewer than were asked for): 20 us, doubling up to 2 ms. Returns when this sleep
// ends and moves *backoff_ns (start it at 0) to the next.
inline uint64_t next_poll_sleep_until(uint64_t* backoff_ns) {
    *backoff_ns = *backoff_ns == 0 ? 20'000 : std::min<uint64_t>(*backoff_ns * 2, 2'000'000);
    return deadline_in_ns(*backoff_ns);
}

// After a signal handler interrupted the wait of a call that has moved `done` bytes: true if
// the call ends now, with *result what it returns — the count, since a partial transfer is
// never restarted (as the kernel's), or -1 with EINTR when nothing moved and it does not
// restart; false if it waits again.
inline bool ends_after_signal(size_t done, uint64_t deadline, ssize_t* result) {
    if (done > 0) {
        interruption_restarts();  // consumed
        *result = static_cast<ssize_t>(done);
        return true;
    }
    if (restarts_after_signal(deadline)) return false;
    errno = EINTR;
    *result = -1;
    return true;
}

// A socket call that a real thread would block in: try it with MSG_DONTWAIT; on EAGAIN
// park until the socket is ready and try again. `attempt` must not block.
// Honours the program's own O_NONBLOCK and MSG_DONTWAIT (EAGAIN at once), the socket's
// timeout `timeout_option` (EAGAIN after it), and a close() during the wait (EBADF).
template <typename Attempt>
ssize_t socket_call(int fd, int flags, uint32_t event, int timeout_option, ParkReason reason,
                    Attempt attempt) {
    ssize_t r = attempt();
    if (r >= 0 || errno != EAGAIN || (flags & MSG_DONTWAIT)) return r;
    if (user_nonblocking(fd)) {
        errno = EAGAIN;
        return -1;
    }
    uint64_t deadline = socket_deadline(fd, timeout_option);
    for (;;) {
        switch (wait_for(fd, event, deadline, reason)) {
            case Waited::kClosed: errno = EBADF; return -1;
            case Waited::kTimedOut: errno = EAGAIN; return -1;
            case Waited::kInterrupted:
                if (restarts_after_signal(deadline)) continue;
                errno = EINTR;
                return -1;
            case Waited::kReady: break;
        }
        r = attempt();
        if (r >= 0 || errno != EAGAIN) return r;
    }
}

// A blocking send of `total` bytes returns only when all are queued, or on an error or
// timeout after which it reports the bytes already sent. `attempt(done)` sends what is left
// after `done` bytes without blocking.
template <typename Attempt>
ssize_t send_all(int fd, int flags, size_t total, Attempt attempt) {
    size_t done = 0;
    uint64_t deadline = 0;  // looked up on the first would-block
    for (;;) {
        ssize_t r = attempt(done);
        if (r >= 0) {
            done += static_cast<size_t>(r);
            if (done >= total || (flags & MSG_DONTWAIT)) return static_cast<ssize_t>(done);
            continue;
        }
        if (errno != EAGAIN || (flags & MSG_DONTWAIT)) break;
        if (user_nonblocking(fd)) {
            errno = EAGAIN;
            break;
        }
        if (deadline == 0) deadline = socket_deadline(fd, SO_SNDTIMEO);
        Waited w = wait_for(fd, EPOLLOUT, deadline, ParkReason::kWrite);
        if (w == Waited::kClosed) {
            errno = EBADF;
            break;
        }
        if (w == Waited::kTimedOut) {
            errno = EAGAIN;
            break;
        }
        if (w == Waited::kInterrupted && !restarts_after_signal(deadline)) {
            errno = EINTR;  // a partial send reports its count instead, as the kernel does
            break;
        }
    }
    return done > 0 ? static_cast<ssize_t>(done) : -1;
}

// An iovec array that can be advanced past bytes already transferred. The program's array is
// copied through copy_from_user: a bad pointer makes the cursor invalid instead of crashing,
// and the caller lets the real call report EFAULT.
class IovCursor {
public:
    IovCursor(const iovec* iov, int count);
    // An array the kernel has just read for a call on it (it returned a count or EAGAIN, not
    // EFAULT): copied directly, without the EFAULT-safe read.
    struct KernelChecked {};
    IovCursor(const iovec* iov, int count, KernelChecked);
    ~IovCursor();
    IovCursor(const IovCursor&) = delete;
    IovCursor& operator=(const IovCursor&) = delete;
    void advance(size_t bytes);
    bool valid() const { return valid_; }
    iovec* data() { return cur_; }
    int count() const { return count_; }
    size_t total() const { return total_; }
    // Copies a view of at most `limit` bytes from the current position into `out` (room for
    // `max` entries); returns its entry count.
    int slice(size_t limit, iovec* out, int max) const;

private:
    void take(int count);
    iovec small_[16];
    iovec* all_;
    iovec* cur_;
    int count_;
    size_t total_ = 0;
    bool valid_ = false;
};

}  // namespace green::hooks
