// Waiting for child processes and for signals: waitpid, wait, wait3, wait4, waitid park the
// fiber until a child changes state; system() is rebuilt on posix_spawn and our waitpid
// (glibc's waits inside, where no hook can reach it); pause and sigsuspend park until a
// signal handler runs. A handler interrupts a wait as signal(7) says: wait* restart under
// SA_RESTART, pause and sigsuspend always fail with EINTR.
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "hooks/hooks.h"
#include "hooks/wait.h"
#include "runtime/resolver.h"
#include "runtime/spinlock.h"
#include "runtime/tls.h"

extern char** environ;

namespace green::hooks {

namespace {

// A parked wait looks again after a while, for what no pidfd reports: children forked by
// other fibers and stops (within 50 ms), and a child that a debugger in this process starts
// tracing after the wait began (the first look after 1 ms, then less and less often).
constexpr uint64_t kFirstRescanNs = 1'000'000;
constexpr uint64_t kRescanNs = 50'000'000;
constexpr uint64_t kOneChildRescanNs = 1'000'000'000;

// pidfds for the process's children (any of its threads' children may be waited for):
// readable when the child exits. Read from /proc/self/task/*/children.
std::vector<int> children_pidfds() {
    std::vector<int> fds;
    DIR* tasks = opendir("/proc/self/task");
    if (!tasks) return fds;
    while (dirent* task = readdir(tasks)) {
        if (task->d_name[0] == '.') continue;
        char path[300];
        snprintf(path, sizeof path, "/proc/self/task/%s/children", task->d_name);
        FILE* list = fopen(path, "re");
        if (!list) continue;
        long pid;
        while (fscanf(list, "%ld", &pid) == 1) {
            int fd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
            if (fd >= 0) fds.push_back(fd);
        }
        fclose(list);
    }
    closedir(tasks);
    return fds;
}

void close_all(const std::vector<int>& fds) {
    for (int fd : fds) {
        fd_closing(fd);
        real::get().close(fd);
    }
}

// Parks until a child the call waits for may have changed state, or `*rescan_ns` passed
// (then doubled, up to a cap). One child that can only exit: its pidfd. Otherwise every
// child's pidfd, and the timeout catches children forked meanwhile, and stops and continues
// (no fd reports those). False: a signal handler ran.
bool wait_for_children(idtype_t type, id_t id, bool exits_only, uint64_t* rescan_ns) {
    std::vector<int> fds;
    uint64_t cap = type == P_PID && exits_only ? kOneChildRescanNs : kRescanNs;
    uint64_t deadline = deadline_after_ns(*rescan_ns);
    *rescan_ns = *rescan_ns * 2 > cap ? cap : *rescan_ns * 2;
    if (type == P_PID && exits_only) {
        int fd = static_cast<int>(syscall(SYS_pidfd_open, id, 0));
        if (fd >= 0) fds.push_back(fd);
    } else if (exits_only) {
        fds = children_pidfds();
    }
    WaitResult r;
    if (fds.empty()) {
        r = sleep_until(deadline, ParkReason::kChild);
    } else {
        std::vector<FdWaiter> waiters(fds.size());
        for (size_t i = 0; i < fds.size(); ++i) {
            waiters[i].fd = fds[i];
            waiters[i].events = EPOLLIN;
        }
        r = wait_fds(waiters.data(), waiters.size(), deadline, ParkReason::kChild);
    }
    close_all(fds);
    return r != WaitResult::kInterrupted || interruption_restarts();
}

// Whether a thread of this process ptrace-traces `pid` (/proc/PID/status's TracerPid).
bool traced_by_us(long pid) {
    char path[64], status[2048];
    snprintf(path, sizeof path, "/proc/%ld/status", pid);
    FILE* f = fopen(path, "re");
    if (!f) return false;
    size_t n = fread(status, 1, sizeof status - 1, f);
    fclose(f);
    status[n] = '\0';
    const char* line = strstr(status, "\nTracerPid:");
    long tracer = line ? strtol(line + 12, nullptr, 10) : 0;
    if (tracer <= 0) return false;
    snprintf(path, sizeof path, "/proc/self/task/%ld", tracer);
    return access(path, F_OK) == 0;
}

// Set for good once this process has been seen tracing a child.
std::atomic<bool> g_tracer{false};

// A debugger or strace under the shim waits for ptrace stops, which no pidfd reports (and
// which come without WUNTRACED). Such a wait is made blocking on the runtime's thread pool:
// a sibling thread may wait for the tracer thread's tracees (wait(2): unless __WNOTHREAD).
// One child is looked at on every turn of a wait (it may start being traced after the wait
// began, as strace's child does); all children only on a wait's first turn, as that costs a
// file per child. A stop missed that way is still seen at the next look-again, as every turn
// asks with WNOHANG, which reports ptrace stops.
bool tracing_children(idtype_t type, id_t id, bool first_turn) {
    if (g_tracer.load(std::memory_order_relaxed)) return true;
    if (type == P_PID) return g_tracer = traced_by_us(static_cast<long>(id));
    if (!first_turn) return false;
    bool traced = false;
    DIR* tasks = opendir("/proc/self/task");
    while (tasks && !traced) {
        dirent* task = readdir(tasks);
        if (!task) break;
        if (task->d_name[0] == '.') continue;
        char path[300];
        snprintf(path, sizeof path, "/proc/self/task/%s/children", task->d_name);
        FILE* list = fopen(path, "re");
        long pid;
        while (list && !traced && fscanf(list, "%ld", &pid) == 1) traced = traced_by_us(pid);
        if (list) fclose(list);
    }
    if (tasks) closedir(tasks);
    return g_tracer = traced;
}

// The whole blocking call on the thread pool, the fiber parked meanwhile. A signal handler
// does not interrupt it (the pool thread is not the one that gets the signal).
template <typename Call>
auto wait_on_pool(Call call) -> decltype(call()) {
    decltype(call()) result{};
    int err = 0;
    auto job = [&] {
        result = call();
        err = errno;
    };
    run_blocking([](void* arg) { (*static_cast<decltype(job)*>(arg))(); }, &job,
                 ParkReason::kChild);
    errno = err;
    return result;
}

// A wait that would block: try it with WNOHANG; while no child is ready, park and retry.
// `attempt(options)` returns the call's result, with 0 meaning "none ready yet".
template <typename Attempt>
auto wait_child(idtype_t type, id_t id, int options, Attempt attempt) -> decltype(attempt(0)) {
    if (options & WNOHANG) return attempt(options);
    bool exits_only = !(options & (WUNTRACED | WCONTINUED));
    uint64_t rescan = kFirstRescanNs;
    for (;;) {
        auto r = attempt(options | WNOHANG);
        if (r != 0) return r;  // a child's state, or an error (ECHILD, EINVAL, EFAULT)
        if (tracing_children(type, id, rescan == kFirstRescanNs))
            return wait_on_pool([&] { return attempt(options); });
        if (!wait_for_children(type, id, exits_only, &rescan)) {
            errno = EINTR;
            return -1;
        }
    }
}

// waitpid's pid in waitid's terms.
void target_of(pid_t pid, idtype_t* type, id_t* id) {
    if (pid > 0) {
        *type = P_PID;
        *id = static_cast<id_t>(pid);
    } else if (pid == -1) {
        *type = P_ALL;
        *id = 0;
    } else {
        *type = P_PGID;
        *id = static_cast<id_t>(pid == 0 ? getpgrp() : -pid);
    }
}

}  // namespace

pid_t waitpid(pid_t pid, int* status, int options) {
    idtype_t type;
    id_t id;
    target_of(pid, &type, &id);
    return wait_child(type, id, options,
                      [&](int o) { return real::get().waitpid(pid, status, o); });
}

pid_t wait(int* status) {
    return hooks::waitpid(-1, status, 0);
}

pid_t wait4(pid_t pid, int* status, int options, rusage* usage) {
    idtype_t type;
    id_t id;
    target_of(pid, &type, &id);
    return wait_child(type, id, options,
                      [&](int o) { return real::get().wait4(pid, status, o, usage); });
}

pid_t wait3(int* status, int options, rusage* usage) {
    return hooks::wait4(-1, status, options, usage);
}

// waitid reports "none ready" with WNOHANG as 0 and si_pid 0.
int waitid(idtype_t type, id_t id, siginfo_t* info, int options) {
    if ((options & WNOHANG) || !info) return real::get().waitid(type, id, info, options);
    bool exits_only = !(options & (WSTOPPED | WCONTINUED));
    uint64_t rescan = kFirstRescanNs;
    for (;;) {
        info->si_pid = 0;
        int r = real::get().waitid(type, id, info, options | WNOHANG);
        if (r != 0 || info->si_pid != 0) return r;
        if (tracing_children(type, id, rescan == kFirstRescanNs))
            return wait_on_pool([&] { return real::get().waitid(type, id, info, options); });
        if (!wait_for_children(type, id, exits_only, &rescan)) {
            errno = EINTR;
            return -1;
        }
    }
}

// ---------------------------------------------------------------------------------------
// pause, sigsuspend

namespace {

// Parks until a program signal handler runs on this carrier; `handled_before` is the count
// taken before the mask allowed pending signals in (they may already have run).
int park_until_handler(unsigned handled_before) {
    while (tls::per_thread(t_handlers_run) == handled_before) {
        if (sleep_until(kNoDeadline, ParkReason::kSignal) == WaitResult::kInterrupted) {
            interruption_restarts();  // pause and sigsuspend never restart
            break;
        }
    }
    errno = EINTR;
    return -1;
}

}  // namespace

int pause() {
    return park_until_handler(tls::per_thread(t_handlers_run));
}

int sigsuspend(const sigset_t* mask) {
    sigset_t wanted;
    if (!copy_from_user(&wanted, mask, sizeof wanted)) return -1;
    unsigned before = tls::per_thread(t_handlers_run);
    sigset_t saved;
    hooks::pthread_sigmask(SIG_SETMASK, &wanted, &saved);  // pending signals may run here
    int r = park_until_handler(before);
    hooks::pthread_sigmask(SIG_SETMASK, &saved, nullptr);
    return r;
}

// ---------------------------------------------------------------------------------------
// vfork

// vfork's child borrows the parent's memory, stack and thread until it execs or exits. Every
// hook it called would act on the parent's runtime: a sigaction would rewrite the parent's
// handler table, a close would wake the parent's waiters, a read could park a fiber of the
// parent's carrier. (A wrapper cannot call the real vfork either: the child would return
// through, and clobber, the frame the parent returns through.) So the child is a fork, and
// the caller waits, as vfork's caller does, until the child has exec'd or exited: the end of
// a close-on-exec pipe that only the child holds. On a fiber only that fiber waits, as only
// the calling thread is suspended by vfork. Memory the child writes is not seen by the
// parent, which a vfork child may not rely on (POSIX leaves it undefined).
pid_t vfork() {
    int gate[2];
    bool gated = pipe2(gate, O_CLOEXEC) == 0;  // without it: fork semantics, no wait
    pid_t pid = fork();
    if (pid == 0) {
        if (gated) real::get().close(gate[0]);  // gate[1] stays open until exec or exit
        return 0;
    }
    int saved = errno;
    if (gated) {
        real::get().close(gate[1]);
        if (pid > 0) {
            char byte;
            while (::read(gate[0], &byte, 1) < 0 && errno == EINTR) {
            }
        }
        fd_closing(gate[0]);
        real::get().close(gate[0]);
    }
    errno = saved;
    return pid;
}

// ---------------------------------------------------------------------------------------
// system

namespace {

// As glibc: while any system() runs, SIGINT and SIGQUIT are ignored in the caller, and
// restored when the last one returns.
SpinLock g_system_lock;
int g_system_callers = 0;
struct sigaction g_saved_int, g_saved_quit;

}  // namespace

int system(const char* command) {
    // system(NULL) asks whether a shell is there: glibc runs `exit 0` in it.
    const char* line = command ? command : "exit 0";
    struct sigaction ignore {};
    ignore.sa_handler = SIG_IGN;
    sigemptyset(&ignore.sa_mask);
    {
        SpinGuard hold(g_system_lock);
        if (g_system_callers++ == 0) {
            hooks::sigaction(SIGINT, &ignore, &g_saved_int);
            hooks::sigaction(SIGQUIT, &ignore, &g_saved_quit);
        }
    }
    sigset_t child_mask, saved_mask;
    sigemptyset(&child_mask);
    sigaddset(&child_mask, SIGCHLD);
    hooks::pthread_sigmask(SIG_BLOCK, &child_mask, &saved_mask);

    // The shell starts with the caller's mask and default SIGINT and SIGQUIT (unless the
    // program ignored them itself).
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    sigset_t defaults;
    sigemptyset(&defaults);
    if (g_saved_int.sa_handler != SIG_IGN) sigaddset(&defaults, SIGINT);
    if (g_saved_quit.sa_handler != SIG_IGN) sigaddset(&defaults, SIGQUIT);
    posix_spawnattr_setsigdefault(&attr, &defaults);
    posix_spawnattr_setsigmask(&attr, &saved_mask);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);
    char sh[] = "sh", dash_c[] = "-c", dashes[] = "--";
    char* argv[] = {sh, dash_c, dashes, const_cast<char*>(line), nullptr};
    pid_t pid;
    int status;
    int err = posix_spawn(&pid, "/bin/sh", nullptr, &attr, argv, environ);
    posix_spawnattr_destroy(&attr);
    int wait_errno = 0;
    if (err == 0) {
        // As glibc: a wait that fails (ECHILD when SIGCHLD is ignored and the kernel reaped
        // the shell itself) makes the status -1, with the wait's errno.
        pid_t waited;
        while ((waited = hooks::waitpid(pid, &status, 0)) < 0 && errno == EINTR) {
        }
        if (waited != pid) {
            status = -1;
            wait_errno = waited < 0 ? errno : ECHILD;
        }
    } else {
        status = W_EXITCODE(127, 0);  // as glibc: the shell could not be run
    }

    hooks::pthread_sigmask(SIG_SETMASK, &saved_mask, nullptr);
    {
        SpinGuard hold(g_system_lock);
        if (--g_system_callers == 0) {
            hooks::sigaction(SIGINT, &g_saved_int, nullptr);
            hooks::sigaction(SIGQUIT, &g_saved_quit, nullptr);
        }
    }
    if (!command) return status == 0;
    if (err != 0) errno = err;
    if (wait_errno != 0) errno = wait_errno;
    return status;
}

void lock_system_callers() { g_system_lock.lock(); }
void unlock_system_callers() { g_system_lock.unlock(); }

}  // namespace green::hooks
