// read, write, readv, writev on sockets, pipes and regular files: the results, errno values
// and timing a real thread sees.
#include <poll.h>
#include <signal.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <cstddef>
#include <vector>
#include <gtest/gtest.h>
#include <limits.h>
#include <mqueue.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/uio.h>
#include <termios.h>

#include <algorithm>
#include <thread>
#include <vector>

#include "common.h"

using namespace sem;

static IgnoreSigpipe ignore_sigpipe;

TEST(Read, ReturnsZeroAtEofAfterPeerCloseOnSocket) {
    Pair p = socket_pair();
    close(p.b);
    p.b = -1;
    char c;
    EXPECT_EQ(read(p.a, &c, 1), 0);
}

TEST(Read, ReturnsZeroAtEofAfterWriterCloseOnPipe) {
    Pair p = pipe_pair();
    close(p.b);
    p.b = -1;
    char c;
    EXPECT_EQ(read(p.a, &c, 1), 0);
}

TEST(Read, BlocksUntilAnotherThreadWritesToSocket) {
    Pair p = socket_pair();
    auto start = Clock::now();
    After writer(50, [&] { ASSERT_EQ(write(p.b, "hello", 5), 5); });
    char buf[16];
    EXPECT_EQ(read(p.a, buf, sizeof buf), 5);
    EXPECT_GE(ms_since(start), 45);
    EXPECT_EQ(std::string(buf, 5), "hello");
}

TEST(Read, BlocksUntilAnotherThreadWritesToPipe) {
    Pair p = pipe_pair();
    auto start = Clock::now();
    After writer(50, [&] { ASSERT_EQ(write(p.b, "hello", 5), 5); });
    char buf[16];
    EXPECT_EQ(read(p.a, buf, sizeof buf), 5);
    EXPECT_GE(ms_since(start), 45);
}

TEST(Read, ReturnsWhatIsAvailableWithoutWaitingForMore) {
    Pair p = socket_pair();
    ASSERT_EQ(write(p.b, "abc", 3), 3);
    char buf[100];
    EXPECT_EQ(read(p.a, buf, sizeof buf), 3);
}

TEST(Read, ZeroLengthReturnsZero) {
    Pair p = socket_pair();
    char c;
    EXPECT_EQ(read(p.a, &c, 0), 0);
}

TEST(Read, NonblockingSocketGetsEagainNotAWait) {
    Pair p = socket_pair();
    ASSERT_EQ(fcntl(p.a, F_SETFL, fcntl(p.a, F_GETFL) | O_NONBLOCK), 0);
    char c;
    EXPECT_EQ(read(p.a, &c, 1), -1);
    EXPECT_EQ(errno, EAGAIN);
}

TEST(Read, NonblockingPipeGetsEagainNotAWait) {
    int fds[2];
    ASSERT_EQ(pipe2(fds, O_NONBLOCK), 0);
    Pair p{fds[0], fds[1]};
    char c;
    EXPECT_EQ(read(p.a, &c, 1), -1);
    EXPECT_EQ(errno, EAGAIN);
}

TEST(Read, FionbioMakesSocketNonblocking) {
    Pair p = socket_pair();
    int on = 1;
    ASSERT_EQ(ioctl(p.a, FIONBIO, &on), 0);
    EXPECT_TRUE(nonblocking(p.a));
    char c;
    EXPECT_EQ(read(p.a, &c, 1), -1);
    EXPECT_EQ(errno, EAGAIN);
}

TEST(Read, FlagsShowOnlyWhatTheProgramSet) {
    Pair p = socket_pair();
    After writer(20, [&] { ASSERT_EQ(write(p.b, "x", 1), 1); });
    char c;
    ASSERT_EQ(read(p.a, &c, 1), 1);  // a blocking read that had to wait
    EXPECT_FALSE(nonblocking(p.a));
    EXPECT_FALSE(nonblocking(p.b));
    ASSERT_EQ(fcntl(p.a, F_SETFL, O_NONBLOCK), 0);
    EXPECT_TRUE(nonblocking(p.a));
}

