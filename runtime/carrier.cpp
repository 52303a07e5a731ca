// Carrier: the scheduler and its context switches, timers and start-up of a carrier thread.
// Switches go fiber -> scheduler -> fiber; the scheduler alone runs the libuv loop, so loop
// callbacks never run on a (possibly small) program stack.
#include "runtime/carrier.h"

#include <pthread.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <boost/context/detail/fcontext.hpp>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <new>

#include "runtime/fork.h"
#include "runtime/log.h"
#include "runtime/parking_lot.h"
#include "runtime/raw_syscall.h"
#include "runtime/runtime_fds.h"
#include "runtime/spinlock.h"
#include "runtime/tls.h"

#ifdef GREEN_SANITIZE
#include <sanitizer/asan_interface.h>
#endif
#ifdef GREEN_TSAN
#include <sanitizer/tsan_interface.h>
#endif

namespace ctx = boost::context::detail;

namespace green {
namespace {

// initial-exec: no __tls_get_addr (which may allocate) on the hot path of every hook.
// With per-fiber TLS each fiber's block holds its own copies: t_carrier is its carrier and
// t_fiber the fiber itself (set by spawn_fiber), while the carrier thread's own block says
// root_ or null (the scheduler). So both keep meaning "the carrier and fiber running now".
__thread Carrier* t_carrier __attribute__((tls_model("initial-exec"))) = nullptr;
__thread Fiber* t_fiber __attribute__((tls_model("initial-exec"))) = nullptr;

constexpr size_t kSchedulerStackSize = 256 * 1024;
constexpr size_t kSignalStackSize = 64 * 1024;

std::atomic<uint64_t> g_next_root_id{1};
// The program's threads on every carrier (roots that are program threads, and fibers), for
// the rule that a process whose main thread called pthread_exit ends with its last thread.
std::atomic<long> g_program_threads{0};
std::atomic<bool> g_root_exited{false};
std::atomic<bool> g_exiting{false};
void (*g_exit_hook)(Fiber*) = nullptr;

#ifndef GREEN_SANITIZE
// (Under ASan its own SIGSEGV handler reports overflows; ours stays out of its way.)
struct sigaction g_previous_segv;
std::atomic<bool> g_segv_installed{false};

// SIGSEGV on the alternate stack: a fault in (or just below) the running fiber's guard page
// is a stack overflow. Say so in one line, then let the fault kill the process exactly as it
// would kill a threaded one. Any other fault goes back to the previous disposition.
void on_segv(int sig, siginfo_t* info, void* ucontext) {
    (void)ucontext;
    Fiber* fiber = t_fiber;
    const char* addr = static_cast<const char*>(info->si_addr);
    if (fiber && fiber->stack.guarded() && addr < fiber->stack.limit &&
        addr + 64 * 1024 >= fiber->stack.base) {
        log::write_line(
            "fatal: stack overflow in fiber %llu (%zu-byte stack); raise "
            "GREEN_STACK_SIZE or the thread's pthread_attr_setstacksize",
            static_cast<unsigned long long>(fiber->id), fiber->stack.usable());
        signal(sig, SIG_DFL);
        return;  // the faulting instruction runs again and the default action ends us
    }
    sigaction(sig, &g_previous_segv, nullptr);
}
#endif

void install_overflow_handler() {
#ifndef GREEN_SANITIZE
    stack_t current;
    if (sigaltstack(nullptr, &current) == 0 && (current.ss_flags & SS_DISABLE)) {
        stack_t alt{};
        alt.ss_sp = malloc(kSignalStackSize);
        alt.ss_size = kSignalStackSize;
        if (alt.ss_sp) sigaltstack(&alt, nullptr);
    }
    bool expected = false;
    if (!g_segv_installed.compare_exchange_strong(expected, true)) return;
    struct sigaction action {};
    action.sa_sigaction = on_segv;
    action.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_NODEFER;
    sigemptyset(&action.sa_mask);
    sigaction(SIGSEGV, &action, &g_previous_segv);
#endif
}

// rt_sigprocmask without libc: our own pthread_sigmask is interposed, and this runs on the
// switch path. `set` null: only reads. Async-signal-safe.
inline void kernel_sigmask(const uint64_t* set, uint64_t* old) {
    raw_syscall(SYS_rt_sigprocmask, SIG_SETMASK, reinterpret_cast<long>(set),
                reinterpret_cast<long>(old), 8 /* the kernel's sigset size */);
}

size_t glibc_default_stack_size() {
    pthread_attr_t attr;
    size_t size = 8 * 1024 * 1024;
    if (pthread_getattr_default_np(&attr) == 0) {
        pthread_attr_getstacksize(&attr, &size);
        pthread_attr_destroy(&attr);
    }
    return size;
}

}  // namespace

// ---------------------------------------------------------------------------------------
// Public surface (runtime.h) that is about carriers and scheduling.

uint64_t monotonic_now_ns() {
    return uv_hrtime();
}

uint64_t deadline_after_ns(uint64_t ns) {
    uint64_t now = monotonic_now_ns();
    return ns >= kNoDeadline - now ? kNoDeadline : now + ns;
}

Fiber* current_fiber() {
    return t_fiber;
}
bool on_fiber() {
    return t_fiber != nullptr;
}
Carrier* Carrier::current() {
    return t_carrier;
}

size_t default_stack_size() {
    Carrier* carrier = t_carrier;
    return carrier ? carrier->default_stack_size() : glibc_default_stack_size();
}

bool adopt_current_thread(const RuntimeConfig& config) {
    if (t_carrier) return true;
    auto* carrier = new Carrier();
    if (!carrier->init(config)) {
        int saved = errno;
        delete carrier;
        errno = saved;
        return false;
    }
    return true;
}

void retire_current_thread() {
    if (t_carrier) t_carrier->retire();
}

unsigned long carrier_os_thread(const Fiber* fiber) {
    return fiber->carrier->os_thread();
}

void note_program_thread_started() {
    g_program_threads.fetch_add(1, std::memory_order_relaxed);
}

int32_t carrier_tid(const Fiber* fiber) {
    return fiber->carrier->tid();
}

Fiber* root_fiber_of(unsigned long os_thread) {
    Carrier* carrier = t_carrier;
    if (carrier && carrier->os_thread() == os_thread) return carrier->root();
    struct Find {
        unsigned long thread;
        Fiber* root;
    } find{os_thread, nullptr};
    for_each_carrier(
        [](Carrier* c, void* context) {
            auto* f = static_cast<Find*>(context);
            if (c->os_thread() == f->thread && !c->serving()) f->root = c->root();
        },
        &find, !may_take_spinlocks());
    return find.root;
}

void set_fiber_exit_hook(void (*hook)(Fiber*)) {
    g_exit_hook = hook;
}
void (*Carrier::exit_hook())(Fiber*) {
    return g_exit_hook;
}

void yield() {
    t_carrier->yield();
}

WaitResult sleep_until(uint64_t deadline_ns, ParkReason reason) {
    Fiber* self = t_fiber;
    bool reached = t_carrier->park_until(deadline_ns, reason, true);
    if (self->interrupted) return WaitResult::kInterrupted;
    return reached ? WaitResult::kTimedOut : WaitResult::kReady;
}

void signal_arrived(int sig, bool restart) {
    Carrier* carrier = t_carrier;
    if (!carrier) return;
    // While a fiber runs, a signal is that fiber's (it was not blocked), unless it was sent
    // to another one with pthread_kill: the carrier thread runs the sender at that moment.
    // A fiber that has parked but not yet reached the scheduler (which may be making the
    // loop: a first wait) is waiting already: the signal interrupts that wait.
    Fiber* self = t_fiber;
    if (self && self->state != FiberState::kParked &&
        !carrier->has_signal_target_other_than(self)) {
        ++self->handlers_ran;
        self->handlers_ran_no_restart += !restart;
        carrier->note_handler_ran(sig);  // still ends pause and sigsuspend waits
        return;
    }
    carrier->note_signal(sig, restart);
}

// The running fiber's mask: the kernel's while it runs, so the hooks change the kernel's
// first (it validates and delivers what the change unblocks) and then record it here.
void set_fiber_sigmask(uint64_t mask) {
    Fiber* self = t_fiber;
    if (!self) return;
    self->carrier->kernel_mask_is(mask);
    self->carrier->set_fiber_mask(self, mask);
}

uint64_t fiber_sigmask() {
    Fiber* self = t_fiber;
    return self ? self->sigmask : 0;
}

void set_sigwait_set(uint64_t set) {
    if (Fiber* self = t_fiber) self->carrier->set_awaited(self, set);
}

uint64_t signal_handler_starts() {
    Carrier* carrier = t_carrier;
    if (!carrier) return 0;
    carrier->handler_mask_unknown();  // the kernel adds the handler's sa_mask
    Fiber* self = t_fiber;
    return self ? self->sigmask : 0;
}

// sigreturn sets the kernel mask to `restored` (the interrupted context's); a mask the handler
// set on its fiber is undone with it, as a thread's is. The fiber's mask goes back to what it
// was on entry, not to `restored`: the handler may have run in Carrier::resume between the
// fiber's start and its mask's.
void signal_handler_ends(uint64_t restored, uint64_t mask_on_entry) {
    Carrier* carrier = t_carrier;
    if (!carrier) return;
    carrier->kernel_mask_is(restored);
    Fiber* self = t_fiber;
    if (self && self->sigmask != mask_on_entry) carrier->set_fiber_mask(self, mask_on_entry);
}
void target_signal(Fiber* fiber) {
    fiber->carrier->set_signal_target(fiber);
}

bool interruption_restarts() {
    Fiber* self = t_fiber;
    bool restart = self->interrupted == 2;
    self->interrupted = 0;
    return restart;
}

const char* park_reason_name(ParkReason reason) {
    static const char* const names[] = {"none",    "yield",  "read",      "write",   "accept",
                                        "connect", "poll",   "sleep",     "join",    "mutex",
                                        "cond",    "rwlock", "semaphore", "barrier", "once",
                                        "futex",   "dns",    "child",     "signal",  "exited"};
    static_assert(sizeof names / sizeof names[0] == static_cast<size_t>(ParkReason::kCount));
    return names[static_cast<int>(reason)];
}

void awaited_after_fork();  // signal masks, below

// ---------------------------------------------------------------------------------------
// Carrier life cycle.

bool Carrier::init(const RuntimeConfig& config) {
    os_thread_ = pthread_self();
    tid_ = static_cast<int32_t>(syscall(SYS_gettid));
    index_ = next_carrier_index();
    default_stack_size_ =
        config.default_stack_size ? config.default_stack_size : glibc_default_stack_size();
    install_fork_handlers();

    if (!StackPool::acquire(kSchedulerStackSize, &scheduler_stack_)) return false;
    scheduler_context_ =
        ctx::make_fcontext(scheduler_stack_.top, scheduler_stack_.usable(),
                           [](ctx::transfer_t t) { scheduler_entry(t.fctx, t.data); });

    root_ = new Fiber();
    root_->id = g_next_root_id.fetch_add(1);
    root_->tid = tid_;
    root_->carrier = this;
    root_->preempt_flag = &preempt_requested_;
    root_->is_root = true;
    root_->state = FiberState::kRunning;
#ifdef GREEN_TSAN
    root_->tsan_fiber = __tsan_get_current_fiber();
    tsan_scheduler_ = __tsan_create_fiber(0);
#endif
    kernel_sigmask(nullptr, &root_->sigmask);
    kernel_mask_ = root_->sigmask;
    count_mask(root_->sigmask, 1);
    track(root_);
    fiber_started(counters_);
    g_program_threads.fetch_add(1);
    running_.store(root_, std::memory_order_relaxed);  // main runs until its first switch

    install_overflow_handler();
    thread_tp_ = tls::thread_pointer();
    current_tp_ = thread_tp_;
    fiber_tls_ = tls::enabled();
    if (fiber_tls_ && !(tls_template_ = tls::make_template(thread_tp_))) return false;
    t_carrier = this;
    t_fiber = root_;
    register_carrier(this);
    return true;
}

// The loop, the remote-wake handle and the epoll set, with every fd they need placed out of
// the program's way (runtime_fds.h): libuv makes its fds through the interposed pipe2,
// eventfd and epoll_create1, which adopt them inside a RuntimeFdScope.
bool Carrier::make_loop() {
    if (loop_forked_) return remake_loop_after_fork();
    RuntimeFdScope scope;
    static bool first = true;
    if (first) {
        // libuv registers an atfork child handler in the first uv_loop_init that remakes a
        // process-wide pipe; child handlers run in registration order, so these two put that
        // pipe inside a scope too.
        pthread_atfork(nullptr, nullptr, enter_runtime_fd_scope);
    }
    int err = uv_loop_init(&loop_);
    if (first) {
        pthread_atfork(nullptr, nullptr, leave_runtime_fd_scope);
        first = false;
    }
    if (err != 0) {
        errno = -err;
        return false;
    }
    if (!poller_.open(uv_backend_fd(&loop_))) {
        int saved = errno;
        uv_loop_close(&loop_);
        errno = saved;
        return false;
    }
    remote_wake_ = new uv_async_t;
    uv_async_init(&loop_, remote_wake_, on_remote_wake);
    remote_wake_->data = this;
    loop_made();
    return true;
}

// From here on a handler sends its signal's wake-up itself; one noted while the loop was
// being made (a first wait's, or a forked child's before its loop was remade) is sent now.
void Carrier::loop_made() {
    loop_ready_ = true;
    std::atomic_signal_fence(std::memory_order_seq_cst);
    if (pending_signals_.load() || handlers_ran_.load()) uv_async_send(remote_wake_);
}

void Carrier::retire() {
    if (live_fibers_ != 0) log::fatal("retire with %zu live fibers", live_fibers_);
    free_dead_tls();
    t_fiber = nullptr;  // from here on, libc calls pass through our hooks
    if (!root_exited_ && !serving()) g_program_threads.fetch_sub(1);
    carrier_pool_remove(this);
    unregister_carrier(this);
    shut_down_resolver(this);
    // A sender on another thread may be inside wake_if_idle (it saw this carrier asleep just
    // before its last fiber ended): wait until it has left before the eventfd is closed (its
    // number could be the program's by the time the sender writes).
    retiring_.store(true, std::memory_order_seq_cst);
    while (wakers_.load(std::memory_order_acquire) != 0) __builtin_ia32_pause();
    if (loop_ready_) {
        RuntimeFdScope scope;
        on_remote_wake(remote_wake_);  // deliver (and free) what other threads still sent
        uv_close(reinterpret_cast<uv_handle_t*>(remote_wake_),
                 [](uv_handle_t* handle) { delete reinterpret_cast<uv_async_t*>(handle); });
        uv_run(&loop_, UV_RUN_DEFAULT);  // runs the close callbacks of every handle
        if (uv_loop_close(&loop_) != 0) log::fatal("carrier loop still has handles at retire");
        poller_.close();
    }
    StackPool::release(scheduler_stack_);
    if (tls_template_) tls::free_template(tls_template_);
#ifdef GREEN_TSAN
    __tsan_destroy_fiber(tsan_scheduler_);
#endif
    delete root_;
    t_carrier = nullptr;
    delete this;
}

// The carrier sleeps in its own epoll set, which holds the program's fds (never given to
// libuv, so their flags are never touched: DESIGN.md, problem 3) and libuv's backend fd
// (everything libuv waits for: the remote-wake async, c-ares's sockets). A fiber woken by its
// fd so costs one epoll_wait, and libuv runs only when it has something to do.
void Carrier::track(Fiber* fiber) {
    fiber->prev_on_carrier = nullptr;
    fiber->next_on_carrier = all_fibers_;
    if (all_fibers_) all_fibers_->prev_on_carrier = fiber;
    all_fibers_ = fiber;
}

void Carrier::untrack(Fiber* fiber) {
    if (fiber->prev_on_carrier)
        fiber->prev_on_carrier->next_on_carrier = fiber->next_on_carrier;
    else
        all_fibers_ = fiber->next_on_carrier;
    if (fiber->next_on_carrier) fiber->next_on_carrier->prev_on_carrier = fiber->prev_on_carrier;
}

// Runs in the child, in fork(), on the forking fiber (also after _Fork() and a raw fork
// system call: see fork_child()). After fork the child shares the parent's epoll set and
// libuv backend (the same kernel objects): an epoll_ctl by the child would change the
// parent's waits. So the child gets its own, and the parent's other fibers, which do not
// exist in a threaded program's child, are never resumed.
void Carrier::reset_after_fork() {
    Fiber* self = t_fiber;
    const bool root_survives = self == nullptr || self->is_root;
    tid_ = getpid();  // the child's one thread leads its group (gettid() would be a fiber's)
    if (root_survives) root_->tid = tid_;
    // glibc's fork wrote the child's tid into THREAD_SELF, the carrier thread's descriptor
    // (tls.cpp): the forking fiber's copy, read %fs-relative, gets it too.
    if (self && self->tls) tls::copy_tid(thread_tp_, self->tls);
    if (tls_template_) tls::template_after_fork(tls_template_, thread_tp_);
    for (Fiber* f = all_fibers_; f; f = f->next_on_carrier) {
        if (f == self) continue;
        if (f->state != FiberState::kDone) {
            f->state = FiberState::kParked;
            f->park_reason = ParkReason::kExited;
        }
        f->timer_index = SIZE_MAX;
    }
    timers_.clear();
    note_next_deadline();
    run_head_ = run_tail_ = nullptr;
    run_count_ = 0;
    run_next_ = nullptr;
    preempted_head_ = preempted_tail_ = nullptr;
    preempt_requested_.store(false);
    // Wake-ups sent by the parent's other threads: their fibers are gone in the child.
    for (RemoteWake* w = inbox_.exchange(nullptr); w;) {
        RemoteWake* next = w->next;
        delete w;
        w = next;
    }
    arrivals_.store(nullptr);  // made by the parent's other threads, which the child lacks
    stuck_.store(false);
    carrier_pool_after_fork();
    monitor_view_ = MonitorView{};
    live_fibers_ = root_survives ? 0 : 1;
    placed_.store(static_cast<uint32_t>(live_fibers_), std::memory_order_relaxed);
    root_exited_ = !root_survives;  // the forking thread is the child's last one
    g_program_threads.store(1);
    g_root_exited.store(!root_survives);
    g_exiting.store(false);
    serving_.store(false);  // a pool carrier's child: it ends with its one thread, as any process
    counters_.fibers_live.store(live_fibers_ + 1, std::memory_order_relaxed);
    waiting_on_peers_ = 0;
    // Only the forking fiber takes signals in the child; fork.cpp gives the kernel its mask.
    Fiber* survivor = self ? self : root_;
    std::memset(blocking_, 0, sizeof blocking_);
    awaited_after_fork();
    masked_fibers_ = blocking_any_ = 0;
    for (Fiber* f = all_fibers_; f; f = f->next_on_carrier) f->awaited = 0;
    count_mask(survivor->sigmask, 1);
    kernel_mask_ = kMaskUnknown;
    pending_signals_.store(0);
    restarting_signals_.store(0);
    handlers_ran_.store(0);
    registry_after_fork(this);
    poller_.forget_waiters();
    // The loop and the epoll set are still the parent's (the same kernel objects): they are
    // remade when the child first needs them (make_loop), so a child that only execs pays
    // nothing for them. Until then nothing here may touch them.
    if (loop_ready_) {
        loop_ready_ = false;
        loop_forked_ = true;
    }
}

// In a forked child, at its first need of the loop: first its own libuv backend (until then
// every epoll_ctl libuv makes, stopping a handle included, would edit the parent's), then its
// own epoll set; the resolver's sockets and queries are the parent's.
bool Carrier::remake_loop_after_fork() {
    RuntimeFdScope scope;
    loop_forked_ = false;
    if (uv_loop_fork(&loop_) != 0) log::fatal("cannot give the forked child its own loop");
    shut_down_resolver(this);
    poller_.close();  // the child's references only
    if (!poller_.open(uv_backend_fd(&loop_)))
        log::fatal("cannot give the forked child its own epoll set");
    loop_made();
    return true;
}

// ---------------------------------------------------------------------------------------
// Switching. A fiber always switches to the scheduler; the scheduler resumes the next one.

void Carrier::scheduler_entry(void* transfer_context, void* data) {
    auto* from = static_cast<Fiber*>(data);
    if (from->tls) tls::set_thread_pointer(from->carrier->thread_tp_);  // before any TLS
    Carrier* self = t_carrier;
    self->current_tp_ = self->thread_tp_;
#ifdef GREEN_SANITIZE
    __sanitizer_finish_switch_fiber(nullptr, &from->asan_stack_bottom, &from->asan_stack_size);
#endif
    from->context = transfer_context;
    t_fiber = nullptr;
    self->running_.store(nullptr, std::memory_order_relaxed);  // the root's first park
    self->after_switch_back(from);
    self->scheduler_loop();
}

void Carrier::scheduler_loop() {
    for (;;) {
        // Run the fibers that are runnable now, then poll the loop; a fiber that yields in a
        // loop is re-queued behind this batch, so I/O is always polled between batches.
        // Pre-empted before this turn's poll: a fiber pre-empted in the batch below waits
        // until the fibers that poll wakes have run.
        const bool preempted_before = preempted_head_ != nullptr;
        for (size_t batch = run_count_; batch > 0 && run_head_; --batch) {
            resume(pop_runnable());
            resume_handed_off();
        }
        resume_handed_off();
        // Then one slice for the fiber preempted longest ago; a fiber woken meanwhile (the
        // poll below) runs before the next one: within a slice of becoming ready.
        if (preempted_before && preempted_head_) {  // (a fork's child has emptied it)
            Fiber* next = preempted_head_;
            preempted_head_ = next->next_runnable;
            if (!preempted_head_) preempted_tail_ = nullptr;
            resume(next);
            resume_handed_off();
        }
        if (g_root_exited.load(std::memory_order_relaxed) &&
            g_program_threads.load(std::memory_order_acquire) == 0 && !g_exiting.exchange(true)) {
            // main() called pthread_exit and the last thread, on whichever carrier, is gone:
            // glibc calls exit(0).
            exit(0);
        }
        const bool quiet = !anything_runnable() && waiting_on_peers_ == program_threads();
        if (quiet && !quiet_.load(std::memory_order_relaxed)) {
            quiet_epoch_.fetch_add(1, std::memory_order_seq_cst);
            quiet_.store(true, std::memory_order_seq_cst);  // poll_once clears it on waking
        }
        if (quiet && waiting_on_peers_ != 0) check_deadlock();
        // Every fiber is parked or queued: let in what any of them accepts (see idle_mask).
        uint64_t idle = idle_mask();
        if (idle != kernel_mask_) {
            // What this lets in is no fiber's: its handler runs as on the carrier thread, not in
            // the block of the fiber that ran last (which may block it).
            use_thread_pointer(thread_tp_);
            set_kernel_mask(idle);
        }
        poll_once(!anything_runnable());
    }
}

// Fibers handed off to run next, one after another: they share the slice of the fiber that
// woke the first (slices_begun_ is not bumped), so a pair that keeps waking each other is
// pre-empted like one fiber and cannot keep the queue waiting.
void Carrier::resume_handed_off() {
    // A bound besides the slice: a monitor that could not start never ends a chain.
    for (int chain = 0; run_next_; ++chain) {
        Fiber* next = run_next_;
        run_next_ = nullptr;
        if (chain == kMaxHandOffs) {
            push_runnable(next);
            return;
        }
        resume(next, true);
    }
}

void Carrier::resume(Fiber* fiber, bool handed_off) {
    if (!handed_off) {
        bump(slices_begun_);
        // A request that came after its fiber had already switched is not this one's.
        preempt_requested_.store(false, std::memory_order_relaxed);
    }
    fiber->state = FiberState::kRunning;
    // The fiber's own TLS from here to its next switch back; nothing in between touches TLS
    // but t_fiber, which is written in the fiber's block.
    // A block that has not had glibc's per-thread set-up (tls::start_thread: the <ctype.h>
    // tables) must not run a handler: signals stay blocked until fiber_entry has done it.
    const bool fresh = fiber->tls && !fiber->tls_ready;
    if (fresh) set_kernel_mask(kMaskUnknown);
    use_thread_pointer(fiber->tls ? fiber->tls : thread_tp_);
    t_fiber = fiber;
    bump(counters_.switches);
    running_.store(fiber, std::memory_order_relaxed);
    // The fiber's mask is the thread's while it runs. Masks rarely differ: usually no call.
    // (A signal this lets in runs its handler here, as the fiber's: t_fiber is set.)
    if (!fresh && fiber->sigmask != kernel_mask_) set_kernel_mask(fiber->sigmask);
#ifdef GREEN_SANITIZE
    __sanitizer_start_switch_fiber(&asan_fake_stack_, fiber->asan_stack_bottom,
                                   fiber->asan_stack_size);
#endif
#ifdef GREEN_TSAN
    __tsan_switch_to_fiber(fiber->tsan_fiber, 0);
#endif
    ctx::transfer_t back = ctx::jump_fcontext(fiber->context, fiber);
    // The scheduler goes on in the block of the fiber that ran (see current_tp_), except when
    // that block is about to be freed, or the fiber switched inside a signal handler (its
    // block counts the handler, and the scheduler must not think it runs in one).
    if (fiber->state == FiberState::kDone || in_signal_handler()) use_thread_pointer(thread_tp_);
#ifdef GREEN_SANITIZE
    auto* from_fiber = static_cast<Fiber*>(back.data);
    __sanitizer_finish_switch_fiber(asan_fake_stack_, &from_fiber->asan_stack_bottom,
                                    &from_fiber->asan_stack_size);
#endif
    t_fiber = nullptr;
    running_.store(nullptr, std::memory_order_relaxed);
    auto* from = static_cast<Fiber*>(back.data);
    from->context = back.fctx;
    after_switch_back(from);
}

bool Carrier::give_own_tls(Fiber* fiber) {
    char* tp = tls::make_block(tls_template_, fiber->stack);
    if (!tp) return false;
    *tls::in_block(tp, t_fiber) = fiber;
    fiber->tls = tp;  // belong_here() then points it at its carrier
    return true;
}

// What in a fiber names its carrier; with its own TLS, the words of its block that do.
void Carrier::belong_here(Fiber* fiber) {
    fiber->carrier = this;
    fiber->preempt_flag = &preempt_requested_;
    if (char* tp = fiber->tls) {
        *tls::in_block(tp, t_carrier) = this;
        *tls::in_block(tp, tls::t_os_thread_tp) = thread_tp_;
    }
}

// On the monitor: a stuck carrier's fibers that have not started go to carriers that run.
// None has run, so none has used its TLS block or been counted by its carrier's thread. The
// monitor has an fd table of its own, where the carriers' eventfds are not: a carrier that
// sleeps and was given fibers is named in `idle_tids` for the monitor to wake with a signal.
size_t Carrier::hand_over_arrivals(int32_t* idle_tids, int* idle_count, int idle_max) {
    Fiber* waiting = arrivals_.exchange(nullptr, std::memory_order_acquire);
    size_t moved = 0;
    while (waiting) {
        Fiber* fiber = waiting;
        waiting = fiber->next_runnable;
        Carrier* to = place_new_fiber();
        if (!to || to == this) {
            send_arrival(fiber, false);  // every carrier is stuck: it waits here
            continue;
        }
        if (fiber->tls) tls::move_block(fiber->tls, to->tls_template_);
        to->belong_here(fiber);
        placed_.fetch_sub(1, std::memory_order_relaxed);
        to->placed_.fetch_add(1, std::memory_order_relaxed);
        to->send_arrival(fiber, false);
        if (to->idle() && *idle_count < idle_max) idle_tids[(*idle_count)++] = to->tid();
        ++moved;
    }
    return moved;
}

void Carrier::after_switch_back(Fiber* fiber) {
    if (fiber->state != FiberState::kDone) return;
    // The fiber ran its last instruction on its stack: only now may the stack be reused.
    StackPool::release(fiber->stack);
    fiber->stack = Stack{};
    if (fiber->tls) {
        // glibc frees TLS blocks through malloc, which may be the program's: the next spawn,
        // on a fiber, does it (runtime_alloc.h says why never the scheduler).
        if (dead_tls_count_ < kMaxDeadTls)
            dead_tls_[dead_tls_count_++] = fiber->tls;
        else
            tls::free_block(fiber->tls);
    }
    fiber->tls = nullptr;
    --live_fibers_;
    count_mask(fiber->sigmask, -1);
    if (fiber->awaited) set_awaited(fiber, 0);
    fiber_ended(counters_);
    placed_.fetch_sub(1, std::memory_order_relaxed);
    g_program_threads.fetch_sub(1, std::memory_order_release);
    untrack(fiber);
    // A joiner may wait on any carrier: the end is told through the parking lot, keyed by the
    // handle. A detached fiber's handle goes now.
    const uint8_t was = fiber->ending.fetch_or(Fiber::kFinished, std::memory_order_acq_rel);
    if (was & Fiber::kDetached)
        release_fiber(fiber);
    else
        parking_lot::unpark(fiber, parking_lot::kAll);
}

void Carrier::free_dead_tls() {
    while (dead_tls_count_ > 0) tls::free_block(dead_tls_[--dead_tls_count_]);
}

void Carrier::switch_to_scheduler(Fiber* self) {
    self->saved_errno = errno;
    if (!ensure_loop()) log::fatal("cannot make the carrier's event loop: %s", strerror(errno));
#ifdef GREEN_SANITIZE
    bool done = self->state == FiberState::kDone;
    __sanitizer_start_switch_fiber(done ? nullptr : &self->asan_fake_stack, scheduler_stack_.limit,
                                   scheduler_stack_.usable());
#endif
#ifdef GREEN_TSAN
    __tsan_switch_to_fiber(tsan_scheduler_, 0);
#endif
    ctx::transfer_t back = ctx::jump_fcontext(scheduler_context_, self);
#ifdef GREEN_SANITIZE
    __sanitizer_finish_switch_fiber(self->asan_fake_stack, nullptr, nullptr);
#endif
    scheduler_context_ = back.fctx;
    errno = self->saved_errno;
}

// Appends a fiber that is about to be runnable to a queue linked through next_runnable.
static void enqueue(Fiber*& head, Fiber*& tail, Fiber* fiber) {
    fiber->state = FiberState::kRunnable;
    fiber->next_runnable = nullptr;
    if (tail)
        tail->next_runnable = fiber;
    else
        head = fiber;
    tail = fiber;
}

void Carrier::push_runnable(Fiber* fiber) {
    enqueue(run_head_, run_tail_, fiber);
    ++run_count_;
    // libuv's loop only ever runs with UV_RUN_NOWAIT (poll_once), so a fiber made runnable
    // by one of its callbacks is resumed before the carrier blocks again. (With
    // UV_RUN_ONCE, a timer already due when the loop began woke its fiber and the loop then
    // blocked for I/O that might never come.)
}

Fiber* Carrier::pop_runnable() {
    Fiber* fiber = run_head_;
    run_head_ = fiber->next_runnable;
    if (!run_head_) run_tail_ = nullptr;
    --run_count_;
    return fiber;
}

void Carrier::park(ParkReason reason) {
    Fiber* self = t_fiber;
    self->park_reason = reason;
    ++self->park_seq;
    self->state = FiberState::kParked;
    std::atomic_signal_fence(std::memory_order_seq_cst);  // seen so by a handler (signal_arrived)
    bump(counters_.parks[static_cast<int>(reason)]);
    switch_to_scheduler(self);
}

void Carrier::unpark(Fiber* fiber) {
    // Idempotent: a fiber woken by an fd and its timer in one loop turn is queued once.
    if (fiber->state == FiberState::kParked && fiber->park_reason != ParkReason::kExited)
        push_runnable(fiber);
}

void Carrier::hand_off(Fiber* fiber) {
    if (fiber->state != FiberState::kParked || fiber->park_reason == ParkReason::kExited) return;
    Fiber* waker = t_fiber;
    // Without time slices nothing would end a chain of hand-offs: the old order, then.
    if (!waker || waker->carrier != this || !preemption().slice_ns) {
        push_runnable(fiber);
        return;
    }
    if (run_next_) push_runnable(run_next_);  // the earlier one keeps its turn in the queue
    fiber->state = FiberState::kRunnable;
    run_next_ = fiber;
}

void Carrier::yield() {
    Fiber* self = t_fiber;
    bump(counters_.parks[static_cast<int>(ParkReason::kYield)]);
    self->park_reason = ParkReason::kYield;
    push_runnable(self);
    switch_to_scheduler(self);
}

void Carrier::preempt() {
    Fiber* self = t_fiber;
    self->park_reason = ParkReason::kYield;
    enqueue(preempted_head_, preempted_tail_, self);
    switch_to_scheduler(self);
}

// What no timer, fd or signal can end: only another fiber or thread (deadlock.cpp). Not
// semaphores and futexes: another process or a signal handler (sem_post) may post those.
static bool waits_on_peers(ParkReason reason) {
    switch (reason) {
    case ParkReason::kJoin:
    case ParkReason::kMutex:
    case ParkReason::kCond:
    case ParkReason::kRwlock:
    case ParkReason::kBarrier:
    case ParkReason::kOnce:
        return true;
    default:
        return false;
    }
}

// Deadlines: a parked fiber with one sits in the carrier's timer heap, which poll_once
// consults at the clock's precision (epoll_pwait2 takes nanoseconds), so a 50 us sleep is not
// stretched to libuv's whole millisecond.
bool Carrier::park_until(uint64_t deadline_ns, ParkReason reason, bool interruptible,
                         const void* object) {
    Fiber* self = t_fiber;
    self->park_object = object;
    self->timed_out = false;
    self->interrupted = 0;
    self->interruptible = interruptible;
    if (deadline_ns != kNoDeadline) {
        if (deadline_ns <= monotonic_now_ns()) return true;
        self->deadline_ns = deadline_ns;
        add_timer(self);
    }
    const bool on_peers = deadline_ns == kNoDeadline && waits_on_peers(reason);
    const bool on_signal = reason == ParkReason::kSignal;
    waiting_on_peers_ += on_peers;
    if (on_signal) signal_waiters_.fetch_add(1, std::memory_order_relaxed);
    park(reason);
    if (on_signal) signal_waiters_.fetch_sub(1, std::memory_order_relaxed);
    waiting_on_peers_ -= on_peers;
    self->interruptible = false;
    if (self->timer_index != SIZE_MAX) remove_timer(self);
    return self->timed_out;
}

void Carrier::add_timer(Fiber* fiber) {
    fiber->timer_index = timers_.size();
    timers_.push_back(fiber);
    sift_up(fiber->timer_index);
    note_next_deadline();
}

void Carrier::remove_timer(Fiber* fiber) {
    size_t i = fiber->timer_index;
    fiber->timer_index = SIZE_MAX;
    Fiber* last = timers_.back();
    timers_.pop_back();
    if (last != fiber) {
        timers_[i] = last;
        last->timer_index = i;
        sift_up(i);
        sift_down(last->timer_index);
    }
    note_next_deadline();
}

void Carrier::sift_up(size_t i) {
    Fiber* moving = timers_[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (timers_[parent]->deadline_ns <= moving->deadline_ns) break;
        timers_[i] = timers_[parent];
        timers_[i]->timer_index = i;
        i = parent;
    }
    timers_[i] = moving;
    moving->timer_index = i;
}

void Carrier::sift_down(size_t i) {
    Fiber* moving = timers_[i];
    const size_t n = timers_.size();
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= n) break;
        if (child + 1 < n && timers_[child + 1]->deadline_ns < timers_[child]->deadline_ns)
            ++child;
        if (timers_[child]->deadline_ns >= moving->deadline_ns) break;
        timers_[i] = timers_[child];
        timers_[i]->timer_index = i;
        i = child;
    }
    timers_[i] = moving;
    moving->timer_index = i;
}

