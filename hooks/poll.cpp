// poll, ppoll, select, pselect and the epoll_wait family. Each first asks the kernel with a
// zero timeout (which also validates the arguments exactly as the real call does), then
// parks on the fds (for epoll, on the epoll fd itself, which is readable when it has
// events), and on any wake-up asks the kernel again: what the program gets back is always
// the kernel's own answer. A signal handler ends the wait with EINTR, whatever SA_RESTART
// says, as signal(7) specifies for these calls. The sigmask of the p-variants is the calling
// fiber's for the duration of the call (pthread_sigmask is per fiber: hooks/signal.cpp).
#include <poll.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/select.h>

#include <climits>
#include <cstring>
#include <vector>

#include "hooks/deadline.h"
#include "hooks/hooks.h"
#include "hooks/wait.h"
#include "runtime/tls.h"

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

// A relative timespec timeout (NULL: none), validated as the kernel does. False with EINVAL
// or EFAULT for a bad one.
bool relative_deadline(const timespec* timeout, uint64_t* deadline, bool* immediate) {
    *deadline = kNoDeadline;
    *immediate = false;
    if (!timeout) return true;
    timespec t;
    if (!kernel_timespec(timeout, &t)) return false;
    *immediate = t.tv_sec == 0 && t.tv_nsec == 0;
    *deadline = deadline_after(t);
    return true;
}

// select's timeval as glibc hands it to the kernel (pselect6): negative fields are EINVAL,
// microseconds beyond a second carry into the seconds, saturating on overflow.
bool select_span(const timeval& limit, timespec* span) {
    if (limit.tv_sec < 0 || limit.tv_usec < 0) return false;
    const int64_t carry = limit.tv_usec / 1000000;
    if (carry > INT64_MAX - limit.tv_sec) {
        *span = timespec{INT64_MAX, kNsPerSec - 1};
    } else {
        *span = timespec{static_cast<time_t>(limit.tv_sec + carry),
                         static_cast<long>(limit.tv_usec % 1000000 * 1000)};
    }
    return true;
}

// select's end time as Linux computes it: CLOCK_MONOTONIC now plus the span, the seconds
// saturating on overflow (timespec64_add_safe).
timespec select_end(const timespec& span) {
    timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    timespec end;
    uint64_t sec = static_cast<uint64_t>(now.tv_sec) + static_cast<uint64_t>(span.tv_sec);
    int64_t nsec = now.tv_nsec + span.tv_nsec;
    if (nsec >= kNsPerSec) {
        nsec -= kNsPerSec;
        ++sec;
    }
    if (sec > static_cast<uint64_t>(INT64_MAX))
        end = timespec{INT64_MAX, 0};
    else
        end = timespec{static_cast<time_t>(sec), static_cast<long>(nsec)};
    return end;
}

// What Linux writes back into select's timeout: the time left until `end`, at least zero.
timeval select_time_left(const timespec& end) {
    timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    __int128 left = (static_cast<__int128>(end.tv_sec) - now.tv_sec) * kNsPerSec +
                    (end.tv_nsec - now.tv_nsec);
    if (left < 0) left = 0;
    return timeval{static_cast<time_t>(left / kNsPerSec),
                   static_cast<suseconds_t>(left % kNsPerSec / 1000)};
}

// The signal mask of ppoll, pselect and epoll_pwait, the fiber's for the whole call, as the
// kernel sets it before it looks at the fds. A pending signal that it unblocks runs its handler
// as it is set; the call then fails with EINTR unless an fd is ready (the kernel's order).
class SigmaskDuringWait {
public:
    explicit SigmaskDuringWait(const sigset_t* mask) : active_(mask != nullptr) {
        if (!active_) return;
        sigset_t wanted;
        sigemptyset(&wanted);
        if (!copy_from_user(&wanted, mask, 8)) {  // the kernel's 8 bytes; EFAULT as it
            active_ = false;
            failed_ = true;
            return;
        }
        unsigned before = tls::per_thread(t_handlers_run);
        hooks::pthread_sigmask(SIG_SETMASK, &wanted, &saved_);
        interrupted_ = tls::per_thread(t_handlers_run) != before;
    }
    ~SigmaskDuringWait() {
        if (active_) hooks::pthread_sigmask(SIG_SETMASK, &saved_, nullptr);
    }
    SigmaskDuringWait(const SigmaskDuringWait&) = delete;
    SigmaskDuringWait& operator=(const SigmaskDuringWait&) = delete;
    bool failed() const { return failed_; }            // errno is EFAULT
    bool interrupted() const { return interrupted_; }  // a handler ran as it was set

