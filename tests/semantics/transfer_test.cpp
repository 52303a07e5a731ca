// sendfile and splice: whole transfers into blocking sockets with slow readers, offsets and
// file positions, waits for data, and the kernel's errors. eventfd, timerfd and signalfd
// reads: waits for the event.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/sendfile.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/timerfd.h>

#include <atomic>
#include <thread>
#include <vector>

#include "common.h"

using namespace sem;

namespace {

// A temporary file of `size` bytes with a known pattern, unlinked at once.
int pattern_file(size_t size) {
    char path[] = "/tmp/green-transfer-XXXXXX";
    int fd = mkstemp(path);
    unlink(path);
    std::vector<char> data(size);
    for (size_t i = 0; i < size; ++i) data[i] = static_cast<char>(i * 31 + (i >> 12));
    for (size_t done = 0; done < size;)
        done += static_cast<size_t>(write(fd, data.data() + done, size - done));
    lseek(fd, 0, SEEK_SET);
    return fd;
}

char expected(size_t i) {
    return static_cast<char>(i * 31 + (i >> 12));
}

// Reads everything from fd after `delay_ms` into `out`, until EOF.
std::thread slow_reader(int fd, int delay_ms, std::vector<char>* out) {
    return std::thread([fd, delay_ms, out] {
        usleep(static_cast<useconds_t>(delay_ms) * 1000);
        char buf[65536];
        for (;;) {
            ssize_t n = read(fd, buf, sizeof buf);
            if (n <= 0) break;
            out->insert(out->end(), buf, buf + n);
        }
    });
}

}  // namespace

TEST(Sendfile, SendsAWholeFileIntoABlockingSocketWithASlowReader) {
    const size_t size = 4 << 20;  // far more than the socket buffers hold
    int file = pattern_file(size);
    Pair s = socket_pair();
    std::vector<char> got;
    std::thread reader = slow_reader(s.b, 100, &got);
    Ticker ticker;
    off_t offset = 0;
    EXPECT_EQ(sendfile(s.a, file, &offset, size), static_cast<ssize_t>(size));
    EXPECT_EQ(offset, static_cast<off_t>(size));
    EXPECT_EQ(lseek(file, 0, SEEK_CUR), 0);  // with an offset, the position stays
    shutdown(s.a, SHUT_WR);
    reader.join();
    ASSERT_EQ(got.size(), size);
    for (size_t i = 0; i < size; ++i)
        if (got[i] != expected(i)) FAIL() << "byte " << i;
    EXPECT_GE(ticker.ticks(), 10);  // the sender's wait let the others run
    close(file);
}

TEST(Sendfile, WithoutAnOffsetTheFilePositionAdvances) {
    int file = pattern_file(100000);
    lseek(file, 1000, SEEK_SET);
    Pair s = socket_pair();
    std::vector<char> got;
    std::thread reader = slow_reader(s.b, 0, &got);
    EXPECT_EQ(sendfile(s.a, file, nullptr, 50000), 50000);
    EXPECT_EQ(lseek(file, 0, SEEK_CUR), 51000);
    EXPECT_EQ(sendfile(s.a, file, nullptr, 100000), 49000);  // to the end of the file
    EXPECT_EQ(sendfile(s.a, file, nullptr, 100), 0);         // at the end
    shutdown(s.a, SHUT_WR);
    reader.join();
    ASSERT_EQ(got.size(), 99000u);
    EXPECT_EQ(got[0], expected(1000));
    close(file);
}

TEST(Sendfile, ErrorsAreTheKernels) {
    IgnoreSigpipe ignore;
    int file = pattern_file(1000);
    Pair s = socket_pair();
    EXPECT_EQ(sendfile(closed_fd(), file, nullptr, 10), -1);
    EXPECT_EQ(errno, EBADF);
    EXPECT_EQ(sendfile(s.a, closed_fd(), nullptr, 10), -1);
    EXPECT_EQ(errno, EBADF);
    int write_only = open("/dev/null", O_WRONLY);
    EXPECT_EQ(sendfile(s.a, write_only, nullptr, 10), -1);
    EXPECT_EQ(errno, EBADF);
    close(write_only);
    EXPECT_EQ(sendfile(s.a, file, bad_pointer<off_t>(), 10), -1);
    EXPECT_EQ(errno, EFAULT);
    off_t negative = -1;
    EXPECT_EQ(sendfile(s.a, file, &negative, 10), -1);
    EXPECT_EQ(errno, EINVAL);
    close(s.b);
    s.b = -1;
    EXPECT_EQ(sendfile(s.a, file, nullptr, 10), -1);
    EXPECT_EQ(errno, EPIPE);
    close(file);
}

