// The fd life cycle. close, dup2, dup3, closefrom and close_range: before an fd number stops
// meaning what it meant, fibers waiting on it wake (they report EBADF, as a call made after
// the close would) and it leaves every carrier's epoll set. They always run, also off-fiber,
// so that no carrier keeps a stale registration.
// The runtime's own fds (runtime/runtime_fds.h) are not the program's: closing one, or
// dup2'ing onto one, fails as it would for a number that is not open, and close_range steps
// around them. pipe2, eventfd and epoll_create1 are how libuv makes its fds: inside the
// runtime's scope they land out of the program's way; for the program they are glibc's.
#include <fcntl.h>
#include <linux/close_range.h>
#include <sys/syscall.h>

#include "hooks/hooks.h"
#include "runtime/fork.h"
#include "runtime/runtime_fds.h"
#include "runtime/runtime.h"

namespace green::hooks {
namespace {

// A close of one of the runtime's fds that does not come from the runtime itself.
bool protected_fd(int fd) { return is_runtime_fd(fd) && !in_runtime_fd_scope(); }

int not_open() {
    errno = EBADF;
    return -1;
}

int adopted(int fd) { return fd >= 0 && in_runtime_fd_scope() ? adopt_runtime_fd(fd) : fd; }

}  // namespace

int close(int fd) {
    if (protected_fd(fd)) return not_open();
    if (in_runtime_fd_scope()) release_runtime_fd(fd);
    fd_closing(fd);
    return real::get().close(fd);
}

int dup2(int oldfd, int newfd) {
    if (protected_fd(newfd) && oldfd != newfd) return not_open();
    if (oldfd != newfd && fcntl(oldfd, F_GETFD) >= 0) fd_closing(newfd);
    return real::get().dup2(oldfd, newfd);
}

int dup3(int oldfd, int newfd, int flags) {
    if (protected_fd(newfd) && oldfd != newfd) return not_open();
    if (oldfd != newfd && fcntl(oldfd, F_GETFD) >= 0) fd_closing(newfd);
    return real::get().dup3(oldfd, newfd, flags);
}

// close_range(2): the kernel's checks first (EINVAL for a bad range or flag), then the range
// in pieces that step around the runtime's fds. Waiters on the fds it closes wake first.
int close_range(unsigned first, unsigned last, int flags) {
    if (first > last || (flags & ~(CLOSE_RANGE_UNSHARE | CLOSE_RANGE_CLOEXEC))) {
        errno = EINVAL;
        return -1;
    }
    int ours[kMaxRuntimeFds];
    size_t count =
        in_runtime_fd_scope() ? 0 : runtime_fds_between(first, last, ours, kMaxRuntimeFds);
    if (!(flags & CLOSE_RANGE_CLOEXEC)) fds_closing(first, last);
    unsigned from = first;
    for (size_t i = 0; i <= count; ++i) {
        unsigned to = i < count ? static_cast<unsigned>(ours[i]) - 1 : last;
        if (i < count && static_cast<unsigned>(ours[i]) == from) {
            from = static_cast<unsigned>(ours[i]) + 1;
            continue;
        }
        if (from <= to && real::get().close_range(from, to, flags) != 0) return -1;
        if (i < count) from = static_cast<unsigned>(ours[i]) + 1;
        if (from == 0) break;  // stepped past UINT_MAX
    }
    return 0;
}

void closefrom(int lowfd) {
    if (lowfd < 0) lowfd = 0;
    hooks::close_range(static_cast<unsigned>(lowfd), ~0u, 0);
}

int pipe2(int fds[2], int flags) {
    if (real::get().pipe2(fds, flags) != 0) return -1;
    if (in_runtime_fd_scope()) {
        fds[0] = adopt_runtime_fd(fds[0]);
        fds[1] = adopt_runtime_fd(fds[1]);
    }
    return 0;
}

int eventfd(unsigned int count, int flags) { return adopted(real::get().eventfd(count, flags)); }

int epoll_create1(int flags) { return adopted(real::get().epoll_create1(flags)); }

// _Fork(): a fork without the atfork handlers (glibc 2.34). Its child still needs its own
// carrier state (epoll set, loop) and the runtime's locks free.
pid_t _Fork() {
    pid_t pid = real::get()._Fork();
    if (pid == 0) fork_child(false);
    return pid;
}

}  // namespace green::hooks
