// pthread creation, join/detach, identity, exit, thread-specific data and attributes.
#include <gtest/gtest.h>
#include <pthread.h>
#include <sched.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <threads.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

#include "common.h"
#include "../expected_threads.h"

using namespace sem;

namespace {


void* twice(void* arg) { return reinterpret_cast<void*>(reinterpret_cast<long>(arg) * 2); }
void* nap_ms(void* arg) {
    usleep(static_cast<useconds_t>(reinterpret_cast<long>(arg) * 1000));
    return nullptr;
}

}  // namespace

TEST(Shim, ThreadsAreFibersExactlyWhenPreloaded) {
    const char* preload = getenv("LD_PRELOAD");
    const char* disable = getenv("GREEN_DISABLE");
    bool preloaded = preload && strstr(preload, "libgreen") && !(disable && !strcmp(disable, "1"));
    EXPECT_EQ(under_shim(), preloaded);
    pthread_t t;
    ASSERT_EQ(pthread_create(&t, nullptr, nap_ms, reinterpret_cast<void*>(100)), 0);
    usleep(20000);
    // Under the shim: the carriers, plus the monitor thread, which times slices (unless
    // GREEN_PREEMPT=0), watches for stuck carriers and runs the watchdog (GREEN_MONITOR_MS).
    const char* monitor = getenv("GREEN_MONITOR_MS");
    const char* preempt = getenv("GREEN_PREEMPT");
    bool slices = !preempt || (strcmp(preempt, "0") && strcmp(preempt, "off"));
    const int carriers = green_test::carriers_expected();
    int runtime_threads = carriers + ((monitor && atoi(monitor) > 0) || slices || carriers > 1);
    EXPECT_EQ(proc_status("Threads:"), preloaded ? runtime_threads : 2);
    pthread_join(t, nullptr);
}

TEST(PthreadCreate, JoinReturnsTheStartRoutinesResult) {
    pthread_t t;
    ASSERT_EQ(pthread_create(&t, nullptr, twice, reinterpret_cast<void*>(21)), 0);
    void* result = nullptr;
    EXPECT_EQ(pthread_join(t, &result), 0);
    EXPECT_EQ(reinterpret_cast<long>(result), 42);
}

TEST(PthreadCreate, AThousandThreadsRunAndJoin) {
    std::vector<pthread_t> threads(1000);
    for (size_t i = 0; i < threads.size(); ++i)
        ASSERT_EQ(pthread_create(&threads[i], nullptr, twice, reinterpret_cast<void*>(i)), 0);
    long sum = 0;
    for (auto& t : threads) {
        void* r;
        ASSERT_EQ(pthread_join(t, &r), 0);
        sum += reinterpret_cast<long>(r);
    }
    EXPECT_EQ(sum, 999L * 1000);
}

TEST(PthreadCreate, DetachedAttributeMakesJoinFail) {
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_t t;
    ASSERT_EQ(pthread_create(&t, &attr, nap_ms, reinterpret_cast<void*>(50)), 0);
    EXPECT_EQ(pthread_join(t, nullptr), EINVAL);
    pthread_attr_destroy(&attr);
    usleep(80000);
}

TEST(PthreadCreate, StackSizeAttributeIsHonoured) {
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    ASSERT_EQ(pthread_attr_setstacksize(&attr, 1 << 20), 0);
    pthread_t t;
    static size_t seen = 0;
    ASSERT_EQ(pthread_create(&t, &attr,
                             [](void*) -> void* {
                                 volatile char big[900 * 1024];  // fits only in the 1 MiB stack
                                 big[0] = 1;
                                 big[sizeof big - 1] = big[0];
                                 pthread_attr_t self;
                                 pthread_getattr_np(pthread_self(), &self);
                                 pthread_attr_getstacksize(&self, &seen);
                                 pthread_attr_destroy(&self);
                                 return nullptr;
                             },
                             nullptr),
              0);
    pthread_join(t, nullptr);
    EXPECT_GE(seen, size_t{1} << 20);
    EXPECT_LT(seen, size_t{2} << 20);
    pthread_attr_destroy(&attr);
}

TEST(PthreadCreate, UserSuppliedStackIsUsed) {
    static std::vector<char> stack(256 * 1024);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    ASSERT_EQ(pthread_attr_setstack(&attr, stack.data(), stack.size()), 0);
    static char* local_addr = nullptr;
    pthread_t t;
    ASSERT_EQ(pthread_create(&t, &attr,
                             [](void*) -> void* {
                                 char here;
                                 local_addr = static_cast<char*>(opaque<void*>(&here));
                                 return nullptr;
                             },
                             nullptr),
              0);
    pthread_join(t, nullptr);
    EXPECT_GE(local_addr, stack.data());
    EXPECT_LT(local_addr, stack.data() + stack.size());
    pthread_attr_destroy(&attr);
}

