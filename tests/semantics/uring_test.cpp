// liburing's waits for completions (io_uring_wait_cqe, io_uring_wait_cqes,
// io_uring_wait_cqe_timeout, io_uring_submit_and_wait, io_uring_submit_and_wait_timeout, the raw
// io_uring_enter) and Linux aio's io_getevents: results, the completion handed back, -ETIME,
// -EINTR, bad ring fds and contexts, errno left alone, and other threads running while one
// waits. Natively and under the shim.
#include <linux/aio_abi.h>
#include <liburing.h>
#include <poll.h>
#include <pthread.h>
#include <sys/syscall.h>
#include <signal.h>

#include <gtest/gtest.h>

#include "common.h"

using namespace sem;

namespace {

constexpr uint64_t kReadTag = 7;
constexpr uint64_t kNopTag = 9;

// A ring of 8 entries, exited by the destructor. Skips the test where the kernel refuses
// io_uring (kernel.io_uring_disabled, a seccomp policy).
class Ring {
  public:
    Ring() { error_ = io_uring_queue_init(8, &ring_, 0); }
    ~Ring() {
        if (error_ == 0) io_uring_queue_exit(&ring_);
    }
    Ring(const Ring&) = delete;
    Ring& operator=(const Ring&) = delete;
    io_uring* get() { return &ring_; }
    int error() const { return error_; }

    // Queues a read of `fd` into `buf` tagged kReadTag (not submitted).
    void prep_read(int fd, char* buf, unsigned len) {
        io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
        io_uring_prep_read(sqe, fd, buf, len, 0);
        io_uring_sqe_set_data64(sqe, kReadTag);
    }
    void prep_nop() {
        io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
        io_uring_prep_nop(sqe);
        io_uring_sqe_set_data64(sqe, kNopTag);
    }

  private:
    io_uring ring_{};
    int error_;
};

// Each test has a ring and a pipe whose read end a queued read can wait on.
class Uring : public ::testing::Test {
  protected:
    void SetUp() override {
        if (ring.error() != 0)
            GTEST_SKIP() << "io_uring_queue_init: " << strerror(-ring.error());
    }
    // Queues a read of the pipe (not submitted): it completes when something is written.
    void prep_pipe_read() { ring.prep_read(p.a, buf, sizeof buf); }

    Ring ring;
    Pair p = pipe_pair();
    char buf[16] = {};
};

__kernel_timespec span_ms(long ms) {
    __kernel_timespec ts{};
    ts.tv_sec = ms / 1000;
    ts.tv_nsec = (ms % 1000) * 1000000;
    return ts;
}

// Several threads that must each keep ticking while the caller waits: with fibers, at least
// one of them shares the waiter's carrier.
// Ready once each has ticked (a loaded machine may start a thread late).
struct Tickers {
    Ticker t[4];
    Tickers() {
        auto start = Clock::now();
        while (least() < 1 && ms_since(start) < 10000) usleep(1000);
    }
    int least() const {
        int m = t[0].ticks();
        for (const Ticker& x : t) m = std::min(m, x.ticks());
        return m;
    }
};

}  // namespace

TEST_F(Uring, WaitCqeReturnsACompletionThatArrivesLaterWhileOtherThreadsRun) {
    prep_pipe_read();
    ASSERT_EQ(io_uring_submit(ring.get()), 1);
    Tickers tickers;
    int before = tickers.least();
    After writer(150, [&] { ASSERT_EQ(write(p.b, "hello", 5), 5); });
    io_uring_cqe* cqe = nullptr;
    errno = 1234;
    auto start = Clock::now();
    ASSERT_EQ(io_uring_wait_cqe(ring.get(), &cqe), 0);
    EXPECT_GE(ms_since(start), 100);
    EXPECT_EQ(errno, 1234);
    ASSERT_NE(cqe, nullptr);
    EXPECT_EQ(cqe->user_data, kReadTag);
    EXPECT_EQ(cqe->res, 5);
    EXPECT_EQ(std::string(buf, 5), "hello");
    EXPECT_GT(tickers.least() - before, 1) << "a thread stood still while another waited";
    io_uring_cqe_seen(ring.get(), cqe);
}

