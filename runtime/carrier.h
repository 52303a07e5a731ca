// A carrier: one OS thread, its libuv loop (never the default loop), its run queue and the
// scheduler context that runs the loop. Internal to runtime/; hooks use runtime.h.
// Invariant: the scheduler context never runs program code and never parks.
#pragma once

#include <uv.h>

#include <cstdint>
#include <vector>

#include "runtime/counters.h"
#include "runtime/fiber.h"
#include "runtime/poller.h"
#include "runtime/runtime.h"
#include "runtime/spinlock.h"
#include "runtime/tls.h"

namespace green {

class Resolver;
class Carrier;
namespace tls {
struct Template;
}
// Closes the carrier's resolver (resolver.cpp), if it has one: at retire and in a forked child.
void shut_down_resolver(Carrier* carrier);

// The registry of live carriers (stats.cpp), for the stats dump, the monitor and the deadlock
// check. A retired carrier's counters are folded into the process totals.
void register_carrier(Carrier* carrier);
void unregister_carrier(Carrier* carrier);
void registry_after_fork(Carrier* survivor);  // in the child: only the forking carrier lives on
// Calls visit(carrier, context) for every live carrier, under the registry's lock. With
// `try_only` (a signal handler) gives up and returns false if the lock is taken.
bool for_each_carrier(void (*visit)(Carrier*, void*), void* context, bool try_only = false);
size_t carrier_count();
Carrier* first_carrier();  // the registry's head, for one who holds its lock (for_each_carrier)
int next_carrier_index();
// The runtime's own threads (the monitor, libuv's thread pool once started): they run no
// program code, so they cannot end a program's wait.
int internal_thread_count();
// Called before each uv_queue_work: true the first time in this process (also after a fork,
// where libuv makes its pool anew), when the work is about to start the pool's threads.
bool note_thread_pool_starting();

// Fibers' handles (fiber.cpp): release_fiber gives up the handle's reference (join, or the end
// of a detached fiber), drop_fiber_ref any reference; the Fiber is freed at the last.
void release_fiber(Fiber* fiber);
void drop_fiber_ref(Fiber* fiber);
void note_program_thread_started();  // a new fiber, on its creator's thread (carrier.cpp)

// Carriers for new fibers (carrier_pool.cpp): the one a new fiber goes to, the child's fresh
// start after fork, and a retiring carrier's leave.
Carrier* place_new_fiber();
void carrier_pool_after_fork();
void carrier_pool_remove(Carrier* carrier);




class Carrier {
public:
    static Carrier* current();

    bool init(const RuntimeConfig& config);
    void retire();
    // The loop and the epoll set are made when first needed (a spawn, a park): a program that
    // never blocks never sees their fds. False (errno set) if they cannot be made.
    bool ensure_loop() { return loop_ready_ || make_loop(); }
    uv_loop_t* loop() { return &loop_; }
    bool has_loop() const { return loop_ready_; }
    // Async-signal-safe, from any thread: makes the loop run on_remote_wake soon, e.g. for the
    // wake-ups a signal handler deferred (parking_lot.cpp). False if there is no loop yet.
    // (Other threads' wake-ups go through wake_if_idle, which costs less: libuv's async
    // handle makes the woken carrier spin for the sender and run a whole loop turn.)
    bool nudge() {
        if (!loop_ready_) return false;
        uv_async_send(remote_wake_);
        return true;
    }

    Fiber* root() const { return root_; }
    bool serving() const { return serving_.load(std::memory_order_relaxed); }  // serve()
    unsigned long os_thread() const { return os_thread_; }
    size_t default_stack_size() const { return default_stack_size_; }

