// The debugging aids on real processes: GREEN_STATS counters against the work the sample
// servers did, the GREEN_MONITOR_MS watchdog on a spinning thread, the deadlock report on two
// threads that take two mutexes in opposite orders, and GREEN_LOG_FILE.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <fstream>
#include <map>
#include <regex>
#include <sstream>
#include <thread>
#include <vector>

#include "../tests/expected_threads.h"
#include "process.h"

using namespace itest;

namespace {

std::string tool(const char* name) {
    return build_dir() + "/integration/" + name;
}

// A file under the build tree, removed first.
std::string fresh_file(const std::string& name) {
    std::string path = build_dir() + "/diagnostics-" + name;
    unlink(path.c_str());
    return path;
}

std::string slurp(const std::string& path) {
    std::ifstream in(path);
    std::stringstream all;
    all << in.rdbuf();
    return all.str();
}

size_t count_of(const std::string& text, const std::string& what) {
    size_t n = 0;
    for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
    return n;
}

// One request on a fresh connection; the response up to the server's close. (ab may open
// more connections than it makes requests: the count here must be exact.)
std::string http_get(int port) {
    int fd = connect_loopback(port);
    std::string response;
    const char request[] = "GET / HTTP/1.0\r\n\r\n";
    if (fd >= 0 &&
        send(fd, request, sizeof request - 1, MSG_NOSIGNAL) == sizeof request - 1) {
        char buf[4096];
        for (ssize_t n; (n = recv(fd, buf, sizeof buf, 0)) > 0;) response.append(buf, n);
    }
    close(fd);
    return response;
}

using Stats = std::map<std::string, uint64_t>;

// The last complete GREEN_STATS dump in `text`: its green.stats.KEY=VALUE lines, by KEY.
// gdb under a sandbox that forbids ptrace: says so, and the test has nothing to check.
bool ptrace_forbidden(const Run& r) {
    if (r.err.find("ptrace: Operation not permitted") == std::string::npos) return false;
    WARN("this machine forbids ptrace: the gdb helper was not exercised");
    return true;
}

Stats last_dump(const std::string& text) {
    Stats stats;
    size_t end = text.rfind("green.stats.end=1");
    if (end == std::string::npos) return stats;
    size_t begin = text.rfind("green.stats.pid=", end);
    std::istringstream lines(text.substr(begin, end - begin));
    for (std::string line; std::getline(lines, line);) {
        size_t eq = line.find('=');
        if (line.rfind("green.stats.", 0) != 0 || eq == std::string::npos) continue;
        std::string key = line.substr(12, eq - 12);
        if (key == "reason") continue;
        stats[key] = std::stoull(line.substr(eq + 1));
    }
    return stats;
}

// Asks `server` for a dump with SIGUSR2 until its handler threads have all ended (only main
// is live), or 10 s have passed; returns the last dump.
Stats dump_when_idle(Process& server, const std::string& path) {
    Stats stats;
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (std::chrono::steady_clock::now() < deadline) {
        size_t before = count_of(slurp(path), "green.stats.end=1");
        kill(server.pid(), SIGUSR2);
        while (count_of(slurp(path), "green.stats.end=1") == before &&
               std::chrono::steady_clock::now() < deadline)
            std::this_thread::sleep_for(std::chrono::milliseconds(5));
        stats = last_dump(slurp(path));
        if (stats["total.fibers_live"] == 1) break;
    }
    return stats;
}

}  // namespace