TEST_F(Uring, WaitCqeSeesAnotherThreadsSubmission) {
    // MariaDB's shape: one thread waits for completions, others submit. The submitter lives
    // until the completion is in: the kernel cancels a thread's requests when it exits.
    std::atomic<bool> submitted{false}, seen{false};
    std::thread submitter([&] {
        usleep(50000);
        prep_pipe_read();
        EXPECT_EQ(io_uring_submit(ring.get()), 1);
        submitted = true;
        while (!seen) usleep(1000);
    });
    After writer(120, [&] { ASSERT_EQ(write(p.b, "abc", 3), 3); });
    io_uring_cqe* cqe = nullptr;
    int r = io_uring_wait_cqe(ring.get(), &cqe);
    seen = true;
    submitter.join();
    ASSERT_EQ(r, 0);
    EXPECT_TRUE(submitted);
    ASSERT_NE(cqe, nullptr);
    EXPECT_EQ(cqe->res, 3);
    io_uring_cqe_seen(ring.get(), cqe);
}

TEST_F(Uring, WaitCqeReturnsAtOnceWhenACompletionIsThere) {
    ring.prep_nop();
    ASSERT_EQ(io_uring_submit(ring.get()), 1);
    io_uring_cqe* cqe = nullptr;
    ASSERT_EQ(io_uring_wait_cqe_nr(ring.get(), &cqe, 1), 0);
    ASSERT_NE(cqe, nullptr);
    EXPECT_EQ(cqe->user_data, kNopTag);
    io_uring_cqe_seen(ring.get(), cqe);
}

TEST_F(Uring, PeekOnAnEmptyRingIsEagain) {
    io_uring_cqe* cqe = reinterpret_cast<io_uring_cqe*>(1);
    EXPECT_EQ(io_uring_peek_cqe(ring.get(), &cqe), -EAGAIN);
    EXPECT_EQ(cqe, nullptr);
}

TEST_F(Uring, WaitCqeTimeoutIsEtimeWhenNothingCompletes) {
    prep_pipe_read();
    ASSERT_EQ(io_uring_submit(ring.get()), 1);
    Tickers tickers;
    int before = tickers.least();
    __kernel_timespec ts = span_ms(200);
    io_uring_cqe* cqe = reinterpret_cast<io_uring_cqe*>(1);
    auto start = Clock::now();
    EXPECT_EQ(io_uring_wait_cqe_timeout(ring.get(), &cqe, &ts), -ETIME);
    long took = ms_since(start);
    EXPECT_GE(took, 190);
    EXPECT_LT(took, 5000);
    EXPECT_EQ(cqe, nullptr);
    EXPECT_GT(tickers.least() - before, 1);
    // The read is still pending; a write completes it.
    ASSERT_EQ(write(p.b, "x", 1), 1);
    ts = span_ms(5000);
    ASSERT_EQ(io_uring_wait_cqe_timeout(ring.get(), &cqe, &ts), 0);
    EXPECT_EQ(cqe->res, 1);
    io_uring_cqe_seen(ring.get(), cqe);
}

TEST_F(Uring, WaitCqeTimeoutOfZeroIsEtimeAtOnce) {
    __kernel_timespec ts = span_ms(0);
    io_uring_cqe* cqe = nullptr;
    auto start = Clock::now();
    EXPECT_EQ(io_uring_wait_cqe_timeout(ring.get(), &cqe, &ts), -ETIME);
    EXPECT_LT(ms_since(start), 1000);
    EXPECT_EQ(cqe, nullptr);
}

TEST_F(Uring, WaitCqesWithFewerCompletionsThanAskedGivesTheFirstAfterTheTimeout) {
    // The kernel reports 0 for a timed-out wait when completions are in the ring; liburing then
    // hands back the first one.
    ring.prep_nop();
    prep_pipe_read();
    ASSERT_EQ(io_uring_submit(ring.get()), 2);
    __kernel_timespec ts = span_ms(100);
    io_uring_cqe* cqe = nullptr;
    auto start = Clock::now();
    EXPECT_EQ(io_uring_wait_cqes(ring.get(), &cqe, 2, &ts, nullptr), 0);
    EXPECT_GE(ms_since(start), 90);
    ASSERT_NE(cqe, nullptr);
    EXPECT_EQ(cqe->user_data, kNopTag);
    EXPECT_EQ(io_uring_cq_ready(ring.get()), 1u);
}

