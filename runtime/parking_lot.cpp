// The parking lot (see parking_lot.h). A fixed table of buckets, each a FIFO of waiters
// under a spinlock; a waiter record lives on the waiting fiber's or thread's stack.
// Lifetime rules: a fiber waiter's record is valid until the fiber observes `woken`; a waker
// therefore copies what it needs under the bucket lock, and counts a cross-thread wake-up in
// the fiber's remote_wakes_pending so the Fiber outlives its delivery.
#include "runtime/parking_lot.h"

#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <new>

#include "runtime/carrier.h"
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
    Waiter* head = nullptr;
    Waiter* tail = nullptr;
};

constexpr size_t kBucketBits = 12;
Bucket g_buckets[size_t{1} << kBucketBits];

Bucket& bucket_of(const void* key) {
    uint64_t h = (reinterpret_cast<uintptr_t>(key) >> 2) * 0x9E3779B97F4A7C15ull;
    return g_buckets[h >> (64 - kBucketBits)];
}

void append(Bucket& b, Waiter* w) {
    w->next = nullptr;
    w->prev = b.tail;
    if (b.tail)
        b.tail->next = w;
    else
        b.head = w;
    b.tail = w;
}

void remove(Bucket& b, Waiter* w) {
    if (w->prev)
        w->prev->next = w->next;
    else
        b.head = w->next;
    if (w->next)
        w->next->prev = w->prev;
    else
        b.tail = w->prev;
}

long futex(std::atomic<uint32_t>* word, int op, uint32_t value, const timespec* timeout) {
    return syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), op, value, timeout, nullptr, 0);
}

// An OS thread's wait: on its own word, which only its waker writes.
bool thread_wait(Waiter& w, uint64_t deadline_ns) {
    for (;;) {
        if (w.woken.load(std::memory_order_acquire)) return true;
        timespec rel{};
        if (deadline_ns != kNoDeadline) {
            uint64_t now = monotonic_now_ns();
            if (now >= deadline_ns) return false;
            uint64_t left = deadline_ns - now;
            rel.tv_sec = static_cast<time_t>(left / 1000000000ull);
            rel.tv_nsec = static_cast<long>(left % 1000000000ull);
        }
        futex(&w.woken, FUTEX_WAIT_PRIVATE, 0, deadline_ns == kNoDeadline ? nullptr : &rel);
    }
}

// A fiber's wait: parks on its carrier until a waker sets `woken` or the deadline passes.
bool fiber_wait(Waiter& w, uint64_t deadline_ns, ParkReason reason) {
    Carrier* carrier = w.fiber->carrier;
    for (;;) {
        bool timed_out = carrier->park_until(deadline_ns, reason, false, w.key);
        if (w.woken.load(std::memory_order_acquire)) return true;
        if (timed_out) return false;
        // Only a stray unpark gets here: park again, under the number wakers will see.
        SpinGuard hold(bucket_of(w.key).lock);
        if (w.woken.load(std::memory_order_acquire)) return true;
        w.park_seq = w.fiber->park_seq + 1;
    }
}

}  // namespace

Parked park_erased(const void* key, ValidateRef validate, uint64_t deadline_ns,
                   ParkReason reason) {
    Bucket& b = bucket_of(key);
    Waiter w;
    w.key = key;
    w.fiber = current_fiber();
    {
        SpinGuard hold(b.lock);
        if (!validate.call(validate.context)) return Parked::kInvalid;
        if (w.fiber) w.park_seq = w.fiber->park_seq + 1;  // the park we are about to enter
        append(b, &w);
    }
    bool woken = w.fiber ? fiber_wait(w, deadline_ns, reason) : thread_wait(w, deadline_ns);
    if (woken) return Parked::kWoken;
    SpinGuard hold(b.lock);
    if (w.woken.load(std::memory_order_acquire)) return Parked::kWoken;  // chosen meanwhile
    remove(b, &w);
    return Parked::kTimedOut;
}

void reset_after_fork() {
    for (Bucket& b : g_buckets) new (&b) Bucket();
}

size_t unpark(const void* key, size_t count) {
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
            for (Waiter* w = b.head; w && n < 64 && woken + n < count;) {
                Waiter* next = w->next;
                if (w->key == key) {
                    remove(b, w);
                    if (w->fiber) {
                        batch[n++] = Wake{w->fiber, w->park_seq};
                        if (w->fiber->carrier != here)
                            w->fiber->remote_wakes_pending.fetch_add(1, std::memory_order_relaxed);
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
                owner->unpark(batch[i].fiber);
            else
                owner->unpark_remote(batch[i].fiber, batch[i].park_seq);
        }
        woken += n;
        if (n < 64) break;  // the queue had no more waiters for this key
    }
    return woken;
}

}  // namespace green::parking_lot