TEST_CASE("GREEN_STATS after legacy_echo_server: one fiber per connection, all on fibers",
          "[diagnostics]") {
    std::string path = fresh_file("echo-stats");
    Process server({{tool("legacy_echo_server"), "0"},
                    {"GREEN_STATS=" + path, "GREEN_STATS_SIGNAL=USR2"},
                    true});
    int port = server.wait_for_port();
    REQUIRE(port > 0);
    EchoResult r = echo_load(port, 200, 64 * 1024, 60);
    REQUIRE(r.completed == 200);
    Stats s = dump_when_idle(server, path);
    INFO(slurp(path));
    const int carriers = green_test::carriers_expected();
    CHECK(s["carriers"] == static_cast<uint64_t>(carriers));
    CHECK(s["total.fibers_created"] - 1 == 200);  // connections accepted = fibers minus main
    CHECK(s["total.fibers_live"] == 1);
    CHECK(s["total.fibers_peak"] >= 2);
    CHECK(s["total.fibers_peak"] <= 201);
    CHECK(s["total.parks.accept"] >= 1);
    // Most handlers wait for their first bytes (a few find them there already on a slow VM).
    CHECK(s["total.parks.read"] >= 100);
    // Every fiber is resumed once to start and once after each park.
    CHECK(s["total.switches"] >= s["total.fibers_created"] + s["total.parks.read"]);
    CHECK(s["total.passthrough_calls"] == 0);
    CHECK(s["total.blocked_calls"] == 0);
    uint64_t per_carrier = 0;
    for (int i = 0; i < carriers; ++i)
        per_carrier += s["carrier" + std::to_string(i) + ".fibers_created"];
    CHECK(per_carrier == s["total.fibers_created"]);
    CHECK(server.threads() == carriers + 1);  // the carriers and the monitor (time slices)
}

TEST_CASE("GREEN_STATS after legacy_http_server: 300 requests, 300 fibers that slept",
          "[diagnostics]") {
    std::string path = fresh_file("http-stats");
    Process server({{tool("legacy_http_server"), "0", "20"},
                    {"GREEN_STATS=" + path, "GREEN_STATS_SIGNAL=SIGUSR2"},
                    true});
    int port = server.wait_for_port();
    REQUIRE(port > 0);
    std::atomic<int> answered{0};
    std::vector<std::thread> clients;
    for (int c = 0; c < 50; ++c)
        clients.emplace_back([&] {
            for (int i = 0; i < 6; ++i)
                answered += http_get(port).find("Hello World!") != std::string::npos;
        });
    for (auto& t : clients) t.join();
    REQUIRE(answered == 300);
    Stats s = dump_when_idle(server, path);
    INFO(slurp(path));
    CHECK(s["total.fibers_created"] - 1 == 300);  // one connection per request
    CHECK(s["total.parks.sleep"] >= 300);         // every handler's slow upstream
    CHECK(s["total.fibers_peak"] >= 2);
    CHECK(s["total.passthrough_calls"] == 0);
}

TEST_CASE("GREEN_STATS=1 prints the counters at exit, readable and as key=value lines",
          "[diagnostics]") {
    Run r = run({{tool("scenarios"), "thread_count"}, {"GREEN_STATS=1"}, true}, 10000);
    INFO(r.err);
    CHECK(exited_with(r.status, 0));
    CHECK(r.out == "threads " + std::to_string(green_test::carriers_expected() + 1) + "\n");
    CHECK(r.err.find("green.stats.reason=exit\n") != std::string::npos);
    CHECK(r.err.find("green: stats at exit: 11 fibers created") != std::string::npos);
    Stats s = last_dump(r.err);
    CHECK(s["total.fibers_created"] == 11);
    CHECK(s["total.parks.sleep"] >= 10);
}

TEST_CASE("GREEN_STATS counts a call that holds the carrier and calls off any fiber",
          "[diagnostics]") {
    Run r = run({{tool("diagnostics"), "blockers"}, {"GREEN_STATS=1"}, true}, 10000);
    INFO(r.err);
    CHECK(exited_with(r.status, 0));
    Stats s = last_dump(r.err);
    CHECK(s["total.blocked_calls"] == 1);      // the CPU-clock sleep; the cached read is not
    CHECK(s["total.passthrough_calls"] >= 1);  // write() on glibc's SIGEV_THREAD thread
}

TEST_CASE("GREEN_STATS in a forked child names the child's own carrier thread", "[diagnostics]") {
    // Parent and child each dump at exit; the main thread is the carrier in both, so each
    // dump's carrier0.tid is its own pid (the child's was once the parent's tid).
    Run r = run({{tool("diagnostics"), "fork"}, {"GREEN_STATS=1"}, true}, 10000);
    INFO(r.err);
    CHECK(exited_with(r.status, 0));
    std::smatch child;
    REQUIRE(std::regex_search(r.out, child, std::regex("^child (\\d+) exited 0\n$")));
    std::vector<Stats> dumps;
    for (size_t end = r.err.find("green.stats.end=1"); end != std::string::npos;
         end = r.err.find("green.stats.end=1", end + 1))
        dumps.push_back(last_dump(r.err.substr(0, end + 17)));
    REQUIRE(dumps.size() == 2);
    CHECK(dumps[0]["pid"] == std::stoull(child[1]));  // the child exits first
    CHECK(dumps[1]["pid"] != dumps[0]["pid"]);
    for (Stats& s : dumps) CHECK(s["carrier0.tid"] == s["pid"]);
}

