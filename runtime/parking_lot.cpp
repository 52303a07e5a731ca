// The parking lot (see parking_lot.h). A fixed table of buckets, each a FIFO of waiters
// under a spinlock; a waiter record lives on the waiting fiber's or thread's stack.
// Lifetime rules: a fiber waiter's record is valid until the fiber observes `woken`; a waker
// therefore copies what it needs under the bucket lock, and counts a cross-thread wake-up in
// the fiber's refs so the Fiber outlives its delivery.
// Signal handlers: unpark() is reached from async-signal-safe calls (sem_post, a raw futex
// wake) made in handlers, which may interrupt this very thread inside a bucket's critical
// section or inside its carrier's run-queue changes. A handler therefore never takes a lock
// its own thread might hold and never touches its carrier's state: it defers (see below).
#include "runtime/parking_lot.h"

#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <new>

#include "runtime/carrier.h"
#include "runtime/intrusive_list.h"
#include "runtime/spinlock.h"

namespace green::parking_lot {
namespace {

struct Waiter {
    const void* key = nullptr;
    Waiter* next = nullptr;
    Waiter* prev = nullptr;
    Fiber* fiber = nullptr;  // nullptr: an OS thread waiting on `woken` as a futex
    uint64_t park_seq = 0;
    std::atomic<uint32_t> woken{0};
};

struct Bucket {
    SpinLock lock;
    IntrusiveList<Waiter> waiters;  // FIFO: appended at the tail, woken from the head
};

constexpr size_t kBucketBits = 12;
Bucket g_buckets[size_t{1} << kBucketBits];

Bucket& bucket_of(const void* key) {
    uint64_t h = (reinterpret_cast<uintptr_t>(key) >> 2) * 0x9E3779B97F4A7C15ull;
    return g_buckets[h >> (64 - kBucketBits)];
}

long futex(std::atomic<uint32_t>* word, int op, uint32_t value, const timespec* timeout) {
    return syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), op, value, timeout, nullptr, 0);
}

// An OS thread's wait: on its own word, which only its waker writes. Interruptible: a
// handler ends it as the kernel ends the futex wait (EINTR), which is glibc's behaviour for
// the call (an untimed wait restarts under SA_RESTART; a timed one never does).
Parked thread_wait(Waiter& w, uint64_t deadline_ns, bool interruptible) {
    for (;;) {
        if (w.woken.load(std::memory_order_acquire)) return Parked::kWoken;
        timespec rel{};
        if (deadline_ns != kNoDeadline) {
            uint64_t now = monotonic_now_ns();
            if (now >= deadline_ns) return Parked::kTimedOut;
            rel = timespec_from_ns(deadline_ns - now);
        }
        const int saved = errno;
        long r = futex(&w.woken, FUTEX_WAIT_PRIVATE, 0,
                       deadline_ns == kNoDeadline ? nullptr : &rel);
        const bool interrupted = r != 0 && errno == EINTR;
        errno = saved;
        if (interrupted && interruptible) return Parked::kInterrupted;
    }
}

// A fiber's wait: parks on its carrier until a waker sets `woken`, the deadline passes or (if
// interruptible) a signal handler interrupts it.
Parked fiber_wait(Waiter& w, uint64_t deadline_ns, ParkReason reason, bool interruptible) {
    Carrier* carrier = w.fiber->carrier;
    for (;;) {
        bool timed_out = carrier->park_until(deadline_ns, reason, interruptible, w.key);
        if (w.woken.load(std::memory_order_acquire)) return Parked::kWoken;
        if (timed_out) return Parked::kTimedOut;
        if (interruptible && w.fiber->interrupted) return Parked::kInterrupted;
        // Only a stray unpark gets here: park again, under the number wakers will see.
        SpinGuard hold(bucket_of(w.key).lock);
        if (w.woken.load(std::memory_order_acquire)) return Parked::kWoken;
        w.park_seq = w.fiber->park_seq + 1;
    }
}

// While the parking lot works on a fiber, the fiber counts as inside a hook: the calls a
// signal handler makes when it interrupts it (write, close, kill) pass straight through to
// libc, so they neither park with a bucket locked nor wake fibers (close) while the carrier's
// run queue is half changed.
class InRuntime {
public:
    InRuntime() : fiber_(current_fiber()) {
        if (fiber_) ++fiber_->hook_depth;
    }
    ~InRuntime() {
        if (fiber_) --fiber_->hook_depth;
    }
    InRuntime(const InRuntime&) = delete;
    InRuntime& operator=(const InRuntime&) = delete;

private:
    Fiber* fiber_;
};

