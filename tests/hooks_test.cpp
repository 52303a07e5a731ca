// Unit tests of hooks/ called directly on fibers (no LD_PRELOAD): the cooperative versions
// park only the calling fiber, and their helpers handle the program's bad pointers.
#include <poll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cstring>
#include <string>

#include "carrier_fixture.h"
#include "hooks/hooks.h"
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
