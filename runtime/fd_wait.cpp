// fd readiness waits: a fiber parks until one of its fds is ready, one is closed, the deadline
// passes or a signal interrupts it; the carrier's scheduler sleeps in its poller's epoll set
// (poll_once), which also holds libuv's backend fd. The poller (poller.h) owns the epoll set,
// the waiter lists and the process-wide fd generations.
#include <time.h>

#include <algorithm>
#include <cerrno>

#include "runtime/carrier.h"
#include "runtime/stack_pool.h"

namespace green {

WaitResult wait_fd(int fd, uint32_t events, uint64_t deadline_ns, ParkReason reason) {
    FdWaiter waiter;
    waiter.fd = fd;
    waiter.events = events;
    return Carrier::current()->wait_fds(&waiter, 1, deadline_ns, reason);
}

WaitResult wait_fds(FdWaiter* waiters, size_t count, uint64_t deadline_ns, ParkReason reason) {
    return Carrier::current()->wait_fds(waiters, count, deadline_ns, reason);
}

WaitResult Carrier::wait_fds(FdWaiter* waiters, size_t count, uint64_t deadline_ns,
                             ParkReason reason) {
    // The call has begun: a handler that runs before the park (the first wait makes the loop,
    // which takes a while) interrupts it as the kernel's would, just as one during the park.
    // Inside a hooked call, it began at the call's entry.
    Fiber* self = current_fiber();
    const bool in_call = self->hook_depth > 0;
    const uint32_t ran_before = in_call ? self->handlers_at_call : self->handlers_ran;
    const uint32_t no_restart_before =
        in_call ? self->handlers_no_restart_at_call : self->handlers_ran_no_restart;
    if (!ensure_loop()) return WaitResult::kReady;  // no epoll set: the retry decides
    poller_.add(waiters, count, self);

    bool woken_early = false;
    for (size_t i = 0; i < count; ++i) woken_early |= waiters[i].revents != 0;
    bool timed_out = false;
    std::atomic_signal_fence(std::memory_order_seq_cst);  // handlers_ran: written by handlers
    if (self->handlers_ran != ran_before) {
        self->interrupted = self->handlers_ran_no_restart != no_restart_before ? 1 : 2;
        woken_early = true;
    }
    if (!woken_early) timed_out = park_until(deadline_ns, reason, true);

    if (in_call) {  // what ran so far is this wait's: a later wait in the call starts afresh
        self->handlers_at_call = self->handlers_ran;
        self->handlers_no_restart_at_call = self->handlers_ran_no_restart;
    }
    const bool closed = poller_.remove(waiters, count);
    bool ready = false;
    for (size_t i = 0; i < count; ++i) ready |= waiters[i].revents != 0;
    if (closed) return WaitResult::kClosed;
    if (ready) {
        self->interrupted = 0;  // the call completes; the handler has run all the same
        return WaitResult::kReady;
    }
    if (self->interrupted) return WaitResult::kInterrupted;
    return timed_out ? WaitResult::kTimedOut : WaitResult::kReady;
}

// How long the carrier may sleep: until libuv's next timer (whole ms) or the earliest fiber
// deadline (ns), whichever comes first; nullptr for no limit.
static const timespec* sleep_limit(int libuv_ms, uint64_t deadline_ns, timespec* out) {
    uint64_t limit = kNoDeadline;
    if (libuv_ms >= 0) limit = static_cast<uint64_t>(libuv_ms) * 1000000ull;
    if (deadline_ns != kNoDeadline) {
        uint64_t now = monotonic_now_ns();
        uint64_t left = deadline_ns > now ? deadline_ns - now : 0;
        if (left < limit) limit = left;
    }
    if (limit == kNoDeadline) return nullptr;
    *out = timespec_from_ns(limit);
    return out;
}

void Carrier::poll_once(bool block) {
    uv_update_time(&loop_);
    // 0 when libuv has work now (a due timer, pending callbacks); -1 when it has no timer.
    int libuv_timeout = uv_backend_timeout(&loop_);
    bool run_libuv = libuv_timeout == 0;
    timespec limit_storage{};
    const timespec zero{};
    const timespec* timeout = &zero;
    if (block) {
        // About to sleep: first give back the pages of stacks that stayed unused long enough,
        // and wake when the next ones are due, so an idle process does not keep a burst's.
        const uint64_t stacks_due = StackPool::scavenge_before_sleep(monotonic_now_ns());
        const uint64_t fiber_deadline =
            timers_.empty() ? kNoDeadline : timers_.front()->deadline_ns;
        timeout = sleep_limit(libuv_timeout, std::min<uint64_t>(fiber_deadline, stacks_due),
                              &limit_storage);
        use_thread_pointer(thread_tp_);  // a program's handler may run while we sleep
    }
    Poller::Polled polled;
    do {
        if (timeout != &zero) {
            // The mirror of wake_if_idle(): other threads write the eventfd only while idle_
            // is set, so a fiber or wake-up they queued before seeing it set is looked for now.
            idle_.store(true, std::memory_order_seq_cst);
            if (remote_work_waiting()) timeout = &zero;
        }
        polled = poller_.wait(timeout);
        // Awake: before any new work is taken (the deadlock check reads it on other threads).
        if (quiet_.load(std::memory_order_relaxed)) quiet_.store(false, std::memory_order_seq_cst);
        if (idle_.load(std::memory_order_relaxed)) {
            idle_.store(false, std::memory_order_seq_cst);  // then look whether the monitor
            carrier_busy_again();                           // sleeps (its check is the mirror)
        }
        if (polled.events < 0) {
            run_libuv = true;  // EINTR: a signal's async wake-up may be waiting in libuv
            break;
        }
        run_libuv |= polled.libuv;
        timeout = &zero;
    } while (polled.full);
    take_remote_work();
    expire_timers();
    // libuv's own timers (c-ares's timeouts) are due when its timeout has passed.
    if (!run_libuv && libuv_timeout > 0) {
        uv_update_time(&loop_);
        run_libuv = uv_backend_timeout(&loop_) == 0;
    }
    if (run_libuv) uv_run(&loop_, UV_RUN_NOWAIT);
}

}  // namespace green
