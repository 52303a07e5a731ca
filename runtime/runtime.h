// The runtime's public surface, used by hooks/ and by tests: carriers, fibers, parking,
// deadlines and fd readiness waits. Knows nothing of libc interposition.
// Every function here that parks must be called on a fiber (on_fiber() is true).
#pragma once

#include <pthread.h>
#include <time.h>

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "runtime/fiber.h"

namespace green {

// Deadlines are CLOCK_MONOTONIC nanoseconds; kNoDeadline waits forever.
constexpr uint64_t kNoDeadline = UINT64_MAX;
uint64_t monotonic_now_ns();
// `ns` nanoseconds as a timespec (a span, or a CLOCK_MONOTONIC time).
inline timespec timespec_from_ns(uint64_t ns) {
    return timespec{static_cast<time_t>(ns / 1000000000ull), static_cast<long>(ns % 1000000000ull)};
}
// now + ns, saturating at kNoDeadline.
uint64_t deadline_after_ns(uint64_t ns);

struct RuntimeConfig {
    size_t default_stack_size = 0;  // 0: glibc's default thread stack size
};

// Carrier threads (carrier_pool.cpp; design.md, "Carriers"): `count` in all, main's among
// them (0: one per CPU the process may run on). The others start at the first spawn, through
// `create_thread` (the real pthread_create); a new fiber goes to the least loaded one.
constexpr unsigned kMaxCarriers = 64;  // GREEN_CARRIERS' bound
struct CarrierPoolConfig {
    unsigned count = 1;
    RuntimeConfig runtime;
    int (*create_thread)(pthread_t*, const pthread_attr_t*, void* (*)(void*), void*) = nullptr;
};
void configure_carriers(const CarrierPoolConfig& config);
unsigned carriers_wanted();
// A fiber is about to be spawned: the other carriers start now if they have not.
void carriers_needed();
// How many carriers take new fibers now (those started and ready, not retired).
unsigned carriers_placeable();

// Makes the calling OS thread a carrier; its current context becomes the root fiber.
// Returns false (errno set) if the loop or the epoll set cannot be made.
bool adopt_current_thread(const RuntimeConfig& config);
// Tears the carrier of this thread down; the root fiber must be the only live fiber.
void retire_current_thread();

// The fiber running on this OS thread, or nullptr off-fiber (in the scheduler, on an
// unmanaged thread, before adoption).
Fiber* current_fiber();
bool on_fiber();

size_t default_stack_size();

struct SpawnOptions {
    size_t stack_size = 0;          // 0: default_stack_size()
    void* user_stack_top = nullptr;  // a stack the caller owns (pthread_attr_setstack)
    size_t user_stack_size = 0;
    bool detached = false;
    // Called on the creator's thread once the fiber exists and before it can run (it may start
    // at once on another carrier): what must know of it before its end can (thread ids).
    void (*before_start)(Fiber*) = nullptr;
};

// Starts start(arg) on a new fiber, on the carrier placement chooses. Returns 0 or an errno value
// (EAGAIN when no stack can be had).
int spawn(void* (*start)(void*), void* arg, const SpawnOptions& options, Fiber** out);

// True if `handle` is a live or joinable fiber of this process.
bool is_fiber(const void* handle);

// join: 0, EDEADLK (self), EINVAL (detached or already being joined), ETIMEDOUT,
// EBUSY (deadline already passed and not done: pthread_tryjoin_np).
int join(Fiber* target, void** result, uint64_t deadline_ns);
int detach(Fiber* target);

// Ends the current fiber with `value`, unwinding its stack (C++ destructors run) as
// glibc's pthread_exit does. On the root fiber the process continues until every other
// fiber has ended, then exits with status 0.
[[noreturn]] void exit_current(void* value);

// The pthread_t and the kernel tid of the OS thread that carries `fiber` (signals, CPU clocks,
// affinity).
unsigned long carrier_os_thread(const Fiber* fiber);
int32_t carrier_tid(const Fiber* fiber);
// The root fiber (the adopted thread's own context, e.g. main) of the carrier whose thread is
// `os_thread`, else nullptr (a pool carrier's own context is no program thread).
Fiber* root_fiber_of(unsigned long os_thread);

// Runs when a non-root fiber ends, on that fiber, before joiners wake (thread-specific
// data destructors live in hooks/).
void set_fiber_exit_hook(void (*hook)(Fiber*));

void yield();

enum class WaitResult { kReady, kTimedOut, kClosed, kInterrupted };

// Time slices (preempt.cpp; design.md, "Preemption"). slice_ns 0: fibers are never
// pre-empted. `by_signal`: a fiber that makes no hooked call is interrupted by a signal too.
struct PreemptConfig {
    uint64_t slice_ns = 0;
    bool by_signal = false;
};
void configure_preemption(const PreemptConfig& config);
const PreemptConfig& preemption();
// At every hooked call on a fiber (the shim's wrappers): a fiber that has had its slice gives
// way here. One relaxed load when it has not.
void preempt_at_call(Fiber* fiber);
inline void preempt_point(Fiber* fiber) {
    if (__builtin_expect(fiber->preempt_flag->load(std::memory_order_relaxed), false))
        preempt_at_call(fiber);
}
// In the handler of the monitor's preemption signal, with the handler's ucontext: switches
// the interrupted fiber out if it stands at a safe point.
void preempt_in_handler(const void* ucontext);

// Parks the current fiber until the deadline: kTimedOut when it was reached, kInterrupted
// when a signal handler ran while it slept (see below), kReady when woken early by unpark().
WaitResult sleep_until(uint64_t deadline_ns, ParkReason reason);

// Signals. A handler that runs while every fiber of the carrier is parked interrupts one
// parked I/O wait or sleep, as the kernel interrupts one blocked thread: the fiber named by
// the last target_signal(), else the root fiber, else the first such fiber. Its wait returns
// kInterrupted. Async-signal-safe; a no-op off a carrier or while a fiber runs (the signal
// was that fiber's, and it was not blocked).
void signal_arrived(int sig, bool restart);
// Signal masks per fiber (the kernel's 64-bit sigset: bit n-1 is signal n). The running
// fiber's mask is the carrier thread's kernel mask; the hooks change the kernel's, then call
// set_fiber_sigmask. While every fiber is parked the kernel mask lets through what any of
// them accepts, or waits for in sigwait (set_sigwait_set; 0 when the wait ends).
void set_fiber_sigmask(uint64_t mask);
uint64_t fiber_sigmask();
void set_sigwait_set(uint64_t set);
// Around a program's handler (the trampoline): the first returns the fiber's mask to give
// back to the second with the mask sigreturn restores (the ucontext's).
uint64_t signal_handler_starts();
void signal_handler_ends(uint64_t restored, uint64_t mask_on_entry);
void target_signal(Fiber* fiber);
// After kInterrupted: whether the handler asked for SA_RESTART. Clears the interruption.
bool interruption_restarts();

// Readiness waits on fds. Events are EPOLLIN / EPOLLOUT / EPOLLPRI.
struct FdWaiter {
    int fd = -1;
    uint32_t events = 0;
    uint32_t revents = 0;  // what woke us (EPOLLERR/EPOLLHUP included)
    bool closed = false;   // the fd was closed (or dup2'd over) while we waited
    uint32_t gen = 0;      // the fd's generation when the wait began
    // Intrusive links; the waiter lives on the parked fiber's stack.
    Fiber* fiber = nullptr;
    FdWaiter* next = nullptr;
    FdWaiter* prev = nullptr;
};

WaitResult wait_fd(int fd, uint32_t events, uint64_t deadline_ns, ParkReason reason);
// Waits until any of the fds is ready, one is closed, or the deadline passes.
WaitResult wait_fds(FdWaiter* waiters, size_t count, uint64_t deadline_ns, ParkReason reason);

// Called before the real close()/dup2() of `fd`, on any thread: waiters on every carrier wake
// with kClosed and the fd leaves every epoll set, so the number can be reused safely.
void fd_closing(int fd);
// The same for every fd in [first, last] (close_range, closefrom).
void fds_closing(unsigned first, unsigned last);

// Statistics of the current process (all carriers, retired ones included); stats.cpp.
struct RuntimeStats {
    uint64_t fibers_created;  // root fibers (main) included
    uint64_t fibers_live;
    uint64_t fibers_peak;     // the sum of each carrier's peak
    uint64_t switches;
    uint64_t parks[static_cast<int>(ParkReason::kCount)];
    uint64_t blocked_calls;      // calls on a fiber that held the whole carrier
    uint64_t passthrough_calls;  // hooked calls made on threads that are not carriers
    uint64_t preempted_at_call, preempted_by_signal, preempt_declined;  // time slices
};
RuntimeStats stats();

// Writes every carrier's counters and the process totals, one `green.stats.KEY=VALUE` per
// line, in one write to `path` (nullptr: the log's destination). `reason` says why ("exit",
// "signal"). Never allocates; may run in a signal handler (a concurrent dump is skipped).
void write_stats(const char* path, const char* reason);

// Live fibers of the calling thread's carrier, its root included (0 off a carrier).
size_t fibers_on_this_carrier();

// A hooked call made on a thread the runtime does not manage (nor one of its own threads).
void note_passthrough();
// A call on a fiber that holds its carrier while it waits (regular-file I/O, a lock glibc
// keeps). Checks that cost a syscall are made only when count_blocked_calls() is true.
void note_carrier_blocked();
void set_count_blocked_calls(bool on);
bool count_blocked_calls();
// Marks the calling thread as the runtime's own (the monitor): its calls are not counted, and
// the deadlock check knows it will never release a program's lock.
void mark_internal_thread();
// True on such a thread: its calls are the runtime's own and pass straight through.
bool on_internal_thread();

// What the scheduler does when every fiber of the only carrier waits on another (deadlock.cpp).
enum class DeadlockMode { kOff, kReport, kAbort };
void set_deadlock_mode(DeadlockMode mode);
// For the report: the tid (Fiber::tid) that holds the lock `object` a fiber waits on for
// `reason`, or 0 when unknown. Hooks know the locks' layouts; the runtime does not.
void set_lock_holder_probe(int32_t (*probe)(ParkReason reason, const void* object));
// The watchdog (GREEN_MONITOR_MS; monitor.cpp): one real thread that notices a carrier whose
// fiber has run for longer than the threshold without a switch, and reports it once per
// incident (rate-limited) with a backtrace taken on the carrier thread itself.
struct StallSample {
    std::atomic<bool> taken{false};
    bool on_fiber = false;
    bool is_root = false;
    uint64_t fiber_id = 0;
    void* (*start)(void*) = nullptr;
    ParkReason last_park = ParkReason::kNone;
    char name[16] = {};
    const void* pc = nullptr;  // the interrupted instruction
    bool unsafe_pc = false;    // pc is in code an unwinder must not start from: no backtrace
    int frames = 0;
    void* pcs[48] = {};
};
// Fills `sample` with the calling thread's running fiber and, when the interrupted pc
// (`ucontext`, the handler's third argument) is in the program's own code, its backtrace;
// then sets `taken`. For the signal handler the monitor's request runs on a carrier thread.
void take_stall_sample(StallSample* sample, const void* ucontext);

struct MonitorConfig {
    uint64_t threshold_ms = 0;  // the watchdog's; 0: no watchdog (the monitor may still run
                                // for time slices: preemption())
    // The real pthread_create: the monitor must be an OS thread, not a fiber.
    int (*create_thread)(pthread_t*, const pthread_attr_t*, void* (*)(void*), void*) = nullptr;
    // Makes OS thread `tid` run take_stall_sample(sample) (a signal); true once it has.
    bool (*sample_thread)(int tid, StallSample* sample) = nullptr;
    // Sends OS thread `tid` the preemption signal (its handler calls preempt_in_handler).
    void (*preempt_thread)(int tid) = nullptr;
};
// Keeps `config` and starts the monitor thread now if the watchdog is on; with time slices
// and no watchdog it starts at the first spawn, when a fiber can first starve another. In a
// forked child it starts again if it ran in the parent. False if it cannot be created.
bool start_monitor(const MonitorConfig& config);
// A fiber is about to be spawned: the monitor must run if time slices are on.
void monitor_needed();
// The program installed a seccomp filter, which may apply to the monitor thread as well: from
// now on time slices make no system call a filter could refuse (no signal, no epoll look);
// fibers still give way at hooked calls.
void monitor_sandboxed();
// After a wait in the kernel that may have been long (the carrier's idle poll): wakes the
// monitor if it sleeps because every carrier was idle.
void carrier_busy_again();

}  // namespace green