TEST(PthreadJoin, SelfGivesEdeadlk) {
    EXPECT_EQ(pthread_join(pthread_self(), nullptr), EDEADLK);
    pthread_t t;
    static int from_thread = 0;
    pthread_create(&t, nullptr,
                   [](void*) -> void* {
                       from_thread = pthread_join(pthread_self(), nullptr);
                       return nullptr;
                   },
                   nullptr);
    pthread_join(t, nullptr);
    EXPECT_EQ(from_thread, EDEADLK);
}

TEST(PthreadJoin, TryjoinIsBusyUntilTheThreadEnds) {
    pthread_t t;
    pthread_create(&t, nullptr, nap_ms, reinterpret_cast<void*>(50));
    EXPECT_EQ(pthread_tryjoin_np(t, nullptr), EBUSY);
    usleep(100000);
    EXPECT_EQ(pthread_tryjoin_np(t, nullptr), 0);
}

TEST(PthreadJoin, TimedjoinTimesOutThenSucceeds) {
    pthread_t t;
    pthread_create(&t, nullptr, nap_ms, reinterpret_cast<void*>(200));
    timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_nsec += 50 * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    auto start = Clock::now();
    EXPECT_EQ(pthread_timedjoin_np(t, nullptr, &until), ETIMEDOUT);
    EXPECT_GE(ms_since(start), 45);
    EXPECT_EQ(pthread_join(t, nullptr), 0);
}

TEST(PthreadDetach, TwiceGivesEinval) {
    pthread_t t;
    pthread_create(&t, nullptr, nap_ms, reinterpret_cast<void*>(30));
    EXPECT_EQ(pthread_detach(t), 0);
    EXPECT_EQ(pthread_detach(t), EINVAL);
    usleep(60000);
}

TEST(PthreadDetach, AFinishedThreadCanBeDetached) {
    pthread_t t;
    pthread_create(&t, nullptr, twice, nullptr);
    usleep(20000);
    EXPECT_EQ(pthread_detach(t), 0);
}

TEST(PthreadSelf, IsEqualToTheCreatorsHandleAndDiffersFromMain) {
    static pthread_t inside;
    pthread_t t;
    pthread_create(&t, nullptr,
                   [](void*) -> void* {
                       inside = pthread_self();
                       return nullptr;
                   },
                   nullptr);
    pthread_join(t, nullptr);
    EXPECT_TRUE(pthread_equal(inside, t));
    EXPECT_FALSE(pthread_equal(inside, pthread_self()));
}

namespace {
struct Marker {
    std::atomic<int>* counter;
    ~Marker() { ++*counter; }
};
std::atomic<int> g_destroyed{0};
}  // namespace

TEST(PthreadExit, ValueReachesJoinAndDestructorsRun) {
    g_destroyed = 0;
    pthread_t t;
    pthread_create(&t, nullptr,
                   [](void*) -> void* {
                       Marker m{&g_destroyed};
                       [] { pthread_exit(reinterpret_cast<void*>(7)); }();
                       return nullptr;
                   },
                   nullptr);
    void* result = nullptr;
    EXPECT_EQ(pthread_join(t, &result), 0);
    EXPECT_EQ(reinterpret_cast<long>(result), 7);
    EXPECT_EQ(g_destroyed.load(), 1);
}

TEST(PthreadExit, CatchAllThatRethrowsStillExits) {
    pthread_t t;
    static int after_catch = 0;
    pthread_create(&t, nullptr,
                   [](void*) -> void* {
                       try {
                           pthread_exit(reinterpret_cast<void*>(3));
                       } catch (...) {
                           after_catch = 1;
                           throw;
                       }
                       after_catch = 2;
                       return nullptr;
                   },
                   nullptr);
    void* result = nullptr;
    pthread_join(t, &result);
    EXPECT_EQ(reinterpret_cast<long>(result), 3);
    EXPECT_EQ(after_catch, 1);
}

namespace {
std::atomic<int> g_key_dtor_calls{0};
pthread_key_t g_key;
}  // namespace

