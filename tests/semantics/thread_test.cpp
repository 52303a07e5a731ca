// pthread creation, join/detach, identity, exit, thread-specific data and attributes.
#include <gtest/gtest.h>
#include <pthread.h>
#include <sched.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <vector>

#include "common.h"

using namespace sem;

namespace {

int os_threads() {
    std::ifstream status("/proc/self/status");
    std::string key;
    int n = -1;
    while (status >> key)
        if (key == "Threads:") status >> n;
    return n;
}

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
    // Under the shim: the carrier, plus the watchdog's thread when GREEN_MONITOR_MS asks for it.
    const char* monitor = getenv("GREEN_MONITOR_MS");
    int runtime_threads = 1 + (monitor && atoi(monitor) > 0 ? 1 : 0);
    EXPECT_EQ(os_threads(), preloaded ? runtime_threads : 2);
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