// Wakes every fiber whose deadline has come; it leaves the heap when it runs again.
void Carrier::expire_timers() {
    if (timers_.empty()) return;
    uint64_t now = monotonic_now_ns();
    while (!timers_.empty() && timers_.front()->deadline_ns <= now) {
        Fiber* fiber = timers_.front();
        remove_timer(fiber);
        fiber->timed_out = true;
        unpark(fiber);
    }
}

// The two queues other threads fill (the inbox, the arrivals) are lock-free stacks: pushed
// onto by any thread (seq_cst: see wake_if_idle), taken whole by the carrier (take_remote_work).
template <typename Node>
static void push_newest(std::atomic<Node*>& stack, Node* node, Node* Node::*link) {
    node->*link = stack.load(std::memory_order_relaxed);
    while (!stack.compare_exchange_weak(node->*link, node, std::memory_order_seq_cst,
                                        std::memory_order_relaxed)) {
    }
}

// A stack taken whole (newest first), as a list in the order it was pushed.
template <typename Node>
static Node* oldest_first(Node* newest, Node* Node::*link) {
    Node* oldest = nullptr;
    while (newest) {
        Node* next = newest->*link;
        newest->*link = oldest;
        oldest = newest;
        newest = next;
    }
    return oldest;
}

// Wake-ups from other threads: pushed on the inbox (no lock: the sender allocated the node),
// delivered on this carrier's thread. The carrier's eventfd is written only when the carrier
// sleeps: a busy one takes its inbox at its next poll (poll_once), with no system call.
void Carrier::unpark_remote(Fiber* fiber, uint64_t park_seq) {
    push_newest(inbox_, new RemoteWake{{}, fiber, park_seq, nullptr}, &RemoteWake::next);
    wake_if_idle();
}