// ---------------------------------------------------------------------------------------
// Wake-ups deferred by signal handlers. A handler records (key, count) in a slot, one word
// (key << 16 | count: user-space addresses fit in 48 bits), with compare-and-swap only, and
// nudges a carrier (uv_async_send, async-signal-safe); that carrier's loop runs the wake-ups
// (run_deferred_unparks). Posts to one key coalesce into one slot. When every slot holds
// another key, the overflow flag makes the next run wake every waiter of every key: each
// caller of park() looks at its state again, so an extra wake-up costs only a re-park.

constexpr size_t kDeferredSlots = 128;
constexpr uint64_t kCountMask = 0xffff;  // a count of kCountMask stands for kAll
std::atomic<uint64_t> g_deferred[kDeferredSlots];
std::atomic<bool> g_deferred_pending{false};
std::atomic<bool> g_deferred_overflow{false};

void defer(const void* key, size_t count) {
    const auto address = reinterpret_cast<uintptr_t>(key);
    bool recorded = false;
    if ((address >> 48) == 0) {
        const uint64_t tag = static_cast<uint64_t>(address) << 16;
        for (size_t i = 0; i < kDeferredSlots && !recorded; ++i) {
            std::atomic<uint64_t>& slot = g_deferred[i];
            uint64_t seen = slot.load(std::memory_order_relaxed);
            for (;;) {
                uint64_t had = 0;
                if (seen != 0) {
                    if ((seen & ~kCountMask) != tag) break;  // another key's slot
                    had = seen & kCountMask;
                }
                uint64_t total = count >= kCountMask - had ? kCountMask : had + count;
                if (slot.compare_exchange_weak(seen, tag | total, std::memory_order_release,
                                               std::memory_order_relaxed)) {
                    recorded = true;
                    break;
                }
            }
        }
    }
    if (!recorded) g_deferred_overflow.store(true, std::memory_order_release);
    g_deferred_pending.store(true, std::memory_order_release);
}

// Makes some carrier's loop run the deferred wake-ups, from a handler whose thread has no
// carrier loop of its own. Under the registry's lock, tried only: when its own thread holds
// it, the next park() or unpark() of any thread runs them.
void nudge_any_carrier() {
    bool nudged = false;
    for_each_carrier(
        [](Carrier* carrier, void* context) {
            auto* done = static_cast<bool*>(context);
            if (!*done) *done = carrier->nudge();
        },
        &nudged, true);
}

size_t unpark_now(const void* key, size_t count);

// unpark() in a signal handler. On a carrier thread: defer to this carrier's loop. Elsewhere,
// when the interrupted code holds no runtime lock, the bucket's lock may be taken (only
// another thread can hold it, and it lets go): OS-thread waiters are woken here, and at the
// first fiber the rest is deferred to that fiber's carrier.
size_t unpark_in_handler(const void* key, size_t count) {
    Carrier* here = Carrier::current();
    if (here && here->has_loop()) {
        defer(key, count);
        here->nudge();
        return 0;
    }
    if (spinlocks_held() != 0) {
        defer(key, count);
        nudge_any_carrier();
        return 0;
    }
    Bucket& b = bucket_of(key);
    size_t woken = 0;
    SpinGuard hold(b.lock);
    for (Waiter* w = b.waiters.head; w && woken < count;) {
        Waiter* next = w->next;
        if (w->key == key) {
            if (w->fiber) {  // parked, so its carrier lives while we hold the lock
                defer(key, count == kAll ? kAll : count - woken);
                w->fiber->carrier->nudge();
                break;
            }
            b.waiters.remove(w);
            w->woken.store(1, std::memory_order_release);
            futex(&w->woken, FUTEX_WAKE_PRIVATE, 1, nullptr);
            ++woken;
        }
        w = next;
    }
    return woken;
}