TEST(PthreadKey, ValuesArePerThreadAndDestructorsRunAtExit) {
    g_key_dtor_calls = 0;
    ASSERT_EQ(pthread_key_create(&g_key, [](void* v) {
                  ++g_key_dtor_calls;
                  delete static_cast<int*>(v);
              }),
              0);
    ASSERT_EQ(pthread_setspecific(g_key, new int(-1)), 0);
    std::vector<pthread_t> threads(20);
    for (size_t i = 0; i < threads.size(); ++i)
        pthread_create(&threads[i], nullptr,
                       [](void* arg) -> void* {
                           EXPECT_EQ(pthread_getspecific(g_key), nullptr);
                           pthread_setspecific(g_key, new int(static_cast<int>(
                                                          reinterpret_cast<long>(arg))));
                           usleep(10000);
                           return reinterpret_cast<void*>(
                               *static_cast<int*>(pthread_getspecific(g_key)) ==
                               reinterpret_cast<long>(arg));
                       },
                       reinterpret_cast<void*>(i));
    for (auto& t : threads) {
        void* ok;
        pthread_join(t, &ok);
        EXPECT_TRUE(ok);
    }
    EXPECT_EQ(g_key_dtor_calls.load(), 20);
    EXPECT_EQ(*static_cast<int*>(pthread_getspecific(g_key)), -1);
    delete static_cast<int*>(pthread_getspecific(g_key));
    pthread_setspecific(g_key, nullptr);
    EXPECT_EQ(pthread_key_delete(g_key), 0);
}

TEST(PthreadKey, ARecreatedKeyReadsNullInEveryThread) {
    pthread_key_t key;
    ASSERT_EQ(pthread_key_create(&key, nullptr), 0);
    static pthread_key_t shared;
    shared = key;
    static int stage = 0;
    pthread_t t;
    pthread_create(&t, nullptr,
                   [](void*) -> void* {
                       pthread_setspecific(shared, &stage);
                       while (stage == 0) usleep(1000);
                       return pthread_getspecific(shared);
                   },
                   nullptr);
    usleep(20000);
    pthread_key_delete(key);
    pthread_key_t again;
    ASSERT_EQ(pthread_key_create(&again, nullptr), 0);
    shared = again;
    stage = 1;
    void* seen = &stage;
    pthread_join(t, &seen);
    if (again == key) {
        EXPECT_EQ(seen, nullptr);
    }
    pthread_key_delete(again);
}

TEST(PthreadKey, SetspecificOnADeletedKeyGivesEinvalInAThread) {
    pthread_key_t key;
    ASSERT_EQ(pthread_key_create(&key, nullptr), 0);
    ASSERT_EQ(pthread_key_delete(key), 0);
    static pthread_key_t dead;
    dead = key;
    pthread_t t;
    static int result = 0;
    pthread_create(&t, nullptr,
                   [](void*) -> void* {
                       result = pthread_setspecific(dead, &result);
                       return nullptr;
                   },
                   nullptr);
    pthread_join(t, nullptr);
    // glibc checks only that the key is in range and in use.
    EXPECT_EQ(result, EINVAL);
}

TEST(PthreadName, SetAndGetRoundTripAndTooLongIsErange) {
    pthread_t t;
    pthread_create(&t, nullptr, nap_ms, reinterpret_cast<void*>(50));
    EXPECT_EQ(pthread_setname_np(t, "worker-1"), 0);
    char name[16];
    EXPECT_EQ(pthread_getname_np(t, name, sizeof name), 0);
    EXPECT_STREQ(name, "worker-1");
    EXPECT_EQ(pthread_setname_np(t, "a-name-that-is-too-long"), ERANGE);
    char small[4];
    EXPECT_EQ(pthread_getname_np(t, small, sizeof small), ERANGE);
    pthread_join(t, nullptr);
}

TEST(PthreadKill, SignalZeroChecksALiveThread) {
    pthread_t t;
    pthread_create(&t, nullptr, nap_ms, reinterpret_cast<void*>(50));
    EXPECT_EQ(pthread_kill(t, 0), 0);
    EXPECT_EQ(pthread_kill(t, 12345), EINVAL);
    pthread_join(t, nullptr);
}

TEST(SchedYield, LetsOtherThreadsRunAndReturnsZero) {
    std::atomic<bool> ran{false};
    std::thread other([&] { ran = true; });
    for (int i = 0; i < 100000 && !ran; ++i) EXPECT_EQ(sched_yield(), 0);
    EXPECT_TRUE(ran.load());
    other.join();
}

