// The runtime's own fds (the carrier's epoll set, libuv's loop fds, c-ares's sockets): kept at
// high numbers where programs do not look, close-on-exec, and out of reach of the program's
// closes (close, closefrom, close_range and dup2 onto them report what they would for a
// number that is not open). Daemons close every fd above 2 at start and dup2 onto low numbers;
// neither may take the runtime's fds away.
// Async-signal-safe readers (is_runtime_fd); no allocation anywhere.
#pragma once

#include <cstddef>

namespace green {

// Moves `fd`, just made by the runtime, to the reserved range (close-on-exec) and records it
// as the runtime's. Returns the fd to use from now on: the new number, or `fd` itself when no
// high slot can be had (it is still recorded, and so still protected).
int adopt_runtime_fd(int fd);
// True if `fd` is one of the runtime's own.
bool is_runtime_fd(int fd);
// Forgets `fd` as the runtime's and closes it.
void close_runtime_fd(int fd);
// Forgets `fd` (the runtime's code is about to close it itself, inside a RuntimeFdScope).
void release_runtime_fd(int fd);

// While one lives on this thread, the fds that libuv makes through the interposed pipe2,
// eventfd and epoll_create1 are adopted, and its closes of runtime fds are real closes.
class RuntimeFdScope {
public:
    RuntimeFdScope();
    ~RuntimeFdScope();
    RuntimeFdScope(const RuntimeFdScope&) = delete;
    RuntimeFdScope& operator=(const RuntimeFdScope&) = delete;
};
bool in_runtime_fd_scope();
// The same, for code that cannot hold an object (libuv's atfork child handler, carrier.cpp).
void enter_runtime_fd_scope();
void leave_runtime_fd_scope();

// Writes the runtime's fds within [first, last] to `out` (room for `max`) in increasing
// order; returns how many. For close_range, which must step around them.
size_t runtime_fds_between(unsigned first, unsigned last, int* out, size_t max);
constexpr size_t kMaxRuntimeFds = 128;

}  // namespace green
