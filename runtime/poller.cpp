// The carriers' OS pollers (poller.h) and the process-wide fd generations.
// Registrations are EPOLLONESHOT: each wait arms the fd once, an event disarms it, so a
// registration left behind by an fd closed behind our back (fclose, glibc internals) never
// fires again. epoll_ctl leaves the fd's flags alone.
// Generations are process-wide: a close on any thread (a carrier, or a thread the runtime does
// not manage) bumps the number's generation, so waiters that began before it wake as closed
// and events tagged with an older generation are dropped, on every carrier.
#include "runtime/poller.h"

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>

#include "runtime/carrier.h"
#include "runtime/raw_syscall.h"
#include "runtime/runtime_fds.h"

namespace green {
namespace {

// The epoll data of libuv's backend fd and of the wake-up eventfd; program fds carry
// fd | gen << 32.
constexpr uint64_t kLibuvTag = UINT64_MAX;
constexpr uint64_t kWakeTag = UINT64_MAX - 1;

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
uint32_t generation_for_wait(int fd, int carrier_index) {
    FdSlot* slot = generation_slot(fd, true);
    if (!slot) return 0;
    const uint32_t bit = carrier_bit(carrier_index);
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


// ---------------------------------------------------------------------------------------
// One carrier's poller.

bool Poller::open(int libuv_backend_fd) {
    int fd = adopt_runtime_fd(epoll_create1(EPOLL_CLOEXEC));
    int wake = adopt_runtime_fd(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
    epoll_event libuv{};
    libuv.events = EPOLLIN;
    libuv.data.u64 = kLibuvTag;
    epoll_event woken{};
    woken.events = EPOLLIN | EPOLLET;  // an event per write: never read (its count is moot)
    woken.data.u64 = kWakeTag;
    if (fd < 0 || wake < 0 || epoll_ctl(fd, EPOLL_CTL_ADD, libuv_backend_fd, &libuv) != 0 ||
        epoll_ctl(fd, EPOLL_CTL_ADD, wake, &woken) != 0) {
        int saved = errno;
        close_runtime_fd(fd);
        close_runtime_fd(wake);
        errno = saved;
        return false;
    }
    wake_fd_ = wake;
    wake_sent_.store(false);
    epoll_fd_.store(fd);
    return true;
}

void Poller::close() {
    close_runtime_fd(epoll_fd_.exchange(-1));
    close_runtime_fd(wake_fd_);
    wake_fd_ = -1;
}

// The eventfd is edge-triggered: each write is one event, so it is never read (a system call
// less per wake-up; its count cannot reach 2^64 - 1). The event clears wake_sent_: a sender
// that finds it cleared writes again, and that write is another event, so wake_sent_ never
// stays set with no event on its way (which would silence every later sender).
void Poller::wake() {
    if (wake_sent_.exchange(true, std::memory_order_seq_cst)) return;
    const uint64_t one = 1;
    raw_syscall(SYS_write, wake_fd_, reinterpret_cast<long>(&one), sizeof one);
}

Poller::FdRecord& Poller::record(int fd) {
    if (static_cast<size_t>(fd) >= fds_.size()) {
        size_t size = fds_.size() ? fds_.size() : 1024;
        while (size <= static_cast<size_t>(fd)) size *= 2;
        fds_.resize(size);
    }
    return fds_[fd];
}

void Poller::add(FdWaiter* waiters, size_t count, Fiber* fiber) {
    for (size_t i = 0; i < count; ++i) {
        FdWaiter* w = &waiters[i];
        w->fiber = fiber;
        w->revents = 0;
        w->closed = false;
        w->gen = generation_for_wait(w->fd, owner_->index());
        FdRecord& rec = record(w->fd);
        w->prev = nullptr;
        w->next = rec.waiters;
        if (rec.waiters) rec.waiters->prev = w;
        rec.waiters = w;
    }
    for (size_t i = 0; i < count; ++i) arm(waiters[i].fd);
}

bool Poller::remove(FdWaiter* waiters, size_t count) {
    bool closed = false;
    for (size_t i = 0; i < count; ++i) {
        FdWaiter* w = &waiters[i];
        FdRecord& rec = fds_[w->fd];
        if (w->prev)
            w->prev->next = w->next;
        else if (rec.waiters == w)
            rec.waiters = w->next;
        if (w->next) w->next->prev = w->prev;
        w->next = w->prev = nullptr;
        closed |= w->closed || stale(w);
    }
    return closed;
}

// Arms the fd for the union of what its still-unwoken waiters want. An fd that epoll cannot
// watch (a regular file: EPERM) or that is gone (EBADF) counts as ready: the caller's retry
// of the real call then returns what a real thread would get.
void Poller::arm(int fd) {
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
        owner_->unpark(w->fiber);
    }
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

Poller::Polled Poller::wait(const timespec* timeout) {
    constexpr int kBatch = 256;
    epoll_event events[kBatch];
    Polled polled;
    const int n = wait_epoll(epoll_fd_.load(std::memory_order_relaxed), events, kBatch, timeout);
    polled.events = n;
    polled.full = n == kBatch;
    for (int i = 0; i < n; ++i) {
        if (events[i].data.u64 == kLibuvTag) {
            polled.libuv = true;
            continue;
        }
        if (events[i].data.u64 == kWakeTag) {
            wake_sent_.store(false, std::memory_order_seq_cst);  // see wake()
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
            owner_->unpark(w->fiber);
        }
        arm(fd);  // one-shot fired: re-arm for waiters that wanted something else
    }
    return polled;
}

void Poller::closing(int fd) {
    if (fd < 0 || static_cast<size_t>(fd) >= fds_.size()) return;
    FdRecord& rec = fds_[fd];
    for (FdWaiter* w = rec.waiters; w; w = w->next) {
        if (w->closed) continue;
        w->closed = true;
        owner_->unpark(w->fiber);
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
void Poller::closed_elsewhere(int fd) {
    const int saved = errno;
    int epoll_fd = epoll_fd_.load(std::memory_order_relaxed);
    if (epoll_fd >= 0 && fd >= 0) {
        epoll_event unused{};
        epoll_ctl(epoll_fd, EPOLL_CTL_DEL, fd, &unused);  // this carrier's in_epoll is stale now:
    }                                                     // arm() then adds instead of modifying
    errno = saved;
    stale_.store(true, std::memory_order_seq_cst);
}

bool Poller::take_stale() {
    return stale_.load(std::memory_order_relaxed) && stale_.exchange(false);
}

void Poller::evict_stale() {
    for (size_t fd = 0; fd < fds_.size(); ++fd) {
        for (FdWaiter* w = fds_[fd].waiters; w; w = w->next) {
            if (w->closed || !stale(w)) continue;
            w->closed = true;
            owner_->unpark(w->fiber);
        }
    }
}

void Poller::forget_waiters() {
    for (FdRecord& rec : fds_) {
        rec.waiters = nullptr;
        rec.in_epoll = false;
    }
    stale_.store(false);
}

}  // namespace green
