// Unit tests of hooks/ called directly on fibers (no LD_PRELOAD): the cooperative versions
// park only the calling fiber, and their helpers handle the program's bad pointers.
#include "hooks/hooks.h"

#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <cwchar>
#include <string>

#include "carrier_fixture.h"
#include "hooks/wait.h"

using namespace green;

TEST(Hooks, ReadParksOnlyTheCallingFiber) {
    on_carrier([] {
        int sv[2];
        ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
        bool other_ran = false;
        auto other = [&] {
            other_ran = true;
            ASSERT_EQ(hooks::write(sv[1], "ping", 4), 4);
        };
        Fiber* f = go(&other);
        char buf[8];
        EXPECT_EQ(hooks::read(sv[0], buf, sizeof buf), 4);  // runs `other` while parked
        EXPECT_TRUE(other_ran);
        join(f, nullptr, kNoDeadline);
        hooks::close(sv[0]);
        hooks::close(sv[1]);
    });
}

TEST(Hooks, CloseWakesAFiberParkedInReadWithEbadf) {
    on_carrier([] {
        int p[2];
        ASSERT_EQ(pipe(p), 0);
        ssize_t got = 0;
        int err = 0;
        auto reader = [&] {
            char c;
            got = hooks::read(p[0], &c, 1);
            err = errno;
        };
        Fiber* f = go(&reader);
        yield();
        hooks::close(p[0]);
        join(f, nullptr, kNoDeadline);
        EXPECT_EQ(got, -1);
        EXPECT_EQ(err, EBADF);
        hooks::close(p[1]);
    });
}

TEST(Hooks, PollTimesOutWithoutBlockingOtherFibers) {
    on_carrier([] {
        int p[2];
        ASSERT_EQ(pipe(p), 0);
        int ticks = 0;
        auto ticker = [&] {
            for (int i = 0; i < 5; ++i) {
                ++ticks;
                hooks::usleep(2000);
            }
        };
        Fiber* f = go(&ticker);
        pollfd fds{p[0], POLLIN, 0};
        EXPECT_EQ(hooks::poll(&fds, 1, 30), 0);
        EXPECT_EQ(ticks, 5);
        join(f, nullptr, kNoDeadline);
        hooks::close(p[0]);
        hooks::close(p[1]);
    });
}

TEST(Hooks, CopyFromUserReportsEfaultInsteadOfCrashing) {
    char dst[8];
    EXPECT_TRUE(hooks::copy_from_user(dst, "abcdefg", 8));
    EXPECT_STREQ(dst, "abcdefg");
    errno = 0;
    EXPECT_FALSE(hooks::copy_from_user(dst, reinterpret_cast<void*>(16), 8));
    EXPECT_EQ(errno, EFAULT);
}

TEST(IovCursor, AdvancesAcrossEntriesAndSlices) {
    char a[] = "abc", b[] = "defgh";
    iovec iov[3] = {{a, 3}, {nullptr, 0}, {b, 5}};
    hooks::IovCursor cursor(iov, 3);
    ASSERT_TRUE(cursor.valid());
    EXPECT_EQ(cursor.total(), 8u);
    cursor.advance(4);
    ASSERT_EQ(cursor.count(), 1);
    EXPECT_EQ(std::string(static_cast<char*>(cursor.data()[0].iov_base), cursor.data()[0].iov_len),
              "efgh");
    iovec piece[4];
    EXPECT_EQ(cursor.slice(2, piece, 4), 1);
    EXPECT_EQ(piece[0].iov_len, 2u);
    EXPECT_EQ(iov[2].iov_len, 5u);  // the program's array is never modified
}

TEST(IovCursor, BadArrayIsInvalid) {
    hooks::IovCursor cursor(reinterpret_cast<const iovec*>(16), 2);
    EXPECT_FALSE(cursor.valid());
}

namespace {

// One line per entry: what a caller can observe of an addrinfo list.
std::string describe(const addrinfo* list) {
    std::string out;
    for (const addrinfo* ai = list; ai; ai = ai->ai_next) {
        char host[64], serv[16];
        getnameinfo(ai->ai_addr, ai->ai_addrlen, host, sizeof host, serv, sizeof serv,
                    NI_NUMERICHOST | NI_NUMERICSERV);
        out += std::to_string(ai->ai_family) + "/" + std::to_string(ai->ai_socktype) + "/" +
               std::to_string(ai->ai_protocol) + " " + host + " " + serv + " " +
               (ai->ai_canonname ? ai->ai_canonname : "-") + "\n";
    }
    return out;
}

}  // namespace