    // Scheduling. park() returns when another party calls unpark() on this fiber.
    void park(ParkReason reason);
    // Parks with a deadline; returns true if the deadline woke us. An interruptible park may
    // also end with self->interrupted set by a signal.
    // `object` is what the fiber waits on (a lock, a joined fiber), for the deadlock report.
    bool park_until(uint64_t deadline_ns, ParkReason reason, bool interruptible = false,
                    const void* object = nullptr);
    void unpark(Fiber* fiber);
    // unpark() by the running fiber of this carrier (an unlock, a condition signal, a post):
    // the woken fiber runs next, before those already queued, and within the waker's time
    // slice (the monitor does not count that switch), as Go's runnext. The kernel likewise
    // soon runs a thread the running one wakes.
    void hand_off(Fiber* fiber);
    // From any thread: wakes `fiber` if it is still in the park numbered `park_seq`. The
    // caller has counted the wake-up in fiber->refs.
    void unpark_remote(Fiber* fiber, uint64_t park_seq);
    // Async-signal-safe: records a signal for deliver_signal(), on the loop.
    void note_signal(int sig, bool restart);
    // Async-signal-safe: a handler ran while a fiber ran; pause/sigsuspend waiters must see it.
    void note_handler_ran(int sig);
    // Signal masks (carrier.cpp). `fiber` (running on this carrier) now has `mask`, which is
    // already the kernel's; keeps the count of who blocks what. Also from a signal handler.
    void set_fiber_mask(Fiber* fiber, uint64_t mask);
    // sigwait: the running fiber waits for `set` (0: no longer).
    void set_awaited(Fiber* fiber, uint64_t set);
    // What the kernel mask is now (a hook changed it, a handler's sigreturn restores it), or
    // that it is not known (inside a handler, which adds its sa_mask).
    void kernel_mask_is(uint64_t mask) { kernel_mask_ = mask; }
    void handler_mask_unknown() { kernel_mask_ = kMaskUnknown; }
    void set_signal_target(Fiber* fiber) { signal_target_.store(fiber); }
    bool has_signal_target_other_than(Fiber* fiber) {
        Fiber* target = signal_target_.load();
        if (target == fiber) signal_target_.store(nullptr);  // delivered to the one it named
        return target != nullptr && target != fiber;
    }
    void yield();
    // On a new fiber, once its TLS block is set up: signals may come in now (resume).
    void tls_set_up(Fiber* fiber) {
        fiber->tls_ready = true;
        if (fiber->sigmask != kernel_mask_) set_kernel_mask(fiber->sigmask);
    }
    // Time slices (preempt.cpp). Set by the monitor thread when the running fiber has had its
    // slice; each hooked call checks it (Fiber::preempt_flag points here).
    std::atomic<bool> preempt_requested_{false};
    // Switches the running fiber out for having used its slice (at a hooked call, or from the
    // preemption signal's handler): it runs again after the fibers that are ready now and
    // those that become ready at the next poll, and after the fibers preempted before it.
    void preempt();

    // Makes a fiber that will run on this carrier; callable from any carrier's fiber.
    Fiber* spawn_fiber(void* (*start)(void*), void* arg, const SpawnOptions& options, int* err);
    [[noreturn]] void finish(Fiber* fiber);
    [[noreturn]] void root_exited();
    // A carrier thread of the pool (carrier_pool.cpp): its own context parks for good, after
    // `ready` has made the carrier one that new fibers may go to.
    [[noreturn]] void serve(void (*ready)(Carrier*));
    // Fibers placed here and not yet ended (placement reads it from any thread).
    uint32_t placed() const { return placed_.load(std::memory_order_relaxed); }
    // Set by the monitor while the carrier is held by a call no hook reached: no new fibers.
    bool stuck() const { return stuck_.load(std::memory_order_relaxed); }
    void set_stuck(bool stuck) { stuck_.store(stuck, std::memory_order_relaxed); }
    // From the monitor, for a stuck carrier: the fibers other threads made for it and it has
    // not taken yet go to other carriers; the thread ids of those that sleep are put in
    // `idle_tids` (up to `idle_max`) for the monitor to wake. Returns how many fibers moved.
    size_t hand_over_arrivals(int32_t* idle_tids, int* idle_count, int idle_max);
    void set_scheduler_context(void* context) { scheduler_context_ = context; }
    static void (*exit_hook())(Fiber*);

    // In the child after fork(): only the forking fiber exists there, as only the forking
    // thread survives a fork; the loop and the epoll set become the child's own.
    void reset_after_fork();
    void track(Fiber* fiber);
    void untrack(Fiber* fiber);

    // fd waits (fd_wait.cpp), through the carrier's poller (poller.h).
    WaitResult wait_fds(FdWaiter* waiters, size_t count, uint64_t deadline_ns,
                        ParkReason reason);
    void fd_closing(int fd) { poller_.closing(fd); }
    // From any thread: `fd` was closed elsewhere; stale waiters here must wake.
    void fd_closed_remotely(int fd);
    // Wakes the waiters on fds whose generation moved on (closed by another thread, or by a
    // close_range on this one).
    void evict_stale_waiters() { poller_.evict_stale(); }

