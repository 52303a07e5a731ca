// sleep, usleep, nanosleep, clock_nanosleep: park the fiber on a timer. A zero sleep yields
// to the other runnable fibers, as a real sleep(0) lets other threads run. A signal handler
// ends a sleep early whatever its SA_RESTART flag, as nanosleep(2) says.
#include <time.h>

#include "hooks/deadline.h"
#include "hooks/hooks.h"
#include "hooks/wait.h"

namespace green::hooks {
namespace {

bool valid(const timespec& ts) { return ts.tv_sec >= 0 && valid_nsec(ts.tv_nsec); }

// Sleeps until `deadline`; returns the time left when a signal handler interrupted it, else 0.
uint64_t sleep_to(uint64_t deadline) {
    while (true) {
        WaitResult r = sleep_until(deadline, ParkReason::kSleep);
        if (r == WaitResult::kTimedOut) return 0;
        if (r == WaitResult::kInterrupted) {
            interruption_restarts();
            uint64_t now = monotonic_now_ns();
            return deadline > now ? deadline - now : 1;
        }
    }
}

// Sleeps `ns`, as sleep_to. The deadline saturates where the kernel's timers do, so the time
// left after an interrupted sleep of centuries is what the kernel would report.
uint64_t park_for(uint64_t ns) {
    if (ns == 0) {
        green::yield();
        return 0;
    }
    return sleep_to(deadline_in_ns(ns));
}

}  // namespace

// Interrupted: the whole seconds not yet slept, as glibc's sleep reports them.
unsigned int sleep(unsigned int seconds) {
    return static_cast<unsigned int>(park_for(static_cast<uint64_t>(seconds) * kNsPerSec) /
                                     static_cast<uint64_t>(kNsPerSec));
}

int usleep(useconds_t usec) {
    if (park_for(static_cast<uint64_t>(usec) * 1000ull) == 0) return 0;
    errno = EINTR;
    return -1;
}

int nanosleep(const timespec* req, timespec* rem) {
    timespec ts;
    if (!copy_from_user(&ts, req, sizeof ts)) return -1;
    if (!valid(ts)) {
        errno = EINVAL;
        return -1;
    }
    uint64_t left = park_for(span_ns(ts.tv_sec, ts.tv_nsec));
    if (left == 0) return 0;
    if (rem) *rem = timespec_from_ns(left);
    errno = EINTR;
    return -1;
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
        note_carrier_blocked();
        return real::get().clock_nanosleep(clock, flags, req, rem);
    }
    if (!valid(ts)) return EINVAL;
    uint64_t left;
    if (flags & TIMER_ABSTIME) {
        // An absolute time on `clock`, measured now. A later jump of CLOCK_REALTIME is not
        // followed (docs/compat.md).
        uint64_t deadline;
        deadline_at(clock, &ts, &deadline);
        if (deadline <= monotonic_now_ns()) {
            green::yield();
            errno = saved;
            return 0;
        }
        left = sleep_to(deadline);
    } else {
        left = park_for(span_ns(ts.tv_sec, ts.tv_nsec));
    }
    errno = saved;
    if (left == 0) return 0;
    if (rem && !(flags & TIMER_ABSTIME)) *rem = timespec_from_ns(left);
    return EINTR;
}

}  // namespace green::hooks
