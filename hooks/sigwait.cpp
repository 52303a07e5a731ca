// sigwait, sigwaitinfo, sigtimedwait: park the calling fiber, not its carrier, until a signal
// of the set is pending. Never blocks the carrier: the kernel is only asked with a zero
// timeout, and the wait is on a signalfd for the set in the carrier's epoll set.
//
// The signals waited for are blocked (sigwait(3) requires it; the fiber's own mask), and stay
// blocked while its carrier idles (Carrier::idle_mask). A pending one, sent to the process or to
// the carrier thread, makes the signalfd readable for the carrier; the fiber then takes it with
// rt_sigtimedwait and a zero timeout, so the kernel itself dequeues it and fills the siginfo_t
// exactly as for a blocked thread. A signal of the set that is not blocked runs its handler
// instead, as it does natively whenever it arrives before the thread is inside the call.
#include <signal.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "hooks/deadline.h"
#include "hooks/hooks.h"
#include "hooks/wait.h"

namespace green::hooks {
namespace {

constexpr size_t kKernelSigsetBytes = (NSIG - 1) / 8;  // 64 signals

// One dequeue without waiting: the signal number, or -1 with errno (EAGAIN: none pending).
// The runtime's own uses of SIGURG (the accept guard's timer, the watchdog's request), taken
// here only if the program blocks SIGURG and waits for it, are dropped, not reported.
int take_pending(const sigset_t* set, siginfo_t* info) {
    siginfo_t local;
    siginfo_t* out = info ? info : &local;
    const timespec now{0, 0};
    for (;;) {
        int sig = real::get().sigtimedwait(set, out, &now);
        if (sig < 0 || !runtime_signal(*out)) return sig;
    }
}

// The shared body: `timeout` null waits for ever. As rt_sigtimedwait(2): EINVAL for a bad
// timeout (checked before anything is taken), EAGAIN when it passes, EINTR when a handler for
// another signal interrupts the wait (never restarted, whatever SA_RESTART says).
int wait_for_signal(const sigset_t* set, siginfo_t* info, const timespec* timeout) {
    sigset_t wanted;  // the kernel reads its own sigset_t: _NSIG bits, not glibc's 1024
    sigemptyset(&wanted);
    if (!copy_from_user(&wanted, set, kKernelSigsetBytes)) return -1;  // EFAULT, as the kernel
    uint64_t deadline = kNoDeadline;
    bool poll_only = false;
    if (timeout) {
        timespec t;
        if (!kernel_timespec(timeout, &t)) return -1;
        deadline = deadline_after(t);  // saturating: a far-future timeout is never reached
        poll_only = t.tv_sec == 0 && t.tv_nsec == 0;
    }
    int sig = take_pending(&wanted, info);
    if (sig >= 0 || errno != EAGAIN) return sig;
    if (poll_only) return -1;  // EAGAIN

    int fd = signalfd(-1, &wanted, SFD_NONBLOCK | SFD_CLOEXEC);
    if (fd < 0) return -1;  // EMFILE, ENOMEM: what a failed wait can report
    // While the carrier idles these stay blocked, pending for this signalfd, even if another
    // fiber accepts them: a thread in sigwait is the kernel's first choice for them too.
    uint64_t awaited;
    std::memcpy(&awaited, &wanted, sizeof awaited);
    set_sigwait_set(awaited);
    for (;;) {
        // Parked as poll parks: a handler interrupts it as one blocked call. (kSignal is for
        // pause and sigsuspend: every handler wakes all of those, and not as an interruption.)
        WaitResult r = wait_fd(fd, EPOLLIN, deadline, ParkReason::kPoll);
        sig = take_pending(&wanted, info);
        if (sig >= 0 || errno != EAGAIN) break;
        if (r == WaitResult::kInterrupted) {
            interruption_restarts();  // signal(7): these calls never restart
            errno = EINTR;
            break;
        }
        if (r == WaitResult::kTimedOut) {
            errno = EAGAIN;
            break;
        }
        // Ready, but another fiber (or thread) took it first; or a spurious wake-up.
    }
    int saved = errno;
    set_sigwait_set(0);
    fd_closing(fd);
    real::get().close(fd);
    errno = saved;
    return sig;
}

}  // namespace

int sigtimedwait(const sigset_t* set, siginfo_t* info, const timespec* timeout) {
    return wait_for_signal(set, info, timeout);
}

int sigwaitinfo(const sigset_t* set, siginfo_t* info) {
    return wait_for_signal(set, info, nullptr);
}

// As glibc: the error number, never EINTR (a handler's interruption waits again).
int sigwait(const sigset_t* set, int* sig) {
    int r;
    do {
        r = wait_for_signal(set, nullptr, nullptr);
    } while (r < 0 && errno == EINTR);
    if (r < 0) return errno;
    *sig = r;
    return 0;
}

}  // namespace green::hooks
