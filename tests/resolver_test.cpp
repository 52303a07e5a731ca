// The carrier's resolver (runtime/resolver.h) used in-process: queries in flight park only
// their fiber, and a server that never answers ends in kTryAgain after the configured time.
#include "runtime/resolver.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <string>

#include "tests/carrier_fixture.h"

namespace {

// A UDP socket on 127.0.0.1 that is never read: queries sent to it vanish.
struct BlackHole {
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    std::string address;
    BlackHole() {
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
        socklen_t len = sizeof addr;
        getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
        address = "127.0.0.1:" + std::to_string(ntohs(addr.sin_port));
    }
    ~BlackHole() { close(fd); }
};

}  // namespace

TEST(Resolver, ReadsTimeoutAndAttemptsFromResOptionsAsGlibcDoes) {
    setenv("RES_OPTIONS", "timeout:3 attempts:4", 1);
    green::ResolverTiming timing = green::resolver_timing();
    EXPECT_EQ(timing.timeout_ms, 3000);
    EXPECT_EQ(timing.tries, 4);
    setenv("RES_OPTIONS", "timeout:99 attempts:0", 1);  // glibc's caps: 30 s, at least 1 try
    timing = green::resolver_timing();
    EXPECT_EQ(timing.timeout_ms, 30000);
    EXPECT_EQ(timing.tries, 1);
    unsetenv("RES_OPTIONS");
}

TEST(Resolver, SilentServerGivesTryAgainAfterTheTimeoutWhileOtherFibersRun) {
    BlackHole hole;
    green::configure_resolver(hole.address.c_str());
    setenv("RES_OPTIONS", "timeout:1 attempts:1", 1);
    on_carrier([] {
        int ticks = 0;
        bool done = false;
        auto ticker = [&] {
            while (!done) {
                green::sleep_until(green::deadline_after_ns(10'000'000), green::ParkReason::kSleep);
                ++ticks;
            }
        };
        green::Fiber* t = go(&ticker);
        green::DnsQuery queries[2];
        queries[0].name = queries[1].name = "silent.test";
        queries[1].type = green::DnsType::kAAAA;
        uint64_t start = green::monotonic_now_ns();
        green::query_dns(queries, 2);
        uint64_t waited_ms = (green::monotonic_now_ns() - start) / 1'000'000;
        done = true;
        green::join(t, nullptr, green::kNoDeadline);
        EXPECT_EQ(queries[0].status, green::LookupStatus::kTryAgain);
        EXPECT_EQ(queries[1].status, green::LookupStatus::kTryAgain);
        EXPECT_GE(waited_ms, 900u);
        EXPECT_LT(waited_ms, 2500u);  // both queries waited together
        EXPECT_GE(ticks, 50);
    });
    unsetenv("RES_OPTIONS");
    green::configure_resolver(nullptr);
}

TEST(Resolver, RetiringACarrierWithAnIdleChannelClosesEverything) {
    BlackHole hole;
    green::configure_resolver(hole.address.c_str());
    setenv("RES_OPTIONS", "timeout:1 attempts:1", 1);
    // retire_current_thread() aborts if a handle of the loop is left open.
    on_carrier([] {
        green::DnsQuery query;
        query.name = "idle.test";
        green::query_dns(&query, 1);
        EXPECT_EQ(query.status, green::LookupStatus::kTryAgain);
    });
    unsetenv("RES_OPTIONS");
    green::configure_resolver(nullptr);
}