TEST_F(Uring, WaitCqesForTwoReturnsWhenTheSecondArrives) {
    ring.prep_nop();
    prep_pipe_read();
    ASSERT_EQ(io_uring_submit(ring.get()), 2);
    After writer(80, [&] { ASSERT_EQ(write(p.b, "y", 1), 1); });
    __kernel_timespec ts = span_ms(5000);
    io_uring_cqe* cqe = nullptr;
    auto start = Clock::now();
    EXPECT_EQ(io_uring_wait_cqes(ring.get(), &cqe, 2, &ts, nullptr), 0);
    long took = ms_since(start);
    EXPECT_GE(took, 60);
    EXPECT_LT(took, 4000);
    ASSERT_NE(cqe, nullptr);
    EXPECT_EQ(io_uring_cq_ready(ring.get()), 2u);
}

TEST_F(Uring, SubmitAndWaitReturnsTheSubmittedCountOnceACompletionIsThere) {
    prep_pipe_read();
    Tickers tickers;
    int before = tickers.least();
    After writer(100, [&] { ASSERT_EQ(write(p.b, "z", 1), 1); });
    auto start = Clock::now();
    EXPECT_EQ(io_uring_submit_and_wait(ring.get(), 1), 1);
    EXPECT_GE(ms_since(start), 80);
    EXPECT_EQ(io_uring_cq_ready(ring.get()), 1u);
    EXPECT_GT(tickers.least() - before, 1);
}

TEST_F(Uring, SubmitAndWaitWithNothingToSubmitReturnsZero) {
    ring.prep_nop();
    ASSERT_EQ(io_uring_submit(ring.get()), 1);
    EXPECT_EQ(io_uring_submit_and_wait(ring.get(), 1), 0);
}

TEST_F(Uring, SubmitAndWaitTimeoutReportsTheSubmittedCountWhenTimeRunsOut) {
    prep_pipe_read();
    __kernel_timespec ts = span_ms(100);
    io_uring_cqe* cqe = reinterpret_cast<io_uring_cqe*>(1);
    auto start = Clock::now();
    EXPECT_EQ(io_uring_submit_and_wait_timeout(ring.get(), &cqe, 1, &ts, nullptr), 1);
    EXPECT_GE(ms_since(start), 90);
    EXPECT_EQ(cqe, nullptr);
    // Nothing left to submit: the timeout is -ETIME.
    EXPECT_EQ(io_uring_submit_and_wait_timeout(ring.get(), &cqe, 1, &ts, nullptr), -ETIME);
    EXPECT_EQ(cqe, nullptr);
}

TEST_F(Uring, SubmitAndWaitTimeoutHandsBackTheCompletion) {
    prep_pipe_read();
    After writer(60, [&] { ASSERT_EQ(write(p.b, "w", 1), 1); });
    __kernel_timespec ts = span_ms(5000);
    io_uring_cqe* cqe = nullptr;
    EXPECT_EQ(io_uring_submit_and_wait_timeout(ring.get(), &cqe, 1, &ts, nullptr), 1);
    ASSERT_NE(cqe, nullptr);
    EXPECT_EQ(cqe->user_data, kReadTag);
}

namespace {
std::atomic<int> g_handled{0};
void on_usr1(int) { ++g_handled; }

// A counting SIGUSR1 handler with SA_RESTART (which io_uring_enter ignores), and the signal
// sent to this thread 80 ms from now; the old handler is back at the end.
class Usr1Soon {
  public:
    Usr1Soon() {
        g_handled = 0;
        struct sigaction sa {};
        sa.sa_handler = on_usr1;
        sa.sa_flags = SA_RESTART;
        sigaction(SIGUSR1, &sa, &old_);
        pthread_t self = pthread_self();
        killer_ = std::thread([self] {
            usleep(80000);
            pthread_kill(self, SIGUSR1);
        });
    }
    ~Usr1Soon() {
        killer_.join();
        sigaction(SIGUSR1, &old_, nullptr);
    }
    Usr1Soon(const Usr1Soon&) = delete;
    Usr1Soon& operator=(const Usr1Soon&) = delete;

  private:
    struct sigaction old_ {};
    std::thread killer_;
};
}  // namespace

TEST_F(Uring, AHandlerEndsTheWaitWithEintrEvenUnderSaRestart) {
    prep_pipe_read();
    ASSERT_EQ(io_uring_submit(ring.get()), 1);
    Usr1Soon usr1;
    io_uring_cqe* cqe = reinterpret_cast<io_uring_cqe*>(1);
    EXPECT_EQ(io_uring_wait_cqe(ring.get(), &cqe), -EINTR);
    EXPECT_EQ(cqe, nullptr);
    EXPECT_EQ(g_handled, 1);
}

