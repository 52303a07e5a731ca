// Stock programs from Debian under the shim, each against a local server, with bounded time,
// output checks (equal to the same program's output without the shim where the output is
// deterministic) and the OS thread count of the process under the shim.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <regex>
#include <sstream>
#include <vector>

#include "../tests/expected_threads.h"
#include "process.h"

using namespace itest;

namespace {

// A stock program's threads under the shim: the carriers, the monitor, and at most two more (a
// program's own thread that libgreen leaves real, libuv's pool for regular-file work).
const int kMostThreads = green_test::carriers_expected() + 3;

std::string tool(const char* name) {
    return build_dir() + "/integration/" + name;
}
std::string url(int port, const std::string& path = "/") {
    return "http://127.0.0.1:" + std::to_string(port) + path;
}

// A scratch directory under the build tree, emptied first.
std::string scratch(const std::string& name) {
    std::string dir = build_dir() + "/stock-" + name;
    Run r = run(Spawn{{"rm", "-rf", dir}, {}, false, false}, 30000);
    REQUIRE(exited_with(r.status, 0));
    REQUIRE(mkdir(dir.c_str(), 0755) == 0);
    return dir;
}

void write_file(const std::string& path, const std::string& text) {
    std::ofstream(path) << text;
}

// `count` blocks of `block` random bytes (dd's sizes: 64K, 1M) at `path`.
void random_file(const std::string& path, const std::string& block, int count) {
    Run made = run(Spawn{{"dd", "if=/dev/urandom", "of=" + path, "bs=" + block,
                          "count=" + std::to_string(count), "status=none"},
                         {},
                         false,
                         false},
                   120000);
    REQUIRE(exited_with(made.status, 0));
}

std::string sha256_of_file(const std::string& path) {
    Run r = run(Spawn{{"sha256sum", path}, {}, false, false}, 60000);
    return r.out.substr(0, 64);
}

// python3's ThreadingHTTPServer serving `dir`, under the shim. http.server's own listen
// backlog is 5: 100 parallel connections would overflow it, and the retransmission backoff of
// the dropped ones can exceed any time limit, natively as much as under the shim.
struct PythonServer {
    Process process;
    int port;
    explicit PythonServer(const std::string& dir)
        : process(Spawn{{"/usr/bin/python3", "-u", "-c",
                         "import functools, http.server, sys\n"
                         "class Server(http.server.ThreadingHTTPServer):\n"
                         "    request_queue_size = 1024\n"
                         "handler = functools.partial(http.server.SimpleHTTPRequestHandler,\n"
                         "                            directory=sys.argv[1])\n"
                         "server = Server(('127.0.0.1', 0), handler)\n"
                         "print('port', server.server_address[1])\n"
                         "server.serve_forever()\n",
                         dir},
                        {},
                        true}),
          port(process.wait_for_port(10000, "port (\\d+)")) {
        REQUIRE(port > 0);
    }
};

// The lines of `text`, sorted: for output whose order is the scheduler's (curl --parallel
// writes each transfer as it completes, natively too).
std::vector<std::string> sorted_lines(const std::string& text) {
    std::vector<std::string> lines;
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);) lines.push_back(line);
    std::sort(lines.begin(), lines.end());
    return lines;
}

// Runs `spec` natively and under the shim; both must succeed with the same output (the same
// lines, in any order, when `any_order`).
Run same_both_ways(Spawn spec, int timeout_ms, bool any_order = false) {
    spec.green = false;
    Run native = run(spec, timeout_ms);
    spec.green = true;
    Run green = run(spec, timeout_ms);
    INFO("native: " << native.err << "\ngreen: " << green.err);
    CHECK(exited_with(native.status, 0));
    CHECK(exited_with(green.status, 0));
    if (any_order)
        CHECK(sorted_lines(green.out) == sorted_lines(native.out));
    else
        CHECK(green.out == native.out);
    return green;
}

// A TCP port on 127.0.0.1 the kernel picks, for a server that cannot be given port 0.
int free_tcp_port() {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    socklen_t len = sizeof addr;
    getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
    close(fd);
    return ntohs(addr.sin_port);
}

