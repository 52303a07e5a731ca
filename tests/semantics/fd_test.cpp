// Semantics of the fd life cycle around a running process: closing every inherited fd,
// closefrom, close_range and dup2 onto low numbers (what daemons do at start) leave blocking
// calls working; a program sees no fd it did not open; a close by any thread ends a wait on
// the old fd and never hands the waiter the next owner's data; errno survives a successful
// close; forks made without fork()'s handlers give the child its own state.
#include <dirent.h>
#include <gtest/gtest.h>
#include <linux/close_range.h>
#include <poll.h>
#include <pthread.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <threads.h>
#include <unistd.h>

#include <cstdio>
#include <string>
#include <vector>

#include "common.h"

using namespace sem;

namespace {

// What the fd numbers above 2 of this process point at (readlink of /proc/self/fd/N).
std::vector<std::string> open_fd_targets() {
    std::vector<std::string> targets;
    DIR* dir = opendir("/proc/self/fd");
    if (!dir) return targets;
    const int own = dirfd(dir);
    while (dirent* entry = readdir(dir)) {
        int fd = atoi(entry->d_name);
        if (entry->d_name[0] == '.' || fd <= 2 || fd == own) continue;
        char path[64], target[256] = {};
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
        if (readlink(path, target, sizeof target - 1) > 0) targets.push_back(target);
    }
    closedir(dir);
    return targets;
}

// A thread that reads one byte from `fd`; join() waits for it and returns what read returned.
class OneByteReader {
  public:
    explicit OneByteReader(int fd) : fd_(fd) {
        pthread_create(&thread_, nullptr, [](void* a) -> void* {
            auto* self = static_cast<OneByteReader*>(a);
            self->n_ = read(self->fd_, &self->byte_, 1);
            return nullptr;
        }, this);
    }
    char byte() const { return byte_; }
    ssize_t join() {
        pthread_join(thread_, nullptr);
        return n_;
    }
    // As join(), but gives up after `ms`; false if the thread has not ended by then.
    bool join_within(int ms, ssize_t* n) {
        timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += ms / 1000;
        until.tv_nsec += (ms % 1000) * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec += 1;
            until.tv_nsec -= 1000000000L;
        }
        if (pthread_timedjoin_np(thread_, nullptr, &until) != 0) return false;
        *n = n_;
        return true;
    }

  private:
    int fd_;
    char byte_ = 0;
    ssize_t n_ = -1;
    pthread_t thread_;
};

// Blocking work that needs the runtime's loop under the shim: a thread sleeps, another reads
// a pipe that main fills after a while, and main joins both. True when it all came out right.
bool blocking_work_runs() {
    int p[2];
    if (pipe(p) != 0) return false;
    OneByteReader reader(p[0]);
    pthread_t sleeper;
    pthread_create(&sleeper, nullptr, [](void*) -> void* {
        usleep(20000);
        return nullptr;
    }, nullptr);
    usleep(10000);
    bool wrote = write(p[1], "x", 1) == 1;
    bool read_it = reader.join() == 1 && reader.byte() == 'x';
    pthread_join(sleeper, nullptr);
    close(p[0]);
    close(p[1]);
    return wrote && read_it;
}

// Runs `fn` in a forked child (which may close every fd it likes) and returns its exit status.
int in_child(void (*fn)()) {
    fflush(nullptr);
    pid_t pid = fork();
    if (pid == 0) {
        fn();
        _exit(blocking_work_runs() ? 0 : 3);
    }
    int status = -1;
    waitpid(pid, &status, 0);
    return status;
}

}  // namespace

TEST(Fds, AProgramThatHasNotBlockedHasNoEpollOrEventFds) {
    for (const std::string& target : open_fd_targets()) {
        EXPECT_NE(target, "anon_inode:[eventpoll]");
        EXPECT_NE(target, "anon_inode:[eventfd]");
    }
}

TEST(Fds, ClosingEveryFdAboveTwoLeavesBlockingCallsWorking) {
    ASSERT_TRUE(blocking_work_runs());  // under the shim the runtime's fds exist now
    int status = in_child([] {
        long max = sysconf(_SC_OPEN_MAX);
        for (int fd = 3; fd < max; ++fd) close(fd);
    });
    EXPECT_EQ(status, 0);
}

