// liburing's waits for completions (io_uring_wait_cqe, io_uring_wait_cqes,
// io_uring_wait_cqe_timeout, io_uring_submit_and_wait, io_uring_submit_and_wait_timeout):
// results, the completion handed back, -ETIME, -EINTR, bad ring fds, errno left alone, and
// other threads running while one waits. Natively and under the shim.
#include <liburing.h>
#include <pthread.h>
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

#define REQUIRE_RING(ring)                                                              \
    if ((ring).error() != 0) GTEST_SKIP() << "io_uring_queue_init: " << strerror(-(ring).error())

__kernel_timespec span_ms(long ms) {
    __kernel_timespec ts{};
    ts.tv_sec = ms / 1000;
    ts.tv_nsec = (ms % 1000) * 1000000;
    return ts;
}

// Several threads that must each keep ticking while the caller waits: with fibers, at least
// one of them shares the waiter's carrier.
struct Tickers {
    Ticker t[4];
    int least() const {
        int m = t[0].ticks();
        for (const Ticker& x : t) m = std::min(m, x.ticks());
        return m;
    }
};

}  // namespace

TEST(Uring, WaitCqeReturnsACompletionThatArrivesLaterWhileOtherThreadsRun) {
    Ring ring;
    REQUIRE_RING(ring);
    Pair p = pipe_pair();
    char buf[16] = {};
    ring.prep_read(p.a, buf, sizeof buf);
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
    EXPECT_GT(tickers.least() - before, 3) << "a thread stood still while another waited";
    io_uring_cqe_seen(ring.get(), cqe);
}