// After an overflow: every waiter of every key, a bounded number of keys per bucket (waiters
// that re-park at once are not chased).
void unpark_everyone() {
    for (Bucket& b : g_buckets) {
        for (int round = 0; round < 64; ++round) {
            const void* key = nullptr;
            {
                SpinGuard hold(b.lock);
                if (b.waiters.head) key = b.waiters.head->key;
            }
            if (!key) break;
            unpark_now(key, kAll);
        }
    }
}

}  // namespace

Parked park_erased(const void* key, ValidateRef validate, uint64_t deadline_ns, ParkReason reason,
                   bool interruptible) {
    InRuntime in_runtime;
    if (!in_signal_handler()) run_deferred_unparks();
    Bucket& b = bucket_of(key);
    Waiter w;
    w.key = key;
    w.fiber = current_fiber();
    {
        SpinGuard hold(b.lock);
        if (!validate.call(validate.context)) return Parked::kInvalid;
        if (w.fiber) w.park_seq = w.fiber->park_seq + 1;  // the park we are about to enter
        b.waiters.push_back(&w);
    }
    Parked r = w.fiber ? fiber_wait(w, deadline_ns, reason, interruptible)
                       : thread_wait(w, deadline_ns, interruptible);
    if (r == Parked::kWoken) return r;
    SpinGuard hold(b.lock);
    if (w.woken.load(std::memory_order_acquire)) return Parked::kWoken;  // chosen meanwhile
    b.waiters.remove(&w);
    return r;
}

void reset_after_fork() {
    for (Bucket& b : g_buckets) new (&b) Bucket();
    // Deferred wake-ups were for waiters that did not survive the fork.
    for (auto& slot : g_deferred) slot.store(0, std::memory_order_relaxed);
    g_deferred_pending.store(false, std::memory_order_relaxed);
    g_deferred_overflow.store(false, std::memory_order_relaxed);
}

void run_deferred_unparks() {
    if (!g_deferred_pending.load(std::memory_order_relaxed)) return;
    if (!g_deferred_pending.exchange(false, std::memory_order_acquire)) return;
    for (auto& slot : g_deferred) {
        if (slot.load(std::memory_order_relaxed) == 0) continue;
        uint64_t v = slot.exchange(0, std::memory_order_acquire);
        if (v == 0) continue;
        const auto* key = reinterpret_cast<const void*>(static_cast<uintptr_t>(v >> 16));
        const uint64_t count = v & kCountMask;
        unpark_now(key, count == kCountMask ? kAll : count);
    }
    if (g_deferred_overflow.exchange(false, std::memory_order_acquire)) unpark_everyone();
}

size_t unpark(const void* key, size_t count) {
    if (in_signal_handler()) return unpark_in_handler(key, count);
    InRuntime in_runtime;
    size_t woken = unpark_now(key, count);
    run_deferred_unparks();
    return woken;
}

namespace {

size_t unpark_now(const void* key, size_t count) {
    Bucket& b = bucket_of(key);
    Carrier* here = Carrier::current();
    size_t woken = 0;
    while (woken < count) {
        // Wake in batches: what a fiber waker needs is copied under the lock, and the
        // wake-ups themselves happen after it is released.
        struct Wake {
            Fiber* fiber;
            uint64_t park_seq;
        } batch[64];
        size_t n = 0;
        {
            SpinGuard hold(b.lock);
            for (Waiter* w = b.waiters.head; w && n < 64 && woken + n < count;) {
                Waiter* next = w->next;
                if (w->key == key) {
                    b.waiters.remove(w);
                    if (w->fiber) {
                        batch[n++] = Wake{w->fiber, w->park_seq};
                        if (w->fiber->carrier != here)
                            w->fiber->refs.fetch_add(1, std::memory_order_relaxed);
                        w->woken.store(1, std::memory_order_release);
                    } else {
                        w->woken.store(1, std::memory_order_release);
                        futex(&w->woken, FUTEX_WAKE_PRIVATE, 1, nullptr);
                        ++woken;
                    }
                }
                w = next;
            }
        }
        for (size_t i = 0; i < n; ++i) {
            Carrier* owner = batch[i].fiber->carrier;
            if (owner == here)
                owner->hand_off(batch[i].fiber);
            else
                owner->unpark_remote(batch[i].fiber, batch[i].park_seq);
        }
        woken += n;
        if (n < 64) break;  // the queue had no more waiters for this key
    }
    return woken;
}

}  // namespace

}  // namespace green::parking_lot