TEST(Fds, ClosefromAndCloseRangeLeaveBlockingCallsWorking) {
    ASSERT_TRUE(blocking_work_runs());
    EXPECT_EQ(in_child([] { closefrom(3); }), 0);
    EXPECT_EQ(in_child([] {
                  if (close_range(3, ~0u, 0) != 0) _exit(4);
              }),
              0);
    EXPECT_EQ(in_child([] {
                  if (syscall(SYS_close_range, 3, ~0u, 0) != 0) _exit(4);
              }),
              0);
    EXPECT_EQ(in_child([] {
                  if (close_range(3, ~0u, CLOSE_RANGE_CLOEXEC) != 0) _exit(4);
              }),
              0);
}

TEST(Fds, CloseRangeChecksItsArgumentsAsTheKernel) {
    errno = 0;
    EXPECT_EQ(close_range(10, 3, 0), -1);
    EXPECT_EQ(errno, EINVAL);
    EXPECT_EQ(close_range(3, 10, 0x4000), -1);
    EXPECT_EQ(errno, EINVAL);
    int fd = dup(0);
    ASSERT_GE(fd, 0);
    EXPECT_EQ(close_range(static_cast<unsigned>(fd), static_cast<unsigned>(fd), 0), 0);
    EXPECT_EQ(fcntl(fd, F_GETFD), -1);
    EXPECT_EQ(errno, EBADF);
}

TEST(Fds, Dup2OntoLowNumbersLeavesBlockingCallsWorking) {
    ASSERT_TRUE(blocking_work_runs());
    int status = in_child([] {
        int null = open("/dev/null", O_RDONLY);
        for (int fd = 3; fd < 64; ++fd)
            if (fd != null) dup2(null, fd);
    });
    EXPECT_EQ(status, 0);
}

TEST(Fds, ACloseThatSucceedsLeavesErrnoAlone) {
    // A registration left behind in epoll by an fd closed where no hook sees it (fclose)
    // makes the next close of the number find nothing to remove there.
    Pair s = socket_pair();
    OneByteReader reader(s.a);
    usleep(20000);
    ASSERT_EQ(write(s.b, "x", 1), 1);
    ASSERT_EQ(reader.join(), 1);
    FILE* f = fdopen(s.a, "r");
    ASSERT_NE(f, nullptr);
    s.a = -1;
    fclose(f);
    Pair again = socket_pair();
    errno = EXDEV;
    EXPECT_EQ(close(again.a), 0);
    again.a = -1;
    EXPECT_EQ(errno, EXDEV);
    errno = EXDEV;
    int fd = dup(0);
    EXPECT_EQ(dup2(0, fd), fd);
    EXPECT_EQ(close(fd), 0);
    EXPECT_EQ(errno, EXDEV);
}

// A thread that is not a fiber under the shim either (C11 threads are real threads) closes an
// fd a thread waits on, and the number is reused for a socket that another thread then reads:
// the first waiter must not take the next owner's data (natively it stays on the old socket
// until its timeout; under the shim it fails with EBADF), and the new reader gets it.
TEST(Fds, ACloseOnAnotherThreadNeverHandsTheWaiterTheNextOwnersData) {
    Pair old_pair = socket_pair();
    timeval timeout{1, 0};
    ASSERT_EQ(setsockopt(old_pair.a, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout), 0);
    struct Reader {
        int fd;
        ssize_t n = -2;
        int err = 0;
        char byte = 0;
        std::atomic<bool> started{false};
    };
    auto read_one = [](void* a) -> void* {
        auto* r = static_cast<Reader*>(a);
        r->started = true;
        r->n = read(r->fd, &r->byte, 1);
        r->err = errno;
        return nullptr;
    };
    Reader stale{old_pair.a};
    pthread_t first;
    pthread_create(&first, nullptr, read_one, &stale);
    while (!stale.started) usleep(1000);
    usleep(50000);  // the reader is blocked (natively) or parked (under the shim)
    struct Swap {
        int fd;
        int reused = -1, peer = -1;
    } swap{old_pair.a};
    thrd_t closer;
    ASSERT_EQ(thrd_create(&closer, [](void* a) -> int {
        auto* s = static_cast<Swap*>(a);
        close(s->fd);
        int sv[2];
        if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) return 1;
        if (sv[0] != s->fd) {  // a lower number was free: move the new socket onto the old one
            if (dup2(sv[0], s->fd) != s->fd) return 1;
            close(sv[0]);
            sv[0] = s->fd;
        }
        s->reused = sv[0];
        s->peer = sv[1];
        return 0;
    }, &swap), thrd_success);
    int closer_rc = -1;
    thrd_join(closer, &closer_rc);
    old_pair.a = -1;
    ASSERT_EQ(closer_rc, 0);
    ASSERT_EQ(swap.reused, swap.fd);  // the number was reused
    Reader owner{swap.reused};
    pthread_t second;
    pthread_create(&second, nullptr, read_one, &owner);
    while (!owner.started) usleep(1000);
    usleep(50000);
    // Two bytes: the new reader takes one; the other must still be there afterwards.
    ASSERT_EQ(write(swap.peer, "NM", 2), 2);
    pthread_join(second, nullptr);
    pthread_join(first, nullptr);
    EXPECT_EQ(owner.n, 1);
    EXPECT_EQ(owner.byte, 'N');
    EXPECT_EQ(stale.n, -1) << "read the next owner's byte '" << stale.byte << "'";
    EXPECT_TRUE(stale.err == EAGAIN || stale.err == EBADF) << stale.err;
    char left = 0;
    EXPECT_EQ(recv(swap.reused, &left, 1, MSG_DONTWAIT), 1);
    EXPECT_EQ(left, 'M');
    close(swap.reused);
    close(swap.peer);
}

