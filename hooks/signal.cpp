// sigaction and signal: so that a handler interrupts a parked call as it interrupts a
// blocked thread. libgreen installs a trampoline that runs the program's handler and then
// tells the runtime (green::signal_arrived); the program always sees its own handler, flags
// and mask when it asks. Synchronous signals (faults) pass straight through: no call is
// parked on them, and the runtime's own stack-overflow handler lives there.
#include <signal.h>

#include <cerrno>

#include "hooks/hooks.h"
#include "hooks/wait.h"
#include "runtime/spinlock.h"

namespace green::hooks {

thread_local unsigned t_handlers_run = 0;

namespace {

SpinLock g_lock;                     // serialises sigaction calls; never taken in a handler
struct sigaction g_program[NSIG];    // what the program installed, as it installed it
bool g_known[NSIG];

bool synchronous(int sig) {
    return sig == SIGSEGV || sig == SIGBUS || sig == SIGILL || sig == SIGFPE || sig == SIGTRAP ||
           sig == SIGSYS;
}

bool is_handler(const struct sigaction& a) {
    return a.sa_handler != SIG_DFL && a.sa_handler != SIG_IGN;
}

void trampoline(int sig, siginfo_t* info, void* context) {
    struct sigaction a = g_program[sig];
    if (a.sa_flags & SA_RESETHAND) {
        // The kernel has already reset the disposition; say so to a later sigaction query.
        g_program[sig].sa_handler = SIG_DFL;
        g_program[sig].sa_flags &= ~(SA_SIGINFO | SA_RESETHAND);
    }
    if (a.sa_flags & SA_SIGINFO)
        a.sa_sigaction(sig, info, context);
    else if (is_handler(a))
        a.sa_handler(sig);
    int saved = errno;
    ++t_handlers_run;
    signal_arrived((a.sa_flags & SA_RESTART) != 0);
    errno = saved;
}

}  // namespace

int sigaction(int sig, const struct sigaction* act, struct sigaction* old) {
    if (disabled() || sig <= 0 || sig >= NSIG || synchronous(sig))
        return real::get().sigaction(sig, act, old);  // also reports EINVAL for a bad number
    struct sigaction wanted;
    if (act && !copy_from_user(&wanted, act, sizeof wanted)) return -1;  // EFAULT, as the kernel
    SpinGuard hold(g_lock);
    struct sigaction previous;
    if (g_known[sig]) {
        previous = g_program[sig];
    } else if (real::get().sigaction(sig, nullptr, &previous) != 0) {
        return -1;
    }
    if (act) {
        struct sigaction install = wanted;
        if (is_handler(wanted)) {
            install.sa_sigaction = trampoline;
            install.sa_flags |= SA_SIGINFO;
        }
        if (real::get().sigaction(sig, &install, nullptr) != 0) return -1;  // SIGKILL, SIGSTOP
        g_program[sig] = wanted;
        g_known[sig] = true;
    }
    if (old) *old = previous;
    return 0;
}

// glibc's signal() has BSD semantics: the handler stays installed, the signal is blocked
// while it runs, and interrupted calls restart (SA_RESTART).
sighandler_t signal(int sig, sighandler_t handler) {
    if (handler == SIG_ERR || sig <= 0 || sig >= NSIG) {
        errno = EINVAL;
        return SIG_ERR;
    }
    struct sigaction act {}, old{};
    act.sa_handler = handler;
    sigemptyset(&act.sa_mask);
    sigaddset(&act.sa_mask, sig);
    act.sa_flags = SA_RESTART;
    if (hooks::sigaction(sig, &act, &old) < 0) return SIG_ERR;
    return old.sa_handler;
}

}  // namespace green::hooks