// A fiber made by another thread for this carrier (spawn_fiber), linked through next_runnable.
void Carrier::send_arrival(Fiber* fiber, bool wake) {
    push_newest(arrivals_, fiber, &Fiber::next_runnable);
    if (wake) wake_if_idle();
}

// The sender's half of the sleep protocol (the mirror is in poll_once): the push above is
// ordered before this load, and the carrier's idle_ store before its look at the queues, so
// one of the two sees the other. Of the senders to a sleeping carrier only the first writes.
void Carrier::wake_if_idle() {
    wakers_.fetch_add(1, std::memory_order_seq_cst);
    if (!retiring_.load(std::memory_order_seq_cst) && idle_.load(std::memory_order_seq_cst) &&
        loop_ready_)
        poller_.wake();
    wakers_.fetch_sub(1, std::memory_order_release);
}

void Carrier::fd_closed_remotely(int fd) {
    poller_.closed_elsewhere(fd);
    wake_if_idle();
}

bool Carrier::remote_work_waiting() const {
    return inbox_.load(std::memory_order_seq_cst) || arrivals_.load(std::memory_order_seq_cst) ||
           poller_.stale_waiting();
}

void Carrier::note_signal(int sig, bool restart) {
    const uint64_t bit = sig > 0 && sig <= 64 ? uint64_t{1} << (sig - 1) : 0;
    if (restart) restarting_signals_.fetch_or(bit);
    pending_signals_.fetch_or(bit);
    if (loop_ready_) uv_async_send(remote_wake_);  // async-signal-safe, as libuv documents
}

