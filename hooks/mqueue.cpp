// POSIX message queues. On Linux a queue descriptor is an fd, readable when a message waits
// and writable when there is room. A blocking send or receive first makes the real call with
// a timeout already past, which never blocks (ETIMEDOUT where it would have), then parks on
// the fd until the program's own deadline and tries again. What the program gets is always
// the kernel's answer: its queue's O_NONBLOCK (EAGAIN at once), EBADF, EMSGSIZE. The queue's
// flags are never touched (it may be shared with other processes).
#include <mqueue.h>

#include <cerrno>

#include "hooks/deadline.h"
#include "hooks/hooks.h"
#include "hooks/wait.h"

namespace green::hooks {
namespace {

const timespec kPast{0, 0};  // 1970 on CLOCK_REALTIME: a timed call with it never waits

// The monotonic deadline of an absolute CLOCK_REALTIME timeout (none: null). False with
// errno set, as the kernel checks it first: EFAULT, or EINVAL for a negative or bad time.
bool queue_deadline(const timespec* abstime, uint64_t* deadline) {
    *deadline = kNoDeadline;
    if (!abstime) return true;
    timespec t;
    if (!kernel_timespec(abstime, &t)) return false;
    deadline_at(CLOCK_REALTIME, &t, deadline);
    return true;
}

// `attempt(timeout)` is the real timed call; `events` what the fd must be ready for.
template <typename Attempt>
auto queue_call(mqd_t queue, uint32_t events, ParkReason reason, const timespec* abstime,
                Attempt attempt) -> decltype(attempt(abstime)) {
    uint64_t deadline;
    if (!queue_deadline(abstime, &deadline)) return -1;
    for (;;) {
        auto r = attempt(&kPast);
        if (r >= 0 || errno != ETIMEDOUT) return r;
        switch (wait_for(queue, events, deadline, reason)) {
            case Waited::kClosed: errno = EBADF; return -1;
            case Waited::kTimedOut: errno = ETIMEDOUT; return -1;
            case Waited::kInterrupted:
                if (interruption_restarts()) break;  // signal(7): restarted under SA_RESTART
                errno = EINTR;
                return -1;
            case Waited::kReady: break;
        }
    }
}

}  // namespace

ssize_t mq_receive(mqd_t queue, char* buf, size_t len, unsigned* priority) {
    return mq_timedreceive(queue, buf, len, priority, nullptr);
}

ssize_t mq_timedreceive(mqd_t queue, char* buf, size_t len, unsigned* priority,
                        const timespec* abstime) {
    return queue_call(queue, EPOLLIN, ParkReason::kRead, abstime, [&](const timespec* t) {
        return real::get().mq_timedreceive(queue, buf, len, priority, t);
    });
}

int mq_send(mqd_t queue, const char* msg, size_t len, unsigned priority) {
    return mq_timedsend(queue, msg, len, priority, nullptr);
}

int mq_timedsend(mqd_t queue, const char* msg, size_t len, unsigned priority,
                 const timespec* abstime) {
    return queue_call(queue, EPOLLOUT, ParkReason::kWrite, abstime, [&](const timespec* t) {
        return real::get().mq_timedsend(queue, msg, len, priority, t);
    });
}

}  // namespace green::hooks
