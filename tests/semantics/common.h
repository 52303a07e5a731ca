// Helpers for the semantic tests. These tests are plain programs: they call libc and know
// nothing of libgreen, and every test runs twice, natively and under LD_PRELOAD=libgreen.so;
// both runs must pass. Where the shim's answer deliberately differs from a real thread's
// (only where a real thread would hang forever), the test says so with under_shim().
#pragma once

#include <dlfcn.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <initializer_list>
#include <string>
#include <thread>
#include <vector>

namespace sem {

using Clock = std::chrono::steady_clock;

// True when libgreen is preloaded and this thread runs on a fiber.
inline bool under_shim() {
    using Active = int (*)();
    auto active = reinterpret_cast<Active>(dlsym(RTLD_DEFAULT, "green_active"));
    return active && active();
}

inline long ms_since(Clock::time_point start) {
    return static_cast<long>(
        std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start).count());
}

// A number from this process's /proc/self/status ("Threads:", "VmRSS:"), or -1.
inline long proc_status(const char* key) {
    std::ifstream status("/proc/self/status");
    std::string word;
    long value = -1;
    while (status >> word)
        if (word == key) status >> value;
    return value;
}

inline bool nonblocking(int fd) {
    return (fcntl(fd, F_GETFL) & O_NONBLOCK) != 0;
}

// A thread that runs `fn` after `delay_ms`; joined by the destructor.
class After {
  public:
    After(int delay_ms, std::function<void()> fn)
        : thread_([delay_ms, fn] {
              std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
              fn();
          }) {}
    ~After() { thread_.join(); }

  private:
    std::thread thread_;
};

// Counts 5 ms sleeps on another thread while it lives: proof that the process kept running.
class Ticker {
  public:
    Ticker()
        : thread_([this] {
              while (!stop_) {
                  usleep(5000);
                  ++ticks_;
              }
          }) {}
    ~Ticker() {
        stop_ = true;
        thread_.join();
    }
    int ticks() const { return ticks_; }

  private:
    std::atomic<bool> stop_{false};
    std::atomic<int> ticks_{0};
    std::thread thread_;
};

// Two ends of a pipe or socket pair, closed when the Pair goes; move-only, so that no copy
// closes the fds of another.
struct Pair {
    int a = -1, b = -1;
    Pair(int x, int y) : a(x), b(y) {}
    Pair(Pair&& other) noexcept : a(other.a), b(other.b) { other.a = other.b = -1; }
    Pair(const Pair&) = delete;
    Pair& operator=(const Pair&) = delete;
    ~Pair() {
        if (a >= 0) close(a);
        if (b >= 0) close(b);
    }
};

inline Pair socket_pair(int type = SOCK_STREAM) {
    int sv[2];
    if (socketpair(AF_UNIX, type, 0, sv) != 0) abort();
    return Pair{sv[0], sv[1]};
}

inline Pair pipe_pair() {
    int p[2];
    if (pipe(p) != 0) abort();
    return Pair{p[0], p[1]};
}

// An unmapped address the compiler cannot see through: the tests pass it where a program
// would pass a bad pointer, and expect EFAULT.
template <typename T = void>
T* bad_pointer() {
    static volatile uintptr_t address = 16;
    return reinterpret_cast<T*>(address);
}

// A value the compiler cannot see through (for deliberately invalid sizes and counts).
template <typename T>
T opaque(T value) {
    volatile T v = value;
    return v;
}

// An fd number that is surely closed.
inline int closed_fd() {
    int fd = dup(0);
    close(fd);
    return fd;
}

// Waits for child `pid`; a child still running after `ms` is killed (SIGKILL). Its status.
inline int wait_child_within(pid_t pid, long ms) {
    int status = -1;
    auto start = Clock::now();
    while (waitpid(pid, &status, WNOHANG) == 0) {
        if (ms_since(start) > ms) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            break;
        }
        usleep(2000);
    }
    return status;
}

// Installs a seccomp filter on the calling process (after PR_SET_NO_NEW_PRIVS, so no
// privilege is needed), as sandboxed programs do. False if the kernel refused it.
inline bool install_seccomp_filter(sock_filter* filter, size_t count) {
    sock_fprog program{static_cast<unsigned short>(count), filter};
    return prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0 &&
           prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &program) == 0;
}

// A seccomp filter, as sandboxed programs install, that answers each of `calls` with `action`
// and allows the rest; `flags` for seccomp(2) (SECCOMP_FILTER_FLAG_TSYNC: on every thread,
// not only this one). False if the kernel refused it.
inline bool refuse_calls(std::initializer_list<int> calls, uint32_t action, unsigned flags = 0) {
    std::vector<sock_filter> filter = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
    };
    for (int nr : calls) {
        filter.push_back(BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, static_cast<uint32_t>(nr), 0, 1));
        filter.push_back(BPF_STMT(BPF_RET | BPF_K, action));
    }
    filter.push_back(BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW));
    sock_fprog program{static_cast<unsigned short>(filter.size()), filter.data()};
    return prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0 &&
           syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, flags, &program) == 0;
}

// Ignores SIGPIPE for the test program, as servers do, so EPIPE can be observed.
struct IgnoreSigpipe {
    IgnoreSigpipe() { signal(SIGPIPE, SIG_IGN); }
};

}  // namespace sem