TEST(Errno, IsPerThreadAcrossBlockingCalls) {
    Pair p = socket_pair();
    std::thread other([&] {
        errno = 0;
        char c;
        ASSERT_EQ(read(p.a, &c, 1), 1);  // parks, while main sets its own errno
        EXPECT_EQ(errno, 0);
        errno = 222;
    });
    usleep(20000);
    errno = 111;
    ASSERT_EQ(write(p.b, "x", 1), 1);
    usleep(20000);
    other.join();
    EXPECT_EQ(errno, 111);
}

// ---------------------------------------------------------------------------------------
// Every call that takes a pthread_t, on a thread's handle (a fiber's under the shim): the
// same answers as on a real thread, and no memory of ours taken for glibc's descriptor.

namespace {

// A thread that blocks in read() until release(), then returns 7.
class Parked {
  public:
    Parked() {
        if (pipe(fds_) != 0) abort();
        if (pthread_create(&thread_, nullptr, body, this) != 0) abort();
    }
    ~Parked() {
        release();
        if (joinable_) pthread_join(thread_, nullptr);
        close(fds_[0]);
        close(fds_[1]);
    }
    pthread_t handle() const { return thread_; }
    void release() {
        if (!released_) (void)!write(fds_[1], "x", 1);
        released_ = true;
    }
    void joined() { joinable_ = false; }
    int read_result() const { return read_result_; }
    int read_errno() const { return read_errno_; }
    bool finished() const { return finished_; }

  private:
    static void* body(void* arg) {
        auto* self = static_cast<Parked*>(arg);
        char c;
        self->read_result_ = static_cast<int>(read(self->fds_[0], &c, 1));
        self->read_errno_ = errno;
        self->finished_ = true;
        return reinterpret_cast<void*>(7);
    }
    int fds_[2];
    pthread_t thread_;
    bool released_ = false, joinable_ = true;
    std::atomic<int> read_result_{0}, read_errno_{0};
    std::atomic<bool> finished_{false};
};

timespec realtime_past() {
    timespec past;
    clock_gettime(CLOCK_REALTIME, &past);
    past.tv_sec -= 1;
    return past;
}

}  // namespace

TEST(PthreadHandle, SchedulingCallsCheckTheirArgumentsAsForAThread) {
    Parked parked;
    pthread_t t = parked.handle();
    int policy = -1;
    sched_param param{};
    ASSERT_EQ(pthread_getschedparam(t, &policy, &param), 0);
    EXPECT_EQ(policy, SCHED_OTHER);
    EXPECT_EQ(param.sched_priority, 0);
    EXPECT_EQ(pthread_setschedprio(t, 0), 0);
    EXPECT_EQ(pthread_setschedprio(t, 5), EINVAL);  // SCHED_OTHER takes priority 0 only
    sched_param zero{}, five{};
    five.sched_priority = 5;
    EXPECT_EQ(pthread_setschedparam(t, SCHED_OTHER, &zero), 0);
    EXPECT_EQ(pthread_setschedparam(t, SCHED_OTHER, &five), EINVAL);
    EXPECT_EQ(pthread_setschedparam(t, 12345, &zero), EINVAL);
    ASSERT_EQ(pthread_getschedparam(t, &policy, &param), 0);
    EXPECT_EQ(policy, SCHED_OTHER);
    EXPECT_EQ(param.sched_priority, 0);
}

TEST(PthreadHandle, AffinityAndClockCallsAnswerAsForAThread) {
    Parked parked;
    pthread_t t = parked.handle();
    cpu_set_t set;
    CPU_ZERO(&set);
    ASSERT_EQ(pthread_getaffinity_np(t, sizeof set, &set), 0);
    EXPECT_GT(CPU_COUNT(&set), 0);
    EXPECT_EQ(pthread_setaffinity_np(t, sizeof set, &set), 0);
    cpu_set_t none;
    CPU_ZERO(&none);
    EXPECT_EQ(pthread_setaffinity_np(t, sizeof none, &none), EINVAL);
    clockid_t clock;
    ASSERT_EQ(pthread_getcpuclockid(t, &clock), 0);
    timespec used{};
    EXPECT_EQ(clock_gettime(clock, &used), 0);
    pthread_attr_t attr;
    ASSERT_EQ(pthread_getattr_np(t, &attr), 0);
    size_t size = 0;
    void* low = nullptr;
    EXPECT_EQ(pthread_attr_getstack(&attr, &low, &size), 0);
    EXPECT_GT(size, 0u);
    int detach_state = -1;
    EXPECT_EQ(pthread_attr_getdetachstate(&attr, &detach_state), 0);
    EXPECT_EQ(detach_state, PTHREAD_CREATE_JOINABLE);
    pthread_attr_destroy(&attr);
}