TEST_F(Uring, ABadRingFdGivesLiburingsErrorAtOnce) {
    io_uring copy = *ring.get();  // the same ring memory, another fd
    io_uring_cqe* cqe = nullptr;
    copy.ring_fd = copy.enter_ring_fd = closed_fd();
    errno = 4321;
    EXPECT_EQ(io_uring_wait_cqe(&copy, &cqe), -EBADF);
    EXPECT_EQ(errno, 4321);
    __kernel_timespec ts = span_ms(5000);
    EXPECT_EQ(io_uring_wait_cqe_timeout(&copy, &cqe, &ts), -EBADF);
    EXPECT_EQ(io_uring_submit_and_wait(&copy, 1), -EBADF);

    // An fd that is not a ring, and never readable here.
    copy.ring_fd = copy.enter_ring_fd = p.a;
    auto start = Clock::now();
    EXPECT_EQ(io_uring_wait_cqe(&copy, &cqe), -EOPNOTSUPP);
    EXPECT_EQ(io_uring_wait_cqes(&copy, &cqe, 1, &ts, nullptr), -EOPNOTSUPP);
    EXPECT_LT(ms_since(start), 2000);
}

TEST_F(Uring, ABadTimeoutPointerIsEfault) {
    io_uring_cqe* cqe = nullptr;
    EXPECT_EQ(io_uring_wait_cqe_timeout(ring.get(), &cqe, bad_pointer<__kernel_timespec>()),
              -EFAULT);
}

TEST_F(Uring, RawEnterWaitsForACompletionWhileOtherThreadsRun) {
    // syscall(SYS_io_uring_enter) and liburing's io_uring_enter: no struct io_uring at hand.
    prep_pipe_read();
    ASSERT_EQ(io_uring_submit(ring.get()), 1);
    Tickers tickers;
    int before = tickers.least();
    After writer(100, [&] { ASSERT_EQ(write(p.b, "r", 1), 1); });
    errno = 555;
    auto start = Clock::now();
    EXPECT_EQ(syscall(SYS_io_uring_enter, ring.get()->ring_fd, 0, 1, IORING_ENTER_GETEVENTS,
                      nullptr, 0),
              0);
    EXPECT_EQ(errno, 555);
    EXPECT_GE(ms_since(start), 80);
    EXPECT_EQ(io_uring_cq_ready(ring.get()), 1u);
    EXPECT_GT(tickers.least() - before, 1);
    // Already there: at once.
    EXPECT_EQ(io_uring_enter(ring.get()->ring_fd, 0, 1, IORING_ENTER_GETEVENTS, nullptr), 0);
}

TEST_F(Uring, RawEnterTimesOutWithEtime) {
    prep_pipe_read();
    ASSERT_EQ(io_uring_submit(ring.get()), 1);
    __kernel_timespec ts = span_ms(100);
    io_uring_getevents_arg arg{};
    arg.ts = reinterpret_cast<uint64_t>(&ts);
    const unsigned flags = IORING_ENTER_GETEVENTS | IORING_ENTER_EXT_ARG;
    auto start = Clock::now();
    errno = 0;
    EXPECT_EQ(syscall(SYS_io_uring_enter, ring.get()->ring_fd, 0, 1, flags, &arg, sizeof arg), -1);
    EXPECT_EQ(errno, ETIME);
    EXPECT_GE(ms_since(start), 90);
    EXPECT_EQ(io_uring_enter2(ring.get()->ring_fd, 0, 1, flags,
                              reinterpret_cast<sigset_t*>(&arg), sizeof arg),
              -ETIME);
    // A wrong argument size is the kernel's EINVAL, at once.
    EXPECT_EQ(io_uring_enter2(ring.get()->ring_fd, 0, 1, flags,
                              reinterpret_cast<sigset_t*>(&arg), sizeof arg - 1),
              -EINVAL);
}

TEST_F(Uring, RawEnterOnAnFdThatIsNoRingFailsAtOnce) {
    auto start = Clock::now();
    errno = 0;
    EXPECT_EQ(syscall(SYS_io_uring_enter, p.a, 0, 1, IORING_ENTER_GETEVENTS, nullptr, 0), -1);
    EXPECT_EQ(errno, EOPNOTSUPP);
    EXPECT_EQ(io_uring_enter(closed_fd(), 0, 1, IORING_ENTER_GETEVENTS, nullptr), -EBADF);
    EXPECT_LT(ms_since(start), 2000);
}