  private:
    bool active_;
    bool failed_ = false;
    bool interrupted_ = false;
    sigset_t saved_;
};

// After the first look found nothing: -1 with EINTR if the mask let a handler run, else 0.
int nothing_ready(const SigmaskDuringWait& mask) {
    if (!mask.interrupted()) return 0;
    errno = EINTR;
    return -1;
}

enum class Wake { kLook, kDeadline, kSignal };

// Parks on `waiters` (or just sleeps when there are none) until one is ready, closed, the
// deadline passes, or a signal handler runs.
Wake wait_any(std::vector<FdWaiter>& waiters, uint64_t deadline) {
    WaitResult r = waiters.empty()
                       ? sleep_until(deadline, ParkReason::kPoll)
                       : wait_fds(waiters.data(), waiters.size(), deadline, ParkReason::kPoll);
    if (r == WaitResult::kInterrupted) {
        interruption_restarts();  // consumed: these calls fail whatever the flags
        return Wake::kSignal;
    }
    if (r == WaitResult::kTimedOut) return Wake::kDeadline;
    return deadline == kNoDeadline || monotonic_now_ns() < deadline ? Wake::kLook
                                                                   : Wake::kDeadline;
}

// Waits on `waiters` and asks the kernel again (`look`) after each wake-up, until it
// reports something, the deadline passes (0) or a signal interrupts (EINTR).
template <typename Look>
int wait_and_look(std::vector<FdWaiter>& waiters, uint64_t deadline, Look look) {
    for (;;) {
        Wake wake = wait_any(waiters, deadline);
        int r = look();
        if (r != 0 || wake == Wake::kDeadline) return r;
        if (wake == Wake::kSignal) {
            errno = EINTR;
            return -1;
        }
    }
}

int poll_until(pollfd* fds, nfds_t nfds, uint64_t deadline, bool immediate,
               const sigset_t* sigmask) {
    SigmaskDuringWait mask(sigmask);
    if (mask.failed()) return -1;
    auto look = [&] {
        return unless_ours_interrupted([&] { return real::get().poll(fds, nfds, 0); });
    };
    int r = look();
    if (r != 0) return r;
    if (mask.interrupted() || immediate) return nothing_ready(mask);
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
    return wait_and_look(waiters, deadline, look);
}

// select and pselect. `report`, when set, receives the time not slept before `end` (select's
// timeval).
int select_until(int nfds, fd_set* readfds, fd_set* writefds, fd_set* exceptfds,
                 uint64_t deadline, bool immediate, const sigset_t* sigmask, timeval* report,
                 const timespec* end) {
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
    SigmaskDuringWait mask(sigmask);
    if (mask.failed()) return -1;
    // The kernel validates nfds, the sets and the fds now, exactly as for a blocking call.
    int r = unless_ours_interrupted(
        [&] { return real::get().select(nfds, readfds, writefds, exceptfds, &zero); });
    if (r == 0 && mask.interrupted()) r = nothing_ready(mask);
    if (r == 0 && may_wait && !immediate) {
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
        r = wait_and_look(waiters, deadline, [&] {
            for (int k = 0; k < 3; ++k)
                if (sets[k]) std::memcpy(sets[k], want[k].data(), set_bytes);
            return unless_ours_interrupted(
                [&] { return real::get().select(nfds, readfds, writefds, exceptfds, &zero); });
        });
    }
    if (report && end && (r >= 0 || errno == EINTR)) *report = select_time_left(*end);
    return r;
}

