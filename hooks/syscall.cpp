// syscall(2): the numbers whose glibc function libgreen interposes behave as that function
// does under the shim (a futex wait parks, a close cannot take the runtime's fds and wakes
// waiters, a fork gives the child its own carrier state, a thread id is a fiber's); every
// other number is the kernel's.
#include <linux/sched.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sched.h>
#include <sys/syscall.h>

#include "hooks/hooks.h"
#include "hooks/wait.h"
#include "runtime/fork.h"

#include <atomic>

namespace green::hooks {
namespace {

std::atomic<bool> g_program_seccomp{false};

void note_seccomp(long result, bool installs) {
    if (result != 0 || !installs) return;
    g_program_seccomp.store(true, std::memory_order_relaxed);
    monitor_sandboxed();  // the filter may reach the monitor thread too (TSYNC)
}

long real_syscall(long n, long a1, long a2, long a3, long a4, long a5, long a6) {
    return real::get().syscall(n, a1, a2, a3, a4, a5, a6);
}

// A clone that makes a process, not a thread: no shared memory, no new stack (the child
// returns through this very frame, as fork's does).
bool forks(long number, long a1, long a2) {
    if (number == SYS_fork) return true;
    if (number == SYS_clone) return !(a1 & CLONE_VM) && a2 == 0;
    if (number == SYS_clone3) {
        const auto* args = reinterpret_cast<const clone_args*>(a1);
        clone_args copy{};
        if (!args || static_cast<size_t>(a2) < CLONE_ARGS_SIZE_VER0 ||
            !copy_from_user(&copy, args, CLONE_ARGS_SIZE_VER0))
            return false;  // the kernel reports what is wrong
        return !(copy.flags & CLONE_VM) && copy.stack == 0;
    }
    return false;
}

}  // namespace

bool filtered_and_alone() {
    return g_program_seccomp.load(std::memory_order_relaxed) && fibers_on_this_carrier() == 1;
}

int prctl5(int option, unsigned long a2, unsigned long a3, unsigned long a4, unsigned long a5) {
    int r = real::get().prctl(option, a2, a3, a4, a5);
    note_seccomp(r, option == PR_SET_SECCOMP);
    return r;
}

long syscall6(long number, long a1, long a2, long a3, long a4, long a5, long a6) {
    // The runtime's own threads (the monitor, which has a file table of its own) make raw
    // system calls precisely to reach the kernel.
    if (disabled() || on_internal_thread()) return real_syscall(number, a1, a2, a3, a4, a5, a6);
    switch (number) {
        case SYS_futex:
            return futex_call(number, a1, a2, a3, a4, a5, a6);
        case SYS_io_uring_enter:
        case SYS_io_getevents: {
            Fiber* self = current_fiber();
            if (!self || self->hook_depth != 0 || filtered_and_alone()) break;
            ++self->hook_depth;  // the hook's own calls are the real ones
            const int saved = errno;
            long r = number == SYS_io_getevents ? io_getevents_call(a1, a2, a3, a4, a5)
                                                : io_uring_enter_call(a1, a2, a3, a4, a5, a6);
            if (r >= 0) errno = saved;
            --self->hook_depth;
            return r;
        }
        case SYS_close:
            return hooks::close(static_cast<int>(a1));
        case SYS_close_range:
            return hooks::close_range(static_cast<unsigned>(a1), static_cast<unsigned>(a2),
                                      static_cast<int>(a3));
        case SYS_prctl:
            return hooks::prctl5(static_cast<int>(a1), static_cast<unsigned long>(a2),
                                 static_cast<unsigned long>(a3), static_cast<unsigned long>(a4),
                                 static_cast<unsigned long>(a5));
        case SYS_seccomp: {
            long r = real_syscall(number, a1, a2, a3, a4, a5, a6);
            note_seccomp(r, a1 == SECCOMP_SET_MODE_STRICT || a1 == SECCOMP_SET_MODE_FILTER);
            return r;
        }
        case SYS_gettid: {
            // The program's question on a spawned fiber (as gettid()); libgreen's own calls
            // (inside a hook) and the root fiber's are the kernel's.
            Fiber* self = current_fiber();
            if (self && !self->is_root && self->hook_depth == 0) return self->tid;
            break;
        }
        case SYS_tgkill:
            return hooks::tgkill(static_cast<pid_t>(a1), static_cast<pid_t>(a2),
                                 static_cast<int>(a3));
        case SYS_tkill:
            return hooks::tkill(static_cast<pid_t>(a1), static_cast<int>(a2));
        default:
            break;
    }
    if (forks(number, a1, a2)) {
        long pid = real_syscall(number, a1, a2, a3, a4, a5, a6);
        if (pid == 0) fork_child(false);
        return pid;
    }
    return real_syscall(number, a1, a2, a3, a4, a5, a6);
}

}  // namespace green::hooks