// A child made without fork()'s handlers (_Fork, a raw fork system call) that blocks must not
// take the parent's readiness events: the parent's waiting thread still wakes.
static void parent_waiter_survives_a_child(pid_t (*make_child)()) {
    Pair p = pipe_pair();
    OneByteReader reader(p.a);
    usleep(20000);
    fflush(nullptr);
    pid_t pid = make_child();
    if (pid == 0) {
        // The child blocks for a while (a sleeping thread, so the scheduler polls).
        pthread_t t;
        pthread_create(&t, nullptr, [](void*) -> void* {
            usleep(300000);
            return nullptr;
        }, nullptr);
        pthread_join(t, nullptr);
        _exit(0);
    }
    ASSERT_GT(pid, 0);
    usleep(50000);  // the child polls by now
    ASSERT_EQ(write(p.b, "x", 1), 1);
    // Hold the thread without blocking for a while: a child that shared the parent's epoll
    // set would take the readiness event now, and its copy of the reader would read the byte.
    auto start = Clock::now();
    while (ms_since(start) < 100) {
    }
    ssize_t n = -1;
    if (!reader.join_within(2000, &n)) {
        // The byte was stolen and the reader may never wake: end the test process now.
        ADD_FAILURE() << "the parent's reader did not wake within 2 s";
        fflush(nullptr);
        _exit(1);
    }
    EXPECT_EQ(n, 1);
    int status = -1;
    waitpid(pid, &status, 0);
    EXPECT_EQ(status, 0);
}

TEST(Fds, AChildOfUnderscoreForkDoesNotStealTheParentsEvents) {
    parent_waiter_survives_a_child([] { return _Fork(); });
}

TEST(Fds, AChildOfARawForkSystemCallDoesNotStealTheParentsEvents) {
    parent_waiter_survives_a_child([] { return static_cast<pid_t>(syscall(SYS_fork)); });
}

// A thread that is not a fiber keeps taking and releasing the runtime's handle registry
// (pthread_kill with signal 0 on a fiber's handle asks it) while main forks: every child must
// be able to make and join threads, which takes the same lock.
TEST(Fds, ForkWhileAnotherThreadHoldsRuntimeLocksNeverDeadlocksTheChild) {
    struct Ctx {
        pthread_t target;
        std::atomic<bool> stop{false};
    } ctx;
    pthread_create(&ctx.target, nullptr, [](void* a) -> void* {
        auto* c = static_cast<Ctx*>(a);
        while (!c->stop) usleep(1000);
        return nullptr;
    }, &ctx);
    thrd_t asker;
    thrd_create(&asker, [](void* a) -> int {
        auto* c = static_cast<Ctx*>(a);
        while (!c->stop) pthread_kill(c->target, 0);
        return 0;
    }, &ctx);
    int failures = 0;
    for (int i = 0; i < 100; ++i) {
        fflush(nullptr);
        pid_t pid = fork();
        if (pid == 0) {
            alarm(5);  // a deadlocked child dies instead of hanging the test
            pthread_t t;
            pthread_create(&t, nullptr, [](void*) -> void* { return nullptr; }, nullptr);
            pthread_join(t, nullptr);
            _exit(0);
        }
        int status = -1;
        waitpid(pid, &status, 0);
        failures += status != 0;
    }
    ctx.stop = true;
    thrd_join(asker, nullptr);
    pthread_join(ctx.target, nullptr);
    EXPECT_EQ(failures, 0);
}