// In-process, so that the sanitizer build checks the list building, sorting and the hosts
// file reader; green_tests does not interpose, so ::getaddrinfo here is glibc's.
TEST(DnsHooks, GetaddrinfoOnAFiberGivesGlibcsListAndGlibcFreesIt) {
    on_carrier([] {
        for (int family : {AF_UNSPEC, AF_INET, AF_INET6}) {
            for (int flags : {0, AI_CANONNAME, AI_V4MAPPED | AI_ALL, AI_ADDRCONFIG}) {
                addrinfo hints{};
                hints.ai_family = family;
                hints.ai_flags = flags;
                addrinfo* ours = nullptr;
                addrinfo* glibcs = nullptr;
                int rc = hooks::getaddrinfo("localhost", "80", &hints, &ours);
                EXPECT_EQ(rc, ::getaddrinfo("localhost", "80", &hints, &glibcs))
                    << family << " " << flags;
                if (rc != 0) continue;
                EXPECT_EQ(describe(ours), describe(glibcs)) << family << " " << flags;
                ::freeaddrinfo(ours);
                ::freeaddrinfo(glibcs);
            }
        }
    });
}

TEST(DnsHooks, HostEntriesAndNamesOnAFiberMatchGlibc) {
    on_carrier([] {
        hostent ours_entry, glibc_entry, *ours = nullptr, *glibcs = nullptr;
        char ours_buf[2048], glibc_buf[2048];
        int ours_err = 0, glibc_err = 0;
        ASSERT_EQ(hooks::gethostbyname_r("localhost", &ours_entry, ours_buf, sizeof ours_buf, &ours,
                                         &ours_err),
                  ::gethostbyname_r("localhost", &glibc_entry, glibc_buf, sizeof glibc_buf, &glibcs,
                                    &glibc_err));
        ASSERT_NE(ours, nullptr);
        ASSERT_NE(glibcs, nullptr);
        EXPECT_STREQ(ours->h_name, glibcs->h_name);
        size_t n = 0;
        for (; glibcs->h_addr_list[n]; ++n) {
            ASSERT_NE(ours->h_addr_list[n], nullptr);
            EXPECT_EQ(memcmp(ours->h_addr_list[n], glibcs->h_addr_list[n], 4), 0);
        }
        EXPECT_EQ(ours->h_addr_list[n], nullptr);
        EXPECT_EQ(hooks::gethostbyname_r("localhost", &ours_entry, ours_buf, 8, &ours, &ours_err),
                  ERANGE);

        sockaddr_in loop{};
        loop.sin_family = AF_INET;
        loop.sin_port = htons(22);
        loop.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        char host[NI_MAXHOST], serv[NI_MAXSERV], glibc_host[NI_MAXHOST], glibc_serv[NI_MAXSERV];
        ASSERT_EQ(hooks::getnameinfo(reinterpret_cast<sockaddr*>(&loop), sizeof loop, host,
                                     sizeof host, serv, sizeof serv, 0),
                  0);
        ASSERT_EQ(::getnameinfo(reinterpret_cast<sockaddr*>(&loop), sizeof loop, glibc_host,
                                sizeof glibc_host, glibc_serv, sizeof glibc_serv, 0),
                  0);
        EXPECT_STREQ(host, glibc_host);
        EXPECT_STREQ(serv, glibc_serv);
    });
}

// hooks/stdio.cpp's FILEs (their callbacks make glibc's calls here: no shim is loaded).
TEST(StdioHooks, FdopenOnASocketGivesATwinWithFilenoAndRoomToTurnWide) {
    on_carrier([] {
        int sv[2];
        ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
        FILE* out = hooks::fdopen(sv[0], "w");
        ASSERT_NE(out, nullptr);
        EXPECT_EQ(fileno(out), sv[0]);
        EXPECT_EQ(fwide(out, 0), 0);  // not oriented: it may still turn wide (not done here:
                                      // a wide twin is glibc's and its state is never freed)
        EXPECT_EQ(fprintf(out, "%s %d\n", "wide", 1), 7);
        EXPECT_EQ(fclose(out), 0);
        FILE* in = hooks::fdopen(sv[1], "r");
        ASSERT_NE(in, nullptr);
        char line[16];
        ASSERT_NE(fgets(line, sizeof line, in), nullptr);
        EXPECT_STREQ(line, "wide 1\n");
        EXPECT_EQ(fclose(in), 0);
    });
}

TEST(StdioHooks, PopenTwinReadsTheChildAndPcloseGivesItsStatus) {
    on_carrier([] {
        FILE* f = hooks::popen("echo hi; exit 2", "r");
        ASSERT_NE(f, nullptr);
        char line[16];
        ASSERT_NE(fgets(line, sizeof line, f), nullptr);
        EXPECT_STREQ(line, "hi\n");
        int status = pclose(f);
        ASSERT_TRUE(WIFEXITED(status));
        EXPECT_EQ(WEXITSTATUS(status), 2);
    });
}