// A fiber that spins is pre-empted after its time slice and holds its carrier no longer: the
// watchdog is for what cannot be pre-empted (a system call, code that blocks the signal) and
// for GREEN_PREEMPT=0, which the first two cases use to make a spinning fiber stall. These
// cases run on one carrier (GREEN_CARRIERS=1): a fiber alone on its carrier holds no one up
// and is neither reported nor pre-empted, as a thread alone on its core.
TEST_CASE("the watchdog reports a thread that spins for 500 ms exactly once, with its frame",
          "[diagnostics]") {
    Process spin({{tool("diagnostics"), "spin"},
                  {"GREEN_MONITOR_MS=100", "GREEN_PREEMPT=0", "GREEN_CARRIERS=1"},
                  true, true});
    ThreadSampler sampler(spin);
    std::string out = spin.read_all_stdout(10000);
    std::string err = spin.read_all_stderr(10000);
    INFO(err);
    CHECK(exited_with(spin.wait_exit(5000), 0));
    CHECK(out == "spun\n");
    CHECK(count_of(err, "green: watchdog:") == 1);
    CHECK(err.find("(spin_for_500ms (") != std::string::npos);  // the fiber's start routine
    CHECK(err.find("last parked on sleep") != std::string::npos);
    // The backtrace was taken inside the spinning function.
    CHECK(err.find("spin_for_500ms+0x") != std::string::npos);
    CHECK(sampler.max() == 2);  // the carrier and the monitor
}

TEST_CASE("with time slices a thread that spins for 500 ms gives way: counted, not reported",
          "[diagnostics]") {
    Run r = run({{tool("diagnostics"), "spin"},
                 {"GREEN_MONITOR_MS=100", "GREEN_STATS=1", "GREEN_CARRIERS=1"}, true},
                10000);
    INFO(r.err);
    CHECK(exited_with(r.status, 0));
    CHECK(r.out == "spun\n");
    CHECK(count_of(r.err, "green: watchdog:") == 0);
    Stats s = last_dump(r.err);
    CHECK(s["total.preempted_by_signal"] >= 10);  // 5 ms slices: about 100 in 500 ms
    CHECK(s["total.switches"] >= 20);
}

TEST_CASE("the watchdog does not unwind a thread it stopped inside libc, but names where it is",
          "[diagnostics]") {
    // An unwinder started in libc (or ld.so, libgcc_s, libgreen) may need a lock the
    // interrupted code holds. A thread that stays in memset for 500 ms is reported by its pc.
    Run r = run({{tool("diagnostics"), "in_libc"},
                 {"GREEN_MONITOR_MS=100", "GREEN_PREEMPT=0", "GREEN_CARRIERS=1"},
                 true},
                10000);
    INFO(r.err);
    CHECK(exited_with(r.status, 0));
    CHECK(r.out == "filled\n");
    CHECK(count_of(r.err, "green: watchdog:") == 1);
    CHECK(r.err.find("(memset_for_500ms (") != std::string::npos);
    CHECK(r.err.find("running in libc.so.6 at 0x") != std::string::npos);
    CHECK(r.err.find("no backtrace") != std::string::npos);
    CHECK(r.err.find("  #0 ") == std::string::npos);  // no frames: no unwinding was done
    CHECK(r.err.find("memset_for_500ms+0x") == std::string::npos);
}

TEST_CASE("the watchdog names the system call that holds a carrier, without interrupting it",
          "[diagnostics]") {
    Run r = run({{tool("diagnostics"), "syscall"}, {"GREEN_MONITOR_MS=100", "GREEN_CARRIERS=1"}, true}, 10000);
    INFO(r.err);
    CHECK(exited_with(r.status, 0));
    CHECK(r.out == "sigtimedwait: EAGAIN\n");  // the full timeout, no EINTR from the monitor
    CHECK(count_of(r.err, "green: watchdog:") == 1);
    CHECK(r.err.find("(wait_in_sigtimedwait (") != std::string::npos);
    CHECK(r.err.find("blocked in the rt_sigtimedwait system call") != std::string::npos);
}

