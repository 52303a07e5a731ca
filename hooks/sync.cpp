// Fiber-aware mutexes, condition variables, rwlocks, semaphores, barriers, pthread_once and
// spinlocks, all on the runtime's parking lot. These always run (also on threads libgreen
// does not manage), so every party to a lock waits in the same place.
//
// Mutexes keep glibc's own layout and lock-word protocol (__lock 0 free / 1 locked /
// 2 locked with waiters; __owner, __count, __nusers as glibc keeps them), so the static
// initialisers, pthread_mutex_init and pthread_mutex_destroy's EBUSY check work unchanged.
// Condition variables, rwlocks and barriers keep their own state inside glibc's storage,
// valid when all-zero (what the static initialisers give). Process-shared ones (the
// PTHREAD_PROCESS_SHARED attribute, remembered in that state) are also woken through the
// kernel futex of their state word, so that another process running under libgreen meets
// them there (docs/compat.md: not a process that runs glibc's own, whose layout differs).
// Process-shared, robust and priority mutexes are glibc's (they may block the carrier).
// errno: the pthread_* calls never change it; the sem_* calls set it only when they fail.
#include <linux/futex.h>
#include <pthread.h>
#include <semaphore.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <climits>
#include <cstring>
#include <new>
#include <type_traits>

#include "hooks/deadline.h"
#include "hooks/hooks.h"
#include "hooks/wait.h"
#include "runtime/parking_lot.h"
#include "runtime/spinlock.h"