void Carrier::note_handler_ran(int sig) {
    if (!signal_waiters_.load(std::memory_order_relaxed)) return;
    handlers_ran_.fetch_or(sig > 0 && sig <= 64 ? uint64_t{1} << (sig - 1) : 0);
    if (loop_ready_) uv_async_send(remote_wake_);
}

// ---------------------------------------------------------------------------------------
// Signal masks. The kernel delivers a signal only to a thread that does not block it, so the
// carrier thread's kernel mask is the running fiber's mask, and while the scheduler waits it
// is idle_mask(): a signal goes through if any live fiber accepts it, and deliver_signal()
// then interrupts only a fiber that accepts it. A signal every fiber blocks stays pending in
// the kernel until a mask change lets it in or a sigwait takes it (design.md, "Signal masks").

void Carrier::set_kernel_mask(uint64_t mask) {
    kernel_mask_ = mask;  // first: a handler run by the change restores what it finds here
    kernel_sigmask(&mask, nullptr);
}

void Carrier::count_mask(uint64_t mask, int delta) {
    masked_fibers_ += delta;
    if (mask == 0) return;
    blocking_any_ += delta;
    for (uint64_t m = mask; m; m &= m - 1) blocking_[__builtin_ctzll(m)] += delta;
}

void Carrier::set_fiber_mask(Fiber* fiber, uint64_t mask) {
    uint64_t was = fiber->sigmask;
    if (was == mask) return;
    fiber->sigmask = mask;
    count_mask(was, -1);
    count_mask(mask, 1);
}