TEST(PthreadHandle, JoinCallsOnARunningThreadThenJoin) {
    Parked parked;
    pthread_t t = parked.handle();
    EXPECT_EQ(pthread_kill(t, 0), 0);
    EXPECT_EQ(pthread_tryjoin_np(t, nullptr), EBUSY);
    timespec past = realtime_past();
    EXPECT_EQ(pthread_timedjoin_np(t, nullptr, &past), ETIMEDOUT);
    EXPECT_EQ(pthread_clockjoin_np(t, nullptr, CLOCK_REALTIME, &past), ETIMEDOUT);
    EXPECT_TRUE(pthread_equal(t, t));
    EXPECT_FALSE(pthread_equal(t, pthread_self()));
    parked.release();
    void* result = nullptr;
    EXPECT_EQ(pthread_join(t, &result), 0);
    EXPECT_EQ(reinterpret_cast<long>(result), 7);
    parked.joined();
}

namespace {
std::atomic<int> g_queued_value{0};
std::atomic<int> g_queued_code{0};
void record_queued(int, siginfo_t* info, void*) {
    g_queued_value = info->si_value.sival_int;
    g_queued_code = info->si_code;
}
}  // namespace

TEST(PthreadSigqueue, DeliversTheValueAndInterruptsTheTargetsBlockedRead) {
    struct sigaction action {};
    struct sigaction before {};
    action.sa_sigaction = record_queued;
    action.sa_flags = SA_SIGINFO;  // no SA_RESTART: the target's read fails with EINTR
    sigemptyset(&action.sa_mask);
    sigaction(SIGUSR2, &action, &before);
    g_queued_value = 0;
    {
        Parked parked;
        pthread_t t = parked.handle();
        sigval value;
        value.sival_int = 4242;
        EXPECT_EQ(pthread_sigqueue(t, 0, value), 0);  // checks the thread, sends nothing
        EXPECT_EQ(pthread_sigqueue(t, 12345, value), EINVAL);
        // A signal that comes before the thread blocks interrupts nothing: send again until
        // one finds it blocked.
        auto start = Clock::now();
        while (!parked.finished() && ms_since(start) < 5000) {
            ASSERT_EQ(pthread_sigqueue(t, SIGUSR2, value), 0);
            auto sent = Clock::now();
            while (!parked.finished() && ms_since(sent) < 100) usleep(1000);
        }
        ASSERT_TRUE(parked.finished());
        EXPECT_EQ(parked.read_result(), -1);
        EXPECT_EQ(parked.read_errno(), EINTR);
        EXPECT_EQ(g_queued_value, 4242);
        EXPECT_EQ(g_queued_code, SI_QUEUE);
    }
    sigaction(SIGUSR2, &before, nullptr);
}

TEST(C11Threads, JoinDetachAndCurrentAcceptAPthreadHandle) {
    static pthread_t inside_current, inside_self;
    pthread_t t;
    ASSERT_EQ(pthread_create(
                  &t, nullptr,
                  [](void*) -> void* {
                      inside_current = thrd_current();
                      inside_self = pthread_self();
                      return reinterpret_cast<void*>(9);
                  },
                  nullptr),
              0);
    int result = 0;
    EXPECT_EQ(thrd_join(t, &result), thrd_success);
    EXPECT_EQ(result, 9);
    EXPECT_TRUE(thrd_equal(inside_current, inside_self));
    EXPECT_TRUE(thrd_equal(thrd_current(), pthread_self()));
    Parked parked;
    EXPECT_EQ(thrd_detach(parked.handle()), thrd_success);
    EXPECT_EQ(pthread_detach(parked.handle()), EINVAL);  // already detached
    parked.release();
    parked.joined();
    auto start = Clock::now();
    while (!parked.finished() && ms_since(start) < 5000) usleep(1000);
    EXPECT_TRUE(parked.finished());
}

// ---------------------------------------------------------------------------------------
// Thread ids: gettid() names the calling thread, and the calls that take a thread id reach it.

namespace {

struct IdRecord {
    pid_t id = 0;
    pid_t by_syscall = 0;
};

}  // namespace

