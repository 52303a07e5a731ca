// Absolute timeouts of the pthread and semaphore calls, turned into the runtime's monotonic
// deadlines. The wall clock is read once, at the call (a later clock jump is not followed).
#pragma once

#include <time.h>

#include <cerrno>
#include <cstdint>

#include "runtime/runtime.h"

namespace green::hooks {

// The clocks glibc accepts for timed waits (futex_abstimed_supported_clockid).
inline bool waitable_clock(clockid_t clock) {
    return clock == CLOCK_REALTIME || clock == CLOCK_MONOTONIC;
}

// 0 and *deadline, or EINVAL for a timespec glibc rejects.
inline int deadline_at(clockid_t clock, const timespec* abstime, uint64_t* deadline) {
    if (abstime->tv_nsec < 0 || abstime->tv_nsec >= 1000000000L) return EINVAL;
    timespec now;
    clock_gettime(clock, &now);
    int64_t left = (static_cast<int64_t>(abstime->tv_sec) - now.tv_sec) * 1000000000LL +
                   (abstime->tv_nsec - now.tv_nsec);
    *deadline = left <= 0 ? monotonic_now_ns() : deadline_after_ns(static_cast<uint64_t>(left));
    return 0;
}

}  // namespace green::hooks
