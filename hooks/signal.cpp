// sigaction and signal: so that a handler interrupts a parked call as it interrupts a
// blocked thread. libgreen installs a trampoline that runs the program's handler and then
// tells the runtime (green::signal_arrived); the program always sees its own handler, flags
// and mask when it asks. Synchronous signals (faults) pass straight through: no call is
// parked on them, and the runtime's own stack-overflow handler lives there.
#include <signal.h>
#include <sys/syscall.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>

#include "hooks/hooks.h"
#include "hooks/wait.h"
#include "runtime/spinlock.h"
#include "runtime/tls.h"

namespace green::hooks {

// Per carrier thread, not per fiber (tls::per_thread): a handler that ran on the scheduler or
// on another fiber still ends this carrier's pause and sigsuspend.
thread_local unsigned t_handlers_run = 0;

namespace {

SpinLock g_lock;                   // serialises sigaction calls; never taken in a handler
struct sigaction g_program[NSIG];  // what the program installed, as it installed it
bool g_known[NSIG];

bool synchronous(int sig) {
    return sig == SIGSEGV || sig == SIGBUS || sig == SIGILL || sig == SIGFPE || sig == SIGTRAP ||
           sig == SIGSYS;
}

bool is_handler(const struct sigaction& a) {
    return a.sa_handler != SIG_DFL && a.sa_handler != SIG_IGN;
}

// The accept guard's timer signal (see accept_guard_arm): SIGURG, which Go's runtime also
// borrows for the same reason — ignored by default and rarely used by programs.
constexpr int kGuardSignal = SIGURG;
// The kernel's SIGURG handler is our trampoline (the monitor's thread reads it too).
std::atomic<bool> g_guard_installed{false};
thread_local bool t_guard_armed = false;
thread_local bool t_guard_fired = false;
// One timer per carrier thread (tls::per_thread), not one per fiber that ever accepts.
thread_local timer_t t_guard_timer;
thread_local pid_t t_guard_timer_pid = 0;  // timers do not survive fork: remade in a child

// The watchdog's request for a backtrace (sample_thread) is kGuardSignal sent with
// rt_tgsigqueueinfo, si_code SI_QUEUE and this tag's address: nothing else sends that.
const char g_sample_tag = 0;
std::atomic<StallSample*> g_sample_request{nullptr};
// The monitor's preemption request (preempt_thread): the same signal, with this tag.
const char g_preempt_tag = 0;

bool tagged(const siginfo_t* info, const char* tag) {
    return info && info->si_code == SI_QUEUE && info->si_value.sival_ptr == tag;
}

// The kernel restarts an accept the guard's signal interrupted (the trampoline has SA_RESTART
// for the sake of the monitor's signals, which must not make a call fail): it has put the
// thread back on the system call instruction with the call's number in rax. The guard wants
// EINTR instead, which is what accept then returns.
void fail_restarted_accept(void* context) {
    if (!context) return;
    greg_t* regs = static_cast<ucontext_t*>(context)->uc_mcontext.gregs;
    const auto* insn = reinterpret_cast<const unsigned char*>(regs[REG_RIP]);
    if ((regs[REG_RAX] == SYS_accept || regs[REG_RAX] == SYS_accept4) && insn[0] == 0x0f &&
        insn[1] == 0x05) {
        regs[REG_RAX] = -EINTR;
        regs[REG_RIP] += 2;
    }
}

// GREEN_STATS_SIGNAL: the runtime owns that signal (install_stats_signal).
int g_stats_signal = 0;
const char* g_stats_path = nullptr;

void trampoline(int sig, siginfo_t* info, void* context) {
    if (sig == kGuardSignal && info && info->si_code == SI_TIMER && t_guard_armed) {
        t_guard_fired = true;  // ours: it only ends the accept it guards
        fail_restarted_accept(context);
        return;
    }
    if (sig == kGuardSignal && tagged(info, &g_sample_tag)) {
        int saved = errno;
        if (StallSample* sample = g_sample_request.load(std::memory_order_acquire))
            take_stall_sample(sample, context);
        errno = saved;
        return;
    }
    if (sig == kGuardSignal && tagged(info, &g_preempt_tag)) {
        int saved = errno;
        preempt_in_handler(context);
        errno = saved;
        return;
    }
    if (sig == g_stats_signal) {
        int saved = errno;
        write_stats(g_stats_path, "signal");
        errno = saved;
    }
    struct sigaction a = g_program[sig];
    if (!is_handler(a) && !(a.sa_flags & SA_SIGINFO)) return;  // SIGURG left at SIG_DFL/SIG_IGN
    const uint64_t mask_on_entry = signal_handler_starts();
    if (a.sa_flags & SA_RESETHAND) {
        // The kernel has already reset the disposition; say so to a later sigaction query.
        g_program[sig].sa_handler = SIG_DFL;
        g_program[sig].sa_flags &= ~(SA_SIGINFO | SA_RESETHAND);
    }
    ++t_signal_handler_depth;  // the runtime defers what the handler asks of it (spinlock.h)
    if (a.sa_flags & SA_SIGINFO)
        a.sa_sigaction(sig, info, context);
    else if (is_handler(a))
        a.sa_handler(sig);
    --t_signal_handler_depth;
    int saved = errno;
    ++tls::per_thread(t_handlers_run);
    signal_arrived(sig, (a.sa_flags & SA_RESTART) != 0);
    uint64_t restored = 0;  // what sigreturn gives the kernel: the interrupted context's mask
    if (context) std::memcpy(&restored, &static_cast<ucontext_t*>(context)->uc_sigmask, 8);
    signal_handler_ends(restored, mask_on_entry);
    errno = saved;
}

// What the kernel gets for `sig` when the program wants `wanted`: the trampoline for the
// program's handlers and for the signals the runtime owns (the accept guard's, which the
// monitor also sends, and the stats signal). Those restart the interrupted call unless the
// program's own handler says otherwise: a dump or a preemption interrupts nothing (the guard
// makes its accept fail itself: fail_restarted_accept). `taking`: the runtime takes `sig` now.
struct sigaction kernel_action(int sig, const struct sigaction& wanted, bool taking = false) {
    struct sigaction install = wanted;
    bool guard = sig == kGuardSignal && (g_guard_installed || taking);
    bool stats = sig == g_stats_signal;
    if (is_handler(wanted) || guard || stats) {
        install.sa_sigaction = trampoline;
        install.sa_flags |= SA_SIGINFO;
    }
    if ((stats || guard) && !is_handler(wanted)) install.sa_flags |= SA_RESTART;
    return install;
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
        struct sigaction install = kernel_action(sig, wanted);
        if (real::get().sigaction(sig, &install, nullptr) != 0) return -1;  // SIGKILL, SIGSTOP
        g_program[sig] = wanted;
        g_known[sig] = true;
    }
    if (old) *old = previous;
    return 0;
}

// pthread_sigmask and sigprocmask act on the calling fiber's mask. While a fiber runs its mask
// is the carrier thread's (Carrier::resume), so the kernel's is changed first, exactly as for
// a thread: it validates `how`, writes the old mask, and runs the handlers of pending signals
// the change unblocks before it returns. Then the runtime records the fiber's new mask.
int pthread_sigmask(int how, const sigset_t* set, sigset_t* old) {
    if (disabled() || !current_fiber()) return real::get().pthread_sigmask(how, set, old);
    uint64_t wanted = 0;
    if (set) std::memcpy(&wanted, set, sizeof wanted);  // first: `old` may be `set`
    sigset_t local;
    sigset_t* out = old ? old : &local;  // the kernel writes its 8 bytes only, as natively
    int r = real::get().pthread_sigmask(how, set, out);
    if (r != 0 || !set) return r;
    uint64_t mask;
    std::memcpy(&mask, out, sizeof mask);
    if (how == SIG_BLOCK)
        mask |= wanted;
    else if (how == SIG_UNBLOCK)
        mask &= ~wanted;
    else
        mask = wanted;
    // Never blocked: SIGKILL and SIGSTOP (the kernel), SIGCANCEL and SIGSETXID (glibc).
    constexpr auto bit = [](int sig) { return uint64_t{1} << (sig - 1); };
    mask &= ~(bit(SIGKILL) | bit(SIGSTOP) | bit(32) | bit(33));
    set_fiber_sigmask(mask);
    return 0;
}

int sigprocmask(int how, const sigset_t* set, sigset_t* old) {
    int r = hooks::pthread_sigmask(how, set, old);
    if (r == 0) return 0;
    errno = r;
    return -1;
}

// glibc's signal() has BSD semantics: the handler stays installed, the signal is blocked
// while it runs, and interrupted calls restart (SA_RESTART).
namespace {

// signal() and sysv_signal(): `handler` with `flags`, the signal itself blocked while it runs
// when `block_itself`; the previous handler, or SIG_ERR with EINVAL as glibc checks.
sighandler_t set_handler(int sig, sighandler_t handler, int flags, bool block_itself) {
    if (handler == SIG_ERR || sig <= 0 || sig >= NSIG) {
        errno = EINVAL;
        return SIG_ERR;
    }
    struct sigaction act {
    }, old{};
    act.sa_handler = handler;
    sigemptyset(&act.sa_mask);
    if (block_itself) sigaddset(&act.sa_mask, sig);
    act.sa_flags = flags;
    if (hooks::sigaction(sig, &act, &old) < 0) return SIG_ERR;
    return old.sa_handler;
}

}  // namespace

sighandler_t signal(int sig, sighandler_t handler) {
    return set_handler(sig, handler, SA_RESTART, true);
}

// The System V calls. glibc builds them on its internal sigaction, which no hook sees: the
// program's handler then reached the kernel directly and interrupted no parked call. Here
// they are built on ours, with glibc's flags and checks.

// sysv_signal: the handler is reset when the signal comes, the signal is not blocked while it
// runs, and interrupted calls fail with EINTR.
sighandler_t sysv_signal(int sig, sighandler_t handler) {
    return set_handler(sig, handler, SA_RESETHAND | SA_NODEFER | SA_INTERRUPT, false);
}

// siginterrupt: calls interrupted by `sig` fail with EINTR (flag != 0) or restart.
int siginterrupt(int sig, int flag) {
    struct sigaction action;
    if (hooks::sigaction(sig, nullptr, &action) < 0) return -1;
    if (flag)
        action.sa_flags &= ~SA_RESTART;
    else
        action.sa_flags |= SA_RESTART;
    return hooks::sigaction(sig, &action, nullptr);
}

// sigset: a handler that stays installed (the signal is unblocked), or SIG_HOLD (blocked).
// Returns the previous disposition, or SIG_HOLD if the signal was blocked.
sighandler_t sigset(int sig, sighandler_t disp) {
    if (disp == SIG_ERR || sig <= 0 || sig >= NSIG) {
        errno = EINVAL;
        return SIG_ERR;
    }
    sigset_t one, old_mask;
    sigemptyset(&one);
    sigaddset(&one, sig);
    struct sigaction old {};
    if (disp == SIG_HOLD) {
        if (hooks::pthread_sigmask(SIG_BLOCK, &one, &old_mask) != 0) return SIG_ERR;
        if (sigismember(&old_mask, sig)) return SIG_HOLD;
        if (hooks::sigaction(sig, nullptr, &old) < 0) return SIG_ERR;
        return old.sa_handler;
    }
    struct sigaction act {};
    act.sa_handler = disp;
    sigemptyset(&act.sa_mask);
    if (hooks::sigaction(sig, &act, &old) < 0) return SIG_ERR;
    if (hooks::pthread_sigmask(SIG_UNBLOCK, &one, &old_mask) != 0) return SIG_ERR;
    return sigismember(&old_mask, sig) ? SIG_HOLD : old.sa_handler;
}

// A blocking accept on a listener shared with other processes (pre-fork servers) may lose
// the connection poll announced to another process, and then block the carrier until the
// next one. No per-call flag makes accept non-blocking, and changing the listener's flags
// or timeout would show in the other processes. So a timer aimed at this thread sends
// kGuardSignal every 10 ms during the call; accept fails with EINTR and the fiber waits again.
namespace {

// Puts the trampoline under `sig`, a signal the runtime takes, keeping what the program
// installed (or the default) as the program's handler. Under g_lock.
bool take_signal(int sig) {
    if (!g_known[sig] && real::get().sigaction(sig, nullptr, &g_program[sig]) != 0) return false;
    g_known[sig] = true;
    struct sigaction install = kernel_action(sig, g_program[sig], true);
    return real::get().sigaction(sig, &install, nullptr) == 0;
}

bool install_guard_trampoline() {
    if (g_guard_installed) return true;
    SpinGuard hold(g_lock);
    if (!g_guard_installed) g_guard_installed.store(take_signal(kGuardSignal));
    return g_guard_installed;
}

}  // namespace

bool install_stats_signal(int sig, const char* path) {
    SpinGuard hold(g_lock);
    g_stats_path = path;
    g_stats_signal = sig;
    if (take_signal(sig)) return true;
    g_stats_signal = 0;
    return false;
}

namespace {

// From the monitor thread: kGuardSignal to carrier thread `tid`, tagged with `tag`.
bool send_tagged(int tid, const char* tag) {
    if (!install_guard_trampoline()) return false;
    siginfo_t info{};
    info.si_signo = kGuardSignal;
    info.si_code = SI_QUEUE;
    info.si_pid = getpid();
    info.si_uid = getuid();
    info.si_value.sival_ptr = const_cast<char*>(tag);
    return syscall(SYS_rt_tgsigqueueinfo, getpid(), tid, kGuardSignal, &info) == 0;
}

}  // namespace

// On the monitor thread: the carrier thread `tid` takes the sample in its handler. Up to
// 200 ms: a thread that blocks SIGURG (or is stopped) does not answer.
bool sample_thread(int tid, StallSample* sample) {
    g_sample_request.store(sample, std::memory_order_release);
    bool taken = false;
    if (send_tagged(tid, &g_sample_tag)) {
        for (int i = 0; i < 200 && !taken; ++i) {
            taken = sample->taken.load(std::memory_order_acquire);
            if (!taken) {
                timespec ms{0, 1000000};
                real::get().nanosleep(&ms, nullptr);
            }
        }
    }
    g_sample_request.store(nullptr, std::memory_order_release);
    return taken;
}

void preempt_thread(int tid) {
    send_tagged(tid, &g_preempt_tag);
}

bool accept_guard_arm() {
    if (!install_guard_trampoline()) return false;
    pid_t pid = own_pid();
    timer_t& guard_timer = tls::per_thread(t_guard_timer);
    pid_t& guard_timer_pid = tls::per_thread(t_guard_timer_pid);
    if (guard_timer_pid != pid) {
        sigevent event{};
        event.sigev_notify = SIGEV_THREAD_ID;
        event.sigev_signo = kGuardSignal;
        event._sigev_un._tid = static_cast<pid_t>(syscall(SYS_gettid));
        if (real::get().timer_create(CLOCK_MONOTONIC, &event, &guard_timer) != 0) return false;
        guard_timer_pid = pid;
    }
    // Every 10 ms until disarmed: a first expiry that comes before the thread has entered
    // accept (a busy machine may not run it for that long) is followed by another.
    itimerspec in_10ms{};
    in_10ms.it_value.tv_nsec = 10 * 1000 * 1000;
    in_10ms.it_interval = in_10ms.it_value;
    t_guard_fired = false;
    t_guard_armed = true;
    timer_settime(guard_timer, 0, &in_10ms, nullptr);
    return true;
}

bool accept_guard_disarm() {
    itimerspec off{};
    timer_settime(tls::per_thread(t_guard_timer), 0, &off, nullptr);
    t_guard_armed = false;
    return t_guard_fired;
}

// A signal the runtime sent itself (the accept guard's timer on this thread, the watchdog's
// tagged request), for sigwait and friends, which may dequeue one when the program blocks
// SIGURG and waits for it.
bool runtime_signal(const siginfo_t& info) {
    if (info.si_signo != kGuardSignal) return false;
    if (info.si_code == SI_QUEUE)
        return tagged(&info, &g_sample_tag) || tagged(&info, &g_preempt_tag);
    return info.si_code == SI_TIMER && t_guard_timer_pid == own_pid() &&
           info.si_timerid == static_cast<int>(reinterpret_cast<intptr_t>(t_guard_timer));
}

void lock_signal_table() { g_lock.lock(); }
void unlock_signal_table() { g_lock.unlock(); }

}  // namespace green::hooks
