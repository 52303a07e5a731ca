// syscall(SYS_futex, ...): the futex waits that libstdc++ makes itself (C++20 atomic::wait and
// counting_semaphore, call_once's and function-local statics' guards). A fiber's FUTEX_WAIT
// parks in the parking lot; every FUTEX_WAKE wakes parked fibers first, then real futex
// waiters. Other syscall numbers, and futex operations we do not model, pass through.
#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>

#include <atomic>

#include "hooks/deadline.h"
#include "hooks/hooks.h"
#include "hooks/wait.h"
#include "runtime/parking_lot.h"

namespace green::hooks {
namespace {

constexpr int kCommandMask = FUTEX_CMD_MASK;  // strips FUTEX_PRIVATE_FLAG, CLOCK_REALTIME

long real_syscall(long n, long a1, long a2, long a3, long a4, long a5, long a6) {
    return real::get().syscall(n, a1, a2, a3, a4, a5, a6);
}

// A fiber's FUTEX_WAIT / FUTEX_WAIT_BITSET. The bitset is not modelled: a wake-up for
// another bitset is a spurious wake-up, which every futex user must tolerate.
long fiber_futex_wait(uint32_t* word, int op, uint32_t expected, const timespec* timeout) {
    if (!user_readable(word, sizeof *word)) return -1;  // EFAULT
    uint64_t deadline = kNoDeadline;
    if (timeout) {
        timespec t;
        if (!kernel_timespec(timeout, &t)) return -1;
        if ((op & kCommandMask) == FUTEX_WAIT) {
            deadline = deadline_after(t);  // relative, on CLOCK_MONOTONIC
        } else {  // FUTEX_WAIT_BITSET: an absolute time on CLOCK_MONOTONIC or CLOCK_REALTIME
            deadline_at((op & FUTEX_CLOCK_REALTIME) ? CLOCK_REALTIME : CLOCK_MONOTONIC, &t,
                        &deadline);
        }
    }
    // A futex shared with another process is woken by that process's FUTEX_WAKE, which the
    // parking lot never sees: re-check the word every few milliseconds.
    const bool shared = !(op & FUTEX_PRIVATE_FLAG);
    auto& value = *reinterpret_cast<std::atomic<uint32_t>*>(word);
    for (;;) {
        uint64_t until = shared ? std::min(deadline, deadline_after_ns(5000000)) : deadline;
        parking_lot::Parked r = parking_lot::park(
            word, [&] { return value.load() == expected; }, until, ParkReason::kFutex);
        if (r == parking_lot::Parked::kInvalid) {
            errno = EAGAIN;
            return -1;
        }
        if (r == parking_lot::Parked::kWoken) return 0;
        if (until == deadline) {
            errno = ETIMEDOUT;
            return -1;
        }
        if (value.load() != expected) return 0;  // changed by another process
    }
}

}  // namespace

long futex_call(long number, long a1, long a2, long a3, long a4, long a5, long a6) {
    if (disabled()) return real_syscall(number, a1, a2, a3, a4, a5, a6);
    auto* word = reinterpret_cast<uint32_t*>(a1);
    const int op = static_cast<int>(a2);
    switch (op & kCommandMask) {
        case FUTEX_WAIT:
        case FUTEX_WAIT_BITSET: {
            Fiber* self = current_fiber();
            if (!self || self->hook_depth != 0) break;  // threads keep the kernel's futex
            ++self->hook_depth;
            long r = fiber_futex_wait(word, op, static_cast<uint32_t>(a3),
                                      reinterpret_cast<const timespec*>(a4));
            --self->hook_depth;
            return r;
        }
        case FUTEX_WAKE:
        case FUTEX_WAKE_BITSET: {
            long want = static_cast<int>(a3);
            if (want <= 0) break;
            long woken = static_cast<long>(parking_lot::unpark(word, static_cast<size_t>(want)));
            if (woken >= want) return woken;
            long more = real_syscall(number, a1, a2, want - woken, a4, a5, a6);
            return more < 0 ? (woken > 0 ? woken : more) : woken + more;
        }
        default:
            break;
    }
    return real_syscall(number, a1, a2, a3, a4, a5, a6);
}

}  // namespace green::hooks