namespace green::hooks {
namespace {

using parking_lot::Parked;

// ---------------------------------------------------------------------------------------
// Identity of the caller, for lock owners: a fiber's tid, or the OS thread's real TID.

__thread int32_t t_thread_tid __attribute__((tls_model("initial-exec"))) = 0;

int32_t self_tid() {
    if (Fiber* f = current_fiber()) return f->tid;
    if (t_thread_tid == 0) t_thread_tid = static_cast<int32_t>(syscall(SYS_gettid));
    return t_thread_tid;
}

// glibc's lock words are plain (or volatile) ints; we access them as atomics of that size.
template <typename T, typename U = std::remove_volatile_t<T>>
std::atomic<U>& atomic_at(T* p) {
    static_assert(sizeof(std::atomic<U>) == sizeof(U));
    return *reinterpret_cast<std::atomic<U>*>(const_cast<U*>(p));
}

// Keeps errno as the caller left it, whatever the waits under a call (kernel futexes,
// libuv's wake-ups) did to it.
class KeepErrno {
public:
    KeepErrno() : saved_(errno) {}
    ~KeepErrno() { errno = saved_; }
    KeepErrno(const KeepErrno&) = delete;
    KeepErrno& operator=(const KeepErrno&) = delete;
    // The call fails with `err` in errno (the sem_* calls): returns -1.
    int fail(int err) {
        saved_ = err;
        return -1;
    }
    // What errno is now stays (a pthread_once init routine's own errno).
    void keep_current() { saved_ = errno; }

private:
    int saved_;
};

long futex(const void* word, int op, uint32_t value, const timespec* timeout = nullptr,
           uint32_t bitset = 0) {
    return real::get().syscall(SYS_futex, reinterpret_cast<long>(word), op, value,
                               reinterpret_cast<long>(timeout), 0L, static_cast<long>(bitset));
}

// Process-shared objects: another process's wakers never reach our parking lot, so a fiber
// waiting on one parks for at most this long at a time and looks at the state again.
constexpr uint64_t kSharedRecheckNs = 5000000;

// Wakes up to `count` waiters of the state word `word`: those parked in this process, and
// for a shared object those waiting in the kernel (threads of any process). Uses the
// address only: the object may already be destroyed and freed when the last waiter leaves.
void wake(const void* word, bool shared, size_t count) {
    parking_lot::unpark(word, count);
    if (shared) futex(word, FUTEX_WAKE, count > INT_MAX ? INT_MAX : static_cast<uint32_t>(count));
}

// Waits on the 32-bit state word `word` while `still_blocked()`, until the deadline
// (kNoDeadline: untimed). Returns false at the deadline. A private object's waiters park in
// the parking lot, where its wakers find them. For a shared object an OS thread sleeps on the
// word in the kernel (FUTEX_WAIT, not private, which wakers of any process reach), and a
// fiber parks for at most kSharedRecheckNs; either may thus return without a wake-up, and the
// caller looks at the state again.
template <typename Word, typename Blocked>
bool wait_on(const std::atomic<Word>* word, bool shared, Blocked still_blocked, uint64_t deadline,
             ParkReason reason) {
    static_assert(sizeof(Word) == sizeof(uint32_t));
    if (!shared)
        return parking_lot::park(word, still_blocked, deadline, reason) != Parked::kTimedOut;
    if (current_fiber()) {
        uint64_t until = std::min(deadline, deadline_after_ns(kSharedRecheckNs));
        return parking_lot::park(word, still_blocked, until, reason) != Parked::kTimedOut ||
               until != deadline;
    }
    const auto seen = static_cast<uint32_t>(word->load());
    if (!still_blocked()) return true;
    timespec at;
    if (deadline != kNoDeadline) {
        if (monotonic_now_ns() >= deadline) return false;
        at = timespec_from_ns(deadline);
    }
    // An absolute CLOCK_MONOTONIC time, the runtime's deadline clock.
    long r = futex(word, FUTEX_WAIT_BITSET, seen, deadline == kNoDeadline ? nullptr : &at,
                   FUTEX_BITSET_MATCH_ANY);
    return r == 0 || errno != ETIMEDOUT;
}

// The waiter counts of condition variables and barriers: while a destroy waits for the
// waiters that are still leaving, this bit is set; the last to leave wakes the destroyer.
constexpr uint32_t kDestroying = 1u << 31;

// A waiter's last touch of the object (`count` is its waiter count): after it, a destroy
// may return and the memory be freed.
void leave(std::atomic<uint32_t>* count, bool shared) {
    if (count->fetch_sub(1, std::memory_order_acq_rel) == (kDestroying | 1))
        wake(count, shared, parking_lot::kAll);
}

// pthread_cond_destroy's and pthread_barrier_destroy's wait: until every waiter counted in
// `count` has left (glibc's destroys wait in the same way), then the count is reset.
void await_leavers(std::atomic<uint32_t>* count, bool shared, ParkReason reason) {
    uint32_t seen = count->fetch_or(kDestroying, std::memory_order_acq_rel);
    while ((seen & ~kDestroying) != 0) {
        wait_on(count, shared, [&] { return count->load() != kDestroying; }, kNoDeadline,
                reason);
        seen = count->load(std::memory_order_acquire);
    }
    count->store(0, std::memory_order_relaxed);
}

// ---------------------------------------------------------------------------------------
// Mutexes.

constexpr int kKindMask = 3;  // PTHREAD_MUTEX_KIND_MASK_NP
// Robust (16), priority-inherit (32), priority-protect (64), process-shared (128).
constexpr int kSpecialKinds = 16 | 32 | 64 | 128;

bool ours(const pthread_mutex_t* m) { return !disabled() && !(m->__data.__kind & kSpecialKinds); }

// Takes the lock word; 0, ETIMEDOUT, or EINVAL for a bad abstime once we would wait.
int acquire(pthread_mutex_t* m, const timespec* abstime, clockid_t clock) {
    auto& word = atomic_at(&m->__data.__lock);
    int expected = 0;
    if (word.compare_exchange_strong(expected, 1, std::memory_order_acquire)) return 0;
    uint64_t deadline = kNoDeadline;
    if (abstime) {
        int err = deadline_at(clock, abstime, &deadline);
        if (err) return err;
    }
    for (;;) {
        if (word.exchange(2, std::memory_order_acquire) == 0) return 0;
        if (parking_lot::park(&m->__data.__lock, [&] { return word.load() == 2; }, deadline,
                              ParkReason::kMutex) == Parked::kTimedOut)
            return ETIMEDOUT;
    }
}

// A contended lock (2) may also have a waiter that is not ours: glibc's internal lockers
// (C11 mtx_lock, and glibc's own callers) take the same word without our hooks and sleep on
// it in the kernel (FUTEX_WAIT_PRIVATE on 2). When no parked waiter was there to wake, one of
// those is woken. A parked waiter we wake sets 2 again when it takes the lock, so a kernel
// waiter behind it is woken at the next unlock.
void release(pthread_mutex_t* m) {
    auto& word = atomic_at(&m->__data.__lock);
    if (word.exchange(0, std::memory_order_release) != 2) return;
    if (parking_lot::unpark(&m->__data.__lock, 1) == 0)
        futex(&m->__data.__lock, FUTEX_WAKE_PRIVATE, 1);
}

// The owner is read by every locker (is it me?) while the holder writes it: relaxed atomics,
// as glibc's own accesses are.
int32_t owner_of(const pthread_mutex_t* m) {
    return atomic_at(const_cast<int*>(&m->__data.__owner)).load(std::memory_order_relaxed);
}
void set_owner(pthread_mutex_t* m, int32_t tid) {
    atomic_at(&m->__data.__owner).store(tid, std::memory_order_relaxed);
}

int lock_mutex(pthread_mutex_t* m, const timespec* abstime, clockid_t clock) {
    const int kind = m->__data.__kind & kKindMask;
    const int32_t self = self_tid();
    if (owner_of(m) == self) {
        if (kind == PTHREAD_MUTEX_RECURSIVE) {
            if (m->__data.__count + 1 == 0) return EAGAIN;
            ++m->__data.__count;
            return 0;
        }
        if (kind == PTHREAD_MUTEX_ERRORCHECK) return EDEADLK;
    }
    int err = acquire(m, abstime, clock);
    if (err) return err;
    set_owner(m, self);
    m->__data.__count = 1;
    ++m->__data.__nusers;
    return 0;
}

// ---------------------------------------------------------------------------------------
// Condition variables: our own state in pthread_cond_t's 48 bytes.

struct CondState {
    std::atomic<uint32_t> seq;      // bumped by every signal and broadcast
    std::atomic<uint32_t> waiters;  // waiters not yet gone, and kDestroying
    uint32_t monotonic;  // 1: timedwait measures CLOCK_MONOTONIC (pthread_condattr_setclock)
    uint32_t shared;     // 1: PTHREAD_PROCESS_SHARED
};
static_assert(sizeof(CondState) <= sizeof(pthread_cond_t));

CondState* state_of(pthread_cond_t* c) { return reinterpret_cast<CondState*>(c); }

int cond_wait(pthread_cond_t* c, pthread_mutex_t* m, const timespec* abstime, clockid_t clock) {
    uint64_t deadline = kNoDeadline;
    if (abstime) {
        // glibc checks tv_nsec before it looks at a negative tv_sec.
        if (!valid_nsec(abstime->tv_nsec)) return EINVAL;
        deadline_at(clock, abstime, &deadline);
    }
    CondState* cs = state_of(c);
    const bool shared = cs->shared;
    uint32_t seq = cs->seq.load(std::memory_order_acquire);
    cs->waiters.fetch_add(1, std::memory_order_relaxed);
    int err = hooks::pthread_mutex_unlock(m);
    if (err) {
        leave(&cs->waiters, shared);
        return err;
    }
    bool in_time = true;
    while (in_time && cs->seq.load(std::memory_order_acquire) == seq)
        in_time = wait_on(&cs->seq, shared, [&] { return cs->seq.load() == seq; }, deadline,
                          ParkReason::kCond);
    leave(&cs->waiters, shared);  // from here on the condvar may be destroyed and freed
    // Like glibc: the mutex is held again when the wait returns, even after a timeout.
    while (hooks::pthread_mutex_lock(m) == EAGAIN) {
    }
    return in_time ? 0 : ETIMEDOUT;
}

void cond_wake(pthread_cond_t* c, size_t count) {
    CondState* cs = state_of(c);
    if ((cs->waiters.load(std::memory_order_relaxed) & ~kDestroying) == 0) return;
    cs->seq.fetch_add(1, std::memory_order_release);
    wake(&cs->seq, cs->shared, count);
}

// ---------------------------------------------------------------------------------------
// Read-write locks: our own state in pthread_rwlock_t's 56 bytes; glibc's __flags word
// (the kind, from pthread_rwlockattr_setkind_np or the _NP initialisers) stays where it is.

struct RwState {
    std::atomic<int32_t> state;  // -1: a writer holds it; n >= 0: n readers hold it
    std::atomic<uint32_t> writers_waiting;
    int32_t writer;      // the writer's tid, for EDEADLK
    int32_t writer_pid;  // and its process, for a shared rwlock (fiber tids repeat in a fork)
    uint32_t shared;     // 1: PTHREAD_PROCESS_SHARED
};
static_assert(sizeof(RwState) <= offsetof(pthread_rwlock_t, __data.__flags));

RwState* state_of(pthread_rwlock_t* l) { return reinterpret_cast<RwState*>(l); }

// True if the caller holds the write lock.
bool holds_write_lock(const RwState* rw, int32_t self) {
    return rw->state.load() == -1 && rw->writer == self &&
           (!rw->shared || rw->writer_pid == own_pid());
}

void take_write_lock(RwState* rw, int32_t self) {
    rw->writer = self;
    if (rw->shared) rw->writer_pid = own_pid();
}

// glibc prefers readers for every kind but PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP.
bool prefers_writers(const pthread_rwlock_t* l) {
    return l->__data.__flags == PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP;
}

// glibc checks a timed lock's tv_nsec first, even when the lock is free.
int rdlock(pthread_rwlock_t* l, bool try_only, const timespec* abstime, clockid_t clock) {
    if (abstime && !valid_nsec(abstime->tv_nsec)) return EINVAL;
    RwState* rw = state_of(l);
    const int32_t self = self_tid();
    if (holds_write_lock(rw, self)) return EDEADLK;
    uint64_t deadline = kNoDeadline;
    bool deadline_known = abstime == nullptr;
    for (;;) {
        int32_t s = rw->state.load(std::memory_order_relaxed);
        bool writer_first = prefers_writers(l) && rw->writers_waiting.load() > 0;
        if (s >= 0 && !writer_first) {
            if (s == INT32_MAX) return EAGAIN;
            if (rw->state.compare_exchange_weak(s, s + 1, std::memory_order_acquire)) return 0;
            continue;
        }
        if (try_only) return EBUSY;
        if (!deadline_known) {
            deadline_at(clock, abstime, &deadline);
            deadline_known = true;
        }
        if (!wait_on(&rw->state, rw->shared, [&] { return rw->state.load() == s; }, deadline,
                     ParkReason::kRwlock))
            return ETIMEDOUT;
    }
}

int wrlock(pthread_rwlock_t* l, bool try_only, const timespec* abstime, clockid_t clock) {
    if (abstime && !valid_nsec(abstime->tv_nsec)) return EINVAL;
    RwState* rw = state_of(l);
    const int32_t self = self_tid();
    if (holds_write_lock(rw, self)) return EDEADLK;
    uint64_t deadline = kNoDeadline;
    bool deadline_known = abstime == nullptr;
    for (;;) {
        int32_t s = 0;
        if (rw->state.compare_exchange_strong(s, -1, std::memory_order_acquire)) {
            take_write_lock(rw, self);
            return 0;
        }
        if (try_only) return EBUSY;
        if (!deadline_known) {
            deadline_at(clock, abstime, &deadline);
            deadline_known = true;
        }
        rw->writers_waiting.fetch_add(1);
        bool in_time = wait_on(&rw->state, rw->shared, [&] { return rw->state.load() == s; },
                               deadline, ParkReason::kRwlock);
        rw->writers_waiting.fetch_sub(1);
        if (!in_time) {
            wake(&rw->state, rw->shared, parking_lot::kAll);  // readers held back for us
            return ETIMEDOUT;
        }
    }
}

// ---------------------------------------------------------------------------------------
// Semaphores: glibc's layout (value in the low 32 bits of the first word, glibc's waiter
// count in the high 32). Private semaphores wait in the parking lot; a process-shared one
// may be posted by another process, which only wakes futex waiters, so its waiters re-check
// it every few milliseconds. sem_post is async-signal-safe (POSIX): in a handler its
// increment is a compare-and-swap and its wake-up is deferred by the parking lot.

struct SemWord {
    std::atomic<uint64_t> data;
    int private_flag;  // FUTEX_PRIVATE_FLAG for a private semaphore, 0 for a shared one
};

constexpr uint64_t kSemValueMask = 0xffffffffu;

bool sem_take(SemWord* s) {
    uint64_t d = s->data.load(std::memory_order_relaxed);
    while ((d & kSemValueMask) > 0)
        if (s->data.compare_exchange_weak(d, d - 1, std::memory_order_acquire)) return true;
    return false;
}

// 0, or the errno of the failure.
int sem_wait_until(sem_t* sem, const timespec* abstime, clockid_t clock) {
    auto* s = reinterpret_cast<SemWord*>(sem);
    uint64_t deadline = kNoDeadline;
    // Unlike the mutex calls, glibc checks the timeout before it looks at the value, and
    // tv_nsec before a negative tv_sec.
    if (abstime) {
        if (!valid_nsec(abstime->tv_nsec)) return EINVAL;
        deadline_at(clock, abstime, &deadline);
    }
    const bool shared = s->private_flag == 0;
    for (;;) {
        if (sem_take(s)) return 0;
        uint64_t until = deadline;
        if (shared) until = std::min(deadline, deadline_after_ns(kSharedRecheckNs));
        Parked r = parking_lot::park(
            &s->data, [&] { return (s->data.load() & kSemValueMask) == 0; }, until,
            ParkReason::kSemaphore, true);
        if (r == Parked::kTimedOut && until == deadline && deadline != kNoDeadline)
            return sem_take(s) ? 0 : ETIMEDOUT;
        // A handler ran (glibc 2.36, checked natively): the untimed sem_wait restarts under
        // SA_RESTART, as its futex wait does; the timed calls always fail with EINTR. An OS
        // thread's futex wait got that answer from the kernel already.
        if (r == Parked::kInterrupted) {
            const bool restart = on_fiber() && interruption_restarts();
            if (abstime || !restart) return EINTR;
        }
    }
}

// ---------------------------------------------------------------------------------------
// Barriers: our own state in pthread_barrier_t's 32 bytes.

struct BarrierState {
    SpinLock lock;
    uint32_t count;
    uint32_t arrived;
    std::atomic<uint32_t> round;
    std::atomic<uint32_t> waiters;  // released waiters not yet gone, and kDestroying
    uint32_t shared;                // 1: PTHREAD_PROCESS_SHARED
};
static_assert(sizeof(BarrierState) <= sizeof(pthread_barrier_t));

BarrierState* state_of(pthread_barrier_t* b) { return reinterpret_cast<BarrierState*>(b); }

}  // namespace

// ---------------------------------------------------------------------------------------

bool disabled() {
    // -1 unknown, 0 enabled, 1 disabled; threads that race to read it get the same answer.
    static std::atomic<int> mode{-1};
    int m = mode.load(std::memory_order_relaxed);
    if (__builtin_expect(m < 0, 0)) {
        const char* v = getenv("GREEN_DISABLE");
        m = v && (!strcmp(v, "1") || !strcmp(v, "yes") || !strcmp(v, "true"));
        mode.store(m, std::memory_order_relaxed);
    }
    return m == 1;
}

int pthread_mutex_lock(pthread_mutex_t* m) {
    KeepErrno keep;
    if (!ours(m)) {
        // glibc's kinds wait in the kernel, holding the carrier: count it when it happens.
        if (current_fiber()) {
            int r = real::get().pthread_mutex_trylock(m);
            if (r != EBUSY) return r;
            note_carrier_blocked();
        }
        return real::get().pthread_mutex_lock(m);
    }
    return lock_mutex(m, nullptr, CLOCK_REALTIME);
}

int pthread_mutex_timedlock(pthread_mutex_t* m, const timespec* abstime) {
    KeepErrno keep;
    if (!ours(m)) return real::get().pthread_mutex_timedlock(m, abstime);
    return lock_mutex(m, abstime, CLOCK_REALTIME);
}

int pthread_mutex_clocklock(pthread_mutex_t* m, clockid_t clock, const timespec* abstime) {
    KeepErrno keep;
    if (!ours(m)) return real::get().pthread_mutex_clocklock(m, clock, abstime);
    if (!waitable_clock(clock)) return EINVAL;
    return lock_mutex(m, abstime, clock);
}

int pthread_mutex_trylock(pthread_mutex_t* m) {
    KeepErrno keep;
    if (!ours(m)) return real::get().pthread_mutex_trylock(m);
    const int32_t self = self_tid();
    if (owner_of(m) == self && (m->__data.__kind & kKindMask) == PTHREAD_MUTEX_RECURSIVE) {
        if (m->__data.__count + 1 == 0) return EAGAIN;
        ++m->__data.__count;
        return 0;
    }
    int expected = 0;
    if (!atomic_at(&m->__data.__lock).compare_exchange_strong(expected, 1,
                                                             std::memory_order_acquire))
        return EBUSY;
    set_owner(m, self);
    m->__data.__count = 1;
    ++m->__data.__nusers;
    return 0;
}

int pthread_mutex_unlock(pthread_mutex_t* m) {
    KeepErrno keep;
    if (!ours(m)) return real::get().pthread_mutex_unlock(m);
    const int kind = m->__data.__kind & kKindMask;
    if (kind == PTHREAD_MUTEX_RECURSIVE || kind == PTHREAD_MUTEX_ERRORCHECK) {
        if (owner_of(m) != self_tid() || atomic_at(&m->__data.__lock).load() == 0)
            return EPERM;
        if (kind == PTHREAD_MUTEX_RECURSIVE && --m->__data.__count != 0) return 0;
    }
    set_owner(m, 0);
    --m->__data.__nusers;
    release(m);
    return 0;
}

int pthread_cond_init(pthread_cond_t* c, const pthread_condattr_t* attr) {
    KeepErrno keep;
    if (disabled()) return real::get().pthread_cond_init(c, attr);
    std::memset(c, 0, sizeof *c);
    clockid_t clock = CLOCK_REALTIME;
    int pshared = PTHREAD_PROCESS_PRIVATE;
    if (attr) {
        pthread_condattr_getclock(attr, &clock);
        pthread_condattr_getpshared(attr, &pshared);
    }
    state_of(c)->monotonic = clock == CLOCK_MONOTONIC;
    state_of(c)->shared = pshared == PTHREAD_PROCESS_SHARED;
    return 0;
}

// As glibc's, waits until every waiter that a signal or broadcast released has stopped
// touching the condvar: the memory may be freed as soon as this returns. (A waiter still
// blocked is the program's error; glibc waits for it too.)
int pthread_cond_destroy(pthread_cond_t* c) {
    KeepErrno keep;
    if (disabled()) return real::get().pthread_cond_destroy(c);
    CondState* cs = state_of(c);
    await_leavers(&cs->waiters, cs->shared, ParkReason::kCond);
    return 0;
}

int pthread_cond_wait(pthread_cond_t* c, pthread_mutex_t* m) {
    KeepErrno keep;
    if (disabled()) return real::get().pthread_cond_wait(c, m);
    return cond_wait(c, m, nullptr, CLOCK_REALTIME);
}

int pthread_cond_timedwait(pthread_cond_t* c, pthread_mutex_t* m, const timespec* abstime) {
    KeepErrno keep;
    if (disabled()) return real::get().pthread_cond_timedwait(c, m, abstime);
    return cond_wait(c, m, abstime, state_of(c)->monotonic ? CLOCK_MONOTONIC : CLOCK_REALTIME);
}

int pthread_cond_clockwait(pthread_cond_t* c, pthread_mutex_t* m, clockid_t clock,
                           const timespec* abstime) {
    KeepErrno keep;
    if (disabled()) return real::get().pthread_cond_clockwait(c, m, clock, abstime);
    if (!waitable_clock(clock)) return EINVAL;
    return cond_wait(c, m, abstime, clock);
}

int pthread_cond_signal(pthread_cond_t* c) {
    KeepErrno keep;
    if (disabled()) return real::get().pthread_cond_signal(c);
    cond_wake(c, 1);
    return 0;
}

int pthread_cond_broadcast(pthread_cond_t* c) {
    KeepErrno keep;
    if (disabled()) return real::get().pthread_cond_broadcast(c);
    cond_wake(c, parking_lot::kAll);
    return 0;
}

int pthread_rwlock_init(pthread_rwlock_t* l, const pthread_rwlockattr_t* attr) {
    KeepErrno keep;
    if (disabled()) return real::get().pthread_rwlock_init(l, attr);
    std::memset(l, 0, sizeof *l);
    int kind = PTHREAD_RWLOCK_PREFER_READER_NP;
    int pshared = PTHREAD_PROCESS_PRIVATE;
    if (attr) {
        pthread_rwlockattr_getkind_np(attr, &kind);
        pthread_rwlockattr_getpshared(attr, &pshared);
    }
    l->__data.__flags = static_cast<unsigned>(kind);
    state_of(l)->shared = pshared == PTHREAD_PROCESS_SHARED;
    return 0;
}

int pthread_rwlock_destroy(pthread_rwlock_t* l) {
    KeepErrno keep;
    if (disabled()) return real::get().pthread_rwlock_destroy(l);
    return 0;
}

int pthread_rwlock_rdlock(pthread_rwlock_t* l) {
    KeepErrno keep;
    if (disabled()) return real::get().pthread_rwlock_rdlock(l);
    return rdlock(l, false, nullptr, CLOCK_REALTIME);
}

int pthread_rwlock_tryrdlock(pthread_rwlock_t* l) {
    KeepErrno keep;
    if (disabled()) return real::get().pthread_rwlock_tryrdlock(l);
    return rdlock(l, true, nullptr, CLOCK_REALTIME);
}

int pthread_rwlock_timedrdlock(pthread_rwlock_t* l, const timespec* abstime) {
    KeepErrno keep;
    if (disabled()) return real::get().pthread_rwlock_timedrdlock(l, abstime);
    return rdlock(l, false, abstime, CLOCK_REALTIME);
}

int pthread_rwlock_clockrdlock(pthread_rwlock_t* l, clockid_t clock, const timespec* abstime) {
    KeepErrno keep;
    if (disabled()) return real::get().pthread_rwlock_clockrdlock(l, clock, abstime);
    if (!waitable_clock(clock)) return EINVAL;
    return rdlock(l, false, abstime, clock);
}

int pthread_rwlock_wrlock(pthread_rwlock_t* l) {
    KeepErrno keep;
    if (disabled()) return real::get().pthread_rwlock_wrlock(l);
    return wrlock(l, false, nullptr, CLOCK_REALTIME);
}

int pthread_rwlock_trywrlock(pthread_rwlock_t* l) {
    KeepErrno keep;
    if (disabled()) return real::get().pthread_rwlock_trywrlock(l);
    return wrlock(l, true, nullptr, CLOCK_REALTIME);
}

int pthread_rwlock_timedwrlock(pthread_rwlock_t* l, const timespec* abstime) {
    KeepErrno keep;
    if (disabled()) return real::get().pthread_rwlock_timedwrlock(l, abstime);
    return wrlock(l, false, abstime, CLOCK_REALTIME);
}

int pthread_rwlock_clockwrlock(pthread_rwlock_t* l, clockid_t clock, const timespec* abstime) {
    KeepErrno keep;
    if (disabled()) return real::get().pthread_rwlock_clockwrlock(l, clock, abstime);
    if (!waitable_clock(clock)) return EINVAL;
    return wrlock(l, false, abstime, clock);
}

int pthread_rwlock_unlock(pthread_rwlock_t* l) {
    KeepErrno keep;
    if (disabled()) return real::get().pthread_rwlock_unlock(l);
    RwState* rw = state_of(l);
    int32_t s = rw->state.load();
    if (s == -1) {
        rw->writer = 0;
        rw->writer_pid = 0;
        rw->state.store(0, std::memory_order_release);
        wake(&rw->state, rw->shared, parking_lot::kAll);
        return 0;
    }
    if (s == 0) return EPERM;  // not locked
    if (rw->state.fetch_sub(1, std::memory_order_release) == 1)
        wake(&rw->state, rw->shared, parking_lot::kAll);
    return 0;
}

int sem_wait(sem_t* sem) {
    if (disabled()) return real::get().sem_wait(sem);
    KeepErrno keep;
    int err = sem_wait_until(sem, nullptr, CLOCK_REALTIME);
    return err ? keep.fail(err) : 0;
}

int sem_trywait(sem_t* sem) {
    if (disabled()) return real::get().sem_trywait(sem);
    if (sem_take(reinterpret_cast<SemWord*>(sem))) return 0;
    errno = EAGAIN;
    return -1;
}

int sem_timedwait(sem_t* sem, const timespec* abstime) {
    if (disabled()) return real::get().sem_timedwait(sem, abstime);
    KeepErrno keep;
    int err = sem_wait_until(sem, abstime, CLOCK_REALTIME);
    return err ? keep.fail(err) : 0;
}

int sem_clockwait(sem_t* sem, clockid_t clock, const timespec* abstime) {
    if (disabled()) return real::get().sem_clockwait(sem, clock, abstime);
    if (!waitable_clock(clock)) {
        errno = EINVAL;
        return -1;
    }
    KeepErrno keep;
    int err = sem_wait_until(sem, abstime, clock);
    return err ? keep.fail(err) : 0;
}

int sem_post(sem_t* sem) {
    if (disabled()) return real::get().sem_post(sem);
    KeepErrno keep;
    auto* s = reinterpret_cast<SemWord*>(sem);
    uint64_t d = s->data.load(std::memory_order_relaxed);
    do {
        if ((d & kSemValueMask) == SEM_VALUE_MAX) return keep.fail(EOVERFLOW);
    } while (!s->data.compare_exchange_weak(d, d + 1, std::memory_order_release));
    // glibc's own waiters (in another process, for a shared semaphore) sleep on the futex.
    if (d >> 32) futex(&s->data, FUTEX_WAKE | s->private_flag, 1);
    parking_lot::unpark(&s->data, 1);
    return 0;
}

int pthread_barrier_init(pthread_barrier_t* b, const pthread_barrierattr_t* attr, unsigned count) {
    KeepErrno keep;
    if (disabled()) return real::get().pthread_barrier_init(b, attr, count);
    if (count == 0) return EINVAL;
    int pshared = PTHREAD_PROCESS_PRIVATE;
    if (attr) pthread_barrierattr_getpshared(attr, &pshared);
    auto* bs = new (b) BarrierState{};
    bs->count = count;
    bs->shared = pshared == PTHREAD_PROCESS_SHARED;
    return 0;
}

// EBUSY while a round is incomplete. Otherwise, as glibc's, waits until the waiters that
// the last round released have stopped touching the barrier: the memory may be freed as
// soon as this returns.
int pthread_barrier_destroy(pthread_barrier_t* b) {
    KeepErrno keep;
    if (disabled()) return real::get().pthread_barrier_destroy(b);
    BarrierState* bs = state_of(b);
    {
        SpinGuard hold(bs->lock);
        if (bs->arrived != 0) return EBUSY;
    }
    await_leavers(&bs->waiters, bs->shared, ParkReason::kBarrier);
    return 0;
}

int pthread_barrier_wait(pthread_barrier_t* b) {
    KeepErrno keep;
    if (disabled()) return real::get().pthread_barrier_wait(b);
    BarrierState* bs = state_of(b);
    const bool shared = bs->shared;
    uint32_t round;
    bool last;
    {
        SpinGuard hold(bs->lock);
        round = bs->round.load();
        last = ++bs->arrived == bs->count;
        if (last) {
            bs->arrived = 0;
            bs->round.store(round + 1, std::memory_order_release);
        } else {
            bs->waiters.fetch_add(1, std::memory_order_relaxed);
        }
    }
    // The wake-ups happen after the barrier's lock is released: they may allocate.
    if (last) {
        wake(&bs->round, shared, parking_lot::kAll);
        return PTHREAD_BARRIER_SERIAL_THREAD;
    }
    while (bs->round.load(std::memory_order_acquire) == round)
        wait_on(&bs->round, shared, [&] { return bs->round.load() == round; }, kNoDeadline,
                ParkReason::kBarrier);
    leave(&bs->waiters, shared);  // from here on the barrier may be destroyed and freed
    return 0;
}

// pthread_once: 0 not run, 1 running, 2 done (the states glibc's PTHREAD_ONCE_INIT starts).
// errno is what the init routine left, as with glibc's.
int pthread_once(pthread_once_t* once, void (*init)(void)) {
    if (disabled()) return real::get().pthread_once(once, init);
    KeepErrno keep;
    auto& state = atomic_at(once);
    for (;;) {
        int s = state.load(std::memory_order_acquire);
        if (s == 2) return 0;
        if (s == 0 && state.compare_exchange_strong(s, 1, std::memory_order_acquire)) {
            try {
                init();
            } catch (...) {
                // As glibc: an init routine left by an exception (or cancellation) has not
                // run; the next caller tries again.
                keep.keep_current();
                state.store(0, std::memory_order_release);
                parking_lot::unpark(once, parking_lot::kAll);
                throw;
            }
            keep.keep_current();
            state.store(2, std::memory_order_release);
            parking_lot::unpark(once, parking_lot::kAll);
            return 0;
        }
        parking_lot::park(once, [&] { return state.load() == 1; }, kNoDeadline,
                          ParkReason::kOnce);
    }
}

// Spinlocks: a fiber that finds one taken yields, so that a holder parked on the same
// carrier can run and release it. The lock word keeps glibc's encoding, which differs by
// architecture (x86-64: 1 is free, as pthread_spin_init is an alias of pthread_spin_unlock),
// so the free value is learnt from glibc's own initialiser.
namespace {

int spin_free_value() {
    static const int value = [] {
        pthread_spinlock_t probe = 0x5a5a;
        real::get();  // resolve the table before the first hook needs it
        ::pthread_spin_init(&probe, PTHREAD_PROCESS_PRIVATE);
        return static_cast<int>(probe);
    }();
    return value;
}

bool spin_try(pthread_spinlock_t* lock) {
    const int free_value = spin_free_value();
    int expected = free_value;
    return atomic_at(lock).compare_exchange_strong(expected, free_value ^ 1,
                                                   std::memory_order_acquire);
}

}  // namespace

int pthread_spin_lock(pthread_spinlock_t* lock) {
    KeepErrno keep;
    if (disabled()) return real::get().pthread_spin_lock(lock);
    while (!spin_try(lock)) {
        if (on_fiber())
            green::yield();
        else
            __builtin_ia32_pause();
    }
    return 0;
}

int pthread_spin_trylock(pthread_spinlock_t* lock) {
    KeepErrno keep;
    if (disabled()) return real::get().pthread_spin_trylock(lock);
    return spin_try(lock) ? 0 : EBUSY;
}

int pthread_spin_unlock(pthread_spinlock_t* lock) {
    KeepErrno keep;
    if (disabled()) return real::get().pthread_spin_unlock(lock);
    atomic_at(lock).store(spin_free_value(), std::memory_order_release);
    return 0;
}

// FILE locks stay glibc's, per OS thread (all fibers of a carrier are one owner to them); the
// wrappers count them as held locks, so that no fiber is pre-empted between flockfile and
// funlockfile, where another fiber of its carrier would walk into the stream (exports.cpp).
// A lock held on another carrier is waited for by the fiber, not the carrier: its holder may
// be parked and need a fiber of this carrier to go on. glibc's unlock wakes only kernel
// waiters, so the fiber tries again after a short sleep (20 us, doubling up to 1 ms).
void flockfile(FILE* stream) {
    if (!current_fiber()) return real::get().flockfile(stream);
    for (uint64_t pause_ns = 20000; real::get().ftrylockfile(stream) != 0;
         pause_ns = pause_ns < 1000000 ? pause_ns * 2 : 1000000)
        sleep_until(deadline_after_ns(pause_ns), ParkReason::kMutex);
}
int ftrylockfile(FILE* stream) {
    return real::get().ftrylockfile(stream);
}
void funlockfile(FILE* stream) {
    real::get().funlockfile(stream);
}

// The deadlock report's question (runtime's set_lock_holder_probe): who holds this mutex?
// glibc's layout keeps the owner's tid, which for a fiber is its Fiber::tid.
int32_t lock_holder(ParkReason reason, const void* object) {
    if (reason != ParkReason::kMutex) return 0;
    return static_cast<const pthread_mutex_t*>(object)->__data.__owner;
}

}  // namespace green::hooks
