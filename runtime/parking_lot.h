// The parking lot: one wait queue per address, the single mechanism under every fiber-aware
// lock, condition variable, semaphore, barrier and futex. A waiter is either a fiber (parked
// on its carrier) or an OS thread the runtime does not manage (waiting on a futex word of its
// own), so locks shared between the two kinds work. Wakers may be either kind too.
#pragma once

#include <cstddef>
#include <cstdint>

#include "runtime/runtime.h"

namespace green::parking_lot {

enum class Parked { kWoken, kTimedOut, kInvalid, kInterrupted };

// Parks the caller on `key` if validate() holds. validate() runs under the queue's lock, so a
// waker that changes the state and then calls unpark() on the same key can never be missed.
// kInvalid: validate() said no and the caller did not park. kWoken means an unpark() chose
// this waiter (or, rarely, that a signal handler's deferred wake-ups overflowed and every
// waiter was woken: callers look at their state again). An `interruptible` park also ends
// with kInterrupted when a signal handler interrupts it (runtime.h, signal_arrived; on an OS
// thread, when its futex wait returns EINTR).
template <typename Validate>
Parked park(const void* key, Validate validate, uint64_t deadline_ns, ParkReason reason,
            bool interruptible = false);

// Wakes up to `count` waiters on `key`, oldest first. Returns how many were woken.
// Async-signal-safe: in a signal handler (in_signal_handler()) the wake-ups are deferred to a
// carrier's loop (see parking_lot.cpp) and 0 is returned.
size_t unpark(const void* key, size_t count);
constexpr size_t kAll = SIZE_MAX;

// Runs the wake-ups that signal handlers deferred. Called by a carrier's loop when nudged, and
// by park() and unpark() outside handlers. Never in a handler. (A handler that leaves by
// siglongjmp keeps its thread "in a handler": its later wake-ups are all deferred, still
// delivered.)
void run_deferred_unparks();

// In a forked child: every waiter belongs to a fiber or thread that did not survive the fork
// (only the forking one did, and it is running), so every queue is emptied and unlocked.
void reset_after_fork();

// Implementation detail of park(): the validate callback, type-erased.
struct ValidateRef {
    bool (*call)(void*);
    void* context;
};
Parked park_erased(const void* key, ValidateRef validate, uint64_t deadline_ns, ParkReason reason,
                   bool interruptible);

template <typename Validate>
Parked park(const void* key, Validate validate, uint64_t deadline_ns, ParkReason reason,
            bool interruptible) {
    return park_erased(
        key, ValidateRef{[](void* v) { return (*static_cast<Validate*>(v))(); }, &validate},
        deadline_ns, reason, interruptible);
}

}  // namespace green::parking_lot
