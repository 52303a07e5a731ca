// Test-side helpers for integration tests: start a real program (optionally under
// LD_PRELOAD=libgreen.so), read its "listening on PORT" line, sample its OS thread count,
// and always kill it at the end. Never part of libgreen itself.
#pragma once

#include <signal.h>
#include <sys/types.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

namespace itest {

struct Spawn {
    std::vector<std::string> argv;
    std::vector<std::string> env;  // extra NAME=value entries
    bool green = false;            // run under LD_PRELOAD=libgreen.so
    bool capture_stderr = false;
};

class Process {
public:
    explicit Process(const Spawn& spec);
    ~Process();
    Process(const Process&) = delete;
    Process& operator=(const Process&) = delete;

    pid_t pid() const { return pid_; }
    // Reads stdout until a line matches `pattern`, whose first group is the port ("listening on
    // PORT" by default); 0 when the program ended or timed out.
    int wait_for_port(int timeout_ms = 5000, const std::string& pattern = "listening on (\\d+)");
    // OS threads of the process now (Threads: in /proc/PID/status); -1 if gone.
    int threads() const;
    // Waits for exit; returns the wait status, or -1 on timeout (then kills it).
    int wait_exit(int timeout_ms);
    std::string read_all_stdout(int timeout_ms);
    std::string read_all_stderr(int timeout_ms);
    void kill_now(int sig = SIGKILL);

private:
    pid_t pid_ = -1;
    int out_ = -1;
    int err_ = -1;
    bool reaped_ = false;
};

// Samples a process's thread count in the background; max() is the largest seen.
class ThreadSampler {
public:
    explicit ThreadSampler(const Process& p);
    ~ThreadSampler();
    int max() const { return max_.load(); }

private:
    const Process& p_;
    std::atomic<bool> stop_{false};
    std::atomic<int> max_{0};
    std::thread thread_;
};

// Result of running a command to completion.
struct Run {
    int status = -1;
    std::string out, err;
};
Run run(const Spawn& spec, int timeout_ms);

// ApacheBench (`ab`) against `url`: what it reports.
struct AbResult {
    int complete = -1, failed = -1, non2xx = 0;
    double seconds = 0;
    std::string raw;
};
AbResult ab(const std::string& url, int concurrency, int requests);

// `conns` concurrent connections to 127.0.0.1:port, each sending `bytes` of its own pattern
// and reading them all back, checked byte by byte (a single-threaded epoll client).
struct EchoResult {
    size_t completed = 0;
    size_t corrupted = 0;
    size_t failed = 0;
};
EchoResult echo_load(int port, size_t conns, size_t bytes, int timeout_s);

// A TCP connection to 127.0.0.1:port (close-on-exec), or -1 with errno.
int connect_loopback(int port);

std::string green_library();
std::string build_dir();
bool exited_with(int status, int code);

}  // namespace itest
