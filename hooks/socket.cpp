// Socket calls. Data transfer uses MSG_DONTWAIT, so a socket's flags are never changed;
// accept waits for POLLIN, then accepts; connect is the one call with no per-call
// non-blocking form: O_NONBLOCK is set for the duration of that single syscall only.
#include <sys/socket.h>
#include <sys/uio.h>

#include "hooks/hooks.h"
#include "hooks/wait.h"

extern "C" void __chk_fail(void) __attribute__((noreturn));

namespace green::hooks {
namespace {

bool is_stream(int fd) {
    int type = 0;
    socklen_t len = sizeof type;
    return getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) == 0 && type == SOCK_STREAM;
}

// recv(MSG_WAITALL) on a stream socket returns only with `len` bytes, at EOF, or on an error
// or timeout (then with what it has). `attempt(done)` receives into the rest, non-blocking.
// As tcp_recvmsg and unix_stream_read_generic: SO_RCVTIMEO is read once and bounds the whole
// call (a trickling peer does not restart it); once part of the data is in, a timeout, an
// error or a signal handler ends the call with the count (under SA_RESTART too: the kernel
// returns `copied`, it does not restart); with nothing yet, a signal restarts the call or
// fails with EINTR as for a plain recv.
template <typename Attempt>
ssize_t receive(int fd, int flags, size_t len, Attempt attempt) {
    // The error queue never waits (ip_recv_error): EAGAIN at once when it is empty.
    if (flags & MSG_ERRQUEUE) return attempt(0, flags);
    const int once = flags & ~MSG_WAITALL;
    if (!(flags & MSG_WAITALL) || (flags & (MSG_PEEK | MSG_DONTWAIT)) || !is_stream(fd))
        return socket_call(fd, flags, EPOLLIN, SO_RCVTIMEO, ParkReason::kRead,
                           [&] { return attempt(0, once); });
    size_t done = 0;
    uint64_t deadline = 0;  // looked up on the first would-block, then kept for the call
    auto partial_or_fail = [&](int err) -> ssize_t {
        if (done > 0) return static_cast<ssize_t>(done);
        errno = err;
        return -1;
    };
    while (done < len) {
        ssize_t r = attempt(done, once);
        if (r > 0) {
            done += static_cast<size_t>(r);
            continue;
        }
        if (r == 0) break;  // end of stream
        if (errno != EAGAIN) return partial_or_fail(errno);
        if (user_nonblocking(fd)) return partial_or_fail(EAGAIN);
        if (deadline == 0) deadline = socket_deadline(fd, SO_RCVTIMEO);
        switch (wait_for(fd, EPOLLIN, deadline, ParkReason::kRead)) {
            case Waited::kClosed:
                return partial_or_fail(EBADF);
            case Waited::kTimedOut:
                return partial_or_fail(EAGAIN);
            case Waited::kInterrupted: {
                ssize_t result;
                if (ends_after_signal(done, deadline, &result)) return result;
                continue;
            }
            case Waited::kReady:
                break;
        }
    }
    return static_cast<ssize_t>(done);
}

bool listening(int fd) {
    int on = 0;
    socklen_t len = sizeof on;
    return getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &on, &len) == 0 && on;
}

template <typename Call>
int accept_call(int fd, Call call) {
    uint64_t deadline = 0;
    for (;;) {
        if (user_nonblocking(fd)) return call();
        if (ready_now(fd, POLLIN)) {
            // Another process sharing the listener may take the connection first: the guard
            // ends a blocking accept after 10 ms, and we wait again (accept_guard_arm).
            bool guarded = accept_guard_arm();
            int r = call();
            int saved = errno;
            bool fired = guarded && accept_guard_disarm();
            if (!(r < 0 && saved == EINTR && fired)) {
                errno = saved;
                return r;
            }
            continue;
        }
        if (deadline == 0) {
            if (!listening(fd)) return call();  // EINVAL / EOPNOTSUPP / ENOTSOCK, at once
            deadline = socket_deadline(fd, SO_RCVTIMEO);
        }
        switch (wait_for(fd, EPOLLIN, deadline, ParkReason::kAccept)) {
            case Waited::kClosed:
                errno = EBADF;
                return -1;
            case Waited::kTimedOut:
                errno = EAGAIN;
                return -1;
            case Waited::kInterrupted:
                if (restarts_after_signal(deadline)) break;
                errno = EINTR;
                return -1;
            case Waited::kReady:
                break;
        }
    }
}

}  // namespace