// Waits until a TCP server accepts on `port`.
bool accepting(int port, int timeout_ms) {
    for (int waited = 0; waited < timeout_ms; waited += 50) {
        int fd = connect_loopback(port);
        if (fd >= 0) {
            close(fd);
            return true;
        }
        usleep(50000);
    }
    return false;
}

// The largest OS thread count of the process whose command line starts with `prefix`.
int threads_of(const std::string& prefix) {
    Run r = run(Spawn{{"pgrep", "-f", "-o", "^" + prefix}, {}, false, false}, 5000);
    if (r.out.empty()) return -1;
    std::ifstream status("/proc/" + std::to_string(std::stoi(r.out)) + "/status");
    std::string line;
    while (std::getline(status, line))
        if (line.rfind("Threads:", 0) == 0) return std::stoi(line.substr(8));
    return -1;
}

}  // namespace

TEST_CASE("curl: a fetch, 100 transfers in --parallel, and a 100 MB download by sha256",
          "[stock]") {
    std::string dir = scratch("curl");
    for (int i = 0; i < 100; ++i)
        write_file(dir + "/f" + std::to_string(i), std::to_string(i * i) + "\n");
    std::string big = dir + "/big.bin";
    random_file(big, "1M", 100);
    PythonServer server(dir);
    ThreadSampler sampler(server.process);

    same_both_ways(
        Spawn{{"curl", "-sS", "--max-time", "20", url(server.port, "/f7")}, {}, false, false},
        30000);

    Spawn parallel{{"curl", "-sS", "--max-time", "60", "--parallel", "--parallel-max", "100"},
                   {},
                   false,
                   false};
    for (int i = 0; i < 100; ++i)
        parallel.argv.push_back(url(server.port, "/f" + std::to_string(i)));
    Run p = same_both_ways(parallel, 90000, true);
    int lines = 0;
    for (char c : p.out) lines += c == '\n';
    CHECK(lines == 100);

    std::string copy = dir + "/copy.bin";
    Run download =
        run(Spawn{{"curl", "-sS", "--max-time", "120", "-o", copy, url(server.port, "/big.bin")},
                  {},
                  true,
                  false},
            150000);
    CHECK(exited_with(download.status, 0));
    CHECK(sha256_of_file(copy) == sha256_of_file(big));
    CHECK(sampler.max() <= kMostThreads);
}

TEST_CASE("wget: a recursive fetch of a linked tree, identical to the source", "[stock]") {
    std::string dir = scratch("wget-src");
    mkdir((dir + "/docs").c_str(), 0755);
    std::string index = "<html><body>";
    for (int i = 0; i < 30; ++i) {
        std::string page = "docs/page" + std::to_string(i) + ".html";
        index += "<a href=\"" + page + "\">" + page + "</a>\n";
        write_file(dir + "/" + page, "<html><body>page " + std::to_string(i) +
                                         " <a href=\"../index.html\">up</a></body></html>\n");
    }
    write_file(dir + "/index.html", index + "</body></html>\n");
    PythonServer server(dir);

    for (bool green : {false, true}) {
        std::string out = scratch(green ? "wget-green" : "wget-native");
        Run r = run(Spawn{{"wget", "-q", "-r", "-l", "3", "-np", "-nH", "-P", out, "--timeout=20",
                           url(server.port, "/index.html")},
                          {},
                          green,
                          false},
                    60000);
        INFO("green=" << green << " " << r.err);
        CHECK(exited_with(r.status, 0));
        Run diff = run(Spawn{{"diff", "-r", dir, out}, {}, false, false}, 30000);
        INFO(diff.out);
        CHECK(exited_with(diff.status, 0));
    }
}

TEST_CASE("python3: a urllib client with 500 threads fetching 500 URLs", "[stock]") {
    Process server({{tool("legacy_http_server"), "0", "100"}, {}, true});
    int port = server.wait_for_port();
    REQUIRE(port > 0);
    Spawn client{
        {"/usr/bin/python3", std::string(GREEN_SOURCE_DIR) + "/integration/urllib_client.py",
         url(port, ""), "500"},
        {},
        false,
        false};
    client.green = true;
    Process green(client);
    int max_threads = 0;
    {
        ThreadSampler sampler(green);
        std::string out = green.read_all_stdout(60000);
        max_threads = sampler.max();
        CHECK(out.find("fetched=500 failed=0") != std::string::npos);
        client.green = false;
        Run native = run(client, 60000);
        CHECK(native.out == out);  // the same bodies in the same order
    }
    CHECK(exited_with(green.wait_exit(10000), 0));
    CHECK(max_threads <= 4);
}

