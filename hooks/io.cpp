// read/write/readv/writev on any fd. Sockets go through the MSG_DONTWAIT path of
// socket.cpp's helpers; other fds (pipes, FIFOs, ttys, eventfds, devices, regular files)
// wait for poll readiness, then make the real call. Only one fiber runs on a carrier at a
// time, so nothing on this carrier can take the data between the poll and the call.
#include <fcntl.h>
#include <limits.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/sendfile.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <termios.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <vector>

#include "hooks/hooks.h"
#include "hooks/wait.h"

extern "C" void __chk_fail(void) __attribute__((noreturn));

namespace green::hooks {
namespace {

// Parks until `fd` is ready for `event` (no deadline). False, with errno set, when the call
// must fail instead: the fd was closed meanwhile (EBADF), or a handler without SA_RESTART
// interrupted the wait (EINTR).
bool wait_ready(int fd, uint32_t event, ParkReason reason) {
    Waited w = wait_for(fd, event, kNoDeadline, reason);
    if (w == Waited::kClosed) {
        errno = EBADF;
        return false;
    }
    if (w == Waited::kInterrupted && !restarts_after_signal(kNoDeadline)) {
        errno = EINTR;
        return false;
    }
    return true;
}

bool is_regular_file(int fd) {
    struct stat st;
    return fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
}

// Regular files are always "ready": their I/O waits for the disk on the carrier. Counted for
// GREEN_STATS only (it costs an fstat).
template <typename Call>
ssize_t ready_then_call(int fd, short poll_event, uint32_t epoll_event, ParkReason reason,
                        Call call) {
    for (;;) {
        if (ready_now(fd, poll_event) || fails_or_returns_now(fd, poll_event == POLLIN)) {
            if (count_blocked_calls() && is_regular_file(fd)) note_carrier_blocked();
            return call();
        }
        if (!wait_ready(fd, epoll_event, reason)) return -1;
    }
}

// Raw (non-canonical) ttys time their reads with VMIN and VTIME (termios(3), n_tty_read).
// VMIN = 0 never waits for data: VTIME = 0 returns what is there, 0 if nothing; VTIME = t
// waits up to t tenths of a second for the first byte, then returns 0. VMIN > 0 and VTIME = 0
// needs no care: poll reports such a tty readable only once VMIN bytes are there (n_tty_poll),
// so the real read returns at once. VMIN > 0 and VTIME > 0 waits for a first byte, then for
// min(VMIN, count) bytes with VTIME as an inter-byte timer: the real read would wait on the
// carrier, so read_tty_bytes does that part.
struct TtyTiming {
    bool raw = false;
    cc_t vmin = 0, vtime = 0;
};

// Asked (tcgetattr) only when a read is about to wait, so other fds pay nothing for it.
TtyTiming tty_timing(int fd) {
    TtyTiming timing;
    termios mode;
    if (tcgetattr(fd, &mode) != 0 || (mode.c_lflag & ICANON)) return timing;
    timing.raw = true;
    timing.vmin = mode.c_cc[VMIN];
    timing.vtime = mode.c_cc[VTIME];
    return timing;
}

uint64_t tenths_from_now(cc_t tenths) {
    return deadline_after_ns(static_cast<uint64_t>(tenths) * 100'000'000ull);
}

// A raw tty read with VMIN > 0 and VTIME > 0 on a tty with nothing to read yet: park for the
// first byte, then take what is there (FIONREAD: a read of no more than that returns at once,
// whatever VMIN says) until min(VMIN, count) bytes, or until VTIME passes without a byte.
// After part of the data, a signal or a closed fd ends the call with the count, as the
// kernel's read returns what it copied.
ssize_t read_tty_bytes(int fd, const iovec* iov, int iovcnt, cc_t vmin, cc_t vtime) {
    IovCursor rest(iov, iovcnt);
    if (!rest.valid()) return real::get().readv(fd, iov, iovcnt);  // EFAULT, EINVAL
    const size_t total = rest.total();
    const size_t want = std::min<size_t>(vmin, total);
    size_t got = 0;
    uint64_t deadline = kNoDeadline;  // no timer before the first byte
    auto partial_or_fail = [&](int err) -> ssize_t {
        if (got > 0) return static_cast<ssize_t>(got);
        errno = err;
        return -1;
    };
    for (;;) {
        switch (wait_for(fd, EPOLLIN, deadline, ParkReason::kRead)) {
            case Waited::kClosed:
                return partial_or_fail(EBADF);
            case Waited::kTimedOut:
                return static_cast<ssize_t>(got);  // the timer runs only after a byte
            case Waited::kInterrupted: {
                ssize_t result;
                if (ends_after_signal(got, kNoDeadline, &result)) return result;
                continue;
            }
            case Waited::kReady:
                break;
        }
        int queued = 0;
        if (ioctl(fd, FIONREAD, &queued) != 0 || queued <= 0) {
            // Readable without data: a hang-up, which the real read reports (EIO or 0) at
            // once; or a wake-up for nothing, and we wait again.
            if (!ready_now(fd, POLLIN)) continue;
            if (got > 0) return static_cast<ssize_t>(got);
            return real::get().readv(fd, rest.data(), rest.count());
        }
        iovec piece[16];
        int n = rest.slice(std::min<size_t>(static_cast<size_t>(queued), total - got), piece, 16);
        ssize_t r = real::get().readv(fd, piece, n);
        if (r <= 0) return r < 0 ? partial_or_fail(errno) : static_cast<ssize_t>(got);
        got += static_cast<size_t>(r);
        rest.advance(static_cast<size_t>(r));
        if (got >= want) return static_cast<ssize_t>(got);
        deadline = tenths_from_now(vtime);  // restarted by every byte
    }
}

// A read on an fd that takes no RWF_NOWAIT (ttys, timerfds, signalfds, most devices): park
// until readable, then read. `call` is the real read of `iov`.
template <typename Call>
ssize_t read_when_ready(int fd, const iovec* iov, int iovcnt, Call call) {
    uint64_t deadline = kNoDeadline;
    for (bool asked = false;; asked = true) {
        if (ready_now(fd, POLLIN) || fails_or_returns_now(fd, true)) {
            if (count_blocked_calls() && is_regular_file(fd)) note_carrier_blocked();
            return call();
        }
        if (!asked) {
            TtyTiming tty = tty_timing(fd);
            if (tty.raw && tty.vmin == 0) {
                if (tty.vtime == 0) return call();  // returns 0 at once, as it would have
                deadline = tenths_from_now(tty.vtime);
            } else if (tty.raw && tty.vtime > 0) {
                return read_tty_bytes(fd, iov, iovcnt, tty.vmin, tty.vtime);
            }
        }
        switch (wait_for(fd, EPOLLIN, deadline, ParkReason::kRead)) {
            case Waited::kClosed:
                errno = EBADF;
                return -1;
            case Waited::kTimedOut:  // VMIN = 0, VTIME > 0: 0 unless a byte came just now
                return ready_now(fd, POLLIN) ? call() : 0;
            case Waited::kInterrupted:
                if (restarts_after_signal(kNoDeadline)) continue;
                errno = EINTR;
                return -1;
            case Waited::kReady:
                break;
        }
    }
}

bool is_fifo(int fd) {
    struct stat st;
    return fstat(fd, &st) == 0 && S_ISFIFO(st.st_mode);
}

// A blocking write of more than PIPE_BUF bytes to a pipe can block even after poll said
// writable (POLLOUT means one free slot: PIPE_BUF bytes). So write in PIPE_BUF pieces, each
// after POLLOUT; writes of at most PIPE_BUF bytes stay one atomic write, as POSIX promises.
ssize_t write_fifo(int fd, IovCursor& cursor) {
    if (user_nonblocking(fd)) return real::get().writev(fd, cursor.data(), cursor.count());
    const size_t total = cursor.total();
    size_t done = 0;
    while (done < total) {
        if (!ready_now(fd, POLLOUT)) {
            Waited w = wait_for(fd, EPOLLOUT, kNoDeadline, ParkReason::kWrite);
            if (w == Waited::kClosed ||
                (w == Waited::kInterrupted && !restarts_after_signal(kNoDeadline))) {
                errno = w == Waited::kClosed ? EBADF : EINTR;
                return done > 0 ? static_cast<ssize_t>(done) : -1;
            }
            continue;
        }
        iovec piece[16];
        int n = cursor.slice(PIPE_BUF, piece, 16);
        ssize_t r = real::get().writev(fd, piece, n);
        if (r < 0) return done > 0 ? static_cast<ssize_t>(done) : -1;
        done += static_cast<size_t>(r);
        cursor.advance(static_cast<size_t>(r));
    }
    return static_cast<ssize_t>(done);
}

ssize_t write_other(int fd, const iovec* iov, int iovcnt) {
    if (is_fifo(fd)) {
        IovCursor cursor(iov, iovcnt);
        if (!cursor.valid()) return real::get().writev(fd, iov, iovcnt);  // EFAULT / EINVAL
        return write_fifo(fd, cursor);
    }
    return ready_then_call(fd, POLLOUT, EPOLLOUT, ParkReason::kWrite,
                           [&] { return real::get().writev(fd, iov, iovcnt); });
}

// eventfd, timerfd and signalfd check the buffer size before they wait: a read of fewer
// bytes than one event fails with EINVAL at once, where poll-then-read would wait forever.
bool event_fd_refuses(int fd, size_t count) {
    if (count >= sizeof(signalfd_siginfo)) return false;
    struct stat st;  // event fds are anonymous inodes, with no file type; pipes and ttys have one
    if (fstat(fd, &st) != 0 || (st.st_mode & S_IFMT) != 0) return false;
    char path[32], target[32] = {};
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    if (readlink(path, target, sizeof target - 1) <= 0) return false;
    if (!strcmp(target, "anon_inode:[signalfd]")) return true;
    return count < sizeof(uint64_t) &&
           (!strcmp(target, "anon_inode:[eventfd]") || !strcmp(target, "anon_inode:[timerfd]"));
}

// Pipes, FIFOs, eventfds and regular files (FMODE_NOWAIT in the kernel) take RWF_NOWAIT:
// the call does what it can at once or fails with EAGAIN, whatever O_NONBLOCK says, as
// MSG_DONTWAIT does for a socket. So the first attempt is the real call, with no readiness
// probe before it. Other fds (ttys, timerfd, signalfd, most devices) refuse the flag with
// EOPNOTSUPP (ENOSYS before Linux 4.6) and take the poll-then-call path.
bool nowait_refused() {
    return errno == EOPNOTSUPP || errno == ENOSYS;
}

// After a RWF_NOWAIT attempt said EAGAIN: whether the real call would not wait for
// readiness either. An O_NONBLOCK fd returns at once. A regular file whose data is not in
// memory waits for the disk, which epoll cannot watch (a wait on it ends at once), so the
// real call does, on the carrier; that is only asked (an fstat) once a wait has not helped.
bool would_not_park(int fd, bool reading, bool waited, bool* regular) {
    *regular = false;
    if (fails_or_returns_now(fd, reading)) return true;
    if (!waited) return false;
    *regular = is_regular_file(fd);
    if (*regular) note_carrier_blocked();
    return *regular;
}

// readv on a non-socket fd; `legacy` is the poll-then-call path.
template <typename Legacy>
ssize_t read_other(int fd, const iovec* iov, int iovcnt, Legacy legacy) {
    for (bool waited = false;; waited = true) {  // a retry after a wait that got nothing
        ssize_t r = preadv2(fd, iov, iovcnt, -1, RWF_NOWAIT);
        if (r >= 0 || errno != EAGAIN) return r < 0 && nowait_refused() ? legacy() : r;
        bool regular;
        if (would_not_park(fd, true, waited, &regular)) return real::get().readv(fd, iov, iovcnt);
        if (!wait_ready(fd, EPOLLIN, ParkReason::kRead)) return -1;
    }
}

// writev on a non-socket fd: every byte, parking while the pipe is full, as a blocking write
// does (a write of at most PIPE_BUF bytes to a pipe stays one atomic write: RWF_NOWAIT
// writes it whole or not at all). After a partial write, the count when the call must end.
template <typename Legacy>
ssize_t write_nowait(int fd, const iovec* iov, int iovcnt, Legacy legacy) {
    ssize_t first = pwritev2(fd, iov, iovcnt, -1, RWF_NOWAIT);
    if (first < 0 && nowait_refused()) return legacy();
    if (first < 0 && errno != EAGAIN) return -1;
    IovCursor rest(iov, iovcnt, IovCursor::KernelChecked{});
    size_t done = first > 0 ? static_cast<size_t>(first) : 0;
    if (!rest.valid() || done >= rest.total()) return first;
    rest.advance(done);
    for (bool stuck = false;;) {
        bool regular;
        if (would_not_park(fd, false, stuck, &regular)) {
            if (!regular) {  // O_NONBLOCK: what the real call did is what the attempt did
                if (done > 0) return static_cast<ssize_t>(done);
                errno = EAGAIN;
                return -1;
            }
            ssize_t r = real::get().writev(fd, rest.data(), rest.count());
            if (r < 0) return done > 0 ? static_cast<ssize_t>(done) : -1;
            return static_cast<ssize_t>(done + static_cast<size_t>(r));
        }
        if (!wait_ready(fd, EPOLLOUT, ParkReason::kWrite))
            return done > 0 ? static_cast<ssize_t>(done) : -1;
        ssize_t r = pwritev2(fd, rest.data(), rest.count(), -1, RWF_NOWAIT);
        if (r < 0 && errno != EAGAIN) return done > 0 ? static_cast<ssize_t>(done) : -1;
        stuck = r <= 0;  // the wait ended but nothing could be written: maybe not pollable
        if (r > 0) {
            done += static_cast<size_t>(r);
            if (done >= rest.total()) return static_cast<ssize_t>(done);  // total: all of it
            rest.advance(static_cast<size_t>(r));
        }
    }
}

}  // namespace

ssize_t read(int fd, void* buf, size_t count) {
    // A zero-length read returns 0 at once, even on a socket with no data; recv would wait.
    if (count == 0) return real::get().read(fd, buf, count);
    ssize_t r = socket_call(fd, 0, EPOLLIN, SO_RCVTIMEO, ParkReason::kRead,
                            [&] { return real::get().recv(fd, buf, count, MSG_DONTWAIT); });
    if (r >= 0 || errno != ENOTSOCK) return r;
    iovec one{buf, count};
    return read_other(fd, &one, 1, [&] {
        if (count < sizeof(signalfd_siginfo) && !ready_now(fd, POLLIN) &&
            event_fd_refuses(fd, count))
            return real::get().read(fd, buf, count);
        return read_when_ready(fd, &one, 1, [&] { return real::get().read(fd, buf, count); });
    });
}

ssize_t __read_chk(int fd, void* buf, size_t count, size_t buflen) {
    if (count > buflen) __chk_fail();
    return hooks::read(fd, buf, count);
}

ssize_t write(int fd, const void* buf, size_t count) {
    const char* bytes = static_cast<const char*>(buf);
    ssize_t r = send_all(fd, 0, count, [&](size_t done) {
        return real::get().send(fd, bytes + done, count - done, MSG_DONTWAIT);
    });
    if (r >= 0 || errno != ENOTSOCK) return r;
    iovec one{const_cast<void*>(buf), count};
    return write_nowait(fd, &one, 1, [&] { return write_other(fd, &one, 1); });
}

ssize_t readv(int fd, const iovec* iov, int iovcnt) {
    if (iovcnt <= 0 || iovcnt > IOV_MAX) return real::get().readv(fd, iov, iovcnt);  // 0 / EINVAL
    msghdr msg{};
    msg.msg_iov = const_cast<iovec*>(iov);
    msg.msg_iovlen = static_cast<size_t>(iovcnt);
    ssize_t r = real::get().recvmsg(fd, &msg, MSG_DONTWAIT);
    if (r < 0 && errno == EAGAIN) {
        // As for read: buffers of zero total length return 0 at once.
        IovCursor cursor(iov, iovcnt);
        if (!cursor.valid() || cursor.total() == 0) return real::get().readv(fd, iov, iovcnt);
        r = socket_call(fd, 0, EPOLLIN, SO_RCVTIMEO, ParkReason::kRead,
                        [&] { return real::get().recvmsg(fd, &msg, MSG_DONTWAIT); });
    }
    if (r >= 0 || errno != ENOTSOCK) return r;
    return read_other(fd, iov, iovcnt, [&] {
        return read_when_ready(fd, iov, iovcnt, [&] { return real::get().readv(fd, iov, iovcnt); });
    });
}

ssize_t writev(int fd, const iovec* iov, int iovcnt) {
    if (iovcnt <= 0 || iovcnt > IOV_MAX) return real::get().writev(fd, iov, iovcnt);
    // The first attempt hands the program's iovec to the kernel as is, so a bad pointer is
    // reported as EFAULT; only a short send makes us copy the array to advance through it.
    msghdr msg{};
    msg.msg_iov = const_cast<iovec*>(iov);
    msg.msg_iovlen = static_cast<size_t>(iovcnt);
    ssize_t first = real::get().sendmsg(fd, &msg, MSG_DONTWAIT);
    if (first < 0 && errno == ENOTSOCK)
        return write_nowait(fd, iov, iovcnt, [&] { return write_other(fd, iov, iovcnt); });
    if (first < 0 && errno != EAGAIN) return -1;
    IovCursor rest(iov, iovcnt);
    size_t sent = first > 0 ? static_cast<size_t>(first) : 0;
    if (!rest.valid() || sent >= rest.total()) return first;
    rest.advance(sent);
    size_t advanced = 0;
    ssize_t more = send_all(fd, 0, rest.total() - sent, [&](size_t done) {
        rest.advance(done - advanced);
        advanced = done;
        msghdr next{};
        next.msg_iov = rest.data();
        next.msg_iovlen = static_cast<size_t>(rest.count());
        return real::get().sendmsg(fd, &next, MSG_DONTWAIT);
    });
    if (more >= 0) return static_cast<ssize_t>(sent) + more;
    return sent > 0 ? static_cast<ssize_t>(sent) : -1;
}

// ---------------------------------------------------------------------------------------
// sendfile, splice

namespace {

bool is_socket(int fd) {
    int type;
    socklen_t len = sizeof type;
    return getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) == 0;
}

constexpr size_t kSendfileChunk = 64 * 1024;
// After POLLOUT a socket has room for at least this much in any sane configuration.
constexpr size_t kSpliceToSocketChunk = 16 * 1024;

}  // namespace

