// Every timeout a hook is given, turned into the runtime's monotonic deadline: absolute times
// on a clock (the pthread, semaphore, futex and clock_nanosleep calls) and relative ones
// (timespec, timeval, milliseconds). One conversion, saturating: a deadline further away than
// the kernel can express is clamped where the kernel clamps its own timers (KTIME_MAX
// nanoseconds of CLOCK_MONOTONIC), never wrapped into the past. The clock is read once, at the
// call (a later jump of CLOCK_REALTIME is not followed). Callers validate the timespec first.
#pragma once

#include <sys/time.h>
#include <time.h>

#include <cerrno>
#include <cstdint>

#include "runtime/runtime.h"

namespace green::hooks {

constexpr int64_t kNsPerSec = 1000000000;

// The latest deadline: the kernel's KTIME_MAX. A timed wait with this deadline still has a
// timeout (it is not kNoDeadline) but never reaches it.
constexpr uint64_t kLatestDeadline = INT64_MAX;

// The clocks glibc accepts for timed waits (futex_abstimed_supported_clockid).
inline bool waitable_clock(clockid_t clock) {
    return clock == CLOCK_REALTIME || clock == CLOCK_MONOTONIC;
}

inline bool valid_nsec(long nsec) { return nsec >= 0 && nsec < kNsPerSec; }

// A span of `ns` (at most kLatestDeadline) from now, clamped to kLatestDeadline.
inline uint64_t deadline_in_ns(uint64_t ns) {
    uint64_t now = monotonic_now_ns();
    return ns >= kLatestDeadline - now ? kLatestDeadline : now + ns;
}

// The length of a span of `sec` seconds and `nsec` nanoseconds (both >= 0, nsec below 10^9),
// saturating at kLatestDeadline.
inline uint64_t span_ns(int64_t sec, int64_t nsec) {
    constexpr int64_t kMaxSec = static_cast<int64_t>(kLatestDeadline / kNsPerSec);
    if (sec > kMaxSec) return kLatestDeadline;
    unsigned __int128 ns = static_cast<unsigned __int128>(sec) * kNsPerSec +
                           static_cast<unsigned __int128>(nsec);
    return ns > kLatestDeadline ? kLatestDeadline : static_cast<uint64_t>(ns);
}

// A relative timeout (validated: tv_sec >= 0, tv_nsec in range): its deadline.
inline uint64_t deadline_after(const timespec& span) {
    return deadline_in_ns(span_ns(span.tv_sec, span.tv_nsec));
}

// A relative timeout as the kernel reads it for io_uring_enter and io_getevents
// (timespec64_to_ktime): seconds and nanoseconds added without a range check, saturating;
// zero or less has passed already.
inline uint64_t deadline_after_unchecked(int64_t sec, int64_t nsec) {
    const __int128 ns = static_cast<__int128>(sec) * kNsPerSec + nsec;
    if (ns <= 0) return monotonic_now_ns();
    return deadline_in_ns(ns >= static_cast<__int128>(kLatestDeadline) ? kLatestDeadline
                                                                       : static_cast<uint64_t>(ns));
}

// poll's and epoll_wait's milliseconds; a negative count waits forever.
inline uint64_t deadline_after_ms(int ms) {
    return ms < 0 ? kNoDeadline : deadline_in_ns(static_cast<uint64_t>(ms) * 1000000ull);
}

// An absolute time on `clock`: 0 and *deadline (now when the time has passed), or EINVAL for
// a tv_nsec glibc rejects. A negative tv_sec is in the past whatever its tv_nsec, as glibc's
// futex layer decides before the kernel would look at tv_nsec; the callers for which glibc
// checks tv_nsec first (condition variables, semaphores, rwlocks) check valid_nsec()
// themselves.
inline int deadline_at(clockid_t clock, const timespec* abstime, uint64_t* deadline) {
    if (abstime->tv_sec < 0) {
        *deadline = monotonic_now_ns();
        return 0;
    }
    if (!valid_nsec(abstime->tv_nsec)) return EINVAL;
    timespec now;
    clock_gettime(clock, &now);
    const uint64_t mono = monotonic_now_ns();
    __int128 left = (static_cast<__int128>(abstime->tv_sec) - now.tv_sec) * kNsPerSec +
                    (abstime->tv_nsec - now.tv_nsec);
    if (left <= 0) {
        *deadline = mono;
    } else {
        const __int128 room = static_cast<__int128>(kLatestDeadline - mono);
        *deadline = left >= room ? kLatestDeadline : mono + static_cast<uint64_t>(left);
    }
    return 0;
}

}  // namespace green::hooks
