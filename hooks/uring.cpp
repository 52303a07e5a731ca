// liburing's waits for completions. liburing (Debian 12: 2.3, built without libc) enters the
// kernel with inline system calls no hook sees, so a thread waiting in io_uring_wait_cqe would
// hold its carrier. These hooks are liburing 2.3's own functions (src/queue.c, and the inline
// __io_uring_peek_cqe of liburing.h) with one change: the io_uring_enter that would wait for
// completions parks the fiber until the ring's fd is readable, its timeout passes or a handler
// interrupts it, and reports what the kernel would have. Never blocks the carrier, except where
// the kernel must do the waiting itself (a signal mask for the wait, an fd that cannot be
// polled): then the real system call runs, as liburing would have made it.
#include <linux/io_uring.h>
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>

#include "hooks/hooks.h"
#include "hooks/wait.h"

namespace green::hooks {
namespace {

// liburing.h's struct io_uring, whose layout is liburing's ABI since 2.0 (every program's inline
// io_uring_cq_ready and io_uring_wait_cqe read it in place); held to the installed header below
// when liburing-dev is there. The masks are read through the kernel's pointers (kring_mask),
// which every 2.x fills; the copies beside them came in 2.3.
struct Ring {
    struct {
        unsigned *khead, *ktail, *kring_mask, *kring_entries, *kflags, *kdropped, *array;
        io_uring_sqe* sqes;
        unsigned sqe_head, sqe_tail;
        size_t ring_sz;
        void* ring_ptr;
        unsigned ring_mask, ring_entries;
        unsigned pad[2];
    } sq;
    struct {
        unsigned *khead, *ktail, *kring_mask, *kring_entries, *kflags, *koverflow;
        io_uring_cqe* cqes;
        size_t ring_sz;
        void* ring_ptr;
        unsigned ring_mask, ring_entries;
        unsigned pad[2];
    } cq;
    unsigned flags;
    int ring_fd;
    unsigned features;
    int enter_ring_fd;
    uint8_t int_flags;
    uint8_t pad[3];
    unsigned pad2;
};

}  // namespace
}  // namespace green::hooks

#if __has_include(<liburing.h>)
#include <liburing.h>
#include <cstddef>
#define GREEN_SAME_FIELD(field)                                             \
    static_assert(offsetof(green::hooks::Ring, field) == offsetof(::io_uring, field) && \
                  sizeof(green::hooks::Ring::field) == sizeof(::io_uring::field))
GREEN_SAME_FIELD(sq.khead);
GREEN_SAME_FIELD(sq.ktail);
GREEN_SAME_FIELD(sq.kflags);
GREEN_SAME_FIELD(sq.sqe_head);
GREEN_SAME_FIELD(sq.sqe_tail);
GREEN_SAME_FIELD(cq.khead);
GREEN_SAME_FIELD(cq.ktail);
GREEN_SAME_FIELD(cq.kring_mask);
GREEN_SAME_FIELD(cq.kring_entries);
GREEN_SAME_FIELD(cq.cqes);
GREEN_SAME_FIELD(flags);
GREEN_SAME_FIELD(ring_fd);
GREEN_SAME_FIELD(features);
GREEN_SAME_FIELD(enter_ring_fd);
GREEN_SAME_FIELD(int_flags);
static_assert(sizeof(green::hooks::Ring) == sizeof(::io_uring));
#undef GREEN_SAME_FIELD
#endif

