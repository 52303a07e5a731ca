// Test-side process helpers (see process.h).
#include "process.h"

#include <fcntl.h>
#include <poll.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <spawn.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <regex>
#include <stdexcept>

extern char** environ;

namespace itest {

std::string green_library() {
    return GREEN_LIBRARY;
}
std::string build_dir() {
    return GREEN_BUILD_DIR;
}

int connect_loopback(int port) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) return fd;
    const int saved = errno;
    close(fd);
    errno = saved;
    return -1;
}

bool exited_with(int status, int code) {
    return WIFEXITED(status) && WEXITSTATUS(status) == code;
}

Process::Process(const Spawn& spec) {
    int out[2], err[2];
    if (pipe2(out, O_CLOEXEC) != 0 || pipe2(err, O_CLOEXEC) != 0) throw std::runtime_error("pipe");
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, out[1], 1);
    if (spec.capture_stderr) posix_spawn_file_actions_adddup2(&actions, err[1], 2);
    std::vector<std::string> env;
    for (char** e = environ; *e; ++e) {
        if (!strncmp(*e, "LD_PRELOAD=", 11) || !strncmp(*e, "GREEN_", 6)) continue;
        env.emplace_back(*e);
    }
    if (spec.green) env.push_back("LD_PRELOAD=" + green_library());
    for (const auto& e : spec.env) env.push_back(e);
    std::vector<char*> argv, envp;
    for (const auto& a : spec.argv) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    for (const auto& e : env) envp.push_back(const_cast<char*>(e.c_str()));
    envp.push_back(nullptr);
    int rc = posix_spawnp(&pid_, argv[0], &actions, nullptr, argv.data(), envp.data());
    posix_spawn_file_actions_destroy(&actions);
    close(out[1]);
    close(err[1]);
    out_ = out[0];
    err_ = err[0];
    if (rc != 0) throw std::runtime_error("posix_spawn " + spec.argv[0] + ": " + strerror(rc));
}

Process::~Process() {
    kill_now();
    if (out_ >= 0) close(out_);
    if (err_ >= 0) close(err_);
}

void Process::kill_now(int sig) {
    if (reaped_ || pid_ <= 0) return;
    ::kill(pid_, sig);
    if (sig == SIGKILL) {
        waitpid(pid_, nullptr, 0);
        reaped_ = true;
    }
}

static std::string read_until(int fd, int timeout_ms, const char* stop) {
    std::string data;
    auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    for (;;) {
        if (stop && data.find(stop) != std::string::npos) break;
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                        end - std::chrono::steady_clock::now())
                        .count();
        if (left <= 0) break;
        pollfd p{fd, POLLIN, 0};
        if (poll(&p, 1, static_cast<int>(left)) <= 0) break;
        char buf[4096];
        ssize_t n = read(fd, buf, sizeof buf);
        if (n <= 0) break;
        data.append(buf, static_cast<size_t>(n));
    }
    return data;
}

int Process::wait_for_port(int timeout_ms, const std::string& pattern) {
    std::string line = read_until(out_, timeout_ms, "\n");
    std::smatch m;
    if (!std::regex_search(line, m, std::regex(pattern))) return 0;
    return std::stoi(m[1]);
}

std::string Process::read_all_stdout(int timeout_ms) {
    return read_until(out_, timeout_ms, nullptr);
}
std::string Process::read_all_stderr(int timeout_ms) {
    return read_until(err_, timeout_ms, nullptr);
}

int Process::threads() const {
    std::ifstream status("/proc/" + std::to_string(pid_) + "/status");
    std::string key;
    while (status >> key) {
        if (key == "Threads:") {
            int n = -1;
            status >> n;
            return n;
        }
    }
    return -1;
}

