// getaddrinfo, getnameinfo, gethostby*: what glibc answers for localhost, numeric hosts,
// services and bad arguments (no DNS server needed: /etc/hosts always has localhost).
// integration.dns_compare compares a larger table case by case, with a DNS server.
#include <arpa/inet.h>
#include <dlfcn.h>
#include <gtest/gtest.h>
#include <netdb.h>

#include <atomic>
#include <thread>
#include <vector>

#include "common.h"

using namespace sem;

namespace {

addrinfo hints_for(int family, int socktype = 0, int flags = 0) {
    addrinfo hints{};
    hints.ai_family = family;
    hints.ai_socktype = socktype;
    hints.ai_flags = flags;
    return hints;
}

bool has_ipv4(const addrinfo* list, const char* dotted, int port) {
    for (const addrinfo* ai = list; ai; ai = ai->ai_next) {
        if (ai->ai_family != AF_INET) continue;
        const auto* sin = reinterpret_cast<const sockaddr_in*>(ai->ai_addr);
        char text[INET_ADDRSTRLEN];
        inet_ntop(AF_INET, &sin->sin_addr, text, sizeof text);
        if (!strcmp(text, dotted) && ntohs(sin->sin_port) == port) return true;
    }
    return false;
}

// glibc's own freeaddrinfo, whatever is preloaded.
using FreeFn = void (*)(addrinfo*);
FreeFn glibc_freeaddrinfo() {
    void* libc = dlopen("libc.so.6", RTLD_NOW | RTLD_NOLOAD);
    return reinterpret_cast<FreeFn>(dlsym(libc, "freeaddrinfo"));
}

}  // namespace

TEST(Getaddrinfo, LocalhostResolvesToLoopbackWithTheServicePort) {
    addrinfo hints = hints_for(AF_INET, SOCK_STREAM);
    addrinfo* res = nullptr;
    ASSERT_EQ(getaddrinfo("localhost", "http", &hints, &res), 0);
    EXPECT_TRUE(has_ipv4(res, "127.0.0.1", 80));
    for (addrinfo* ai = res; ai; ai = ai->ai_next) {
        EXPECT_EQ(ai->ai_socktype, SOCK_STREAM);
        EXPECT_EQ(ai->ai_protocol, IPPROTO_TCP);
    }
    freeaddrinfo(res);
}

TEST(Getaddrinfo, CanonnameIsOnTheFirstEntryOnly) {
    addrinfo hints = hints_for(AF_UNSPEC, 0, AI_CANONNAME);
    addrinfo* res = nullptr;
    ASSERT_EQ(getaddrinfo("LOCALHOST", nullptr, &hints, &res), 0);
    ASSERT_NE(res->ai_canonname, nullptr);
    EXPECT_STREQ(res->ai_canonname, "localhost");
    for (addrinfo* ai = res->ai_next; ai; ai = ai->ai_next) EXPECT_EQ(ai->ai_canonname, nullptr);
    freeaddrinfo(res);
}

TEST(Getaddrinfo, NumericHostsAndNoHostNeedNoLookup) {
    addrinfo hints = hints_for(AF_INET, SOCK_DGRAM);
    addrinfo* res = nullptr;
    ASSERT_EQ(getaddrinfo("127.1", "53", &hints, &res), 0);  // inet_aton's short form
    EXPECT_TRUE(has_ipv4(res, "127.0.0.1", 53));
    freeaddrinfo(res);
    hints = hints_for(AF_INET, SOCK_STREAM, AI_PASSIVE);
    ASSERT_EQ(getaddrinfo(nullptr, "8080", &hints, &res), 0);
    EXPECT_TRUE(has_ipv4(res, "0.0.0.0", 8080));
    freeaddrinfo(res);
    hints = hints_for(AF_INET6, SOCK_STREAM, AI_V4MAPPED);
    ASSERT_EQ(getaddrinfo("10.1.2.3", "1", &hints, &res), 0);
    char text[INET6_ADDRSTRLEN];
    inet_ntop(AF_INET6, &reinterpret_cast<sockaddr_in6*>(res->ai_addr)->sin6_addr, text,
              sizeof text);
    EXPECT_STREQ(text, "::ffff:10.1.2.3");
    freeaddrinfo(res);
}

TEST(Getaddrinfo, ErrorsForBadArgumentsAreGlibcs) {
    addrinfo* res = nullptr;
    addrinfo hints = hints_for(AF_UNSPEC, 0, AI_NUMERICHOST);
    EXPECT_EQ(getaddrinfo("localhost", "80", &hints, &res), EAI_NONAME);
    hints = hints_for(AF_UNSPEC, 0, AI_NUMERICSERV);
    EXPECT_EQ(getaddrinfo("localhost", "http", &hints, &res), EAI_NONAME);
    hints = hints_for(AF_UNSPEC);
    EXPECT_EQ(getaddrinfo("localhost", "no-such-service", &hints, &res), EAI_SERVICE);
    EXPECT_EQ(getaddrinfo(nullptr, nullptr, &hints, &res), EAI_NONAME);
    hints = hints_for(AF_UNIX);
    EXPECT_EQ(getaddrinfo("localhost", "80", &hints, &res), EAI_FAMILY);
    hints = hints_for(AF_UNSPEC, 0, 0x10000);
    EXPECT_EQ(getaddrinfo("localhost", "80", &hints, &res), EAI_BADFLAGS);
    hints = hints_for(AF_UNSPEC, 0, AI_CANONNAME);
    EXPECT_EQ(getaddrinfo(nullptr, "80", &hints, &res), EAI_BADFLAGS);
    hints = hints_for(AF_INET, SOCK_STREAM);
    EXPECT_EQ(getaddrinfo("localhost", "tftp", &hints, &res), EAI_SERVICE);  // UDP only
}

