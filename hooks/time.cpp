// sleep, usleep, nanosleep, clock_nanosleep: park the fiber on a timer. A zero sleep yields
// to the other runnable fibers, as a real sleep(0) lets other threads run.
// Signals do not interrupt these parks yet: there is no EINTR (docs/compat.md).
#include <time.h>

#include "hooks/hooks.h"
#include "hooks/wait.h"

namespace green::hooks {
namespace {

constexpr long kNsPerSec = 1000000000L;

bool valid(const timespec& ts) { return ts.tv_sec >= 0 && ts.tv_nsec >= 0 && ts.tv_nsec < kNsPerSec; }

uint64_t to_ns(const timespec& ts) {
    const uint64_t max_sec = kNoDeadline / kNsPerSec - 1;
    if (static_cast<uint64_t>(ts.tv_sec) > max_sec) return kNoDeadline;
    return static_cast<uint64_t>(ts.tv_sec) * kNsPerSec + static_cast<uint64_t>(ts.tv_nsec);
}

void park_for(uint64_t ns) {
    if (ns == 0) {
        green::yield();
        return;
    }
    sleep_until(deadline_after_ns(ns), ParkReason::kSleep);
}

}  // namespace

unsigned int sleep(unsigned int seconds) {
    park_for(static_cast<uint64_t>(seconds) * kNsPerSec);
    return 0;
}

int usleep(useconds_t usec) {
    park_for(static_cast<uint64_t>(usec) * 1000ull);
    return 0;
}

int nanosleep(const timespec* req, timespec* rem) {
    (void)rem;  // only written when interrupted, which a park is not
    timespec ts;
    if (!copy_from_user(&ts, req, sizeof ts)) return -1;
    if (!valid(ts)) {
        errno = EINVAL;
        return -1;
    }
    park_for(to_ns(ts));
    return 0;
}

// Returns an error number, as clock_nanosleep does, and leaves errno alone.
int clock_nanosleep(clockid_t clock, int flags, const timespec* req, timespec* rem) {
    int saved = errno;
    timespec ts;
    if (!copy_from_user(&ts, req, sizeof ts)) {
        errno = saved;
        return EFAULT;
    }
    if (clock == CLOCK_THREAD_CPUTIME_ID) return EINVAL;
    timespec now;
    if (clock_gettime(clock, &now) != 0) {
        errno = saved;
        return EINVAL;
    }
    if (clock == CLOCK_PROCESS_CPUTIME_ID) {
        // CPU time passes only while we run: parking cannot measure it.
        return real::get().clock_nanosleep(clock, flags, req, rem);
    }
    if (!valid(ts)) return EINVAL;
    uint64_t ns = to_ns(ts);
    if (flags & TIMER_ABSTIME) {
        // An absolute time on `clock`, measured now. A later jump of CLOCK_REALTIME is not
        // followed (docs/compat.md).
        uint64_t now_ns = to_ns(now);
        if (ns <= now_ns) {
            green::yield();
            return 0;
        }
        ns -= now_ns;
    }
    park_for(ns);
    errno = saved;
    return 0;
}

}  // namespace green::hooks
