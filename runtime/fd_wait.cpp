// fd readiness waits. Each carrier owns a private epoll set for the program's fds, which also
// holds libuv's backend fd: the scheduler sleeps there (poll_once). Registrations are
// EPOLLONESHOT: each wait arms the fd once, an event disarms it, so a registration left behind
// by an fd closed behind our back (fclose, glibc internals) never fires again. epoll_ctl
// leaves the fd's flags alone.
// Generations are process-wide: a close on any thread (a carrier, or a thread the runtime does
// not manage) bumps the number's generation, so waiters that began before it wake as closed
// and events tagged with an older generation are dropped, on every carrier.
#include <sys/epoll.h>
#include <time.h>

#include <cerrno>
#include <algorithm>
#include <cstdlib>

#include "runtime/carrier.h"
#include "runtime/stack_pool.h"

namespace green {
namespace {

// Generations of fd numbers: chunks made on first use (a wait on a number in them), never
// freed; readers need no lock. Covers the numbers the kernel allows (fs.nr_open <= 2^22 here
// would need 1024 chunks; larger numbers have no generation and are never tagged stale).
// Beside each generation, the carriers that have waited on the number since its last close (bit
// i: carrier index i; bit 31: every carrier from 31 on): a close tells those only.
struct FdSlot {
    std::atomic<uint32_t> gen;
    std::atomic<uint32_t> carriers;
};
constexpr size_t kChunkBits = 12;
constexpr size_t kChunkSize = size_t{1} << kChunkBits;
constexpr size_t kChunks = 1024;
std::atomic<FdSlot*> g_generations[kChunks];

FdSlot* generation_slot(int fd, bool make) {
    size_t chunk = static_cast<size_t>(fd) >> kChunkBits;
    if (fd < 0 || chunk >= kChunks) return nullptr;
    FdSlot* slots = g_generations[chunk].load(std::memory_order_acquire);
    if (!slots && make) {
        auto* fresh = static_cast<FdSlot*>(calloc(kChunkSize, sizeof *slots));
        if (!fresh) return nullptr;
        if (g_generations[chunk].compare_exchange_strong(slots, fresh))
            slots = fresh;
        else
            free(fresh);  // another thread made it first
    }
    return slots ? &slots[static_cast<size_t>(fd) & (kChunkSize - 1)] : nullptr;
}

uint32_t carrier_bit(int index) {
    return uint32_t{1} << (index < 31 ? index : 31);
}

// Marks the fd as waited on by `carrier`, then reads its generation: a close on another thread
// bumps the generation before it reads the marks, so it either sees this carrier's mark or
// this wait sees the new generation.
uint32_t generation_for_wait(int fd, const Carrier* carrier) {
    FdSlot* slot = generation_slot(fd, true);
    if (!slot) return 0;
    const uint32_t bit = carrier_bit(carrier->index());
    if (!(slot->carriers.load(std::memory_order_relaxed) & bit))
        slot->carriers.fetch_or(bit, std::memory_order_seq_cst);
    return slot->gen.load(std::memory_order_seq_cst);
}

bool stale(const FdWaiter* w) { return w->gen != fd_generation(w->fd); }

// Another carrier's part in a close made elsewhere: the fd leaves its epoll set now (epoll_ctl
// may be called from any thread), and its thread wakes the waiters that began before.
struct Closed {
    int fd;
    uint32_t carriers;  // the marks the close took (every carrier: a range, or a handler's)
};

void tell_carrier(Carrier* carrier, void* context) {
    const auto* closed = static_cast<const Closed*>(context);
    if (carrier != Carrier::current() && (closed->carriers & carrier_bit(carrier->index())))
        carrier->fd_closed_remotely(closed->fd);
}

// After the generation of `fd` (-1: of a whole range) moved on: its waiters wake as closed,
// on every carrier that waited on it, and it leaves their epoll sets.
void wake_closed_waiters(int fd, uint32_t carriers) {
    Carrier* here = Carrier::current();
    Closed closed{fd, carriers};
    if (in_signal_handler()) {
        // A close in a handler, which may have interrupted this carrier inside its fd records
        // or its run queue: done as a close on another thread is (async-signal-safe), and the
        // registry's lock only waited for when this thread cannot be the one holding it.
        if (here) here->fd_closed_remotely(fd);
        for_each_carrier(tell_carrier, &closed, spinlocks_held() != 0);
        return;
    }
    if (here) {
        if (fd >= 0)
            here->fd_closing(fd);
        else
            here->evict_stale_waiters();
        carriers &= ~carrier_bit(here->index());
        if (here->index() >= 31) carriers |= carrier_bit(31);  // others may share the bit
    }
    if (carriers) for_each_carrier(tell_carrier, &closed);
}

}  // namespace

uint32_t fd_generation(int fd) {
    FdSlot* slot = generation_slot(fd, false);
    return slot ? slot->gen.load(std::memory_order_acquire) : 0;
}

WaitResult wait_fd(int fd, uint32_t events, uint64_t deadline_ns, ParkReason reason) {
    FdWaiter waiter;
    waiter.fd = fd;
    waiter.events = events;
    return Carrier::current()->wait_fds(&waiter, 1, deadline_ns, reason);
}

WaitResult wait_fds(FdWaiter* waiters, size_t count, uint64_t deadline_ns, ParkReason reason) {
    return Carrier::current()->wait_fds(waiters, count, deadline_ns, reason);
}

void fd_closing(int fd) {
    FdSlot* slot = generation_slot(fd, false);
    if (!slot) return;  // no fiber ever waited on this number
    slot->gen.fetch_add(1, std::memory_order_seq_cst);
    const uint32_t carriers = slot->carriers.exchange(0, std::memory_order_seq_cst);
    if (carriers) wake_closed_waiters(fd, carriers);
}

void fds_closing(unsigned first, unsigned last) {
    bool any = false;
    for (size_t chunk = first >> kChunkBits; chunk < kChunks && chunk <= (last >> kChunkBits);
         ++chunk) {
        FdSlot* slots = g_generations[chunk].load(std::memory_order_acquire);
        if (!slots) continue;
        any = true;
        const size_t lo = std::max<size_t>(first, chunk << kChunkBits);
        const size_t hi = std::min<size_t>(last, ((chunk + 1) << kChunkBits) - 1);
        for (size_t fd = lo; fd <= hi; ++fd) {
            slots[fd & (kChunkSize - 1)].gen.fetch_add(1, std::memory_order_seq_cst);
            slots[fd & (kChunkSize - 1)].carriers.store(0, std::memory_order_seq_cst);
        }
    }
    if (any) wake_closed_waiters(-1, ~uint32_t{0});
}

FdRecord& Carrier::record(int fd) {
    if (static_cast<size_t>(fd) >= fds_.size()) {
        size_t size = fds_.size() ? fds_.size() : 1024;
        while (size <= static_cast<size_t>(fd)) size *= 2;
        fds_.resize(size);
    }
    return fds_[fd];
}

static void link(FdRecord& rec, FdWaiter* w) {
    w->prev = nullptr;
    w->next = rec.waiters;
    if (rec.waiters) rec.waiters->prev = w;
    rec.waiters = w;
}

static void unlink(FdRecord& rec, FdWaiter* w) {
    if (w->prev)
        w->prev->next = w->next;
    else if (rec.waiters == w)
        rec.waiters = w->next;
    if (w->next) w->next->prev = w->prev;
    w->next = w->prev = nullptr;
}

// Arms the fd for the union of what its still-unwoken waiters want. An fd that epoll cannot
// watch (a regular file: EPERM) or that is gone (EBADF) counts as ready: the caller's retry
// of the real call then returns what a real thread would get.
void Carrier::arm(int fd) {
    FdRecord& rec = record(fd);
    const uint32_t gen = fd_generation(fd);
    uint32_t interest = 0;
    for (FdWaiter* w = rec.waiters; w; w = w->next)
        if (!w->revents && !w->closed && w->gen == gen) interest |= w->events;
    if (!interest) return;
    const int saved = errno;  // a successful hook leaves errno alone (ENOENT, EEXIST below)
    const int epoll_fd = epoll_fd_.load(std::memory_order_relaxed);
    epoll_event ev{};
    ev.events = interest | EPOLLONESHOT;
    ev.data.u64 = static_cast<uint32_t>(fd) | (static_cast<uint64_t>(gen) << 32);
    int rc = epoll_ctl(epoll_fd, rec.in_epoll ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, fd, &ev);
    if (rc != 0 && errno == ENOENT) rc = epoll_ctl(epoll_fd, EPOLL_CTL_ADD, fd, &ev);
    if (rc != 0 && errno == EEXIST) rc = epoll_ctl(epoll_fd, EPOLL_CTL_MOD, fd, &ev);
    errno = saved;
    if (rc == 0) {
        rec.in_epoll = true;
        return;
    }
    for (FdWaiter* w = rec.waiters; w; w = w->next) {
        if (w->revents || w->closed) continue;
        w->revents = w->events;
        unpark(w->fiber);
    }
}

WaitResult Carrier::wait_fds(FdWaiter* waiters, size_t count, uint64_t deadline_ns,
                             ParkReason reason) {
    // The call has begun: a handler that runs before the park (the first wait makes the loop,
    // which takes a while) interrupts it as the kernel's would, just as one during the park.
    Fiber* self = current_fiber();
    const uint32_t ran_before = self->handlers_ran;
    const uint32_t no_restart_before = self->handlers_ran_no_restart;
    if (!ensure_loop()) return WaitResult::kReady;  // no epoll set: the retry decides
    for (size_t i = 0; i < count; ++i) {
        FdWaiter* w = &waiters[i];
        w->fiber = self;
        w->revents = 0;
        w->closed = false;
        w->gen = generation_for_wait(w->fd, this);
        link(record(w->fd), w);
    }
    for (size_t i = 0; i < count; ++i) arm(waiters[i].fd);

    bool woken_early = false;
    for (size_t i = 0; i < count; ++i) woken_early |= waiters[i].revents != 0;
    bool timed_out = false;
    std::atomic_signal_fence(std::memory_order_seq_cst);  // handlers_ran: written by handlers
    if (self->handlers_ran != ran_before) {
        self->interrupted = self->handlers_ran_no_restart != no_restart_before ? 1 : 2;
        woken_early = true;
    }
    if (!woken_early) timed_out = park_until(deadline_ns, reason, true);

    bool ready = false, closed = false;
    for (size_t i = 0; i < count; ++i) {
        FdWaiter* w = &waiters[i];
        unlink(fds_[w->fd], w);
        ready |= w->revents != 0;
        closed |= w->closed || stale(w);
    }
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

// epoll_pwait2 (Linux 5.11) takes a timespec; before it, whole milliseconds rounded up.
static int wait_epoll(int epoll_fd, epoll_event* events, int max, const timespec* timeout) {
    static std::atomic<bool> no_pwait2{false};
    if (!no_pwait2.load(std::memory_order_relaxed)) {
        int n = epoll_pwait2(epoll_fd, events, max, timeout, nullptr);
        if (n >= 0 || errno != ENOSYS) return n;
        no_pwait2.store(true, std::memory_order_relaxed);
    }
    int ms = -1;
    if (timeout) {
        uint64_t ns = static_cast<uint64_t>(timeout->tv_sec) * 1000000000ull +
                      static_cast<uint64_t>(timeout->tv_nsec);
        ms = static_cast<int>(std::min<uint64_t>((ns + 999999) / 1000000, INT32_MAX));
    }
    return epoll_wait(epoll_fd, events, max, ms);
}

void Carrier::poll_once(bool block) {
    constexpr int kBatch = 256;
    epoll_event events[kBatch];
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
        StackPool::scavenge(monotonic_now_ns());
        const uint64_t fiber_deadline =
            timers_.empty() ? kNoDeadline : timers_.front()->deadline_ns;
        timeout = sleep_limit(libuv_timeout,
                              std::min<uint64_t>(fiber_deadline, StackPool::next_scavenge_ns()),
                              &limit_storage);
        use_thread_pointer(thread_tp_);  // a program's handler may run while we sleep
    }
    const int epoll_fd = epoll_fd_.load(std::memory_order_relaxed);
    int n;
    do {
        if (timeout != &zero) {
            // The mirror of wake_if_idle(): other threads write the eventfd only while idle_
            // is set, so a fiber or wake-up they queued before seeing it set is looked for now.
            idle_.store(true, std::memory_order_seq_cst);
            if (remote_work_waiting()) timeout = &zero;
        }
        n = wait_epoll(epoll_fd, events, kBatch, timeout);
        // Awake: before any new work is taken (the deadlock check reads it on other threads).
        if (quiet_.load(std::memory_order_relaxed)) quiet_.store(false, std::memory_order_seq_cst);
        if (idle_.load(std::memory_order_relaxed)) {
            idle_.store(false, std::memory_order_seq_cst);  // then look whether the monitor
            carrier_busy_again();                           // sleeps (its check is the mirror)
        }
        if (n < 0) {
            run_libuv = true;  // EINTR: a signal's async wake-up may be waiting in libuv
            break;
        }
        timeout = &zero;
        for (int i = 0; i < n; ++i) {
            if (events[i].data.u64 == kLibuvTag) {
                run_libuv = true;
                continue;
            }
            if (events[i].data.u64 == kWakeTag) {
                take_woken();
                continue;
            }
            int fd = static_cast<int>(events[i].data.u64 & 0xffffffffu);
            uint32_t gen = static_cast<uint32_t>(events[i].data.u64 >> 32);
            if (static_cast<size_t>(fd) >= fds_.size()) continue;
            if (fd_generation(fd) != gen) continue;  // an event for an fd number since closed
            FdRecord& rec = fds_[fd];
            uint32_t got = events[i].events;
            for (FdWaiter* w = rec.waiters; w; w = w->next) {
                if (w->revents || w->closed || w->gen != gen) continue;
                uint32_t hit = got & (w->events | EPOLLERR | EPOLLHUP);
                if (!hit) continue;
                w->revents = hit;
                unpark(w->fiber);
            }
            arm(fd);  // one-shot fired: re-arm for waiters that wanted something else
        }
    } while (n == kBatch);
    take_remote_work();
    expire_timers();
    // libuv's own timers (c-ares's timeouts) are due when its timeout has passed.
    if (!run_libuv && libuv_timeout > 0) {
        uv_update_time(&loop_);
        run_libuv = uv_backend_timeout(&loop_) == 0;
    }
    if (run_libuv) uv_run(&loop_, UV_RUN_NOWAIT);
}

void Carrier::fd_closing(int fd) {
    if (fd < 0 || static_cast<size_t>(fd) >= fds_.size()) return;
    FdRecord& rec = fds_[fd];
    for (FdWaiter* w = rec.waiters; w; w = w->next) {
        if (w->closed) continue;
        w->closed = true;
        unpark(w->fiber);
    }
    if (rec.in_epoll) {
        const int saved = errno;
        epoll_event unused{};
        epoll_ctl(epoll_fd_.load(std::memory_order_relaxed), EPOLL_CTL_DEL, fd, &unused);
        errno = saved;
        rec.in_epoll = false;
    }
}

// On the closing thread: leave the epoll set now (before the real close, so the number can be
// reused), then let this carrier's thread wake its stale waiters. fd -1: a whole range was
// closed; the kernel drops registrations whose file is gone, and a stale one fires at most
// once, with a generation that is dropped.
void Carrier::fd_closed_remotely(int fd) {
    const int saved = errno;
    int epoll_fd = epoll_fd_.load(std::memory_order_relaxed);
    if (epoll_fd >= 0 && fd >= 0) {
        epoll_event unused{};
        epoll_ctl(epoll_fd, EPOLL_CTL_DEL, fd, &unused);  // this carrier's in_epoll is stale now:
    }                                                     // arm() then adds instead of modifying
    errno = saved;
    stale_fds_.store(true, std::memory_order_seq_cst);
    wake_if_idle();
}

void Carrier::evict_stale_waiters() {
    for (size_t fd = 0; fd < fds_.size(); ++fd) {
        for (FdWaiter* w = fds_[fd].waiters; w; w = w->next) {
            if (w->closed || !stale(w)) continue;
            w->closed = true;
            unpark(w->fiber);
        }
    }
}

}  // namespace green
