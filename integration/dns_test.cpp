// Integration tests of name resolution under the shim: a real DNS server (Debian's dnsmasq on
// an unprivileged port of 127.0.0.1), one made slow by a relay that holds each query, and one
// that never answers. The shim is pointed at them with GREEN_DNS_SERVERS.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <map>
#include <regex>
#include <thread>

#include "process.h"

using namespace itest;

namespace {

using Clock = std::chrono::steady_clock;

// A UDP socket bound to 127.0.0.1 on a port the kernel picks.
int bound_udp_socket(int* port) {
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    socklen_t len = sizeof addr;
    getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
    *port = ntohs(addr.sin_port);
    return fd;
}

sockaddr_in loopback(int port) {
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return addr;
}

// True once a DNS server on `port` answers a query for probe.test.
bool answers(int port, int timeout_ms) {
    static const unsigned char query[] = {0x12, 0x34, 0x01, 0x00, 0,   1,   0,   0,   0, 0,
                                          0,    0,    5,    'p',  'r', 'o', 'b', 'e', 4, 't',
                                          'e',  's',  't',  0,    0,   1,   0,   1};
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr = loopback(port);
    connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    bool ok = false;
    for (auto until = Clock::now() + std::chrono::milliseconds(timeout_ms);
         !ok && Clock::now() < until;) {
        send(fd, query, sizeof query, 0);
        pollfd p{fd, POLLIN, 0};
        unsigned char answer[512];
        ok = poll(&p, 1, 50) == 1 && recv(fd, answer, sizeof answer, 0) > 0;
    }
    close(fd);
    return ok;
}

// dnsmasq answering every name under .test with 127.0.0.1 (and nothing else).
class TestDns {
  public:
    TestDns() {
        // The port is free for UDP when we pick it, but dnsmasq also listens on TCP, and
        // another test may take either meanwhile: then try again with another port.
        for (int attempt = 0; attempt < 5 && !server_; ++attempt) {
            int fd = bound_udp_socket(&port_);
            close(fd);
            Spawn spec;
            spec.argv = {"dnsmasq", "-d", "--log-facility=/dev/null",
                         "--port=" + std::to_string(port_), "--listen-address=127.0.0.1",
                         "--bind-interfaces", "--no-resolv", "--no-hosts", "--conf-file=/dev/null",
                         "--pid-file=", "--local=/test/", "--address=/test/127.0.0.1",
                         "--cache-size=0"};
            spec.capture_stderr = true;
            auto server = std::make_unique<Process>(spec);
            if (answers(port_, 2000)) {
                server_ = std::move(server);
            } else {
                server->kill_now();
                WARN("dnsmasq on port " << port_
                                        << " did not answer: " << server->read_all_stderr(1000));
            }
        }
        REQUIRE(server_);
    }
    int port() const { return port_; }

  private:
    int port_ = 0;
    std::unique_ptr<Process> server_;
};

// A relay in front of a DNS server that holds every answer until `delay` after its query
// came: a slow server. One upstream socket per query, so answers never cross.
class SlowDns {
  public:
    SlowDns(int upstream_port, std::chrono::milliseconds delay)
        : upstream_(loopback(upstream_port)), delay_(delay) {
        listener_ = bound_udp_socket(&port_);
        int size = 8 << 20;  // hundreds of queries arrive at once: none may be dropped
        setsockopt(listener_, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof size);
        thread_ = std::thread([this] { run(); });
    }
    ~SlowDns() {
        stop_ = true;
        thread_.join();
        close(listener_);
    }
    int port() const { return port_; }

  private:
    struct Held {
        sockaddr_in client;
        Clock::time_point due;  // when the answer may go back
        int upstream = -1;      // the socket the server's answer comes back on
        std::vector<unsigned char> answer;
    };

    // Every query goes to the server at once; its answer is held until `delay` after the
    // query arrived.
    void run() {
        std::vector<Held> held;
        while (!stop_) {
            std::vector<pollfd> fds{{listener_, POLLIN, 0}};
            for (const Held& h : held)
                if (h.answer.empty()) fds.push_back({h.upstream, POLLIN, 0});
            poll(fds.data(), fds.size(), 2);
            while (fds[0].revents & POLLIN) {  // take every query waiting
                unsigned char query[512];
                Held h;
                socklen_t len = sizeof h.client;
                ssize_t n = recvfrom(listener_, query, sizeof query, MSG_DONTWAIT,
                                     reinterpret_cast<sockaddr*>(&h.client), &len);
                if (n <= 0) break;
                h.due = Clock::now() + delay_;
                h.upstream = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
                connect(h.upstream, reinterpret_cast<const sockaddr*>(&upstream_),
                        sizeof upstream_);
                send(h.upstream, query, static_cast<size_t>(n), 0);
                held.push_back(std::move(h));
            }
            for (size_t i = 1; i < fds.size(); ++i) {
                if (!(fds[i].revents & POLLIN)) continue;
                for (Held& h : held) {
                    if (h.upstream != fds[i].fd || !h.answer.empty()) continue;
                    h.answer.resize(4096);
                    ssize_t n = recv(h.upstream, h.answer.data(), h.answer.size(), 0);
                    h.answer.resize(n > 0 ? static_cast<size_t>(n) : 0);
                }
            }
            auto now = Clock::now();
            std::erase_if(held, [&](Held& h) {
                if (h.answer.empty() || now < h.due) return false;
                sendto(listener_, h.answer.data(), h.answer.size(), 0,
                       reinterpret_cast<sockaddr*>(&h.client), sizeof h.client);
                close(h.upstream);
                return true;
            });
        }
        for (Held& h : held) close(h.upstream);
    }

