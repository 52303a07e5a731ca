// The OS poller of one carrier: its epoll set, which holds the program's fds its fibers wait
// on, libuv's backend fd and the carrier's wake-up eventfd, and its table of who waits on which
// fd. The fd generations that tell a closed number from its next file are process-wide
// (poller.cpp), so a close on any thread evicts every waiter on every carrier.
// Runs on its carrier's thread, except the members said to be callable from any thread.
// Never blocks, except in wait() with a timeout.
#pragma once

#include <atomic>
#include <cstdint>
#include <ctime>
#include <vector>

#include "runtime/runtime.h"

namespace green {

class Carrier;

// The process-wide generation of fd number `fd`: bumped by every close of the number on any
// thread (fd_closing in runtime.h).
uint32_t fd_generation(int fd);

class Poller {
public:
    explicit Poller(Carrier* owner) : owner_(owner) {}

    // Makes the epoll set, with libuv's backend fd and the wake-up eventfd in it; false with
    // errno set. close() gives both up (at retire; in a forked child, before open() again).
    bool open(int libuv_backend_fd);
    void close();
    // From any thread (the monitor polls it): -1 until open().
    int epoll_fd() const { return epoll_fd_.load(std::memory_order_relaxed); }

    // A fiber's wait begins: its waiters join their fds' lists and the fds are armed. A waiter
    // whose fd epoll cannot watch (a regular file) or that is gone is ready at once (its
    // revents set, its fiber unparked), as the real call's retry then decides.
    void add(FdWaiter* waiters, size_t count, Fiber* fiber);
    // ... and ends; true if one of its fds was closed while it waited.
    bool remove(FdWaiter* waiters, size_t count);

    // One epoll wait up to `timeout` (null: none; zero: a look), which unparks the fibers whose
    // fds are ready.
    struct Polled {
        int events = 0;          // -1: interrupted by a signal
        bool libuv = false;      // libuv's backend fd is readable: its loop has work
        bool full = false;       // the batch was full: look again at once
    };
    Polled wait(const timespec* timeout);

    // From any thread, async-signal-safe: the first call since the carrier last woke writes
    // the eventfd, which ends its wait.
    void wake();

    // This thread closes `fd`: its waiters here wake as closed, and it leaves the epoll set.
    void closing(int fd);
    // From any thread, signal handlers included: `fd` (-1: a whole range) was closed elsewhere.
    // It leaves the epoll set now; its waiters wake at the carrier's next evict_stale().
    void closed_elsewhere(int fd);
    bool stale_waiting() const { return stale_.load(std::memory_order_seq_cst); }
    bool take_stale();  // true once after closed_elsewhere()
    // Wakes the waiters whose fd's generation moved on (closed by another thread, or by a
    // close_range on this one).
    void evict_stale();

    // In a forked child: the parent's waiters are gone (their fibers did not survive), and
    // the epoll set is still the parent's until close() and open().
    void forget_waiters();

private:
    struct FdRecord {
        FdWaiter* waiters = nullptr;
        bool in_epoll = false;  // registered (EPOLLONESHOT) in this epoll set
    };
    FdRecord& record(int fd);
    void arm(int fd);

    Carrier* owner_;
    std::atomic<int> epoll_fd_{-1};
    int wake_fd_ = -1;
    std::atomic<bool> wake_sent_{false};
    std::atomic<bool> stale_{false};  // an fd was closed by another thread
    std::vector<FdRecord> fds_;
};

}  // namespace green