namespace green::hooks {
namespace {

constexpr uint8_t kIntFlagRegRing = 1;                // liburing's INT_FLAG_REG_RING
constexpr uint64_t kUdataTimeout = ~uint64_t{0};      // LIBURING_UDATA_TIMEOUT
constexpr int kSigsetSize = _NSIG / 8;

Ring* as_ring(io_uring* ring) { return reinterpret_cast<Ring*>(ring); }

// io_uring_enter(2) as liburing's __sys_io_uring_enter2 makes it: -errno on failure, and errno
// left as it was (liburing never sets it).
long raw_enter(int fd, unsigned submit, unsigned min_complete, unsigned flags, const void* arg,
               size_t size) {
    const int saved = errno;
    long r = real::get().syscall(SYS_io_uring_enter, fd, submit, min_complete, flags, arg, size);
    if (r < 0) r = -errno;
    errno = saved;
    return r;
}

// Completions in the ring that the program has not consumed (io_uring_cq_ready): what the
// kernel counts before it waits (__io_cqring_events_user).
unsigned ready(const Ring* ring) {
    return __atomic_load_n(ring->cq.ktail, __ATOMIC_ACQUIRE) -
           __atomic_load_n(ring->cq.khead, __ATOMIC_RELAXED);
}

// A ring as io_uring_enter sees it: the fd (or registered index) to enter with, the fd to poll,
// and, when liburing's struct is at hand, its completion queue to count in place.
class Target {
  public:
    explicit Target(const Ring* ring)
        : enter_fd_(ring->enter_ring_fd),
          poll_fd_(ring->ring_fd),
          registered_((ring->int_flags & kIntFlagRegRing) ? IORING_ENTER_REGISTERED_RING : 0),
          ring_(ring) {}
    // A bare fd (a raw io_uring_enter): a registered ring's index cannot be polled.
    Target(int fd, unsigned flags)
        : enter_fd_(fd),
          poll_fd_((flags & IORING_ENTER_REGISTERED_RING) ? -1 : fd),
          registered_(flags & IORING_ENTER_REGISTERED_RING),
          ring_(nullptr) {}

    long enter(unsigned submit, unsigned min_complete, unsigned flags, const void* arg,
               size_t size) const {
        return raw_enter(enter_fd_, submit, min_complete, flags, arg, size);
    }
    // Polled rings (IORING_SETUP_IOPOLL) reap inside io_uring_enter: the kernel waits. Only
    // liburing's struct tells; a bare fd's probe (has) then polls in the kernel, as natively.
    bool polled() const { return ring_ && (ring_->flags & IORING_SETUP_IOPOLL); }

    // 1 if `n` completions are in the ring (n capped at its size, as the kernel caps it), after
    // the work the kernel does before it would wait (its task's work, overflowed completions);
    // 0 if not; -1 if entering fails (the kernel's own wait then reports why).
    int has(unsigned n) const {
        if (ring_) {
            if (enter(0, 0, IORING_ENTER_GETEVENTS | registered_, nullptr, 0) < 0) return -1;
            n = std::min(n, __atomic_load_n(ring_->cq.kring_entries, __ATOMIC_RELAXED));
            return ready(ring_) >= n;
        }
        // No ring memory: the kernel's own count, asked with a timeout of zero.
        __kernel_timespec zero{};
        io_uring_getevents_arg arg{};
        arg.ts = reinterpret_cast<uint64_t>(&zero);
        long r = enter(0, n, IORING_ENTER_GETEVENTS | IORING_ENTER_EXT_ARG | registered_, &arg,
                       sizeof arg);
        return r == 0 ? 1 : r == -ETIME ? 0 : -1;
    }

    // The fd to park on: the ring's own, which polls readable while completions wait in the
    // ring or the kernel holds work for it (overflowed completions, task work). -1 when it
    // cannot be polled (a registered ring whose fd the program closed, or only an index).
    int poll_fd() const {
        if (poll_fd_ < 0) return -1;
        pollfd p{poll_fd_, POLLIN, 0};
        const int saved = errno;
        int r = unless_ours_interrupted([&] { return real::get().poll(&p, 1, 0); });
        errno = saved;
        return r == 1 && (p.revents & POLLNVAL) ? -1 : poll_fd_;
    }