    sockaddr_in upstream_;
    std::chrono::milliseconds delay_;
    int listener_ = -1;
    int port_ = 0;
    std::atomic<bool> stop_{false};
    std::thread thread_;
};

struct ClientsResult {
    int resolved = -1, failed = -1, elapsed_ms = -1, ticks = -1, max_threads = -1;
    std::string error;
};

ClientsResult run_clients(int count, const std::vector<std::string>& env) {
    Spawn spec;
    spec.argv = {build_dir() + "/integration/dns_clients", std::to_string(count), "host%d.test"};
    spec.env = env;
    spec.green = true;
    Process p(spec);
    ClientsResult r;
    {
        ThreadSampler sampler(p);
        std::string out = p.read_all_stdout(30000);
        r.max_threads = sampler.max();
        std::smatch m;
        std::regex line("resolved=(\\d+) failed=(\\d+) error=(.*) elapsed_ms=(\\d+) ticks=(\\d+)");
        INFO(out);
        REQUIRE(std::regex_search(out, m, line));
        r.resolved = std::stoi(m[1]);
        r.failed = std::stoi(m[2]);
        r.error = m[3];
        r.elapsed_ms = std::stoi(m[4]);
        r.ticks = std::stoi(m[5]);
    }
    REQUIRE(exited_with(p.wait_exit(5000), 0));
    return r;
}

}  // namespace

TEST_CASE("200 threads resolve through a DNS server that answers after 500 ms, all in < 1.5 s",
          "[dns]") {
    TestDns dns;
    SlowDns slow(dns.port(), std::chrono::milliseconds(500));
    ClientsResult r =
        run_clients(200, {"GREEN_DNS_SERVERS=127.0.0.1:" + std::to_string(slow.port())});
    CHECK(r.resolved == 200);
    CHECK(r.failed == 0);
    CHECK(r.elapsed_ms >= 500);  // the server really was slow
    CHECK(r.elapsed_ms < 1500);  // one after another on one thread: 100 s
    CHECK(r.max_threads <= 4);
    CHECK(r.ticks >= 30);  // the other threads ran meanwhile
}

TEST_CASE("a DNS server that never answers gives EAI_AGAIN after the timeout, blocking nobody",
          "[dns]") {
    int port = 0;
    int black_hole = bound_udp_socket(&port);  // bound, never read: queries vanish
    ClientsResult r = run_clients(20, {"GREEN_DNS_SERVERS=127.0.0.1:" + std::to_string(port),
                                       "RES_OPTIONS=timeout:1 attempts:1"});
    close(black_hole);
    CHECK(r.resolved == 0);
    CHECK(r.failed == 20);
    CHECK(r.error == "Temporary failure in name resolution");  // EAI_AGAIN
    CHECK(r.elapsed_ms >= 900);  // the resolver's timeout: 1 s, one try
    CHECK(r.elapsed_ms < 3000);  // the 20 lookups waited together, not one after another
    CHECK(r.ticks >= 50);        // and the ticker kept ticking
    CHECK(r.max_threads <= 4);
}

TEST_CASE("curl (its resolver thread a fiber) fetches http://name.test:PORT/ under the shim",
          "[dns]") {
    TestDns dns;
    Spawn server_spec;
    server_spec.argv = {build_dir() + "/integration/legacy_http_server", "0", "0"};
    server_spec.green = true;
    Process server(server_spec);
    int port = server.wait_for_port();
    REQUIRE(port > 0);
    std::string url = "http://name.test:" + std::to_string(port) + "/";

    Spawn curl;
    curl.argv = {"curl", "-sS", "--max-time", "10", url};
    curl.env = {"GREEN_DNS_SERVERS=127.0.0.1:" + std::to_string(dns.port())};
    curl.green = true;
    Run shim = run(curl, 20000);
    INFO(shim.err);
    CHECK(exited_with(shim.status, 0));
    CHECK(shim.out.find("Hello World!") != std::string::npos);

    // Without the shim, the system's resolver does not know name.test: the name really was
    // resolved by libgreen through the test server.
    curl.green = false;
    Run native = run(curl, 20000);
    CHECK(exited_with(native.status, 6));  // CURLE_COULDNT_RESOLVE_HOST
}

TEST_CASE("a forked child resolves names with its own resolver, and so does the parent after",
          "[dns]") {
    TestDns dns;
    Spawn spec;
    spec.argv = {build_dir() + "/integration/scenarios", "fork_resolve"};
    spec.env = {"GREEN_DNS_SERVERS=127.0.0.1:" + std::to_string(dns.port())};
    spec.green = true;
    Run r = run(spec, 20000);
    INFO(r.err);
    CHECK(exited_with(r.status, 0));
    CHECK(r.out == "parent 0\nchild 0\nparent 0\n");
}