TEST(Read, BadFdGivesEbadf) {
    char c;
    EXPECT_EQ(read(-1, &c, 1), -1);
    EXPECT_EQ(errno, EBADF);
    EXPECT_EQ(read(closed_fd(), &c, 1), -1);
    EXPECT_EQ(errno, EBADF);
}

TEST(Read, WriteOnlyFdGivesEbadf) {
    Pair p = pipe_pair();
    char c;
    EXPECT_EQ(read(p.b, &c, 1), -1);
    EXPECT_EQ(errno, EBADF);
}

TEST(Read, BadPointerGivesEfaultOnSocket) {
    Pair p = socket_pair();
    ASSERT_EQ(write(p.b, "abc", 3), 3);
    EXPECT_EQ(read(p.a, bad_pointer<void>(), 3), -1);
    EXPECT_EQ(errno, EFAULT);
}

TEST(Read, BadPointerGivesEfaultOnPipe) {
    Pair p = pipe_pair();
    ASSERT_EQ(write(p.b, "abc", 3), 3);
    EXPECT_EQ(read(p.a, bad_pointer<void>(), 3), -1);
    EXPECT_EQ(errno, EFAULT);
}

TEST(Read, RegularFileReadsAndReachesEof) {
    char path[] = "/tmp/green-sem-XXXXXX";
    int fd = mkstemp(path);
    ASSERT_GE(fd, 0);
    unlink(path);
    ASSERT_EQ(write(fd, "0123456789", 10), 10);
    ASSERT_EQ(lseek(fd, 0, SEEK_SET), 0);
    char buf[32];
    EXPECT_EQ(read(fd, buf, 4), 4);
    EXPECT_EQ(read(fd, buf, 32), 6);
    EXPECT_EQ(read(fd, buf, 32), 0);
    close(fd);
}

TEST(Read, SoRcvtimeoGivesEagainAfterTheTimeout) {
    Pair p = socket_pair();
    timeval tv{0, 100000};
    ASSERT_EQ(setsockopt(p.a, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv), 0);
    auto start = Clock::now();
    char c;
    EXPECT_EQ(read(p.a, &c, 1), -1);
    EXPECT_EQ(errno, EAGAIN);
    long took = ms_since(start);
    EXPECT_GE(took, 95);
    EXPECT_LT(took, 1000);
}