// What the process's fibers wait for in sigwait, on any carrier: a signal sent to the process
// stays pending for the waiter's signalfd, so every carrier blocks it while it idles (as the
// kernel would give it to the waiting thread, not run a handler on another one).
namespace {
SpinLock g_awaited_lock;
uint32_t g_awaited[64];
std::atomic<uint64_t> g_awaited_mask{0};

void nudge_other(Carrier* carrier, void*) {
    if (carrier != Carrier::current()) carrier->nudge();
}
}  // namespace

void Carrier::set_awaited(Fiber* fiber, uint64_t set) {
    uint64_t mask;
    {
        SpinGuard hold(g_awaited_lock);
        for (uint64_t m = fiber->awaited; m; m &= m - 1) --g_awaited[__builtin_ctzll(m)];
        fiber->awaited = set;
        for (uint64_t m = set; m; m &= m - 1) ++g_awaited[__builtin_ctzll(m)];
        mask = 0;
        for (int i = 0; i < 64; ++i)
            if (g_awaited[i] != 0) mask |= uint64_t{1} << i;
    }
    // The other carriers take the new set at their next turn: wake the sleeping ones now.
    if (g_awaited_mask.exchange(mask) != mask && carrier_count() > 1)
        for_each_carrier(nudge_other, nullptr);
}