TEST(ThreadId, GettidIsDistinctAcrossAThousandLiveThreadsAndMainsIsThePid) {
    EXPECT_EQ(gettid(), getpid());
    EXPECT_EQ(syscall(SYS_gettid), getpid());
    constexpr unsigned kThreads = 1000;
    static pthread_barrier_t all_alive;
    ASSERT_EQ(pthread_barrier_init(&all_alive, nullptr, kThreads), 0);
    std::vector<IdRecord> ids(kThreads);
    std::vector<pthread_t> threads(kThreads);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 64 * 1024);
    for (unsigned i = 0; i < kThreads; ++i)
        ASSERT_EQ(pthread_create(
                      &threads[i], &attr,
                      [](void* arg) -> void* {
                          auto* record = static_cast<IdRecord*>(arg);
                          record->id = gettid();
                          record->by_syscall = static_cast<pid_t>(syscall(SYS_gettid));
                          pthread_barrier_wait(&all_alive);  // none ends before all have asked
                          return nullptr;
                      },
                      &ids[i]),
                  0);
    for (pthread_t t : threads) ASSERT_EQ(pthread_join(t, nullptr), 0);
    pthread_attr_destroy(&attr);
    pthread_barrier_destroy(&all_alive);
    std::vector<pid_t> sorted;
    for (const IdRecord& r : ids) {
        EXPECT_GT(r.id, 0);
        EXPECT_NE(r.id, getpid());
        EXPECT_EQ(r.by_syscall, r.id);
        sorted.push_back(r.id);
    }
    std::sort(sorted.begin(), sorted.end());
    EXPECT_EQ(std::adjacent_find(sorted.begin(), sorted.end()), sorted.end()) << "a repeated id";
}

namespace {

std::atomic<int> g_tid_signals{0};
std::atomic<int> g_tid_signal_code{0};
std::atomic<pid_t> g_tid_signal_pid{0};
std::atomic<pid_t> g_tid_in_handler{0};
void record_tid_signal(int, siginfo_t* info, void*) {
    g_tid_signal_code = info->si_code;
    g_tid_signal_pid = info->si_pid;
    g_tid_in_handler = gettid();
    ++g_tid_signals;
}

// A thread that publishes its id, then blocks in read() until interrupted or released.
class ReaderWithId {
  public:
    ReaderWithId() : pipe_(pipe_pair()) {
        if (pthread_create(&thread_, nullptr, body, this) != 0) abort();
        while (id_ == 0) usleep(1000);
    }
    ~ReaderWithId() {
        (void)!write(pipe_.b, "x", 1);
        pthread_join(thread_, nullptr);
    }
    pid_t id() const { return id_; }
    bool finished() const { return finished_; }
    ssize_t result() const { return result_; }
    int error() const { return error_; }

  private:
    static void* body(void* arg) {
        auto* self = static_cast<ReaderWithId*>(arg);
        self->id_ = gettid();
        char c;
        self->result_ = read(self->pipe_.a, &c, 1);
        self->error_ = errno;
        self->finished_ = true;
        return nullptr;
    }
    Pair pipe_;
    pthread_t thread_;
    std::atomic<pid_t> id_{0};
    std::atomic<bool> finished_{false};
    std::atomic<ssize_t> result_{0};
    std::atomic<int> error_{0};
};

// Sends with `send` until the reader's read ends (a signal that comes before it blocks
// interrupts nothing), for up to 5 s.
template <typename Send>
void interrupt_reader(const ReaderWithId& reader, Send send) {
    auto start = Clock::now();
    while (!reader.finished() && ms_since(start) < 5000) {
        ASSERT_EQ(send(), 0) << strerror(errno);
        auto sent = Clock::now();
        while (!reader.finished() && ms_since(sent) < 100) usleep(1000);
    }
}

}  // namespace

TEST(ThreadId, TgkillAndTkillToAThreadsIdInterruptItsBlockingRead) {
    struct sigaction action {}, before{};
    action.sa_sigaction = record_tid_signal;
    action.sa_flags = SA_SIGINFO;  // no SA_RESTART: the read fails with EINTR
    sigemptyset(&action.sa_mask);
    sigaction(SIGUSR2, &action, &before);
    for (int how = 0; how < 3; ++how) {
        g_tid_signals = 0;
        ReaderWithId reader;
        pid_t id = reader.id();
        EXPECT_EQ(tgkill(getpid(), id, 0), 0);  // a live thread: nothing sent
        interrupt_reader(reader, [&] {
            switch (how) {
                case 0: return tgkill(getpid(), id, SIGUSR2);
                case 1: return static_cast<int>(syscall(SYS_tgkill, getpid(), id, SIGUSR2));
                default: return static_cast<int>(syscall(SYS_tkill, id, SIGUSR2));
            }
        });
        ASSERT_TRUE(reader.finished()) << "way " << how;
        EXPECT_EQ(reader.result(), -1);
        EXPECT_EQ(reader.error(), EINTR);
        EXPECT_GE(g_tid_signals.load(), 1);
        EXPECT_EQ(g_tid_signal_code, SI_TKILL);
        EXPECT_EQ(g_tid_signal_pid, getpid());
        // Natively the handler runs on the thread itself. Under the shim it runs on the
        // carrier, on whichever fiber holds it (docs/compat.md, thread ids).
        if (!under_shim()) {
            EXPECT_EQ(g_tid_in_handler, id);
        }
    }
    sigaction(SIGUSR2, &before, nullptr);
}

