// The parking lot: one wait queue per address, the single mechanism under every fiber-aware
// lock, condition variable, semaphore, barrier and futex. A waiter is either a fiber (parked
// on its carrier) or an OS thread the runtime does not manage (waiting on a futex word of its
// own), so locks shared between the two kinds work. Wakers may be either kind too.
#pragma once

#include <cstddef>
#include <cstdint>

#include "runtime/runtime.h"

namespace green::parking_lot {

enum class Parked { kWoken, kTimedOut, kInvalid };

// Parks the caller on `key` if validate() holds. validate() runs under the queue's lock, so a
// waker that changes the state and then calls unpark() on the same key can never be missed.
// kInvalid: validate() said no and the caller did not park. Spurious returns do not happen:
// kWoken means an unpark() chose this waiter.
template <typename Validate>
Parked park(const void* key, Validate validate, uint64_t deadline_ns, ParkReason reason);

// Wakes up to `count` waiters on `key`, oldest first. Returns how many were woken.
size_t unpark(const void* key, size_t count);
constexpr size_t kAll = SIZE_MAX;

// In a forked child: every waiter belongs to a fiber or thread that did not survive the fork
// (only the forking one did, and it is running), so every queue is emptied and unlocked.
void reset_after_fork();

// Implementation detail of park(): the validate callback, type-erased.
struct ValidateRef {
    bool (*call)(void*);
    void* context;
};
Parked park_erased(const void* key, ValidateRef validate, uint64_t deadline_ns, ParkReason reason);

template <typename Validate>
Parked park(const void* key, Validate validate, uint64_t deadline_ns, ParkReason reason) {
    return park_erased(
        key, ValidateRef{[](void* v) { return (*static_cast<Validate*>(v))(); }, &validate},
        deadline_ns, reason);
}

}  // namespace green::parking_lot
