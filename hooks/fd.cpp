// close, dup2, dup3: before the fd number stops meaning what it meant, fibers waiting on it
// wake (they report EBADF, as a call made after the close would) and it leaves the carrier's
// epoll set. Always runs, also off-fiber, so that no carrier keeps a stale registration.
#include <fcntl.h>

#include "hooks/hooks.h"
#include "runtime/runtime.h"

namespace green::hooks {

int close(int fd) {
    fd_closing(fd);
    return real::get().close(fd);
}

int dup2(int oldfd, int newfd) {
    if (oldfd != newfd && fcntl(oldfd, F_GETFD) >= 0) fd_closing(newfd);
    return real::get().dup2(oldfd, newfd);
}

int dup3(int oldfd, int newfd, int flags) {
    if (oldfd != newfd && fcntl(oldfd, F_GETFD) >= 0) fd_closing(newfd);
    return real::get().dup3(oldfd, newfd, flags);
}

}  // namespace green::hooks