void awaited_after_fork() {
    new (&g_awaited_lock) SpinLock();
    std::memset(g_awaited, 0, sizeof g_awaited);
    g_awaited_mask.store(0);
}

// Blocked while the scheduler waits: what every live fiber blocks, and what a sigwait waits
// for (it stays pending for the waiter's signalfd instead of running a handler elsewhere).
uint64_t Carrier::idle_mask() const {
    uint64_t mask = 0;
    if (blocking_any_ != 0 && blocking_any_ == masked_fibers_) {
        for (int i = 0; i < 64; ++i)
            if (blocking_[i] == masked_fibers_) mask |= uint64_t{1} << i;
    }
    return mask | g_awaited_mask.load(std::memory_order_relaxed);
}

// On the loop, after handlers ran while every fiber was parked: for each signal, interrupt one
// parked I/O wait or sleep of a fiber that does not block it, as the kernel interrupts one
// blocked thread.
void Carrier::deliver_signal() {
    const uint64_t pending = pending_signals_.exchange(0);
    const uint64_t restarting = restarting_signals_.exchange(0);
    Fiber* target = signal_target_.exchange(nullptr);
    const uint64_t ran = handlers_ran_.exchange(0);
    auto accepts = [](const Fiber* f, uint64_t bit) { return (f->sigmask & bit) == 0; };
    auto waiting = [](const Fiber* f) {
        return f->state == FiberState::kParked && f->interruptible;
    };
    for (uint64_t all = pending | ran; all; all &= all - 1) {
        const uint64_t bit = all & (~all + 1);
        // pause and sigsuspend wait for any handler to run, wherever it ran: in a threaded
        // program they are typically the one thread that does not block the signal. They take
        // the signal when there are any that accept it; otherwise one other parked call is
        // interrupted, as below.
        bool taken = false;
        if (signal_waiters_.load(std::memory_order_relaxed)) {
            for (Fiber* f = all_fibers_; f; f = f->next_on_carrier) {
                if (f->state == FiberState::kParked && f->park_reason == ParkReason::kSignal &&
                    accepts(f, bit)) {
                    unpark(f);
                    taken = true;
                }
            }
        }
        if (taken || !(pending & bit)) continue;
        const uint8_t how = (restarting & bit) ? 2 : 1;
        Fiber* victim = nullptr;
        bool targeted = false;  // sent to a fiber of ours (pthread_kill, tgkill): only it may be
        for (Fiber* f = all_fibers_; f && target; f = f->next_on_carrier) {
            if (f != target) continue;
            targeted = true;
            if (waiting(f) && accepts(f, bit)) victim = f;
        }
        if (targeted) {
            target = nullptr;       // it names the first signal only
            if (!victim) continue;  // it was not waiting: the signal interrupts no one
        }
        if (!victim && waiting(root_) && accepts(root_, bit)) victim = root_;
        for (Fiber* f = all_fibers_; f && !victim; f = f->next_on_carrier)
            if (waiting(f) && accepts(f, bit)) victim = f;
        if (!victim) continue;
        victim->interrupted = how;
        unpark(victim);
    }
}

