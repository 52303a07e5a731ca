// poll and select. Each first asks the kernel with a zero timeout (which also validates the
// arguments exactly as the real call does), then parks on every fd of the set, and on any
// wake-up asks the kernel again: the revents / fd_sets returned are always the kernel's own.
#include <poll.h>
#include <sys/select.h>

#include <cstring>
#include <vector>

#include "hooks/hooks.h"
#include "hooks/wait.h"

extern "C" void __chk_fail(void) __attribute__((noreturn));

namespace green::hooks {
namespace {

uint32_t epoll_events_of(short events) {
    uint32_t out = 0;
    if (events & (POLLIN | POLLRDNORM | POLLRDBAND)) out |= EPOLLIN;
    if (events & (POLLOUT | POLLWRNORM | POLLWRBAND)) out |= EPOLLOUT;
    if (events & POLLPRI) out |= EPOLLPRI;
    if (events & POLLRDHUP) out |= EPOLLRDHUP;
    return out;
}

uint64_t deadline_after_ms(int timeout_ms) {
    return timeout_ms < 0 ? kNoDeadline
                          : deadline_after_ns(static_cast<uint64_t>(timeout_ms) * 1000000ull);
}

enum class Wake { kLook, kDeadline, kSignal };

// Parks on `waiters` (or just sleeps when there are none) until one is ready, closed, the
// deadline passes, or a signal handler runs (poll and select are never restarted: EINTR).
Wake wait_any(std::vector<FdWaiter>& waiters, uint64_t deadline) {
    WaitResult r = waiters.empty()
                       ? sleep_until(deadline, ParkReason::kPoll)
                       : wait_fds(waiters.data(), waiters.size(), deadline, ParkReason::kPoll);
    if (r == WaitResult::kInterrupted) {
        interruption_restarts();  // consumed: poll and select fail whatever the flags
        return Wake::kSignal;
    }
    if (r == WaitResult::kTimedOut) return Wake::kDeadline;
    return deadline == kNoDeadline || monotonic_now_ns() < deadline ? Wake::kLook
                                                                   : Wake::kDeadline;
}

}  // namespace

int poll(pollfd* fds, nfds_t nfds, int timeout) {
    int r = real::get().poll(fds, nfds, 0);
    if (r != 0 || timeout == 0) return r;
    const uint64_t deadline = deadline_after_ms(timeout);
    // fds was read by the kernel just now: it is valid memory.
    std::vector<FdWaiter> waiters;
    for (nfds_t i = 0; i < nfds; ++i) {
        uint32_t events = epoll_events_of(fds[i].events);
        if (fds[i].fd < 0 || events == 0) continue;
        FdWaiter w;
        w.fd = fds[i].fd;
        w.events = events;
        waiters.push_back(w);
    }
    for (;;) {
        Wake wake = wait_any(waiters, deadline);
        r = real::get().poll(fds, nfds, 0);
        if (r != 0 || wake == Wake::kDeadline) return r;
        if (wake == Wake::kSignal) {
            errno = EINTR;
            return -1;
        }
    }
}

int __poll_chk(pollfd* fds, nfds_t nfds, int timeout, size_t fdslen) {
    if (fdslen / sizeof(*fds) < nfds) __chk_fail();
    return hooks::poll(fds, nfds, timeout);
}

int select(int nfds, fd_set* readfds, fd_set* writefds, fd_set* exceptfds, timeval* timeout) {
    timeval limit{};
    if (timeout) {
        if (!copy_from_user(&limit, timeout, sizeof limit)) return -1;
        if (limit.tv_sec < 0 || limit.tv_usec < 0) {
            errno = EINVAL;
            return -1;
        }
    }
    // Programs may pass sets larger than fd_set (nfds > FD_SETSIZE): copy nfds bits' worth.
    fd_set* sets[3] = {readfds, writefds, exceptfds};
    const size_t set_bytes =
        nfds > 0 ? (static_cast<size_t>(nfds) + 8 * sizeof(long) - 1) / (8 * sizeof(long)) *
                       sizeof(long)
                 : 0;
    std::vector<unsigned char> want[3];
    bool may_wait = nfds >= 0;
    for (int k = 0; k < 3 && may_wait; ++k) {
        if (!sets[k]) continue;
        want[k].resize(set_bytes);
        may_wait = copy_from_user(want[k].data(), sets[k], set_bytes);  // else: EFAULT below
    }
    timeval zero{0, 0};
    // The kernel validates nfds, the sets and the fds now, exactly as for a blocking call.
    int r = real::get().select(nfds, readfds, writefds, exceptfds, &zero);
    const bool forever = timeout == nullptr;
    const uint64_t wait_ns =
        forever ? 0
                : static_cast<uint64_t>(limit.tv_sec) * 1000000000ull +
                      static_cast<uint64_t>(limit.tv_usec) * 1000ull;
    if (r != 0 || !may_wait || (!forever && wait_ns == 0)) {
        if (timeout && r >= 0) *timeout = r > 0 ? limit : zero;
        return r;
    }
    const uint64_t deadline = forever ? kNoDeadline : deadline_after_ns(wait_ns);
    std::vector<FdWaiter> waiters;
    static const uint32_t kEvents[3] = {EPOLLIN, EPOLLOUT, EPOLLPRI};
    for (int fd = 0; fd < nfds; ++fd) {
        uint32_t events = 0;
        for (int k = 0; k < 3; ++k)
            if (sets[k] && (want[k][fd / 8] >> (fd % 8) & 1)) events |= kEvents[k];
        if (!events) continue;
        FdWaiter w;
        w.fd = fd;
        w.events = events;
        waiters.push_back(w);
    }
    for (;;) {
        Wake wake = wait_any(waiters, deadline);
        for (int k = 0; k < 3; ++k)
            if (sets[k]) std::memcpy(sets[k], want[k].data(), set_bytes);
        r = real::get().select(nfds, readfds, writefds, exceptfds, &zero);
        if (r != 0 || wake == Wake::kDeadline) break;
        if (wake == Wake::kSignal) {
            errno = EINTR;
            r = -1;  // the sets' contents are unspecified after EINTR; *timeout is updated
            break;
        }
    }
    if (timeout) {
        // Linux reports the time not slept in *timeout.
        uint64_t now = monotonic_now_ns();
        uint64_t left = deadline > now ? deadline - now : 0;
        timeout->tv_sec = static_cast<time_t>(left / 1000000000ull);
        timeout->tv_usec = static_cast<suseconds_t>(left % 1000000000ull / 1000);
    }
    return r;
}

}  // namespace green::hooks