TEST_CASE("memcached (libevent worker threads) under memcslap load, results checked", "[stock]") {
    int port = free_tcp_port();
    Process server({{"memcached", "-p", std::to_string(port), "-U", "0", "-l", "127.0.0.1", "-t",
                     "4", "-u", "root"},
                    {},
                    true});
    REQUIRE(accepting(port, 5000));
    ThreadSampler sampler(server);
    std::string where = "--servers=127.0.0.1:" + std::to_string(port);
    for (const char* test : {"set", "get"}) {
        Run slap = run(Spawn{{"memcslap", where, "--concurrency=50", "--execute-number=200",
                              std::string("--test=") + test},
                             {},
                             false,
                             false},
                       60000);
        INFO(slap.out << slap.err);
        CHECK(exited_with(slap.status, 0));
        CHECK(slap.out.find("10000 keys by   50 threads") != std::string::npos);
    }
    // The protocol itself, the same natively and here: a set and a get.
    Run python = run(Spawn{{"/usr/bin/python3", "-c",
                            "import socket,sys\n"
                            "s=socket.create_connection(('127.0.0.1'," +
                                std::to_string(port) +
                                "))\n"
                                "s.sendall(b'set k 0 0 5\\r\\nhello\\r\\nget k\\r\\nquit\\r\\n')\n"
                                "d=b''\n"
                                "while True:\n"
                                "    c=s.recv(100)\n"
                                "    if not c: break\n"
                                "    d+=c\n"
                                "sys.stdout.write(d.decode())\n"},
                           {},
                           false,
                           false},
                     10000);
    CHECK(python.out == "STORED\r\nVALUE k 0 5\r\nhello\r\nEND\r\n");
    CHECK(sampler.max() <= kMostThreads);
}

TEST_CASE("redis-server (condvar background threads) under redis-benchmark, no errors", "[stock]") {
    std::string dir = scratch("redis");
    Process server({{"redis-server", "--port", "0", "--bind", "127.0.0.1", "--save", "",
                     "--appendonly", "no", "--unixsocket", dir + "/redis.sock", "--dir", dir},
                    {},
                    true});
    // A TCP port is not needed: the benchmark and the client use the unix socket.
    std::string sock = dir + "/redis.sock";
    for (int i = 0; i < 100 && access(sock.c_str(), F_OK) != 0; ++i) usleep(50000);
    REQUIRE(access(sock.c_str(), F_OK) == 0);
    ThreadSampler sampler(server);
    Run bench = run(Spawn{{"redis-benchmark", "-s", sock, "-n", "20000", "-c", "50", "-q", "-t",
                           "set,get,incr,lpush,lpop,sadd,hset"},
                          {},
                          false,
                          false},
                    120000);
    INFO(bench.out << bench.err);
    CHECK(exited_with(bench.status, 0));
    for (const char* op : {"SET", "GET", "INCR", "LPUSH", "LPOP", "SADD", "HSET"})
        CHECK(bench.out.find(std::string(op) + ": ") != std::string::npos);
    CHECK(bench.err.find("rror") == std::string::npos);
    Run cli =
        run(Spawn{{"redis-cli", "-s", sock, "eval",
                   "redis.call('set','k','v'); redis.call('incrby','n',41); "
                   "redis.call('incr','n'); return {redis.call('get','k'), redis.call('get','n')}",
                   "0"},
                  {},
                  false,
                  false},
            10000);
    CHECK(cli.out == "v\n42\n");
    run(Spawn{{"redis-cli", "-s", sock, "shutdown", "nosave"}, {}, false, false}, 10000);
    CHECK(exited_with(server.wait_exit(10000), 0));
    CHECK(sampler.max() <= kMostThreads);
}