    // Diagnostics: counters (stats.cpp), the registry of carriers, the watchdog's view
    // (monitor.cpp) and the deadlock check (deadlock.cpp).
    CarrierCounters& counters() { return counters_; }
    int index() const { return index_; }
    int32_t tid() const { return tid_; }
    // The fiber that holds the thread, or null while the scheduler does (read by the monitor,
    // which may only dereference it while the switch counter stays unchanged).
    const Fiber* running_fiber() const { return running_.load(std::memory_order_relaxed); }
    const Fiber* all_fibers() const { return all_fibers_; }
    Carrier* next_carrier_ = nullptr;  // the registry's link, under its lock
    struct MonitorView {              // touched by the monitor thread only
        uint64_t switches = 0;
        uint64_t since_ns = 0;
        uint64_t last_report_ns = 0;
        uint64_t suppressed = 0;
        bool reported = false;
        uint64_t slice_switches = 0;  // time slices: the run being timed and since when
        uint64_t slice_since_ns = 0;
        uint64_t stuck_switches = 0;  // stuck carriers: the run being timed and since when
        uint64_t stuck_since_ns = 0;
        uint64_t stuck_cpu_ns = 0;  // the thread's CPU time then
    } monitor_view_;
    // Work other threads queued here and the carrier has not taken yet.
    bool remote_work_waiting() const;
    // True from the moment the scheduler found every program thread here waiting, with no
    // deadline, on another (a lock, a join; none at all on an empty pool carrier) until it
    // wakes; the epoch counts the times it became so. The deadlock check reads both.
    bool quiet() const { return quiet_.load(std::memory_order_seq_cst); }
    uint64_t quiet_epoch() const { return quiet_epoch_.load(std::memory_order_seq_cst); }
    // True while the scheduler waits in the kernel with nothing to run (poll_once): the
    // monitor sleeps once every carrier is so, and the first to wake wakes it.
    bool idle() const { return idle_.load(std::memory_order_seq_cst); }
    // The earliest fiber deadline (kNoDeadline: none), for the monitor: a fiber whose timer
    // is due should not wait for the running one's whole slice.
    uint64_t next_deadline() const { return next_deadline_.load(std::memory_order_relaxed); }
    // The epoll set the scheduler sleeps in (-1: not made yet), for the monitor to poll: it
    // is readable when a parked fiber's fd is ready.
    int epoll_fd() const { return poller_.epoll_fd(); }
    // Resumes that began a new time slice: every one but hand_off()'s.
    uint64_t slices_begun() const { return slices_begun_.load(std::memory_order_relaxed); }

private:
    static void scheduler_entry(void* transfer_context, void* data);
    void scheduler_loop();
    void resume(Fiber* fiber, bool handed_off = false);
    void resume_handed_off();
    // Gives a new fiber its own glibc descriptor and TLS block (tls.h); false if out of memory.
    bool give_own_tls(Fiber* fiber);
    void belong_here(Fiber* fiber);
    void after_switch_back(Fiber* fiber);
    void switch_to_scheduler(Fiber* self);
    void push_runnable(Fiber* fiber);
    Fiber* pop_runnable();
    bool anything_runnable() const { return run_next_ || run_head_ || preempted_head_; }
    // Work other threads hand this carrier: fibers they made for it, wake-ups they sent.
    void start_fiber(Fiber* fiber);
    void send_arrival(Fiber* fiber, bool wake = true);  // wake: if it sleeps (never the monitor)
    void wake_if_idle();
    void take_remote_work();
    // Live threads of the program on this carrier: its fibers, and main if it runs here.
    size_t program_threads() const { return live_fibers_ + (root_exited_ || serving() ? 0 : 1); }

    static void on_remote_wake(uv_async_t* handle);
    void deliver_signal();
    bool make_loop();
    void loop_made();
    bool remake_loop_after_fork();
    // Fibers parked with a deadline, in a binary min-heap on Fiber::deadline_ns (timers at the
    // clock's precision: libuv's timers count whole milliseconds).
    void add_timer(Fiber* fiber);
    void remove_timer(Fiber* fiber);
    void sift_up(size_t i);
    void sift_down(size_t i);
    void expire_timers();

    // Waits on the carrier's epoll set (up to libuv's next timer when `block`, else not at
    // all), wakes the fibers whose fds are ready, and runs libuv's loop once when it has
    // something to do (fd_wait.cpp).
    void poll_once(bool block);
    void check_deadlock();

public:
    Resolver* resolver_ = nullptr;  // made by the first name lookup (resolver.cpp)
    bool resolver_failed_ = false;

private:
    uv_loop_t loop_;
    bool loop_ready_ = false;
    bool loop_forked_ = false;  // a forked child's loop and epoll set, still the parent's
    void* scheduler_context_ = nullptr;
    Stack scheduler_stack_;
    Fiber* root_ = nullptr;
    Fiber* run_head_ = nullptr;
    Fiber* run_tail_ = nullptr;
    size_t run_count_ = 0;
    Fiber* run_next_ = nullptr;  // hand_off()'s fiber, resumed before the queue
    static constexpr int kMaxHandOffs = 64;  // in a row, before the queue has its turn
    std::atomic<uint64_t> slices_begun_{0};
    // Fibers switched out for using their slice, in the order they were (Fiber::next_runnable):
    // one runs per turn of the scheduler, after the others that are ready.
    Fiber* preempted_head_ = nullptr;
    Fiber* preempted_tail_ = nullptr;
    size_t live_fibers_ = 0;  // non-root fibers not yet finished
    bool root_exited_ = false;
    size_t default_stack_size_ = 0;
    unsigned long os_thread_ = 0;
    int32_t tid_ = 0;
    int index_ = 0;
    CarrierCounters counters_;
    std::atomic<const Fiber*> running_{nullptr};
    std::atomic<bool> idle_{false};
    std::atomic<uint64_t> next_deadline_{kNoDeadline};
    void note_next_deadline() {
        next_deadline_.store(timers_.empty() ? kNoDeadline : timers_.front()->deadline_ns,
                             std::memory_order_relaxed);
    }
    // Fibers parked with no deadline on something only another fiber or thread can end (a
    // lock, a join): when they are all the live fibers, the carrier may be deadlocked.
    size_t waiting_on_peers_ = 0;
    uint64_t deadlock_checked_at_ = UINT64_MAX;  // switches when last checked