int Process::wait_exit(int timeout_ms) {
    auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    while (std::chrono::steady_clock::now() < end) {
        int status = 0;
        pid_t r = waitpid(pid_, &status, WNOHANG);
        if (r == pid_) {
            reaped_ = true;
            return status;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    kill_now();
    return -1;
}

ThreadSampler::ThreadSampler(const Process& p) : p_(p) {
    thread_ = std::thread([this] {
        while (!stop_.load()) {
            int n = p_.threads();
            if (n > max_.load()) max_.store(n);
            std::this_thread::sleep_for(std::chrono::milliseconds(5));
        }
    });
}

ThreadSampler::~ThreadSampler() {
    stop_.store(true);
    thread_.join();
}

Run run(const Spawn& spec, int timeout_ms) {
    Spawn s = spec;
    s.capture_stderr = true;
    Process p(s);
    Run r;
    // Read both pipes until the program closes them (it exits), bounded by the timeout.
    std::string err;
    std::thread err_reader([&] { err = p.read_all_stderr(timeout_ms); });
    r.out = p.read_all_stdout(timeout_ms);
    err_reader.join();
    r.err = err;
    r.status = p.wait_exit(timeout_ms);
    return r;
}

AbResult ab(const std::string& url, int concurrency, int requests) {
    Run r = run(Spawn{{"ab", "-q", "-r", "-s", "30", "-c", std::to_string(concurrency), "-n",
                       std::to_string(requests), url},
                      {},
                      false,
                      false},
                60000);
    AbResult a;
    a.raw = r.out + r.err;
    auto field = [&](const char* pattern) -> std::string {
        std::smatch m;
        return std::regex_search(r.out, m, std::regex(pattern)) ? m[1].str() : "";
    };
    if (auto v = field("Complete requests:\\s+(\\d+)"); !v.empty()) a.complete = std::stoi(v);
    if (auto v = field("Failed requests:\\s+(\\d+)"); !v.empty()) a.failed = std::stoi(v);
    if (auto v = field("Non-2xx responses:\\s+(\\d+)"); !v.empty()) a.non2xx = std::stoi(v);
    if (auto v = field("Time taken for tests:\\s+([0-9.]+)"); !v.empty()) a.seconds = std::stod(v);
    return a;
}

static uint8_t pattern(size_t conn, size_t i) {
    return static_cast<uint8_t>((i * 7 + conn * 13) ^ (i >> 9));
}

// A single-threaded epoll client: the load generator must not be the bottleneck.
EchoResult echo_load(int port, size_t conns, size_t bytes, int timeout_s) {
    EchoResult result;
    struct Conn {
        int fd;
        size_t sent = 0, received = 0;
        bool bad = false;
    };
    std::vector<Conn> c(conns);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    for (size_t i = 0; i < conns; ++i) {
        c[i].fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        connect(c[i].fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
        epoll_event ev{};
        ev.events = EPOLLIN | EPOLLOUT;
        ev.data.u64 = i;
        epoll_ctl(ep, EPOLL_CTL_ADD, c[i].fd, &ev);
    }
    std::vector<uint8_t> buf(65536);
    size_t open = conns;
    using Clock = std::chrono::steady_clock;
    auto deadline = Clock::now() + std::chrono::seconds(timeout_s);
    while (open > 0 && Clock::now() < deadline) {
        epoll_event evs[256];
        int n = epoll_wait(ep, evs, 256, 100);
        for (int k = 0; k < n; ++k) {
            size_t i = evs[k].data.u64;
            Conn& x = c[i];
            if (x.fd < 0) continue;
            if ((evs[k].events & EPOLLOUT) && x.sent < bytes) {
                size_t len = std::min(buf.size(), bytes - x.sent);
                for (size_t j = 0; j < len; ++j) buf[j] = pattern(i, x.sent + j);
                ssize_t w = send(x.fd, buf.data(), len, MSG_NOSIGNAL);
                if (w > 0) x.sent += static_cast<size_t>(w);
                if (x.sent == bytes) {
                    epoll_event ev{};
                    ev.events = EPOLLIN;
                    ev.data.u64 = i;
                    epoll_ctl(ep, EPOLL_CTL_MOD, x.fd, &ev);
                }
            }
            if (evs[k].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
                ssize_t r = recv(x.fd, buf.data(), buf.size(), 0);
                if (r > 0) {
                    for (ssize_t j = 0; j < r; ++j)
                        if (buf[j] != pattern(i, x.received + j)) x.bad = true;
                    x.received += static_cast<size_t>(r);
                }
                bool done = x.received >= bytes;
                if (done || r == 0 || (r < 0 && errno != EAGAIN)) {
                    if (done && !x.bad && x.received == bytes)
                        ++result.completed;
                    else if (x.bad)
                        ++result.corrupted;
                    else
                        ++result.failed;
                    close(x.fd);
                    x.fd = -1;
                    --open;
                }
            }
        }
    }
    for (auto& x : c)
        if (x.fd >= 0) close(x.fd);
    result.failed += open;
    close(ep);
    return result;
}

}  // namespace itest