void Carrier::on_remote_wake(uv_async_t* handle) {
    auto* self = static_cast<Carrier*>(handle->data);
    self->deliver_signal();
    parking_lot::run_deferred_unparks();  // asked for by signal handlers
    self->take_remote_work();
}

// Fds closed elsewhere, fibers other threads started here, then wake-ups they sent, each in
// the order sent.
void Carrier::take_remote_work() {
    if (poller_.take_stale()) poller_.evict_stale();
    Fiber* first = oldest_first(arrivals_.exchange(nullptr, std::memory_order_acquire),
                                &Fiber::next_runnable);
    while (first) {
        Fiber* next = first->next_runnable;
        start_fiber(first);
        first = next;
    }
    RemoteWake* in_order =
        oldest_first(inbox_.exchange(nullptr, std::memory_order_acquire), &RemoteWake::next);
    while (in_order) {
        RemoteWake* wake = in_order;
        in_order = wake->next;
        Fiber* fiber = wake->fiber;
        const uint64_t park_seq = wake->park_seq;
        delete wake;
        // Only the park the waker meant: the fiber may have timed out and parked again since.
        if (fiber->park_seq == park_seq) unpark(fiber);
        drop_fiber_ref(fiber);  // the sender's
    }
}

void Carrier::serve(void (*ready)(Carrier*)) {
    serving_.store(true, std::memory_order_relaxed);
    g_program_threads.fetch_sub(1);
    // Not a program thread: the counters count fibers only.
    counters_.fibers_created.store(0, std::memory_order_relaxed);
    counters_.fibers_live.store(0, std::memory_order_relaxed);
    counters_.fibers_peak.store(0, std::memory_order_relaxed);
    // Its mask (every signal blocked) stays counted: an empty carrier lets no signal in.
    root_->state = FiberState::kParked;
    root_->park_reason = ParkReason::kExited;
    ready(this);
    switch_to_scheduler(root_);
    log::fatal("a pool carrier's own context was resumed");
}

void Carrier::root_exited() {
    root_exited_ = true;
    g_root_exited.store(true);
    g_program_threads.fetch_sub(1, std::memory_order_release);
    count_mask(root_->sigmask, -1);  // an exited thread takes no signal
    root_->state = FiberState::kParked;
    root_->park_reason = ParkReason::kExited;
    switch_to_scheduler(root_);
    log::fatal("the exited root fiber was resumed");
}

}  // namespace green