TEST(Uring, WaitCqeSeesAnotherThreadsSubmission) {
    // MariaDB's shape: one thread waits for completions, others submit. The submitter lives
    // until the completion is in: the kernel cancels a thread's requests when it exits.
    Ring ring;
    REQUIRE_RING(ring);
    Pair p = pipe_pair();
    char buf[16] = {};
    std::atomic<bool> submitted{false}, seen{false};
    std::thread submitter([&] {
        usleep(50000);
        ring.prep_read(p.a, buf, sizeof buf);
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

TEST(Uring, WaitCqeReturnsAtOnceWhenACompletionIsThere) {
    Ring ring;
    REQUIRE_RING(ring);
    ring.prep_nop();
    ASSERT_EQ(io_uring_submit(ring.get()), 1);
    io_uring_cqe* cqe = nullptr;
    ASSERT_EQ(io_uring_wait_cqe_nr(ring.get(), &cqe, 1), 0);
    ASSERT_NE(cqe, nullptr);
    EXPECT_EQ(cqe->user_data, kNopTag);
    io_uring_cqe_seen(ring.get(), cqe);
}

TEST(Uring, PeekOnAnEmptyRingIsEagain) {
    Ring ring;
    REQUIRE_RING(ring);
    io_uring_cqe* cqe = reinterpret_cast<io_uring_cqe*>(1);
    EXPECT_EQ(io_uring_peek_cqe(ring.get(), &cqe), -EAGAIN);
    EXPECT_EQ(cqe, nullptr);
}

TEST(Uring, WaitCqeTimeoutIsEtimeWhenNothingCompletes) {
    Ring ring;
    REQUIRE_RING(ring);
    Pair p = pipe_pair();
    char buf[4];
    ring.prep_read(p.a, buf, sizeof buf);
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
    EXPECT_GT(tickers.least() - before, 3);
    // The read is still pending; a write completes it.
    ASSERT_EQ(write(p.b, "x", 1), 1);
    ts = span_ms(5000);
    ASSERT_EQ(io_uring_wait_cqe_timeout(ring.get(), &cqe, &ts), 0);
    EXPECT_EQ(cqe->res, 1);
    io_uring_cqe_seen(ring.get(), cqe);
}

TEST(Uring, WaitCqeTimeoutOfZeroIsEtimeAtOnce) {
    Ring ring;
    REQUIRE_RING(ring);
    __kernel_timespec ts = span_ms(0);
    io_uring_cqe* cqe = nullptr;
    auto start = Clock::now();
    EXPECT_EQ(io_uring_wait_cqe_timeout(ring.get(), &cqe, &ts), -ETIME);
    EXPECT_LT(ms_since(start), 1000);
    EXPECT_EQ(cqe, nullptr);
}

TEST(Uring, WaitCqesWithFewerCompletionsThanAskedGivesTheFirstAfterTheTimeout) {
    // The kernel reports 0 for a timed-out wait when completions are in the ring; liburing then
    // hands back the first one.
    Ring ring;
    REQUIRE_RING(ring);
    Pair p = pipe_pair();
    char buf[4];
    ring.prep_nop();
    ring.prep_read(p.a, buf, sizeof buf);
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

TEST(Uring, WaitCqesForTwoReturnsWhenTheSecondArrives) {
    Ring ring;
    REQUIRE_RING(ring);
    Pair p = pipe_pair();
    char buf[4];
    ring.prep_nop();
    ring.prep_read(p.a, buf, sizeof buf);
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

TEST(Uring, SubmitAndWaitReturnsTheSubmittedCountOnceACompletionIsThere) {
    Ring ring;
    REQUIRE_RING(ring);
    Pair p = pipe_pair();
    char buf[4];
    ring.prep_read(p.a, buf, sizeof buf);
    After writer(100, [&] { ASSERT_EQ(write(p.b, "z", 1), 1); });
    Tickers tickers;
    int before = tickers.least();
    auto start = Clock::now();
    EXPECT_EQ(io_uring_submit_and_wait(ring.get(), 1), 1);
    EXPECT_GE(ms_since(start), 80);
    EXPECT_EQ(io_uring_cq_ready(ring.get()), 1u);
    EXPECT_GT(tickers.least() - before, 3);
}

TEST(Uring, SubmitAndWaitWithNothingToSubmitReturnsZero) {
    Ring ring;
    REQUIRE_RING(ring);
    ring.prep_nop();
    ASSERT_EQ(io_uring_submit(ring.get()), 1);
    EXPECT_EQ(io_uring_submit_and_wait(ring.get(), 1), 0);
}

TEST(Uring, SubmitAndWaitTimeoutReportsTheSubmittedCountWhenTimeRunsOut) {
    Ring ring;
    REQUIRE_RING(ring);
    Pair p = pipe_pair();
    char buf[4];
    ring.prep_read(p.a, buf, sizeof buf);
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

TEST(Uring, SubmitAndWaitTimeoutHandsBackTheCompletion) {
    Ring ring;
    REQUIRE_RING(ring);
    Pair p = pipe_pair();
    char buf[4];
    ring.prep_read(p.a, buf, sizeof buf);
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
}  // namespace

TEST(Uring, AHandlerEndsTheWaitWithEintrEvenUnderSaRestart) {
    Ring ring;
    REQUIRE_RING(ring);
    Pair p = pipe_pair();
    char buf[4];
    ring.prep_read(p.a, buf, sizeof buf);
    ASSERT_EQ(io_uring_submit(ring.get()), 1);
    struct sigaction sa {};
    sa.sa_handler = on_usr1;
    sa.sa_flags = SA_RESTART;
    struct sigaction old {};
    ASSERT_EQ(sigaction(SIGUSR1, &sa, &old), 0);
    g_handled = 0;
    pthread_t self = pthread_self();
    After killer(80, [self] { pthread_kill(self, SIGUSR1); });
    io_uring_cqe* cqe = reinterpret_cast<io_uring_cqe*>(1);
    EXPECT_EQ(io_uring_wait_cqe(ring.get(), &cqe), -EINTR);
    EXPECT_EQ(cqe, nullptr);
    EXPECT_EQ(g_handled, 1);
    sigaction(SIGUSR1, &old, nullptr);
}

TEST(Uring, ABadRingFdGivesLiburingsErrorAtOnce) {
    Ring ring;
    REQUIRE_RING(ring);
    io_uring copy = *ring.get();  // the same ring memory, another fd
    io_uring_cqe* cqe = nullptr;
    copy.ring_fd = copy.enter_ring_fd = closed_fd();
    errno = 4321;
    EXPECT_EQ(io_uring_wait_cqe(&copy, &cqe), -EBADF);
    EXPECT_EQ(errno, 4321);
    __kernel_timespec ts = span_ms(5000);
    EXPECT_EQ(io_uring_wait_cqe_timeout(&copy, &cqe, &ts), -EBADF);
    EXPECT_EQ(io_uring_submit_and_wait(&copy, 1), -EBADF);

    Pair p = pipe_pair();  // an fd that is not a ring: never readable here
    copy.ring_fd = copy.enter_ring_fd = p.a;
    auto start = Clock::now();
    EXPECT_EQ(io_uring_wait_cqe(&copy, &cqe), -EOPNOTSUPP);
    EXPECT_EQ(io_uring_wait_cqes(&copy, &cqe, 1, &ts, nullptr), -EOPNOTSUPP);
    EXPECT_LT(ms_since(start), 2000);
}

TEST(Uring, ABadTimeoutPointerIsEfault) {
    Ring ring;
    REQUIRE_RING(ring);
    io_uring_cqe* cqe = nullptr;
    EXPECT_EQ(io_uring_wait_cqe_timeout(ring.get(), &cqe, bad_pointer<__kernel_timespec>()),
              -EFAULT);
}

TEST(Uring, ManyThreadsEachWaitOnTheirOwnRing) {
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
    // Each thread's read completes only after the previous one's: they all wait at once.
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