TEST(ThreadId, AnEndedThreadsIdGivesEsrchAndALiveOneInAnotherProcessToo) {
    pid_t live_id = 0;
    {
        ReaderWithId reader;
        live_id = reader.id();
        pid_t parent = getppid();  // some other process
        errno = 0;
        EXPECT_EQ(tgkill(parent, live_id, 0), -1);
        EXPECT_EQ(errno, ESRCH);
        EXPECT_EQ(tgkill(getpid(), live_id, 12345), -1);
        EXPECT_EQ(errno, EINVAL);
    }
    pthread_t t;
    ASSERT_EQ(pthread_create(
                  &t, nullptr,
                  [](void*) -> void* { return reinterpret_cast<void*>(static_cast<long>(gettid())); },
                  nullptr),
              0);
    void* result = nullptr;
    ASSERT_EQ(pthread_join(t, &result), 0);
    pid_t ended = static_cast<pid_t>(reinterpret_cast<long>(result));
    ASSERT_NE(ended, getpid());
    for (pid_t id : {ended, live_id}) {
        // A joined real thread's task can linger in the kernel for a moment after glibc's join
        // returned (the kernel clears the tid word before it releases the task): wait for it.
        for (int tries = 0; tries < 1000 && tgkill(getpid(), id, 0) == 0; ++tries) usleep(1000);
        errno = 0;
        EXPECT_EQ(tgkill(getpid(), id, 0), -1);
        EXPECT_EQ(errno, ESRCH);
        EXPECT_EQ(tgkill(getpid(), id, SIGUSR2), -1);
        EXPECT_EQ(errno, ESRCH);
        EXPECT_EQ(syscall(SYS_tgkill, getpid(), id, 0), -1);
        EXPECT_EQ(errno, ESRCH);
        EXPECT_EQ(syscall(SYS_tkill, id, 0), -1);
        EXPECT_EQ(errno, ESRCH);
    }
}

TEST(ThreadId, AForkFromAThreadGivesAChildWhoseIdIsItsPid) {
    pthread_t t;
    ASSERT_EQ(pthread_create(
                  &t, nullptr,
                  [](void*) -> void* {
                      pid_t parent_side = gettid();
                      pid_t pid = fork();
                      if (pid == 0) {
                          bool same = gettid() == getpid() && syscall(SYS_gettid) == getpid();
                          _exit(same && parent_side != getpid() ? 0 : 1);
                      }
                      int status = -1;
                      waitpid(pid, &status, 0);
                      return reinterpret_cast<void*>(static_cast<long>(status));
                  },
                  nullptr),
              0);
    void* status = nullptr;
    ASSERT_EQ(pthread_join(t, &status), 0);
    EXPECT_EQ(reinterpret_cast<long>(status), 0);
}

TEST(ThreadId, AffinityCallsTakeAThreadsOwnId) {
    static int get_result, get_errno, set_result, set_errno, empty_result, empty_errno;
    static int count_by_id, count_by_zero;
    pthread_t t;
    ASSERT_EQ(pthread_create(
                  &t, nullptr,
                  [](void*) -> void* {
                      cpu_set_t by_id, by_zero;
                      CPU_ZERO(&by_id);
                      CPU_ZERO(&by_zero);
                      get_result = sched_getaffinity(gettid(), sizeof by_id, &by_id);
                      get_errno = errno;
                      sched_getaffinity(0, sizeof by_zero, &by_zero);
                      count_by_id = CPU_COUNT(&by_id);
                      count_by_zero = CPU_COUNT(&by_zero);
                      set_result = sched_setaffinity(gettid(), sizeof by_zero, &by_zero);
                      set_errno = errno;
                      cpu_set_t none;
                      CPU_ZERO(&none);
                      empty_result = sched_setaffinity(gettid(), sizeof none, &none);
                      empty_errno = errno;
                      return nullptr;
                  },
                  nullptr),
              0);
    ASSERT_EQ(pthread_join(t, nullptr), 0);
    EXPECT_EQ(get_result, 0) << strerror(get_errno);
    EXPECT_GT(count_by_id, 0);
    EXPECT_EQ(count_by_id, count_by_zero);
    EXPECT_EQ(set_result, 0) << strerror(set_errno);
    EXPECT_EQ(empty_result, -1);
    EXPECT_EQ(empty_errno, EINVAL);
}