  private:
    int enter_fd_;
    int poll_fd_;
    unsigned registered_;
    const Ring* ring_;
};

// What the kernel's wait for `want` completions ended with, with errno-style codes: 0 (enough),
// -ETIME (the deadline), -EINTR (a handler ran), or 1 when the kernel must wait instead.
constexpr long kKernelWaits = 1;

long park_for_completions(const Target& ring, unsigned want, uint64_t deadline,
                          HandlerWatch& handlers) {
    uint64_t backoff_ns = 0;
    for (;;) {
        int has = ring.has(want);
        if (has != 0) return has > 0 ? 0 : kKernelWaits;
        const int fd = ring.poll_fd();
        if (fd < 0) return kKernelWaits;
        if (handlers.ran()) return -EINTR;  // while this fiber ran, since the last look
        WaitResult w;
        bool backoff_over = false;
        if (!ready_now(fd, POLLIN)) {
            w = wait_fd(fd, EPOLLIN, deadline, ParkReason::kPoll);
        } else {
            // Completions, but fewer than wanted: no fd event tells of the next one.
            const uint64_t until = next_poll_sleep_until(&backoff_ns);
            w = sleep_until(std::min(until, deadline), ParkReason::kPoll);
            backoff_over = w == WaitResult::kTimedOut && until < deadline;
        }
        handlers.mark();
        if (backoff_over) continue;
        switch (w) {
            case WaitResult::kReady: break;
            case WaitResult::kTimedOut: return -ETIME;
            case WaitResult::kClosed: return kKernelWaits;  // closed meanwhile: the kernel says
            case WaitResult::kInterrupted:
                interruption_restarts();  // io_uring_enter is never restarted
                return -EINTR;
        }
    }
}

// io_uring_enter(2), whose wait for completions parks the fiber. The kernel submits first, then
// (IORING_ENTER_GETEVENTS) waits until min_complete completions are in the ring, capped at its
// size; it returns the count submitted if any, else the wait's result, and a wait that timed out
// or was interrupted with completions in the ring reports 0 (io_uring/io_uring.c,
// io_uring_enter and io_cqring_wait).
long enter(const Target& ring, unsigned submit, unsigned min_complete, unsigned flags,
           const void* arg, size_t size) {
    if (!(flags & IORING_ENTER_GETEVENTS) || min_complete == 0 || ring.polled())
        return ring.enter(submit, min_complete, flags, arg, size);
    // Submits, and checks what the kernel checks before it waits (the fd, the argument).
    HandlerWatch handlers;
    const long submitted = ring.enter(submit, 0, flags, arg, size);
    if (submitted < 0) return submitted;

    const void* sigmask = arg;
    uint64_t deadline = kNoDeadline;
    bool timespec_fault = false;
    if (flags & IORING_ENTER_EXT_ARG) {
        io_uring_getevents_arg ext{};
        copy_from_user(&ext, arg, sizeof ext);  // the kernel has just read it
        sigmask = reinterpret_cast<const void*>(ext.sigmask);
        if (ext.ts) {
            __kernel_timespec ts{};
            if (!copy_from_user(&ts, reinterpret_cast<const void*>(ext.ts), sizeof ts))
                timespec_fault = true;
            else
                deadline = deadline_after_unchecked(ts.tv_sec, ts.tv_nsec);
        }
    }
    long waited;
    int has = ring.has(min_complete);
    if (has > 0)
        waited = 0;
    else if (has < 0 || sigmask || timespec_fault)  // the mask is the kernel's to set, and
        waited = kKernelWaits;                      // EFAULT its to say
    else
        waited = park_for_completions(ring, min_complete, deadline, handlers);
    if (waited == kKernelWaits)
        waited = ring.enter(0, min_complete, flags, arg, size);
    else if (waited < 0 && ring.has(1) > 0)
        waited = 0;
    return submitted > 0 ? submitted : waited;
}

// liburing.h's __io_uring_peek_cqe: the completion at the head, skipping (and consuming) the
// internal timeout completions liburing uses on kernels without IORING_FEAT_EXT_ARG.
int peek_cqe(Ring* ring, io_uring_cqe** cqe_ptr, unsigned* nr_available) {
    const unsigned mask = *ring->cq.kring_mask;
    const int shift = (ring->flags & IORING_SETUP_CQE32) ? 1 : 0;
    io_uring_cqe* cqe;
    unsigned available;
    int err = 0;
    for (;;) {
        unsigned tail = __atomic_load_n(ring->cq.ktail, __ATOMIC_ACQUIRE);
        unsigned head = *ring->cq.khead;
        cqe = nullptr;
        available = tail - head;
        if (!available) break;
        cqe = &ring->cq.cqes[(head & mask) << shift];
        if (!(ring->features & IORING_FEAT_EXT_ARG) && cqe->user_data == kUdataTimeout) {
            if (cqe->res < 0) err = cqe->res;
            __atomic_store_n(ring->cq.khead, head + 1, __ATOMIC_RELEASE);
            if (!err) continue;
            cqe = nullptr;
        }
        break;
    }
    *cqe_ptr = cqe;
    if (nr_available) *nr_available = available;
    return err;
}

bool sq_ring_needs_enter(const Ring* ring, unsigned submit, unsigned* flags) {
    if (!submit) return false;
    if (!(ring->flags & IORING_SETUP_SQPOLL)) return true;
    // liburing's io_uring_smp_mb(): the tail store before the flags load, against the kernel's
    // SQPOLL thread. Written as the instruction a seq_cst fence is on x86-64, because the
    // ThreadSanitizer build refuses fences (-Werror=tsan) and cannot see the kernel anyway.
    asm volatile("mfence" ::: "memory");
    if (__atomic_load_n(ring->sq.kflags, __ATOMIC_RELAXED) & IORING_SQ_NEED_WAKEUP) {
        *flags |= IORING_ENTER_SQ_WAKEUP;
        return true;
    }
    return false;
}

bool cq_ring_needs_enter(const Ring* ring) {
    return (ring->flags & IORING_SETUP_IOPOLL) ||
           (__atomic_load_n(ring->sq.kflags, __ATOMIC_RELAXED) &
            (IORING_SQ_CQ_OVERFLOW | IORING_SQ_TASKRUN));
}

// liburing's __io_uring_flush_sq: publishes the SQEs the program prepared; the count pending.
unsigned flush_sq(Ring* ring) {
    const unsigned tail = ring->sq.sqe_tail;
    if (ring->sq.sqe_head != tail) {
        ring->sq.sqe_head = tail;
        __atomic_store_n(ring->sq.ktail, tail,
                         (ring->flags & IORING_SETUP_SQPOLL) ? __ATOMIC_RELEASE : __ATOMIC_RELAXED);
    }
    return tail - *ring->sq.khead;
}

struct GetData {
    unsigned submit;
    unsigned wait_nr;
    unsigned get_flags;
    int size;
    bool has_ts;
    void* arg;
};

// liburing's _io_uring_get_cqe, line for line, entering through enter().
int get_cqe(Ring* ring, io_uring_cqe** cqe_ptr, GetData* data) {
    io_uring_cqe* cqe = nullptr;
    bool looped = false;
    int err = 0;
    for (;;) {
        bool need_enter = false;
        unsigned flags = 0;
        unsigned nr_available;
        int ret = peek_cqe(ring, &cqe, &nr_available);
        if (ret) {
            if (!err) err = ret;
            break;
        }
        if (!cqe && !data->wait_nr && !data->submit) {
            // Entered once already, with nothing to submit or wait for: no retry.
            if (looped || !cq_ring_needs_enter(ring)) {
                if (!err) err = -EAGAIN;
                break;
            }
            need_enter = true;
        }
        if (data->wait_nr > nr_available || need_enter) {
            flags = IORING_ENTER_GETEVENTS | data->get_flags;
            need_enter = true;
        }
        if (sq_ring_needs_enter(ring, data->submit, &flags)) need_enter = true;
        if (!need_enter) break;
        if (looped && data->has_ts) {
            auto* arg = static_cast<io_uring_getevents_arg*>(data->arg);
            if (!cqe && arg->ts && !err) err = -ETIME;
            break;
        }
        if (ring->int_flags & kIntFlagRegRing) flags |= IORING_ENTER_REGISTERED_RING;
        ret = static_cast<int>(enter(Target(ring), data->submit, data->wait_nr, flags, data->arg,
                                     static_cast<size_t>(data->size)));
        if (ret < 0) {
            if (!err) err = ret;
            break;
        }
        data->submit -= static_cast<unsigned>(ret);
        if (cqe) break;
        if (!looped) {
            looped = true;
            err = ret;
        }
    }
    *cqe_ptr = cqe;
    return err;
}

// A wait with a timeout through IORING_ENTER_EXT_ARG (io_uring_wait_cqes_new and
// io_uring_submit_and_wait_timeout on kernels with IORING_FEAT_EXT_ARG).
int get_cqe_with_timeout(Ring* ring, io_uring_cqe** cqe_ptr, unsigned submit, unsigned wait_nr,
                         __kernel_timespec* ts, sigset_t* sigmask) {
    io_uring_getevents_arg arg{};
    arg.sigmask = reinterpret_cast<uint64_t>(sigmask);
    arg.sigmask_sz = kSigsetSize;
    arg.ts = reinterpret_cast<uint64_t>(ts);
    GetData data{submit, wait_nr, IORING_ENTER_EXT_ARG, static_cast<int>(sizeof arg), ts != nullptr,
                 &arg};
    return get_cqe(ring, cqe_ptr, &data);
}

// Without IORING_FEAT_EXT_ARG (Linux before 5.11) liburing times its waits with an internal
// timeout request; that path is left to liburing (it then blocks the carrier).
bool old_timeouts(const Ring* ring, const __kernel_timespec* ts) {
    return ts && !(ring->features & IORING_FEAT_EXT_ARG);
}

template <typename Fn, typename... Args>
int call_real(Fn real, Args... args) {
    return real ? real(args...) : -ENOSYS;
}

}  // namespace

int __io_uring_get_cqe(io_uring* ring, io_uring_cqe** cqe_ptr, unsigned submit, unsigned wait_nr,
                       sigset_t* sigmask) {
    GetData data{submit, wait_nr, 0, kSigsetSize, false, sigmask};
    return get_cqe(as_ring(ring), cqe_ptr, &data);
}

int io_uring_wait_cqes(io_uring* ring, io_uring_cqe** cqe_ptr, unsigned wait_nr,
                       __kernel_timespec* ts, sigset_t* sigmask) {
    Ring* r = as_ring(ring);
    if (old_timeouts(r, ts))
        return call_real(real::lib::io_uring_wait_cqes(), ring, cqe_ptr, wait_nr, ts, sigmask);
    if (ts) return get_cqe_with_timeout(r, cqe_ptr, 0, wait_nr, ts, sigmask);
    return hooks::__io_uring_get_cqe(ring, cqe_ptr, 0, wait_nr, sigmask);
}

int io_uring_wait_cqe_timeout(io_uring* ring, io_uring_cqe** cqe_ptr, __kernel_timespec* ts) {
    return hooks::io_uring_wait_cqes(ring, cqe_ptr, 1, ts, nullptr);
}

int io_uring_submit_and_wait(io_uring* ring, unsigned wait_nr) {
    // liburing's __io_uring_submit with getevents false.
    Ring* r = as_ring(ring);
    const unsigned submitted = flush_sq(r);
    const bool cq_needs_enter = wait_nr || cq_ring_needs_enter(r);
    unsigned flags = 0;
    if (!sq_ring_needs_enter(r, submitted, &flags) && !cq_needs_enter)
        return static_cast<int>(submitted);
    if (cq_needs_enter) flags |= IORING_ENTER_GETEVENTS;
    if (r->int_flags & kIntFlagRegRing) flags |= IORING_ENTER_REGISTERED_RING;
    return static_cast<int>(enter(Target(r), submitted, wait_nr, flags, nullptr, kSigsetSize));
}

int io_uring_submit_and_wait_timeout(io_uring* ring, io_uring_cqe** cqe_ptr, unsigned wait_nr,
                                     __kernel_timespec* ts, sigset_t* sigmask) {
    Ring* r = as_ring(ring);
    if (old_timeouts(r, ts))
        return call_real(real::lib::io_uring_submit_and_wait_timeout(), ring, cqe_ptr, wait_nr,
                         ts, sigmask);
    if (ts) return get_cqe_with_timeout(r, cqe_ptr, flush_sq(r), wait_nr, ts, sigmask);
    return hooks::__io_uring_get_cqe(ring, cqe_ptr, flush_sq(r), wait_nr, sigmask);
}

int io_uring_enter(unsigned int fd, unsigned int submit, unsigned int wait_nr, unsigned int flags,
                   sigset_t* sigmask) {
    return hooks::io_uring_enter2(fd, submit, wait_nr, flags, sigmask, kSigsetSize);
}

int io_uring_enter2(unsigned int fd, unsigned int submit, unsigned int wait_nr, unsigned int flags,
                    sigset_t* sigmask, size_t size) {
    const int ring = static_cast<int>(fd);
    return static_cast<int>(enter(Target(ring, flags), submit, wait_nr, flags, sigmask, size));
}

long io_uring_enter_call(long fd, long submit, long wait_nr, long flags, long arg, long size) {
    long r = enter(Target(static_cast<int>(fd), static_cast<unsigned>(flags)),
                   static_cast<unsigned>(submit), static_cast<unsigned>(wait_nr),
                   static_cast<unsigned>(flags), reinterpret_cast<const void*>(arg),
                   static_cast<size_t>(size));
    if (r >= 0) return r;
    errno = static_cast<int>(-r);  // syscall(2)'s convention
    return -1;
}

}  // namespace green::hooks
