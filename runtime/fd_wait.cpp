// fd readiness waits. Each carrier owns a private epoll set for the program's fds, which also
// holds libuv's backend fd: the scheduler sleeps there (poll_once). Registrations are
// EPOLLONESHOT: each wait arms the fd once, an event disarms it, so a registration left behind
// by an fd closed behind our back (fclose, glibc internals) never fires again. epoll_ctl
// leaves the fd's flags alone.
// Waiters are tagged with the fd's generation; close() bumps it, so stale events are dropped.
#include <sys/epoll.h>

#include <cerrno>

#include "runtime/carrier.h"

namespace green {

WaitResult wait_fd(int fd, uint32_t events, uint64_t deadline_ns, ParkReason reason) {
    FdWaiter waiter;
    waiter.fd = fd;
    waiter.events = events;
    return Carrier::current()->wait_fds(&waiter, 1, deadline_ns, reason);
}

WaitResult wait_fds(FdWaiter* waiters, size_t count, uint64_t deadline_ns, ParkReason reason) {
    return Carrier::current()->wait_fds(waiters, count, deadline_ns, reason);
}

void fd_closing(int fd) {
    if (Carrier* carrier = Carrier::current()) carrier->fd_closing(fd);
}

FdRecord& Carrier::record(int fd) {
    if (static_cast<size_t>(fd) >= fds_.size()) {
        size_t size = fds_.size() ? fds_.size() : 1024;
        while (size <= static_cast<size_t>(fd)) size *= 2;
        fds_.resize(size);
    }
    return fds_[fd];
}

static void link(FdRecord& rec, FdWaiter* w) {
    w->prev = nullptr;
    w->next = rec.waiters;
    if (rec.waiters) rec.waiters->prev = w;
    rec.waiters = w;
}

static void unlink(FdRecord& rec, FdWaiter* w) {
    if (w->prev)
        w->prev->next = w->next;
    else if (rec.waiters == w)
        rec.waiters = w->next;
    if (w->next) w->next->prev = w->prev;
    w->next = w->prev = nullptr;
}

// Arms the fd for the union of what its still-unwoken waiters want. An fd that epoll cannot
// watch (a regular file: EPERM) or that is gone (EBADF) counts as ready: the caller's retry
// of the real call then returns what a real thread would get.
void Carrier::arm(int fd) {
    FdRecord& rec = record(fd);
    uint32_t interest = 0;
    for (FdWaiter* w = rec.waiters; w; w = w->next)
        if (!w->revents && !w->closed) interest |= w->events;
    if (!interest) return;
    epoll_event ev{};
    ev.events = interest | EPOLLONESHOT;
    ev.data.u64 = static_cast<uint32_t>(fd) | (static_cast<uint64_t>(rec.gen) << 32);
    int rc = epoll_ctl(epoll_fd_, rec.in_epoll ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, fd, &ev);
    if (rc != 0 && errno == ENOENT) rc = epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev);
    if (rc != 0 && errno == EEXIST) rc = epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, fd, &ev);
    if (rc == 0) {
        rec.in_epoll = true;
        return;
    }
    for (FdWaiter* w = rec.waiters; w; w = w->next) {
        if (w->revents || w->closed) continue;
        w->revents = w->events;
        unpark(w->fiber);
    }
}

WaitResult Carrier::wait_fds(FdWaiter* waiters, size_t count, uint64_t deadline_ns,
                             ParkReason reason) {
    Fiber* self = current_fiber();
    for (size_t i = 0; i < count; ++i) {
        FdWaiter* w = &waiters[i];
        w->fiber = self;
        w->revents = 0;
        w->closed = false;
        link(record(w->fd), w);
    }
    for (size_t i = 0; i < count; ++i) arm(waiters[i].fd);

    bool woken_early = false;
    for (size_t i = 0; i < count; ++i) woken_early |= waiters[i].revents != 0;
    bool timed_out = woken_early ? false : park_until(deadline_ns, reason, true);

    bool ready = false, closed = false;
    for (size_t i = 0; i < count; ++i) {
        FdWaiter* w = &waiters[i];
        unlink(fds_[w->fd], w);
        ready |= w->revents != 0;
        closed |= w->closed;
    }
    if (closed) return WaitResult::kClosed;
    if (ready) {
        self->interrupted = 0;  // the call completes; the handler has run all the same
        return WaitResult::kReady;
    }
    if (self->interrupted) return WaitResult::kInterrupted;
    return timed_out ? WaitResult::kTimedOut : WaitResult::kReady;
}

void Carrier::poll_once(bool block) {
    constexpr int kBatch = 256;
    epoll_event events[kBatch];
    uv_update_time(&loop_);
    // 0 when libuv has work now (a due timer, pending callbacks); -1 when it has no timer.
    int libuv_timeout = uv_backend_timeout(&loop_);
    bool run_libuv = libuv_timeout == 0;
    int timeout = block ? libuv_timeout : 0;
    int n;
    do {
        n = epoll_wait(epoll_fd_, events, kBatch, timeout);
        if (n < 0) {
            run_libuv = true;  // EINTR: a signal's async wake-up may be waiting in libuv
            break;
        }
        if (n == 0 && timeout > 0) run_libuv = true;  // libuv's timer is due
        timeout = 0;
        for (int i = 0; i < n; ++i) {
            if (events[i].data.u64 == kLibuvTag) {
                run_libuv = true;
                continue;
            }
            int fd = static_cast<int>(events[i].data.u64 & 0xffffffffu);
            uint32_t gen = static_cast<uint32_t>(events[i].data.u64 >> 32);
            if (static_cast<size_t>(fd) >= fds_.size()) continue;
            FdRecord& rec = fds_[fd];
            if (rec.gen != gen) continue;  // an event for an fd number since closed
            uint32_t got = events[i].events;
            for (FdWaiter* w = rec.waiters; w; w = w->next) {
                if (w->revents || w->closed) continue;
                uint32_t hit = got & (w->events | EPOLLERR | EPOLLHUP);
                if (!hit) continue;
                w->revents = hit;
                unpark(w->fiber);
            }
            arm(fd);  // one-shot fired: re-arm for waiters that wanted something else
        }
    } while (n == kBatch);
    if (run_libuv) uv_run(&loop_, UV_RUN_NOWAIT);
}

void Carrier::fd_closing(int fd) {
    if (fd < 0 || static_cast<size_t>(fd) >= fds_.size()) return;
    FdRecord& rec = fds_[fd];
    for (FdWaiter* w = rec.waiters; w; w = w->next) {
        if (w->closed) continue;
        w->closed = true;
        unpark(w->fiber);
    }
    if (rec.in_epoll) {
        epoll_event unused{};
        epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, fd, &unused);
        rec.in_epoll = false;
    }
    ++rec.gen;
}

}  // namespace green
