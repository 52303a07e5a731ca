// stdio over sockets (issue 16): a thread-per-connection server that speaks through FILEs
// made by fdopen must serve its clients at once under the shim, as it does natively, and on
// one carrier too (cooperation, not parallelism).
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "../tests/expected_threads.h"
#include "process.h"

using namespace itest;
using Clock = std::chrono::steady_clock;

namespace {

constexpr int kClients = 50, kLines = 5, kPauseMs = 100;

// One line from `fd`, at most 10 s in all; empty on EOF, error or timeout.
std::string read_line(int fd, Clock::time_point deadline) {
    std::string line;
    char c;
    while (Clock::now() < deadline) {
        pollfd p{fd, POLLIN, 0};
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
        if (poll(&p, 1, static_cast<int>(std::max<long>(1, left.count()))) <= 0) continue;
        if (::read(fd, &c, 1) != 1) return {};
        line += c;
        if (c == '\n') return line;
    }
    return {};
}

// One client: kLines lines with a pause after each answer; the count of exact answers.
int converse(int port, int client) {
    int fd = connect_loopback(port);
    if (fd < 0) return 0;
    const auto deadline = Clock::now() + std::chrono::seconds(30);
    int exact = 0;
    for (int i = 1; i <= kLines; ++i) {
        std::string words = "client " + std::to_string(client) + " line " + std::to_string(i) + "\n";
        if (::write(fd, words.data(), words.size()) != static_cast<ssize_t>(words.size())) break;
        if (read_line(fd, deadline) == std::to_string(i) + ": " + words) ++exact;
        std::this_thread::sleep_for(std::chrono::milliseconds(kPauseMs));
    }
    close(fd);
    return exact;
}

struct LoadResult {
    double seconds = 0;
    int exact = 0;
    int max_threads = 0;
};

// kClients clients at once against a fresh server; its OS threads sampled meanwhile.
LoadResult run_load(bool green, std::vector<std::string> env) {
    Process server({{build_dir() + "/integration/stdio_line_server"}, std::move(env), green});
    int port = server.wait_for_port();
    REQUIRE(port > 0);
    ThreadSampler sampler(server);
    std::atomic<int> exact{0};
    auto start = Clock::now();
    std::vector<std::thread> clients;
    for (int c = 0; c < kClients; ++c) clients.emplace_back([&, c] { exact += converse(port, c); });
    for (auto& t : clients) t.join();
    LoadResult r;
    r.seconds = std::chrono::duration<double>(Clock::now() - start).count();
    r.exact = exact.load();
    r.max_threads = sampler.max();
    return r;
}

// The faster of two runs: a busy machine slows either side now and then.
LoadResult best_of_two(bool green, const std::vector<std::string>& env) {
    LoadResult a = run_load(green, env), b = run_load(green, env);
    LoadResult best = a.seconds <= b.seconds ? a : b;
    best.exact = std::min(a.exact, b.exact);
    best.max_threads = std::max(a.max_threads, b.max_threads);
    return best;
}

}  // namespace

TEST_CASE("an fdopen/fgets/fprintf line server: 50 clients x 5 lines within 1.5x of native, "
          "answers exact, few OS threads, also on one carrier",
          "[stdio]") {
    LoadResult native = best_of_two(false, {});
    INFO("native: " << native.seconds << " s");
    CHECK(native.exact == kClients * kLines);
    const int carriers = green_test::carriers_expected();
    for (int wanted : {carriers, 1}) {
        LoadResult green = best_of_two(true, {"GREEN_CARRIERS=" + std::to_string(wanted)});
        INFO("GREEN_CARRIERS=" << wanted << ": " << green.seconds << " s, max "
                               << green.max_threads << " OS threads");
        CHECK(green.exact == kClients * kLines);
        CHECK(green.seconds <= 1.5 * native.seconds);
        CHECK(green.max_threads >= 1);
        CHECK(green.max_threads <= wanted + 1);  // the carriers and the monitor
        WARN("stdio line server: native " << native.seconds << " s, GREEN_CARRIERS=" << wanted
                                          << " " << green.seconds << " s");
    }
}