ssize_t recv(int fd, void* buf, size_t len, int flags) {
    char* bytes = static_cast<char*>(buf);
    return receive(fd, flags, len, [&](size_t done, int once) {
        return real::get().recv(fd, bytes + done, len - done, once | MSG_DONTWAIT);
    });
}

ssize_t recvfrom(int fd, void* buf, size_t len, int flags, sockaddr* addr, socklen_t* addrlen) {
    char* bytes = static_cast<char*>(buf);
    return receive(fd, flags, len, [&](size_t done, int once) {
        return real::get().recvfrom(fd, bytes + done, len - done, once | MSG_DONTWAIT, addr,
                                    addrlen);
    });
}

ssize_t recvmsg(int fd, msghdr* msg, int flags) {
    // The error queue never waits (ip_recv_error): EAGAIN at once when it is empty.
    if (flags & MSG_ERRQUEUE) return real::get().recvmsg(fd, msg, flags);
    // MSG_WAITALL is passed through to the kernel, which ignores it with MSG_DONTWAIT: a
    // recvmsg(MSG_WAITALL) returns what one wake-up brings (docs/compat.md).
    return socket_call(fd, flags, EPOLLIN, SO_RCVTIMEO, ParkReason::kRead,
                       [&] { return real::get().recvmsg(fd, msg, flags | MSG_DONTWAIT); });
}

ssize_t __recv_chk(int fd, void* buf, size_t len, size_t buflen, int flags) {
    if (len > buflen) __chk_fail();
    return hooks::recv(fd, buf, len, flags);
}

ssize_t __recvfrom_chk(int fd, void* buf, size_t len, size_t buflen, int flags, sockaddr* addr,
                       socklen_t* addrlen) {
    if (len > buflen) __chk_fail();
    return hooks::recvfrom(fd, buf, len, flags, addr, addrlen);
}

ssize_t send(int fd, const void* buf, size_t len, int flags) {
    const char* bytes = static_cast<const char*>(buf);
    return send_all(fd, flags, len, [&](size_t done) {
        return real::get().send(fd, bytes + done, len - done, flags | MSG_DONTWAIT);
    });
}

ssize_t sendto(int fd, const void* buf, size_t len, int flags, const sockaddr* addr,
               socklen_t addrlen) {
    const char* bytes = static_cast<const char*>(buf);
    return send_all(fd, flags, len, [&](size_t done) {
        return real::get().sendto(fd, bytes + done, len - done, flags | MSG_DONTWAIT, addr,
                                  addrlen);
    });
}

ssize_t sendmsg(int fd, const msghdr* msg, int flags) {
    ssize_t first = real::get().sendmsg(fd, msg, flags | MSG_DONTWAIT);
    if (first < 0 && (errno != EAGAIN || (flags & MSG_DONTWAIT))) return -1;
    // The kernel read *msg without complaint, so the header and its iovec are readable.
    IovCursor rest(msg->msg_iov, static_cast<int>(msg->msg_iovlen));
    size_t sent = first > 0 ? static_cast<size_t>(first) : 0;
    if (!rest.valid() || sent >= rest.total() || (flags & MSG_DONTWAIT)) return first;
    rest.advance(sent);
    size_t advanced = 0;
    ssize_t more = send_all(fd, flags, rest.total() - sent, [&](size_t done) {
        rest.advance(done - advanced);
        advanced = done;
        msghdr next = *msg;
        next.msg_iov = rest.data();
        next.msg_iovlen = static_cast<size_t>(rest.count());
        if (sent + done > 0) {  // ancillary data and the address go with the first byte only
            next.msg_control = nullptr;
            next.msg_controllen = 0;
        }
        return real::get().sendmsg(fd, &next, flags | MSG_DONTWAIT);
    });
    if (more >= 0) return static_cast<ssize_t>(sent) + more;
    return sent > 0 ? static_cast<ssize_t>(sent) : -1;
}