TEST(Getaddrinfo, EitherFreeaddrinfoFreesEitherList) {
    FreeFn glibc_free = glibc_freeaddrinfo();
    ASSERT_NE(glibc_free, nullptr);
    addrinfo hints = hints_for(AF_UNSPEC, 0, AI_CANONNAME);
    for (int round = 0; round < 100; ++round) {
        addrinfo* res = nullptr;
        ASSERT_EQ(getaddrinfo("localhost", "80", &hints, &res), 0);
        if (round % 2)
            glibc_free(res);
        else
            freeaddrinfo(res);
    }
}

TEST(Getaddrinfo, ManyThreadsResolveAtOnce) {
    std::atomic<int> ok{0};
    std::vector<std::thread> threads;
    for (int i = 0; i < 50; ++i)
        threads.emplace_back([&] {
            addrinfo hints = hints_for(AF_INET, SOCK_STREAM);
            addrinfo* res = nullptr;
            if (getaddrinfo("localhost", "80", &hints, &res) == 0 && has_ipv4(res, "127.0.0.1", 80))
                ++ok;
            if (res) freeaddrinfo(res);
        });
    for (auto& t : threads) t.join();
    EXPECT_EQ(ok.load(), 50);
}

TEST(Getnameinfo, LoopbackHasANameAndNumericFlagsAreHonoured) {
    sockaddr_in sin{};
    sin.sin_family = AF_INET;
    sin.sin_port = htons(80);
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    char host[NI_MAXHOST], serv[NI_MAXSERV];
    ASSERT_EQ(getnameinfo(reinterpret_cast<sockaddr*>(&sin), sizeof sin, host, sizeof host, serv,
                          sizeof serv, 0),
              0);
    EXPECT_STREQ(host, "localhost");
    EXPECT_STREQ(serv, "http");
    ASSERT_EQ(getnameinfo(reinterpret_cast<sockaddr*>(&sin), sizeof sin, host, sizeof host, serv,
                          sizeof serv, NI_NUMERICHOST | NI_NUMERICSERV),
              0);
    EXPECT_STREQ(host, "127.0.0.1");
    EXPECT_STREQ(serv, "80");
}

TEST(Getnameinfo, SmallBuffersAndBadAddressesFailAsGlibc) {
    sockaddr_in sin{};
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    char host[4];
    EXPECT_EQ(getnameinfo(reinterpret_cast<sockaddr*>(&sin), sizeof sin, host, sizeof host, nullptr,
                          0, 0),
              EAI_OVERFLOW);
    char big[NI_MAXHOST];
    EXPECT_EQ(getnameinfo(reinterpret_cast<sockaddr*>(&sin), 3, big, sizeof big, nullptr, 0, 0),
              EAI_FAMILY);
    sin.sin_family = AF_APPLETALK;
    EXPECT_EQ(
        getnameinfo(reinterpret_cast<sockaddr*>(&sin), sizeof sin, big, sizeof big, nullptr, 0, 0),
        EAI_FAMILY);
}

TEST(Gethostbyname, LocalhostAndNumericNames) {
    hostent* h = gethostbyname("localhost");
    ASSERT_NE(h, nullptr);
    EXPECT_STREQ(h->h_name, "localhost");
    EXPECT_EQ(h->h_addrtype, AF_INET);
    EXPECT_EQ(h->h_length, 4);
    ASSERT_NE(h->h_addr_list[0], nullptr);
    in_addr first;
    memcpy(&first, h->h_addr_list[0], 4);
    EXPECT_EQ(first.s_addr, htonl(INADDR_LOOPBACK));
    h = gethostbyname("10.9.8.7");
    ASSERT_NE(h, nullptr);
    EXPECT_STREQ(h->h_name, "10.9.8.7");
    EXPECT_EQ(h->h_aliases[0], nullptr);
}

TEST(Gethostbyname, ReentrantFormReportsErangeForASmallBuffer) {
    hostent entry, *result = &entry;
    char small[8];
    int herr = 0;
    EXPECT_EQ(gethostbyname_r("localhost", &entry, small, sizeof small, &result, &herr), ERANGE);
    EXPECT_EQ(result, nullptr);
    EXPECT_EQ(herr, NETDB_INTERNAL);
    EXPECT_EQ(errno, ERANGE);
    char buf[4096];
    EXPECT_EQ(gethostbyname_r("localhost", &entry, buf, sizeof buf, &result, &herr), 0);
    EXPECT_EQ(result, &entry);
    EXPECT_STREQ(entry.h_name, "localhost");
}

TEST(Gethostbyaddr, LoopbackIsLocalhostAndBadLengthsFail) {
    in_addr loop{htonl(INADDR_LOOPBACK)};
    hostent* h = gethostbyaddr(&loop, sizeof loop, AF_INET);
    ASSERT_NE(h, nullptr);
    EXPECT_STREQ(h->h_name, "localhost");
    hostent entry, *result = &entry;
    char buf[1024];
    int herr = 0;
    EXPECT_EQ(gethostbyaddr_r(&loop, 3, AF_INET, &entry, buf, sizeof buf, &result, &herr),
              EAFNOSUPPORT);
    EXPECT_EQ(result, nullptr);
    in6_addr any = IN6ADDR_ANY_INIT;
    EXPECT_EQ(gethostbyaddr(&any, sizeof any, AF_INET6), nullptr);
    EXPECT_EQ(h_errno, HOST_NOT_FOUND);
}