TEST(UringThreads, EightWaitAtOnceEachOnARingOfItsOwn) {
    constexpr int kThreads = 8;
    std::vector<std::thread> threads;
    std::atomic<int> done{0}, skipped{0};
    std::vector<Pair> pipes;
    for (int i = 0; i < kThreads; ++i) pipes.push_back(pipe_pair());
    for (int i = 0; i < kThreads; ++i)
        threads.emplace_back([&, i] {
            Ring ring;
            if (ring.error() != 0) {
                ++skipped;
                return;
            }
            char buf[4];
            ring.prep_read(pipes[i].a, buf, sizeof buf);
            if (io_uring_submit(ring.get()) != 1) return;
            io_uring_cqe* cqe = nullptr;
            if (io_uring_wait_cqe(ring.get(), &cqe) == 0 && cqe->res == 1) ++done;
        });
    // The writes come one by one while the others still wait.
    auto start = Clock::now();
    for (int i = 0; i < kThreads; ++i) {
        usleep(10000);
        ASSERT_EQ(write(pipes[i].b, "q", 1), 1);
    }
    for (std::thread& t : threads) t.join();
    if (skipped) GTEST_SKIP() << "io_uring refused";
    EXPECT_EQ(done, kThreads);
    EXPECT_LT(ms_since(start), 10000);
}

// Linux native aio through raw system calls (as libaio and MariaDB make them): an aio poll
// request on a pipe completes when something is written.
class Aio : public ::testing::Test {
  protected:
    void SetUp() override {
        if (syscall(SYS_io_setup, 8, &ctx) != 0) GTEST_SKIP() << "io_setup: " << strerror(errno);
    }
    void TearDown() override {
        if (ctx) syscall(SYS_io_destroy, ctx);
    }
    void submit_poll() {
        iocb cb{};
        cb.aio_lio_opcode = IOCB_CMD_POLL;
        cb.aio_fildes = static_cast<uint32_t>(p.a);
        cb.aio_buf = POLLIN;
        cb.aio_data = 42;
        iocb* list[1] = {&cb};
        ASSERT_EQ(syscall(SYS_io_submit, ctx, 1, list), 1);
    }
    long getevents(long min_nr, const timespec* timeout) {
        return syscall(SYS_io_getevents, ctx, min_nr, 4L, events, timeout);
    }

    aio_context_t ctx = 0;
    Pair p = pipe_pair();
    io_event events[4] = {};
};

TEST_F(Aio, GeteventsWaitsForACompletionWhileOtherThreadsRun) {
    submit_poll();
    Tickers tickers;
    int before = tickers.least();
    After writer(100, [&] { ASSERT_EQ(write(p.b, "a", 1), 1); });
    errno = 77;
    auto start = Clock::now();
    ASSERT_EQ(getevents(1, nullptr), 1) << strerror(errno);
    EXPECT_EQ(errno, 77);
    EXPECT_GE(ms_since(start), 80);
    EXPECT_EQ(events[0].data, 42u);
    EXPECT_TRUE(events[0].res & POLLIN);
    EXPECT_GT(tickers.least() - before, 1);
}

TEST_F(Aio, GeteventsTimesOutWithZero) {
    submit_poll();
    timespec ts{0, 100 * 1000 * 1000};
    auto start = Clock::now();
    EXPECT_EQ(getevents(1, &ts), 0);
    EXPECT_GE(ms_since(start), 90);
    timespec zero{};
    EXPECT_EQ(getevents(1, &zero), 0);
}

TEST_F(Aio, GeteventsErrorsAreTheKernels) {
    errno = 0;
    EXPECT_EQ(syscall(SYS_io_getevents, opaque<aio_context_t>(12345), 1L, 4L, events, nullptr), -1);
    EXPECT_EQ(errno, EINVAL);
    EXPECT_EQ(getevents(5, nullptr), -1);  // min_nr above nr
    EXPECT_EQ(errno, EINVAL);
    EXPECT_EQ(getevents(1, bad_pointer<timespec>()), -1);
    EXPECT_EQ(errno, EFAULT);
}
