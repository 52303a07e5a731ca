// A plain standard C++20 program that knows nothing of libgreen: many std::threads
// synchronising through the standard library. Modes:
//   pipeline  1,000 threads: producers -> bounded queue (mutex + condition_variable) ->
//             consumers, a std::counting_semaphore limiting how many work at once, and
//             std::atomic::wait/notify for the start signal. Prints the checksum.
//   stress N  10,000 threads (STRESS_THREADS) each make N passes over 16 mutex-protected
//             counters, handing tokens through 16 condition variables. Prints whether every
//             count is exact.
// Both print "threads N": the OS threads seen while every thread was alive.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <fstream>
#include <mutex>
#include <semaphore>
#include <string>
#include <thread>
#include <vector>

namespace {

int os_threads() {
    std::ifstream status("/proc/self/status");
    std::string key;
    int n = -1;
    while (status >> key)
        if (key == "Threads:") status >> n;
    return n;
}

class BoundedQueue {
public:
    explicit BoundedQueue(size_t capacity) : capacity_(capacity) {}
    void push(long v) {
        std::unique_lock<std::mutex> lock(m_);
        not_full_.wait(lock, [&] { return q_.size() < capacity_; });
        q_.push_back(v);
        not_empty_.notify_one();
    }
    bool pop(long* v) {
        std::unique_lock<std::mutex> lock(m_);
        not_empty_.wait(lock, [&] { return !q_.empty() || closed_; });
        if (q_.empty()) return false;
        *v = q_.front();
        q_.pop_front();
        not_full_.notify_one();
        return true;
    }
    void close() {
        std::lock_guard<std::mutex> lock(m_);
        closed_ = true;
        not_empty_.notify_all();
    }

private:
    std::mutex m_;
    std::condition_variable not_full_, not_empty_;
    std::deque<long> q_;
    size_t capacity_;
    bool closed_ = false;
};

int pipeline() {
    const int producers = 500, consumers = 500, items = 200;
    BoundedQueue queue(64);
    std::counting_semaphore<16> working(16);
    std::atomic<int> go{0};
    std::atomic<long> checksum{0};
    std::atomic<int> alive{0};
    std::atomic<int> peak_threads{0};

    std::vector<std::thread> threads;
    for (int p = 0; p < producers; ++p)
        threads.emplace_back([&, p] {
            ++alive;
            go.wait(0);
            for (int i = 0; i < items; ++i) queue.push(static_cast<long>(p) * items + i);
        });
    for (int c = 0; c < consumers; ++c)
        threads.emplace_back([&] {
            ++alive;
            go.wait(0);
            long v, local = 0;
            while (queue.pop(&v)) {
                working.acquire();
                local += v * 3 + 1;
                working.release();
            }
            checksum += local;
        });
    while (alive.load() < producers + consumers) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    peak_threads = os_threads();
    go.store(1);
    go.notify_all();
    for (int p = 0; p < producers; ++p) threads[p].join();
    queue.close();
    for (size_t i = producers; i < threads.size(); ++i) threads[i].join();

    long n = static_cast<long>(producers) * items;
    long expect = 3 * (n * (n - 1) / 2) + n;
    std::printf("checksum %ld expected %ld\nthreads %d\n", checksum.load(), expect, peak_threads.load());
    return checksum.load() == expect ? 0 : 1;
}

// Every thread does a bounded amount of work (a cooperative runtime cannot interrupt a thread
// that never blocks, so "run until told to stop" would never let main run). Critical sections
// yield while holding the lock, so that others pile up on it and park.
int stress(int iterations) {
    const char* env = std::getenv("STRESS_THREADS");
    const int threads_n = env ? std::atoi(env) : 10000;
    const int locks = 16;
    struct Slot {
        std::mutex m;
        std::condition_variable cv;
        long count = 0;
        long tokens = 0;  // handed from even threads to odd threads through cv
    };
    std::vector<Slot> slots(locks);
    std::atomic<long> increments{0}, given{0}, taken{0};
    std::atomic<int> alive{0};
    std::atomic<bool> go{false};
    std::vector<std::thread> threads;
    for (int t = 0; t < threads_n; ++t)
        threads.emplace_back([&, t] {
            ++alive;
            while (!go.load()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
            unsigned x = static_cast<unsigned>(t) * 2654435761u + 1;
            long mine = 0, gave = 0, took = 0;
            for (int i = 0; i < iterations; ++i) {
                x ^= x << 13, x ^= x >> 17, x ^= x << 5;
                Slot& s = slots[x % locks];
                std::unique_lock<std::mutex> lock(s.m);
                long before = s.count;
                if (i % 4 == 0) std::this_thread::yield();  // hold the lock across a switch
                s.count = before + 1;
                ++mine;
                if (t % 2 == 0) {
                    ++s.tokens;
                    ++gave;
                    s.cv.notify_one();
                } else if (s.cv.wait_for(lock, std::chrono::milliseconds(1),
                                         [&] { return s.tokens > 0; })) {
                    --s.tokens;
                    ++took;
                }
            }
            increments += mine;
            given += gave;
            taken += took;
        });
    while (alive.load() < threads_n) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    int peak = os_threads();
    go = true;
    for (auto& t : threads) t.join();
    long counted = 0, left = 0;
    for (auto& s : slots) {
        counted += s.count;
        left += s.tokens;
    }
    bool exact = counted == increments.load() && counted == static_cast<long>(threads_n) * iterations &&
                 given.load() == taken.load() + left;
    std::printf("increments %ld counted %ld given %ld taken %ld left %ld exact %d\nthreads %d\n",
                increments.load(), counted, given.load(), taken.load(), left, exact ? 1 : 0, peak);
    return exact ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc > 1 && !std::strcmp(argv[1], "pipeline")) return pipeline();
    if (argc > 1 && !std::strcmp(argv[1], "stress")) return stress(argc > 2 ? std::atoi(argv[2]) : 100);
    std::fprintf(stderr, "usage: cxx_threads pipeline | stress [passes]\n");
    return 2;
}