namespace {
std::atomic<int> g_timer_signals{0};
void count_timer_signal(int) { ++g_timer_signals; }
}  // namespace

TEST(ThreadId, ATimerAimedAtAThreadsIdSignals) {
    struct sigaction action {}, before{};
    action.sa_handler = count_timer_signal;
    action.sa_flags = SA_RESTART;
    sigemptyset(&action.sa_mask);
    sigaction(SIGUSR2, &action, &before);
    g_timer_signals = 0;
    static int create_result, create_errno;
    pthread_t t;
    ASSERT_EQ(pthread_create(
                  &t, nullptr,
                  [](void*) -> void* {
                      sigevent event{};
                      event.sigev_notify = SIGEV_THREAD_ID;
                      event.sigev_signo = SIGUSR2;
                      event._sigev_un._tid = gettid();
                      timer_t timer;
                      create_result = timer_create(CLOCK_MONOTONIC, &event, &timer);
                      create_errno = errno;
                      if (create_result != 0) return nullptr;
                      itimerspec in_10ms{};
                      in_10ms.it_value.tv_nsec = 10 * 1000 * 1000;
                      timer_settime(timer, 0, &in_10ms, nullptr);
                      auto start = Clock::now();
                      while (g_timer_signals == 0 && ms_since(start) < 5000) usleep(1000);
                      timer_delete(timer);
                      return nullptr;
                  },
                  nullptr),
              0);
    ASSERT_EQ(pthread_join(t, nullptr), 0);
    EXPECT_EQ(create_result, 0) << strerror(create_errno);
    EXPECT_EQ(g_timer_signals.load(), 1);
    sigaction(SIGUSR2, &before, nullptr);
}

// pthread_kill and tgkill are async-signal-safe: from a 20 kHz timer's handler, which
// interrupts thread creation and exit at any instruction (under the shim: inside the
// runtime's handle and id tables), they answer and nothing hangs.
namespace {
pthread_t g_probe_target;
pid_t g_probe_tid;
std::atomic<long> g_probes{0};
std::atomic<long> g_probe_errors{0};

void probe_from_handler(int) {
    int saved = errno;
    if (pthread_kill(g_probe_target, 0) != 0) g_probe_errors.fetch_add(1);
    if (syscall(SYS_tgkill, getpid(), g_probe_tid, 0) != 0) g_probe_errors.fetch_add(1);
    g_probes.fetch_add(1);
    errno = saved;
}
}  // namespace

TEST(AsyncSignalSafe, PthreadKillAndTgkillFromAHandlerWhileThreadsComeAndGo) {
    std::atomic<bool> stop{false};
    std::atomic<pid_t> target_tid{0};
    std::thread target([&] {
        target_tid = static_cast<pid_t>(syscall(SYS_gettid));
        while (!stop) usleep(1000);
    });
    while (target_tid == 0) usleep(1000);
    g_probe_target = target.native_handle();
    g_probe_tid = target_tid;
    struct sigaction act {}, before{};
    act.sa_handler = probe_from_handler;
    act.sa_flags = SA_RESTART;
    sigemptyset(&act.sa_mask);
    ASSERT_EQ(sigaction(SIGALRM, &act, &before), 0);
    itimerval every_50us{{0, 50}, {0, 50}};
    ASSERT_EQ(setitimer(ITIMER_REAL, &every_50us, nullptr), 0);
    auto start = Clock::now();
    long made = 0;
    while (ms_since(start) < 500) {
        pthread_t t;
        ASSERT_EQ(pthread_create(&t, nullptr, [](void*) -> void* { return nullptr; }, nullptr), 0);
        ASSERT_EQ(pthread_join(t, nullptr), 0);
        ++made;
    }
    itimerval off{};
    setitimer(ITIMER_REAL, &off, nullptr);
    sigaction(SIGALRM, &before, nullptr);
    stop = true;
    target.join();
    EXPECT_GT(made, 10);
    EXPECT_GT(g_probes.load(), 10);
    EXPECT_EQ(g_probe_errors.load(), 0);
}