TEST_CASE("the watchdog names a system call newer than glibc's wrappers (epoll_pwait2, 441)",
          "[diagnostics]") {
    Run r = run({{tool("diagnostics"), "new_syscall"}, {"GREEN_MONITOR_MS=100", "GREEN_CARRIERS=1"},
                true}, 10000);
    INFO(r.err);
    CHECK(exited_with(r.status, 0));
    CHECK(r.out == "epoll_pwait2: 0\n");  // the full timeout, not interrupted
    CHECK(count_of(r.err, "green: watchdog:") == 1);
    CHECK(r.err.find("(wait_in_epoll_pwait2 (") != std::string::npos);
    CHECK(r.err.find("blocked in the epoll_pwait2 system call (441)") != std::string::npos);
}

TEST_CASE("two threads deadlocked on two mutexes: the report names both waits, then abort",
          "[diagnostics]") {
    Run r = run({{tool("diagnostics"), "deadlock"}, {"GREEN_DEADLOCK=abort"}, true}, 10000);
    INFO(r.err);
    CHECK(WIFSIGNALED(r.status));
    CHECK(WTERMSIG(r.status) == SIGABRT);
    CHECK(r.out == "started\n");
    CHECK(r.err.find("(take_a_then_b (") != std::string::npos);
    CHECK(r.err.find("(take_b_then_a (") != std::string::npos);
    // Each waits on the mutex the other holds.
    std::smatch a, b;
    const std::string& err = r.err;
    REQUIRE(std::regex_search(
        err, a,
        std::regex(
            "fiber (\\d+) \\(take_a_then_b.*waits in mutex on lock_b, held by fiber (\\d+)")));
    REQUIRE(std::regex_search(
        err, b,
        std::regex(
            "fiber (\\d+) \\(take_b_then_a.*waits in mutex on lock_a, held by fiber (\\d+)")));
    CHECK(a[1] == b[2]);
    CHECK(b[1] == a[2]);
    CHECK(r.err.find("fiber 1 (main) waits in join on fiber") != std::string::npos);
}

TEST_CASE("by default a deadlocked process reports once (to GREEN_LOG_FILE) and hangs",
          "[diagnostics]") {
    std::string log = fresh_file("deadlock-log");
    Process p({{tool("diagnostics"), "deadlock"}, {"GREEN_LOG_FILE=" + log}, true, true});
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (slurp(log).find("the process hangs") == std::string::npos &&
           std::chrono::steady_clock::now() < deadline)
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    std::string text = slurp(log);
    INFO(text);
    CHECK(count_of(text, "green: deadlock: every thread") == 1);
    CHECK(count_of(text, "waits in mutex on lock_") == 2);
    // Still there (the carriers and the monitor), hanging as threads would.
    CHECK(p.threads() == green_test::carriers_expected() + 1);
    p.kill_now();
    CHECK(p.read_all_stderr(5000).empty());  // the log went to the file
}

TEST_CASE("scripts/gdb/green.py lists the fibers and shows a parked fiber's backtrace",
          "[diagnostics]") {
    Run version = run({{"gdb", "--version"}, {}, false}, 10000);
    REQUIRE(exited_with(version.status, 0));  // scripts/setup.sh installs gdb
    Run r = run({{"gdb",
                  "-nx",
                  "-batch",
                  "-ex",
                  "set startup-with-shell off",
                  "-ex",
                  "set environment LD_PRELOAD=" + green_library(),
                  "-ex",
                  "run",
                  "-ex",
                  "source " + std::string(GREEN_SOURCE_DIR) + "/scripts/gdb/green.py",
                  "-ex",
                  "green fibers",
                  "-ex",
                  "green bt all",
                  "-ex",
                  "bt 4",
                  "--args",
                  tool("diagnostics"),
                  "parked"},
                 {},
                 false},
                60000);
    INFO(r.out << r.err);
    if (ptrace_forbidden(r)) return;
    CHECK(r.out.find("SIGTRAP") != std::string::npos);  // stopped in main, in raise()
    // The list: both threads parked where the program put them, main running.
    CHECK(r.out.find("parked    on read  wait_in_read") != std::string::npos);
    CHECK(r.out.find("parked    on mutex lock_a  wait_on_lock_a \"lock-waiter\"") !=
          std::string::npos);
    CHECK(r.out.find("running   (last parked on sleep)  main (root)") != std::string::npos);
    // Their backtraces, through our hooks down to the program's functions.
    CHECK(r.out.find("in wait_in_read (") != std::string::npos);
    CHECK(r.out.find("in wait_on_lock_a (") != std::string::npos);
    CHECK(r.out.find("green::hooks::read (") != std::string::npos);
    // The thread's own registers are back: its backtrace is raise() in main again.
    size_t last = r.out.rfind("#0 ");
    REQUIRE(last != std::string::npos);
    CHECK(r.out.find("raise", last) != std::string::npos);
}