TEST_CASE("nginx: a worker process under the shim serves a static file to ab", "[stock]") {
    std::string dir = scratch("nginx");
    mkdir((dir + "/html").c_str(), 0755);
    mkdir((dir + "/logs").c_str(), 0755);
    mkdir((dir + "/tmp").c_str(), 0755);
    std::string file = dir + "/html/file.bin";
    random_file(file, "64K", 16);
    int port = free_tcp_port();  // nginx has no "port 0"
    std::string conf = dir + "/nginx.conf";
    // As root, nginx's workers become `nobody`, who may not enter a private build tree
    // (a clone under mktemp -d is mode 0700): keep them root, the tree's owner.
    std::string user = geteuid() == 0 ? "user root;\n" : "";
    write_file(conf, user +
                         "daemon off;\nmaster_process on;\nworker_processes 1;\n"
                         "error_log " +
                         dir + "/logs/error.log;\npid " + dir +
                         "/logs/nginx.pid;\n"
                         "events { worker_connections 1024; }\n"
                         "http {\n access_log off;\n client_body_temp_path " +
                         dir +
                         "/tmp;\n"
                         " proxy_temp_path " +
                         dir + "/tmp;\n fastcgi_temp_path " + dir +
                         "/tmp;\n"
                         " uwsgi_temp_path " +
                         dir + "/tmp;\n scgi_temp_path " + dir +
                         "/tmp;\n"
                         " server { listen 127.0.0.1:" +
                         std::to_string(port) + "; root " + dir + "/html; sendfile on; }\n}\n");
    Process master({{"nginx", "-p", dir, "-c", conf}, {}, true});
    REQUIRE(accepting(port, 5000));
    AbResult a = ab(url(port, "/file.bin"), 100, 2000);
    INFO(a.raw);
    CHECK(a.complete == 2000);
    CHECK(a.failed == 0);
    CHECK(a.non2xx == 0);
    std::string copy = dir + "/copy.bin";
    Run fetch =
        run(Spawn{{"curl", "-sS", "-o", copy, url(port, "/file.bin")}, {}, false, false}, 10000);
    CHECK(exited_with(fetch.status, 0));
    CHECK(sha256_of_file(copy) == sha256_of_file(file));
    CHECK(threads_of("nginx: worker process") == 1);
    kill(master.pid(), SIGQUIT);
    CHECK(exited_with(master.wait_exit(10000), 0));
}

// Debuggers trace their children: they wait for ptrace stops (which no pidfd reports, and
// which come without WUNTRACED) and gdb starts its inferior with vfork. Under the shim both
// must behave as without it: the traced program runs and its output is the same.
TEST_CASE("strace and gdb run a program under the shim as they do natively", "[stock]") {
    for (bool green : {false, true}) {
        std::string log = scratch(green ? "strace-green" : "strace-native") + "/trace";
        Run s = run(Spawn{{"strace", "-f", "-o", log, "sh", "-c", "echo traced; sleep 0.1"},
                          {},
                          green,
                          false},
                    30000);
        INFO("green=" << green << " strace: " << s.err);
        CHECK(exited_with(s.status, 0));
        CHECK(s.out == "traced\n");
        std::ifstream trace(log);
        std::string text((std::istreambuf_iterator<char>(trace)), std::istreambuf_iterator<char>());
        CHECK(text.find("[\"sleep\", \"0.1\"]") != std::string::npos);  // -f followed the fork
        CHECK(text.find("+++ exited with 0 +++") != std::string::npos);

        Run g = run(Spawn{{"gdb", "-nx", "-batch", "-ex", "run", "-ex", "info inferiors", "--args",
                           "/bin/echo", "debugged"},
                          {},
                          green,
                          false},
                    60000);
        INFO("green=" << green << " gdb: " << g.out << g.err);
        if (g.err.find("ptrace: Operation not permitted") != std::string::npos) {
            WARN("this machine forbids ptrace: gdb was not exercised");
            continue;
        }
        CHECK(exited_with(g.status, 0));
        CHECK(g.out.find("debugged\n") != std::string::npos);
        CHECK(g.out.find("exited normally") != std::string::npos);
    }
}
