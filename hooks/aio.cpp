// Linux native aio's wait: io_getevents(2), which libaio's io_getevents and MariaDB's InnoDB (its
// fallback when io_uring is refused) make through syscall(2). An aio context has no fd to wait
// on, so a fiber that would wait takes what is there without waiting and sleeps a little
// between looks; never blocks the carrier.
#include <linux/aio_abi.h>
#include <sys/syscall.h>

#include <algorithm>
#include <cerrno>

#include "hooks/hooks.h"
#include "hooks/wait.h"

namespace green::hooks {
namespace {

// io_getevents without waiting (a zero timeout): the completions there, up to `nr`; -errno.
long take_events(long ctx, long nr, io_event* events) {
    timespec zero{};
    const int saved = errno;
    long r = real::get().syscall(SYS_io_getevents, ctx, 0L, nr, events, &zero);
    if (r < 0) r = -errno;
    errno = saved;
    return r;
}

}  // namespace

// As the kernel's io_getevents (fs/aio.c, read_events): it gathers completions until min_nr, the
// timeout (relative; none waits for ever), or a signal; then returns the count gathered, or
// -EINTR when a handler ran before any came (never restarted). The first look is the real call
// with a zero timeout, which checks the context, the counts and the events pointer as the
// kernel does.
long io_getevents_call(long ctx, long min_nr, long nr, long events_arg, long timeout_arg) {
    auto* events = reinterpret_cast<io_event*>(events_arg);
    const auto* timeout = reinterpret_cast<const timespec*>(timeout_arg);
    auto real_call = [&] {
        return real::get().syscall(SYS_io_getevents, ctx, min_nr, nr, events, timeout);
    };
    timespec span{};
    if (timeout && !copy_from_user(&span, timeout, sizeof span)) return real_call();  // EFAULT
    if (min_nr <= 0 || nr < min_nr) return real_call();  // nothing to wait for, or EINVAL
    HandlerWatch handlers;
    long got = take_events(ctx, nr, events);
    if (got < 0) return real_call();  // the kernel's error
    if (got >= min_nr || (timeout && span.tv_sec == 0 && span.tv_nsec == 0)) return got;
    const uint64_t deadline =
        timeout ? deadline_after_unchecked(span.tv_sec, span.tv_nsec) : kNoDeadline;
    uint64_t backoff_ns = 0;
    for (;;) {
        const uint64_t until = next_poll_sleep_until(&backoff_ns);
        // A handler that ran while this fiber ran, since the last look, ends the call as one
        // that interrupts the sleep does.
        bool interrupted = handlers.ran();
        if (!interrupted &&
            sleep_until(std::min(until, deadline), ParkReason::kPoll) == WaitResult::kInterrupted) {
            interruption_restarts();  // io_getevents is never restarted
            interrupted = true;
        }
        if (interrupted) {
            if (got > 0) return got;
            errno = EINTR;
            return -1;
        }
        handlers.mark();
        long r = take_events(ctx, nr - got, events + got);
        if (r < 0) {  // the context went away meanwhile
            if (got > 0) return got;
            errno = static_cast<int>(-r);
            return -1;
        }
        got += r;
        if (got >= min_nr || monotonic_now_ns() >= deadline) return got;
    }
}

}  // namespace green::hooks