// sendfile(2) into a blocking socket blocks until everything is queued, and no per-call
// flag makes it return instead. So the file is copied through a buffer: pread (a regular
// file never blocks) and our send (parks while the socket is full). Offsets, the partial
// count after a timeout or signal, SIGPIPE and the errors stay sendfile's. Anything else
// (a non-blocking socket, a pipe, a non-regular source) is the real call.
ssize_t sendfile(int out_fd, int in_fd, off_t* offset, size_t count) {
    const auto& real = real::get();
    if (count == 0 || user_nonblocking(out_fd) || !is_socket(out_fd) || !is_regular_file(in_fd))
        return real.sendfile(out_fd, in_fd, offset, count);
    off_t start;
    if (offset) {
        if (!copy_from_user(&start, offset, sizeof start)) return -1;
    } else if ((start = lseek(in_fd, 0, SEEK_CUR)) < 0) {
        return real.sendfile(out_fd, in_fd, offset, count);
    }
    count = std::min<size_t>(count, 0x7ffff000);  // sendfile's own cap per call
    std::vector<char> buffer(std::min(count, kSendfileChunk));
    size_t done = 0;
    int error = 0;
    while (done < count) {
        ssize_t n = pread(in_fd, buffer.data(), std::min(buffer.size(), count - done),
                          start + static_cast<off_t>(done));
        if (n <= 0) {
            if (n < 0) error = errno;
            break;
        }
        ssize_t sent = hooks::send(out_fd, buffer.data(), static_cast<size_t>(n), 0);
        if (sent < 0) {
            error = errno;
            break;
        }
        done += static_cast<size_t>(sent);
        if (sent < n) break;  // a timeout or a signal after part of it: report the part
    }
    if (done == 0 && error) {
        errno = error;
        return -1;
    }
    if (offset)
        *offset = start + static_cast<off_t>(done);
    else
        lseek(in_fd, start + static_cast<off_t>(done), SEEK_SET);
    return static_cast<ssize_t>(done);
}