    Fiber* all_fibers_ = nullptr;  // linked through Fiber::next_on_carrier

    // Wake-ups sent by other threads: a lock-free stack, each node allocated by its sender.
    struct RemoteWake : RuntimeAllocated {
        Fiber* fiber;
        uint64_t park_seq;
        RemoteWake* next;
    };
    std::atomic<RemoteWake*> inbox_{nullptr};
    std::atomic<Fiber*> arrivals_{nullptr};  // made here by other threads, not yet started
    std::atomic<uint32_t> placed_{0};
    std::atomic<bool> stuck_{false};
    std::atomic<bool> quiet_{false};
    std::atomic<uint64_t> quiet_epoch_{0};
    std::atomic<bool> serving_{false};  // a pool carrier: its root context is no program thread
    // Other threads inside wake_if_idle, and the retire that waits for them to leave.
    std::atomic<int> wakers_{0};
    std::atomic<bool> retiring_{false};
    uv_async_t* remote_wake_ = nullptr;
    std::vector<Fiber*> timers_;
    // Signals whose handler ran while every fiber was parked (bit n-1: signal n), and those
    // of them whose handler has SA_RESTART; deliver_signal() interrupts a fiber for each.
    std::atomic<uint64_t> pending_signals_{0};
    std::atomic<uint64_t> restarting_signals_{0};
    std::atomic<Fiber*> signal_target_{nullptr};
    std::atomic<uint64_t> handlers_ran_{0};  // signals handled while a fiber ran
    // Masks. While a fiber runs the kernel mask is its mask; while the scheduler waits it is
    // idle_mask(): what every live fiber blocks, and what a sigwait on any carrier waits for.
    // blocking_[n-1] counts the live fibers that block signal n.
    static constexpr uint64_t kMaskUnknown = ~uint64_t{0};  // no real mask (SIGKILL is never)
    uint64_t idle_mask() const;
    void count_mask(uint64_t mask, int delta);
    void set_kernel_mask(uint64_t mask);
    uint64_t kernel_mask_ = kMaskUnknown;
    uint32_t blocking_[64] = {};
    uint32_t masked_fibers_ = 0;               // live fibers counted in blocking_
    uint32_t blocking_any_ = 0;                // of them, those with a non-empty mask
    std::atomic<uint32_t> signal_waiters_{0};  // fibers parked in pause or sigsuspend

    Poller poller_{this};

    char* thread_tp_ = nullptr;  // the carrier thread's own thread pointer (glibc descriptor)
    // The thread pointer the OS thread has now: its own, or the TLS block of the fiber that ran
    // last here. The scheduler runs in either (every block of this carrier says the same
    // t_carrier; t_fiber is null in the one the scheduler uses; errno is the fiber's, saved
    // at its switch), so a switch between fibers costs one change of %fs, not two: without
    // FSGSBASE each change is a system call. It waits in the kernel in its own (poll_once),
    // where the program's signal handlers run as on the carrier thread.
    char* current_tp_ = nullptr;
    void use_thread_pointer(char* tp) {
        if (tp == current_tp_) return;
        tls::set_thread_pointer(tp);
        current_tp_ = tp;
    }
    // TLS blocks of finished fibers (after_switch_back), freed by the next fiber to start here.
    static constexpr int kMaxDeadTls = 64;
    char* dead_tls_[kMaxDeadTls];
    int dead_tls_count_ = 0;

public:
    // On a fiber: frees the TLS blocks finished fibers left (fiber_entry, retire).
    void free_dead_tls();

private:
    bool fiber_tls_ = false;     // fibers get their own TLS (tls::enabled())
    tls::Template* tls_template_ = nullptr;  // what their blocks copy (made in init)

#ifdef GREEN_SANITIZE
    void* asan_fake_stack_ = nullptr;
#endif
#ifdef GREEN_TSAN
    void* tsan_scheduler_ = nullptr;  // ThreadSanitizer's view of the scheduler context
#endif
};

}  // namespace green