int epoll_until(int epfd, epoll_event* events, int maxevents, uint64_t deadline, bool immediate,
                const sigset_t* sigmask) {
    SigmaskDuringWait mask(sigmask);
    if (mask.failed()) return -1;
    auto look = [&] {
        return unless_ours_interrupted(
            [&] { return real::get().epoll_wait(epfd, events, maxevents, 0); });
    };
    int r = look();
    if (r != 0) return r;
    if (mask.interrupted() || immediate) return nothing_ready(mask);
    std::vector<FdWaiter> waiters(1);
    waiters[0].fd = epfd;
    waiters[0].events = EPOLLIN;  // an epoll fd is readable when it has events to report
    return wait_and_look(waiters, deadline, look);
}

}  // namespace

int poll(pollfd* fds, nfds_t nfds, int timeout) {
    return poll_until(fds, nfds, deadline_after_ms(timeout), timeout == 0, nullptr);
}

int __poll_chk(pollfd* fds, nfds_t nfds, int timeout, size_t fdslen) {
    if (fdslen / sizeof(*fds) < nfds) __chk_fail();
    return hooks::poll(fds, nfds, timeout);
}

// glibc's ppoll does not write the time left back into *timeout.
int ppoll(pollfd* fds, nfds_t nfds, const timespec* timeout, const sigset_t* sigmask) {
    uint64_t deadline;
    bool immediate;
    if (!relative_deadline(timeout, &deadline, &immediate)) return -1;
    return poll_until(fds, nfds, deadline, immediate, sigmask);
}

int __ppoll_chk(pollfd* fds, nfds_t nfds, const timespec* timeout, const sigset_t* sigmask,
                size_t fdslen) {
    if (fdslen / sizeof(*fds) < nfds) __chk_fail();
    return hooks::ppoll(fds, nfds, timeout, sigmask);
}

int select(int nfds, fd_set* readfds, fd_set* writefds, fd_set* exceptfds, timeval* timeout) {
    uint64_t deadline = kNoDeadline;
    bool immediate = false;
    timespec end;
    if (timeout) {
        timeval limit;
        if (!copy_from_user(&limit, timeout, sizeof limit)) return -1;
        timespec span;
        if (!select_span(limit, &span)) {
            errno = EINVAL;
            return -1;
        }
        immediate = span.tv_sec == 0 && span.tv_nsec == 0;
        deadline = deadline_after(span);
        end = select_end(span);
    }
    // Linux writes the time not slept back into *timeout.
    return select_until(nfds, readfds, writefds, exceptfds, deadline, immediate, nullptr, timeout,
                        timeout ? &end : nullptr);
}

// glibc's pselect does not write the time left back into *timeout.
int pselect(int nfds, fd_set* readfds, fd_set* writefds, fd_set* exceptfds,
            const timespec* timeout, const sigset_t* sigmask) {
    uint64_t deadline;
    bool immediate;
    if (!relative_deadline(timeout, &deadline, &immediate)) return -1;
    return select_until(nfds, readfds, writefds, exceptfds, deadline, immediate, sigmask,
                        nullptr, nullptr);
}

int epoll_wait(int epfd, epoll_event* events, int maxevents, int timeout) {
    return epoll_until(epfd, events, maxevents, deadline_after_ms(timeout), timeout == 0,
                       nullptr);
}

int epoll_pwait(int epfd, epoll_event* events, int maxevents, int timeout,
                const sigset_t* sigmask) {
    return epoll_until(epfd, events, maxevents, deadline_after_ms(timeout), timeout == 0,
                       sigmask);
}

int epoll_pwait2(int epfd, epoll_event* events, int maxevents, const timespec* timeout,
                 const sigset_t* sigmask) {
    uint64_t deadline;
    bool immediate;
    if (!relative_deadline(timeout, &deadline, &immediate)) return -1;
    return epoll_until(epfd, events, maxevents, deadline, immediate, sigmask);
}

}  // namespace green::hooks