ssize_t sendfile64(int out_fd, int in_fd, off64_t* offset, size_t count) {
    return hooks::sendfile(out_fd, in_fd, offset, count);
}

// splice(2) with SPLICE_F_NONBLOCK still blocks on a socket end, so each end is waited
// for first: a readable source, then a writable destination (into a blocking socket, at
// most 16 KiB per call, which POLLOUT guarantees room for). A pipe end that is not ready
// reports EAGAIN under SPLICE_F_NONBLOCK, and we wait again.
ssize_t splice(int in_fd, loff_t* in_off, int out_fd, loff_t* out_off, size_t len,
               unsigned int flags) {
    const auto& real = real::get();
    if ((flags & SPLICE_F_NONBLOCK) || len == 0)
        return real.splice(in_fd, in_off, out_fd, out_off, len, flags);
    const bool out_socket = is_socket(out_fd) && !user_nonblocking(out_fd);
    for (;;) {
        int fd = -1;
        uint32_t event = 0;
        if (!fails_or_returns_now(in_fd, true) && !ready_now(in_fd, POLLIN)) {
            fd = in_fd;
            event = EPOLLIN;
        } else if (!fails_or_returns_now(out_fd, false) && !ready_now(out_fd, POLLOUT)) {
            fd = out_fd;
            event = EPOLLOUT;
        } else {
            size_t n = out_socket ? std::min(len, kSpliceToSocketChunk) : len;
            ssize_t r = real.splice(in_fd, in_off, out_fd, out_off, n, flags | SPLICE_F_NONBLOCK);
            if (r >= 0 || errno != EAGAIN) return r;
            if (user_nonblocking(in_fd) || user_nonblocking(out_fd)) return r;
            fd = ready_now(in_fd, POLLIN) ? out_fd : in_fd;
            event = fd == in_fd ? EPOLLIN : EPOLLOUT;
        }
        if (!wait_ready(fd, event, event == EPOLLIN ? ParkReason::kRead : ParkReason::kWrite))
            return -1;
    }
}

// flock: a lock another process holds announces its release on no fd, so a blocking flock
// tries with LOCK_NB and sleeps between tries, 1 ms doubling to 64 ms (the lock is seen up to
// 64 ms after its release). The other fibers run meanwhile; errors are the kernel's.
int flock(int fd, int operation) {
    if (operation & (LOCK_NB | LOCK_UN)) return real::get().flock(fd, operation);
    unsigned backoff_ms = 1;
    for (;;) {
        int r = real::get().flock(fd, operation | LOCK_NB);
        if (r == 0 || errno != EWOULDBLOCK) return r;
        if (!backoff_sleep(&backoff_ms, kNoDeadline, ParkReason::kSleep)) return -1;
    }
}

}  // namespace green::hooks