namespace {

// connect with O_NONBLOCK set for this one call only (the one visible change libgreen ever
// makes to an fd, undone before we return; no other fiber of this carrier can observe it).
int connect_nonblocking(int fd, const sockaddr* addr, socklen_t addrlen, int flags) {
    fcntl(fd, F_SETFL, flags | O_NONBLOCK);
    int r = real::get().connect(fd, addr, addrlen);
    int err = errno;
    fcntl(fd, F_SETFL, flags);
    errno = err;
    return r;
}

// The rest of a blocking connect whose first attempt said EINPROGRESS: park until the socket
// is writable, then ask the kernel, again without blocking, whether the connection is made.
// Linux keeps a socket whose non-blocking connect completed in the connecting state until
// connect is called again (a blocking connect leaves it connected: a later connect says
// EISCONN), so that last call is needed; made blocking, it would hold the carrier whenever a
// wait ends before the connection does (an fd the carrier's epoll set refuses counts as
// ready). The kernel says EALREADY then and we wait again, with a growing sleep between
// attempts so that a wait that keeps ending at once does not spin.
int finish_connect(int fd, const sockaddr* addr, socklen_t addrlen, int flags, uint64_t deadline) {
    unsigned backoff_ms = 0;  // non-zero once a wait ended with the connection still pending
    for (;;) {
        Waited w;
        // Interrupted: under SA_RESTART the connect goes on; without it, EINTR while the
        // connection completes in the background (a later connect says EALREADY), as Linux.
        while ((w = wait_for(fd, EPOLLOUT, deadline, ParkReason::kConnect)) ==
                   Waited::kInterrupted &&
               restarts_after_signal(deadline)) {
        }
        switch (w) {
            case Waited::kClosed:
                errno = EBADF;
                return -1;
            case Waited::kTimedOut:
                errno = EINPROGRESS;
                return -1;  // as Linux with SO_SNDTIMEO
            case Waited::kInterrupted:
                errno = EINTR;
                return -1;
            case Waited::kReady:
                break;
        }
        if (backoff_ms > 0 && !backoff_sleep(&backoff_ms, deadline, ParkReason::kConnect))
            return -1;
        int so_error = 0;
        socklen_t len = sizeof so_error;
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &so_error, &len) != 0) return -1;
        if (so_error != 0) {
            errno = so_error;
            return -1;
        }
        if (connect_nonblocking(fd, addr, addrlen, flags) == 0 || errno == EISCONN) return 0;
        if (errno != EALREADY && errno != EINPROGRESS) return -1;
        if (backoff_ms == 0) backoff_ms = 1;
    }
}

}  // namespace

int accept(int fd, sockaddr* addr, socklen_t* addrlen) {
    return accept_call(fd, [&] { return real::get().accept(fd, addr, addrlen); });
}

int accept4(int fd, sockaddr* addr, socklen_t* addrlen, int flags) {
    if (flags & ~(SOCK_NONBLOCK | SOCK_CLOEXEC))
        return real::get().accept4(fd, addr, addrlen, flags);
    return accept_call(fd, [&] { return real::get().accept4(fd, addr, addrlen, flags); });
}

int connect(int fd, const sockaddr* addr, socklen_t addrlen) {
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0 || (flags & O_NONBLOCK)) return real::get().connect(fd, addr, addrlen);
    uint64_t deadline = 0;
    unsigned backoff_ms = 1;
    for (;;) {
        int r = connect_nonblocking(fd, addr, addrlen, flags);
        int err = errno;
        if (r == 0) return 0;
        if (deadline == 0) deadline = socket_deadline(fd, SO_SNDTIMEO);
        if (err == EAGAIN) {
            // A Unix socket whose listener's backlog is full: a blocking connect waits for
            // room, which poll cannot tell us about; retry with a short, growing sleep.
            if (deadline != kNoDeadline && monotonic_now_ns() >= deadline) return -1;
            if (!backoff_sleep(&backoff_ms, deadline, ParkReason::kConnect)) return -1;
            continue;
        }
        if (err != EINPROGRESS) return -1;
        return finish_connect(fd, addr, addrlen, flags, deadline);
    }
}

}  // namespace green::hooks