TEST(Read, CloseByAnotherThreadNeverReadsTheNumbersNextOwner) {
    // A real thread blocked in read() stays blocked when another thread closes the fd (the
    // open file lives on until the read returns): here shutdown() of a dup ends it with EOF.
    // Under the shim the reader wakes at the close with EBADF. Either way it must not read
    // from the fd number's next owner.
    Pair p = socket_pair();
    int keep = dup(p.a);
    int fd = p.a;
    ssize_t got = -2;
    int err = 0;
    std::thread reader([&] {
        char c;
        got = read(fd, &c, 1);
        err = errno;
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    close(p.a);
    p.a = -1;
    Pair reuse = pipe_pair();  // likely takes the closed number
    ASSERT_EQ(write(reuse.b, "z", 1), 1);
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    shutdown(keep, SHUT_RDWR);
    reader.join();
    if (under_shim()) {
        EXPECT_EQ(got, -1);
        EXPECT_EQ(err, EBADF);
    } else {
        EXPECT_EQ(got, 0);
    }
    char c;
    if (reuse.a == fd) {
        EXPECT_EQ(read(reuse.a, &c, 1), 1);  // the 'z' is still there
    }
    close(keep);
}

TEST(Read, ReusedFdNumberWorksAfterClose) {
    int fd;
    {
        Pair p = socket_pair();
        After writer(20, [&] { ASSERT_EQ(write(p.b, "x", 1), 1); });
        char c;
        ASSERT_EQ(read(p.a, &c, 1), 1);
        fd = p.a;
    }
    Pair q = socket_pair();
    EXPECT_TRUE(q.a == fd || q.b == fd);
    After writer(20, [&] { ASSERT_EQ(write(q.b, "y", 1), 1); });
    char c = 0;
    EXPECT_EQ(read(q.a, &c, 1), 1);
    EXPECT_EQ(c, 'y');
}

TEST(Write, LargeWriteToPipeDeliversEveryByteInOrder) {
    Pair p = pipe_pair();
    const size_t n = 4 << 20;
    std::vector<unsigned char> out(n), in(n);
    for (size_t i = 0; i < n; ++i) out[i] = static_cast<unsigned char>(i * 131 + (i >> 12));
    std::thread reader([&] {
        size_t got = 0;
        while (got < n) {
            ssize_t r = read(p.a, in.data() + got, std::min<size_t>(7000, n - got));
            ASSERT_GT(r, 0);
            got += static_cast<size_t>(r);
        }
    });
    EXPECT_EQ(write(p.b, out.data(), n), static_cast<ssize_t>(n));
    reader.join();
    EXPECT_TRUE(in == out);
}

TEST(Write, LargeWriteToSocketDeliversEveryByteInOrder) {
    Pair p = socket_pair();
    const size_t n = 8 << 20;
    std::vector<unsigned char> out(n), in(n);
    for (size_t i = 0; i < n; ++i) out[i] = static_cast<unsigned char>(i * 7 + (i >> 10));
    std::thread reader([&] {
        size_t got = 0;
        while (got < n) {
            ssize_t r = read(p.a, in.data() + got, n - got);
            ASSERT_GT(r, 0);
            got += static_cast<size_t>(r);
        }
    });
    EXPECT_EQ(write(p.b, out.data(), n), static_cast<ssize_t>(n));
    reader.join();
    EXPECT_TRUE(in == out);
}

TEST(Write, PipeWithNoReaderGivesEpipe) {
    Pair p = pipe_pair();
    close(p.a);
    p.a = -1;
    EXPECT_EQ(write(p.b, "x", 1), -1);
    EXPECT_EQ(errno, EPIPE);
}

TEST(Write, SocketWithClosedPeerGivesEpipe) {
    Pair p = socket_pair();
    close(p.a);
    p.a = -1;
    EXPECT_EQ(write(p.b, "x", 1), -1);
    EXPECT_EQ(errno, EPIPE);
}

TEST(Write, BadFdGivesEbadf) {
    EXPECT_EQ(write(closed_fd(), "x", 1), -1);
    EXPECT_EQ(errno, EBADF);
}

TEST(Write, BadPointerGivesEfault) {
    Pair s = socket_pair();
    EXPECT_EQ(write(s.a, bad_pointer<void>(), 3), -1);
    EXPECT_EQ(errno, EFAULT);
    Pair p = pipe_pair();
    EXPECT_EQ(write(p.b, bad_pointer<void>(), 3), -1);
    EXPECT_EQ(errno, EFAULT);
}

TEST(Write, NonblockingFullSocketGivesEagain) {
    Pair p = socket_pair();
    ASSERT_EQ(fcntl(p.b, F_SETFL, O_NONBLOCK), 0);
    std::vector<char> big(1 << 20);
    ssize_t total = 0, r;
    while ((r = write(p.b, big.data(), big.size())) > 0) total += r;
    EXPECT_EQ(r, -1);
    EXPECT_EQ(errno, EAGAIN);
    EXPECT_GT(total, 0);
}

TEST(Write, NonblockingFullPipeGivesAPartialCountThenEagain) {
    Pair p = pipe_pair();
    ASSERT_EQ(fcntl(p.b, F_SETFL, O_NONBLOCK), 0);
    std::vector<char> big(1 << 20);
    ssize_t first = write(p.b, big.data(), big.size());  // more than a pipe holds
    EXPECT_GT(first, 0);
    EXPECT_LT(first, static_cast<ssize_t>(big.size()));
    EXPECT_EQ(write(p.b, big.data(), 1), -1);
    EXPECT_EQ(errno, EAGAIN);
}

// POSIX: a write of at most PIPE_BUF bytes to a pipe is never interleaved with another's,
// also when the writers find the pipe full and wait.
TEST(Write, SmallPipeWritesStayWholeWhileWritersWaitForRoom) {
    Pair p = pipe_pair();
    constexpr int kWriters = 4, kRecords = 200;
    constexpr size_t kSize = PIPE_BUF;
    std::vector<std::thread> writers;
    for (int w = 0; w < kWriters; ++w)
        writers.emplace_back([&, w] {
            std::vector<char> record(kSize, static_cast<char>('a' + w));
            for (int i = 0; i < kRecords; ++i)
                ASSERT_EQ(write(p.b, record.data(), kSize), static_cast<ssize_t>(kSize));
        });
    // 3 MiB through a 64 KiB pipe: the writers find it full again and again.
    std::vector<char> record(kSize);
    int seen[kWriters] = {};
    for (int i = 0; i < kWriters * kRecords; ++i) {
        size_t got = 0;
        while (got < kSize) {
            ssize_t r = read(p.a, record.data() + got, kSize - got);
            ASSERT_GT(r, 0);
            got += static_cast<size_t>(r);
        }
        int w = record[0] - 'a';
        ASSERT_TRUE(w >= 0 && w < kWriters);
        EXPECT_EQ(std::count(record.begin(), record.end(), record[0]), static_cast<long>(kSize));
        ++seen[w];
    }
    for (auto& t : writers) t.join();
    for (int w = 0; w < kWriters; ++w) EXPECT_EQ(seen[w], kRecords);
}

// A tty cannot be tried without blocking (RWF_NOWAIT): it takes the poll-then-call path.
TEST(Read, PseudoTerminalBlocksUntilTheOtherSideWrites) {
    int master = posix_openpt(O_RDWR | O_NOCTTY);
    ASSERT_GE(master, 0);
    ASSERT_EQ(grantpt(master), 0);
    ASSERT_EQ(unlockpt(master), 0);
    int slave = open(ptsname(master), O_RDWR | O_NOCTTY);
    ASSERT_GE(slave, 0);
    termios raw{};
    ASSERT_EQ(tcgetattr(slave, &raw), 0);
    cfmakeraw(&raw);
    ASSERT_EQ(tcsetattr(slave, TCSANOW, &raw), 0);
    auto start = Clock::now();
    After writer(50, [&] { ASSERT_EQ(write(master, "tty", 3), 3); });
    char buf[8];
    EXPECT_EQ(read(slave, buf, sizeof buf), 3);
    EXPECT_GE(ms_since(start), 45);
    EXPECT_EQ(std::string(buf, 3), "tty");
    EXPECT_EQ(write(slave, "back", 4), 4);
    EXPECT_EQ(read(master, buf, sizeof buf), 4);
    close(slave);
    close(master);
}

namespace {

// A pseudo-terminal whose slave is in raw mode with the given VMIN and VTIME.
struct RawPty {
    int master = -1, slave = -1;
    RawPty(cc_t vmin, cc_t vtime) {
        master = posix_openpt(O_RDWR | O_NOCTTY);
        if (master < 0 || grantpt(master) != 0 || unlockpt(master) != 0) abort();
        slave = open(ptsname(master), O_RDWR | O_NOCTTY);
        if (slave < 0) abort();
        termios raw{};
        if (tcgetattr(slave, &raw) != 0) abort();
        cfmakeraw(&raw);
        raw.c_cc[VMIN] = vmin;
        raw.c_cc[VTIME] = vtime;
        if (tcsetattr(slave, TCSANOW, &raw) != 0) abort();
    }
    ~RawPty() {
        close(slave);
        close(master);
    }
};

}  // namespace

// termios(3): VMIN = 0, VTIME = 0 is a polling read, 0 at once when nothing is there.
TEST(Read, RawTtyWithoutVminOrVtimeReturnsZeroAtOnce) {
    RawPty pty(0, 0);
    char buf[8];
    auto start = Clock::now();
    EXPECT_EQ(read(pty.slave, buf, sizeof buf), 0);
    iovec iov{buf, sizeof buf};
    EXPECT_EQ(readv(pty.slave, &iov, 1), 0);
    EXPECT_LT(ms_since(start), 500);
    ASSERT_EQ(write(pty.master, "ab", 2), 2);
    // The bytes reach the slave's line discipline shortly after the write.
    ssize_t n = 0;
    while (n == 0 && ms_since(start) < 5000) n = read(pty.slave, buf, sizeof buf);
    EXPECT_EQ(n, 2);
    EXPECT_EQ(std::string(buf, 2), "ab");
}

// VMIN = 0, VTIME = t: 0 after t tenths of a second without data, or data as soon as it comes.
TEST(Read, RawTtyWithVtimeOnlyTimesOutWithZeroOrReturnsTheData) {
    char buf[8];
    {
        RawPty pty(0, 2);
        auto start = Clock::now();
        EXPECT_EQ(read(pty.slave, buf, sizeof buf), 0);
        long took = ms_since(start);
        EXPECT_GE(took, 180);
        EXPECT_LT(took, 1000);
        start = Clock::now();
        iovec iov{buf, sizeof buf};
        EXPECT_EQ(readv(pty.slave, &iov, 1), 0);
        EXPECT_GE(ms_since(start), 180);
    }
    {
        RawPty pty(0, 50);  // 5 s: the data must end the read long before
        auto start = Clock::now();
        After writer(50, [&] { ASSERT_EQ(write(pty.master, "tty", 3), 3); });
        EXPECT_EQ(read(pty.slave, buf, sizeof buf), 3);
        EXPECT_LT(ms_since(start), 2500);
        EXPECT_EQ(std::string(buf, 3), "tty");
    }
}

// VMIN > 0 and VTIME > 0: after a first byte, min(VMIN, count) bytes, or fewer once VTIME
// passes without one. The threads that write meanwhile must run.
TEST(Read, RawTtyWithVminAndVtimeWaitsForVminBytesOrTheInterByteTimer) {
    RawPty pty(4, 3);  // 4 bytes, or 0.3 s after the last one
    char buf[16];
    {
        auto start = Clock::now();
        After writer(50, [&] {
            ASSERT_EQ(write(pty.master, "ab", 2), 2);
            std::this_thread::sleep_for(std::chrono::milliseconds(100));
            ASSERT_EQ(write(pty.master, "cd", 2), 2);
        });
        EXPECT_EQ(read(pty.slave, buf, sizeof buf), 4);
        EXPECT_GE(ms_since(start), 140);
        EXPECT_EQ(std::string(buf, 4), "abcd");
    }
    {
        Ticker ticker;
        auto start = Clock::now();
        After writer(50, [&] { ASSERT_EQ(write(pty.master, "e", 1), 1); });
        iovec iov[2] = {{buf, 1}, {buf + 1, sizeof buf - 1}};
        EXPECT_EQ(readv(pty.slave, iov, 2), 1);
        long took = ms_since(start);
        EXPECT_GE(took, 50 + 280);
        EXPECT_LT(took, 3000);
        EXPECT_EQ(buf[0], 'e');
        EXPECT_GE(ticker.ticks(), 30);  // about 66 in 330 ms: the wait held no one up
    }
}

TEST(Write, SoSndtimeoReturnsThePartialCountAfterTheTimeout) {
    Pair p = socket_pair();
    timeval tv{0, 100000};
    ASSERT_EQ(setsockopt(p.b, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv), 0);
    std::vector<char> big(16 << 20);
    auto start = Clock::now();
    ssize_t r = write(p.b, big.data(), big.size());
    EXPECT_GT(r, 0);
    EXPECT_LT(r, static_cast<ssize_t>(big.size()));
    EXPECT_GE(ms_since(start), 95);
    // Nothing more fits: the next write times out with nothing sent.
    EXPECT_EQ(write(p.b, big.data(), big.size()), -1);
    EXPECT_EQ(errno, EAGAIN);
}

TEST(Readv, ScattersIntoEveryBuffer) {
    Pair p = socket_pair();
    After writer(20, [&] { ASSERT_EQ(write(p.b, "abcdefgh", 8), 8); });
    char x[3], y[5];
    iovec iov[2] = {{x, 3}, {y, 5}};
    EXPECT_EQ(readv(p.a, iov, 2), 8);
    EXPECT_EQ(std::string(x, 3), "abc");
    EXPECT_EQ(std::string(y, 5), "defgh");
}

TEST(Readv, OnPipeWaitsAndScatters) {
    Pair p = pipe_pair();
    After writer(20, [&] { ASSERT_EQ(write(p.b, "abcd", 4), 4); });
    char x[2], y[2];
    iovec iov[2] = {{x, 2}, {y, 2}};
    EXPECT_EQ(readv(p.a, iov, 2), 4);
    EXPECT_EQ(std::string(y, 2), "cd");
}

TEST(Readv, InvalidCountGivesEinval) {
    Pair p = socket_pair();
    iovec iov{nullptr, 0};
    EXPECT_EQ(readv(p.a, &iov, opaque(-1)), -1);
    EXPECT_EQ(errno, EINVAL);
    EXPECT_EQ(readv(p.a, &iov, opaque(IOV_MAX + 1)), -1);
    EXPECT_EQ(errno, EINVAL);
}

TEST(Readv, BadIovecPointerGivesEfault) {
    Pair p = socket_pair();
    ASSERT_EQ(write(p.b, "ab", 2), 2);
    EXPECT_EQ(readv(p.a, bad_pointer<iovec>(), 1), -1);
    EXPECT_EQ(errno, EFAULT);
}

TEST(Writev, GathersLargeBuffersInOrderOnSocketAndPipe) {
    for (int kind = 0; kind < 2; ++kind) {
        Pair p = kind ? pipe_pair() : socket_pair();
        int rd = p.a, wr = kind ? p.b : p.b;
        std::vector<std::vector<char>> parts;
        std::vector<iovec> iov;
        std::string expect;
        for (int i = 0; i < 40; ++i) {
            parts.emplace_back(100000 + i * 997, static_cast<char>('a' + i % 26));
            expect.append(parts.back().data(), parts.back().size());
        }
        for (auto& part : parts) iov.push_back({part.data(), part.size()});
        std::string got;
        std::thread reader([&] {
            char buf[65536];
            while (got.size() < expect.size()) {
                ssize_t r = read(rd, buf, sizeof buf);
                ASSERT_GT(r, 0);
                got.append(buf, static_cast<size_t>(r));
            }
        });
        EXPECT_EQ(writev(wr, iov.data(), static_cast<int>(iov.size())),
                  static_cast<ssize_t>(expect.size()));
        reader.join();
        EXPECT_TRUE(got == expect) << "kind " << kind;
    }
}

TEST(Writev, BadIovecPointerGivesEfault) {
    Pair s = socket_pair();
    EXPECT_EQ(writev(s.a, bad_pointer<iovec>(), 1), -1);
    EXPECT_EQ(errno, EFAULT);
    Pair p = pipe_pair();
    EXPECT_EQ(writev(p.b, bad_pointer<iovec>(), 1), -1);
    EXPECT_EQ(errno, EFAULT);
}

TEST(Writev, ZeroCountReturnsZero) {
    Pair p = socket_pair();
    iovec iov{nullptr, 0};
    EXPECT_EQ(writev(p.a, &iov, 0), 0);
}

// A program that installs a seccomp filter of its own, as sshd's pre-auth child does, allows
// the system calls it makes itself (read, write) and kills the process for others. Its plain
// read and write must still work under the shim, whose cooperative versions would use
// sendto/recvfrom, preadv2/pwritev2 and epoll: with no other thread to run, the real calls
// are made.
TEST(OwnSeccompFilter, PlainReadAndWriteKeepWorkingInASingleThreadedSandbox) {
    Pair sockets = socket_pair();
    Pair pipe_ends = pipe_pair();
    fflush(nullptr);
    pid_t pid = fork();
    if (pid == 0) {
        if (!refuse_calls({__NR_sendto, __NR_recvfrom, __NR_sendmsg, __NR_recvmsg, __NR_preadv2,
                           __NR_pwritev2, __NR_epoll_ctl, __NR_epoll_wait, __NR_epoll_pwait,
                           __NR_epoll_pwait2, __NR_poll, __NR_ppoll},
                          SECCOMP_RET_KILL_PROCESS))
            _exit(100);
        char byte = 0;
        if (write(sockets.a, "s", 1) != 1) _exit(1);
        if (read(sockets.a, &byte, 1) != 1 || byte != 'S') _exit(2);
        if (write(pipe_ends.b, "p", 1) != 1) _exit(3);
        if (read(pipe_ends.a, &byte, 1) != 1 || byte != 'p') _exit(4);
        _exit(0);
    }
    char byte = 0;
    pollfd from_child{sockets.b, POLLIN, 0};
    if (poll(&from_child, 1, 5000) == 1 && read(sockets.b, &byte, 1) == 1) {
        EXPECT_EQ(byte, 's');
        ASSERT_EQ(write(sockets.b, "S", 1), 1);
    } else {
        ADD_FAILURE() << "the child wrote nothing";
        kill(pid, SIGKILL);
    }
    int status = -1;
    waitpid(pid, &status, 0);
    ASSERT_TRUE(WIFEXITED(status)) << "status " << status;
    EXPECT_EQ(WEXITSTATUS(status), 0);
}

// ---------------------------------------------------------------------------------------
// POSIX message queues: a blocking receive or send waits for the other side while the
// program's other threads run; timeouts, O_NONBLOCK and the errors are the kernel's.

namespace {

// A queue of `depth` messages of 64 bytes, already unlinked (it lives while open).
mqd_t private_queue(long depth, int flags = 0) {
    char name[64];
    snprintf(name, sizeof name, "/green-test-%d-%ld", getpid(), depth);
    mq_attr attr{};
    attr.mq_maxmsg = depth;
    attr.mq_msgsize = 64;
    mqd_t queue = mq_open(name, O_CREAT | O_EXCL | O_RDWR | flags, 0600, &attr);
    if (queue != static_cast<mqd_t>(-1)) mq_unlink(name);
    return queue;
}

timespec realtime_in_ms(long ms) {
    timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    t.tv_sec += ms / 1000;
    t.tv_nsec += (ms % 1000) * 1000000;
    if (t.tv_nsec >= 1000000000) {
        ++t.tv_sec;
        t.tv_nsec -= 1000000000;
    }
    return t;
}

}  // namespace

TEST(MessageQueue, ReceiveWaitsForAnotherThreadsSendWhileOthersRun) {
    mqd_t queue = private_queue(4);
    ASSERT_NE(queue, static_cast<mqd_t>(-1)) << strerror(errno);
    Ticker ticker;
    After sender(50, [&] { EXPECT_EQ(mq_send(queue, "hello", 5, 7), 0); });
    char buf[64];
    unsigned priority = 0;
    auto start = Clock::now();
    EXPECT_EQ(mq_receive(queue, buf, sizeof buf, &priority), 5);
    EXPECT_GE(ms_since(start), 40);
    EXPECT_EQ(std::string(buf, 5), "hello");
    EXPECT_EQ(priority, 7u);
    EXPECT_GT(ticker.ticks(), 2);  // the waiting thread left the others their turn
    mq_close(queue);
}

TEST(MessageQueue, SendToAFullQueueWaitsForRoom) {
    mqd_t queue = private_queue(1);
    ASSERT_NE(queue, static_cast<mqd_t>(-1)) << strerror(errno);
    ASSERT_EQ(mq_send(queue, "a", 1, 0), 0);
    char buf[64];
    After receiver(50, [&] { EXPECT_EQ(mq_receive(queue, buf, sizeof buf, nullptr), 1); });
    auto start = Clock::now();
    EXPECT_EQ(mq_send(queue, "b", 1, 0), 0);
    EXPECT_GE(ms_since(start), 40);
    mq_close(queue);
}

TEST(MessageQueue, TimedCallsTimeOutAndCheckTheirTimeoutFirst) {
    mqd_t queue = private_queue(1);
    ASSERT_NE(queue, static_cast<mqd_t>(-1)) << strerror(errno);
    char buf[64];
    timespec in_50ms = realtime_in_ms(50);
    auto start = Clock::now();
    EXPECT_EQ(mq_timedreceive(queue, buf, sizeof buf, nullptr, &in_50ms), -1);
    EXPECT_EQ(errno, ETIMEDOUT);
    EXPECT_GE(ms_since(start), 40);
    timespec bad{0, 1000000000};
    EXPECT_EQ(mq_timedreceive(queue, buf, sizeof buf, nullptr, &bad), -1);
    EXPECT_EQ(errno, EINVAL);
    ASSERT_EQ(mq_send(queue, "a", 1, 0), 0);
    // The timeout is checked before the queue: a bad one fails even with a message waiting.
    EXPECT_EQ(mq_timedreceive(queue, buf, sizeof buf, nullptr, &bad), -1);
    EXPECT_EQ(errno, EINVAL);
    EXPECT_EQ(mq_timedsend(queue, "b", 1, 0, bad_pointer<timespec>()), -1);
    EXPECT_EQ(errno, EFAULT);
    timespec in_30ms = realtime_in_ms(30);
    EXPECT_EQ(mq_timedsend(queue, "b", 1, 0, &in_30ms), -1);  // full
    EXPECT_EQ(errno, ETIMEDOUT);
    mq_close(queue);
}

TEST(MessageQueue, NonBlockingQueueBadDescriptorAndSmallBuffer) {
    mqd_t queue = private_queue(1, O_NONBLOCK);
    ASSERT_NE(queue, static_cast<mqd_t>(-1)) << strerror(errno);
    char buf[64];
    EXPECT_EQ(mq_receive(queue, buf, sizeof buf, nullptr), -1);
    EXPECT_EQ(errno, EAGAIN);
    ASSERT_EQ(mq_send(queue, "a", 1, 0), 0);
    EXPECT_EQ(mq_send(queue, "b", 1, 0), -1);
    EXPECT_EQ(errno, EAGAIN);
    EXPECT_EQ(mq_receive(queue, buf, 8, nullptr), -1);  // smaller than mq_msgsize
    EXPECT_EQ(errno, EMSGSIZE);
    mq_close(queue);
    EXPECT_EQ(mq_receive(queue, buf, sizeof buf, nullptr), -1);
    EXPECT_EQ(errno, EBADF);
    EXPECT_EQ(mq_send(closed_fd(), "a", 1, 0), -1);
    EXPECT_EQ(errno, EBADF);
}

// ---------------------------------------------------------------------------------------
// flock: a lock another process holds is waited for while the program's other threads run.

TEST(Flock, WaitsForALockAnotherProcessHoldsWhileOthersRun) {
    char path[] = "/tmp/green-flock-XXXXXX";
    int fd = mkstemp(path);
    ASSERT_GE(fd, 0);
    Pair held = pipe_pair();
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
        int own = open(path, O_RDWR);  // a description of its own: flock locks those
        if (own < 0 || flock(own, LOCK_EX) != 0) _exit(1);
        if (write(held.b, "h", 1) != 1) _exit(2);
        usleep(100000);
        _exit(0);  // the lock goes with the process
    }
    char byte;
    ASSERT_EQ(read(held.a, &byte, 1), 1);
    EXPECT_EQ(flock(fd, LOCK_EX | LOCK_NB), -1);
    EXPECT_EQ(errno, EWOULDBLOCK);
    Ticker ticker;
    auto start = Clock::now();
    EXPECT_EQ(flock(fd, LOCK_EX), 0);
    EXPECT_GE(ms_since(start), 50);
    EXPECT_GT(ticker.ticks(), 5);  // the waiting thread left the others their turn
    EXPECT_EQ(flock(fd, LOCK_UN), 0);
    int status = wait_child_within(pid, 10000);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
    close(fd);
    unlink(path);
}

TEST(Flock, ErrorsAreTheKernels) {
    EXPECT_EQ(flock(closed_fd(), LOCK_EX), -1);
    EXPECT_EQ(errno, EBADF);
    char path[] = "/tmp/green-flock-XXXXXX";
    int fd = mkstemp(path);
    ASSERT_GE(fd, 0);
    EXPECT_EQ(flock(fd, 0), -1);
    EXPECT_EQ(errno, EINVAL);
    EXPECT_EQ(flock(fd, LOCK_SH), 0);
    EXPECT_EQ(flock(fd, LOCK_EX), 0);  // converts this description's own lock
    EXPECT_EQ(flock(fd, LOCK_UN), 0);
    close(fd);
    unlink(path);
}

