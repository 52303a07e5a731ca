// The cooperative versions of the interposed calls: one per symbols.def entry, with glibc's
// exact signature. shim/ calls them only on a fiber and outside our own code (GREEN_HOOK),
// or always (GREEN_HOOK_ALWAYS). They return what glibc returns and set errno as it does.
#pragma once

#include "hooks/real.h"
#include "runtime/runtime.h"

namespace green::hooks {

#define GREEN_HOOK(ret, name, params, args) ret name params;
#define GREEN_HOOK_NORETURN(name, params, args) [[noreturn]] void name params;
#define GREEN_HOOK_MANUAL(ret, name, params)
#include "hooks/symbols.def"

// syscall(2) with its six possible arguments, as the shim's variadic wrapper passes them
// (hooks/syscall.cpp): the numbers libgreen gives meaning to go to their hooks.
long syscall6(long number, long a1, long a2, long a3, long a4, long a5, long a6);
// prctl(2) with its arguments (hooks/syscall.cpp).
int prctl5(int option, unsigned long a2, unsigned long a3, unsigned long a4, unsigned long a5);
// True once the program has installed a seccomp filter of its own (prctl, seccomp(2)) while
// its calling fiber is the only one: the cooperative versions make system calls the
// program's filter may not allow (sshd's pre-auth sandbox kills on sendto), and with no
// other fiber to run they would gain nothing, so the real calls are made.
bool filtered_and_alone();

// syscall(SYS_tkill): tgkill without the thread group (hooks/thread.cpp; glibc has no tkill).
int tkill(pid_t tid, int sig);
// syscall(SYS_futex, ...) (hooks/futex.cpp).
long futex_call(long number, long a1, long a2, long a3, long a4, long a5, long a6);
// syscall(SYS_io_uring_enter, ...) (hooks/uring.cpp): a wait for completions parks.
long io_uring_enter_call(long fd, long submit, long wait_nr, long flags, long arg, long size);
// syscall(SYS_io_getevents, ...) (hooks/aio.cpp): libaio's wait, cooperative.
long io_getevents_call(long ctx, long min_nr, long nr, long events, long timeout);

// GREEN_DISABLE=1 asks for every call to pass through. Read from the environment on first
// use, so that it holds even for calls made before libgreen's constructor.
bool disabled();

// The accept guard (hooks/signal.cpp): arm before a blocking accept that poll said would
// not block; disarm after it. disarm() is true if the guard's timer ended the call.
bool accept_guard_arm();
bool accept_guard_disarm();

// GREEN_STATS_SIGNAL (hooks/signal.cpp): `sig` dumps the stats to `path` (nullptr: the log)
// and then runs the program's handler, if it installed one; the default action no longer
// applies. False if the signal cannot be caught (SIGKILL, SIGSTOP).
bool install_stats_signal(int sig, const char* path);
// True for a signal the runtime sent itself (hooks/signal.cpp): sigwait must not report it.
bool runtime_signal(const siginfo_t& info);
// For the watchdog (runtime's MonitorConfig::sample_thread): carrier thread `tid` fills
// `sample` in a signal handler. Waits up to 200 ms for it.
bool sample_thread(int tid, StallSample* sample);
// For time slices (MonitorConfig::preempt_thread): carrier thread `tid` runs
// preempt_in_handler in the handler of this signal.
void preempt_thread(int tid);

// Who holds the lock a fiber waits on, for the deadlock report (hooks/sync.cpp).
int32_t lock_holder(ParkReason reason, const void* object);

// At start-up: stdin on a socket, pipe or FIFO and stdout/stderr on a socket become FILEs
// that wait cooperatively (hooks/stdio.cpp).
void adopt_standard_streams();

// Registers the runtime callbacks hooks need (thread-specific data destructors, fork locks).
void install();
// The locks of hooks/signal.cpp and hooks/process.cpp, for fork (runtime/fork.h).
void lock_signal_table();
void unlock_signal_table();
void lock_system_callers();
void unlock_system_callers();

}  // namespace green::hooks