TEST_CASE("green bt on a live process puts every register back: it runs on after a detach",
          "[diagnostics]") {
    // The carrier thread waits in a raw system call with values of 2^63 and above in rbx and
    // r12..r15 (gdb shows them as negative numbers); three fibers are parked, one of them with
    // such values saved in its context. gdb attaches, shows every fiber's stack, detaches.
    Process p({{tool("diagnostics"), "attach"}, {}, true, true});
    int pid = p.wait_for_port(10000, "ready (\\d+)");
    REQUIRE(pid == p.pid());
    std::string script = std::string(GREEN_SOURCE_DIR) + "/scripts/gdb/green.py";
    // The saved registers of fiber 1002 (wait_with_high_registers), r12 .. rbp and the pc.
    std::string show_saved =
        "python print('saved:', *['%016x' % int(gdb.Value(int(f['context']) + o)"
        ".cast(gdb.lookup_type('unsigned long').pointer()).dereference()) "
        "for c, f in fibers() if int(f['id']) == 1002 for r, o in SAVED])";
    std::string regs = "info registers rbx r12 r13 r14 r15 rbp rsp rip orig_rax eflags";
    Run r = run({{"gdb",
                  "-nx",
                  "-batch",
                  "-p",
                  std::to_string(pid),
                  "-ex",
                  "source " + script,
                  "-ex",
                  "green fibers",
                  "-ex",
                  show_saved,
                  "-ex",
                  regs,
                  "-ex",
                  "green bt all",
                  "-ex",
                  "green bt 1002",
                  "-ex",
                  "green bt 1000",
                  "-ex",
                  regs},
                 {},
                 false},
                60000);
    INFO(r.out << r.err);
    if (ptrace_forbidden(r)) return;
    CHECK(r.out.find("parked    on read  wait_with_high_registers") != std::string::npos);
    CHECK(r.out.find("fiber 1002 ") != std::string::npos);
    // The thread's own registers hold values with the high bit set (the case that broke the
    // helper: it must write them back exactly). Which values a parked fiber's saved context
    // holds depends on the registers libgreen's own switch path uses, so only its presence
    // is checked.
    CHECK(std::regex_search(r.out, std::regex("saved:((?: [0-9a-f]{16}){7})")));
    CHECK(r.out.find("r12            0xfedcba9876543210") != std::string::npos);
    // Each parked fiber's stack, down to the program's function.
    CHECK(count_of(r.out, "in wait_with_high_registers (") == 2);
    CHECK(count_of(r.out, "in wait_in_read (") == 2);
    CHECK(r.out.find("in wait_on_lock_a (") != std::string::npos);
    CHECK(r.err.find("Python Exception") == std::string::npos);
    CHECK(r.err.find("could not restore") == std::string::npos);
    // The registers after are the registers before.
    size_t first = r.out.find("rbx            ");
    size_t second = r.out.rfind("rbx            ");
    REQUIRE(first != std::string::npos);
    REQUIRE(second != first);
    size_t length = r.out.find("eflags", first) - first;
    CHECK(r.out.substr(first, length) == r.out.substr(second, length));
    // Detached, the process goes on: its raw system call gets SIGUSR1, the parked threads
    // finish (the one with high registers checks they came back intact), and it exits.
    kill(pid, SIGUSR1);
    std::string out = p.read_all_stdout(10000);
    std::string err = p.read_all_stderr(1000);
    INFO(err);
    CHECK(out == "woke by signal 10\ndone 1\n");
    CHECK(exited_with(p.wait_exit(5000), 0));
}