TEST(Splice, FromASocketWaitsForData) {
    Pair s = socket_pair();
    Pair p = pipe_pair();
    After later(50, [&] { write(s.b, "hello", 5); });
    auto start = Clock::now();
    EXPECT_EQ(splice(s.a, nullptr, p.b, nullptr, 4096, 0), 5);
    EXPECT_GE(ms_since(start), 40);
    char buf[8] = {};
    EXPECT_EQ(read(p.a, buf, sizeof buf), 5);
    EXPECT_STREQ(buf, "hello");
}

TEST(Splice, FromAPipeIntoABlockingSocketMovesEverything) {
    const size_t size = 2 << 20;
    Pair s = socket_pair();
    Pair p = pipe_pair();
    std::vector<char> got;
    std::thread reader = slow_reader(s.b, 50, &got);
    std::thread writer([&] {
        std::vector<char> data(size);
        for (size_t i = 0; i < size; ++i) data[i] = expected(i);
        for (size_t done = 0; done < size;)
            done += static_cast<size_t>(write(p.b, data.data() + done, size - done));
        close(p.b);
        p.b = -1;
    });
    size_t moved = 0;
    for (;;) {
        ssize_t n = splice(p.a, nullptr, s.a, nullptr, 1 << 20, 0);
        ASSERT_GE(n, 0) << strerror(errno);
        if (n == 0) break;  // the pipe's writer closed it
        moved += static_cast<size_t>(n);
    }
    writer.join();
    shutdown(s.a, SHUT_WR);
    reader.join();
    EXPECT_EQ(moved, size);
    ASSERT_EQ(got.size(), size);
    for (size_t i = 0; i < size; ++i)
        if (got[i] != expected(i)) FAIL() << "byte " << i;
}

TEST(Splice, NeedsAPipeAndValidFds) {
    Pair a = socket_pair();
    Pair b = socket_pair();
    EXPECT_EQ(splice(a.a, nullptr, b.a, nullptr, 10, SPLICE_F_NONBLOCK), -1);
    EXPECT_EQ(errno, EINVAL);
    Pair p = pipe_pair();
    EXPECT_EQ(splice(closed_fd(), nullptr, p.b, nullptr, 10, 0), -1);
    EXPECT_EQ(errno, EBADF);
}

// eventfd, timerfd and signalfd are read with read(2): a blocking read waits for the counter,
// the expiry or the signal, and the others keep running.
TEST(SpecialFds, EventfdReadWaitsForAWrite) {
    int fd = eventfd(0, EFD_CLOEXEC);
    After later(50, [fd] {
        uint64_t one = 3;
        write(fd, &one, sizeof one);
    });
    uint64_t value = 0;
    auto start = Clock::now();
    EXPECT_EQ(read(fd, &value, sizeof value), 8);
    EXPECT_EQ(value, 3u);
    EXPECT_GE(ms_since(start), 40);
    EXPECT_EQ(read(fd, &value, 4), -1);  // smaller than 8 bytes: at once, not after a wait
    EXPECT_EQ(errno, EINVAL);
    close(fd);
}

TEST(SpecialFds, SmallReadsOfTimerfdAndSignalfdFailAtOnce) {
    int timer = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC);
    char buf[64];
    EXPECT_EQ(read(timer, buf, 4), -1);
    EXPECT_EQ(errno, EINVAL);
    close(timer);
    sigset_t usr2;
    sigemptyset(&usr2);
    sigaddset(&usr2, SIGUSR2);
    int sfd = signalfd(-1, &usr2, SFD_CLOEXEC);
    EXPECT_EQ(read(sfd, buf, sizeof buf), -1);
    EXPECT_EQ(errno, EINVAL);
    close(sfd);
}

TEST(SpecialFds, TimerfdReadWaitsForTheExpiry) {
    int fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC);
    Ticker ticker;
    itimerspec spec{};
    spec.it_value.tv_nsec = 100 * 1000000L;
    auto start = Clock::now();  // before the timer starts: the wait can only be longer
    ASSERT_EQ(timerfd_settime(fd, 0, &spec, nullptr), 0);
    uint64_t expirations = 0;
    EXPECT_EQ(read(fd, &expirations, sizeof expirations), 8);
    EXPECT_EQ(expirations, 1u);
    EXPECT_GE(ms_since(start), 100);
    EXPECT_GE(ticker.ticks(), 5);
    close(fd);
}

TEST(SpecialFds, SignalfdReadWaitsForTheSignal) {
    sigset_t usr2, old;
    sigemptyset(&usr2);
    sigaddset(&usr2, SIGUSR2);
    pthread_sigmask(SIG_BLOCK, &usr2, &old);
    int fd = signalfd(-1, &usr2, SFD_CLOEXEC);
    After later(50, [] { kill(getpid(), SIGUSR2); });
    signalfd_siginfo info{};
    EXPECT_EQ(read(fd, &info, sizeof info), static_cast<ssize_t>(sizeof info));
    EXPECT_EQ(info.ssi_signo, static_cast<uint32_t>(SIGUSR2));
    close(fd);
    pthread_sigmask(SIG_SETMASK, &old, nullptr);
}
