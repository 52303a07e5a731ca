// The runtime's own lock: a test-and-test-and-set spinlock for short critical sections.
// The runtime never uses pthread mutexes, because libgreen interposes them: an internal lock
// must never re-enter our own hooks. Never held across a park or a switch, and nothing
// allocates while one is held (an allocator preloaded beside us may take locks that park);
// the sanitizer build counts the locks each thread holds so that a unit test can check it.
#pragma once

#include <atomic>

namespace green {

#ifdef GREEN_SANITIZE
inline __thread int t_spinlocks_held __attribute__((tls_model("initial-exec"))) = 0;
inline int spinlocks_held() { return t_spinlocks_held; }
#define GREEN_COUNT_SPINLOCK(delta) (t_spinlocks_held += (delta))
#else
#define GREEN_COUNT_SPINLOCK(delta) ((void)0)
#endif

class SpinLock {
public:
    void lock() {
        for (;;) {
            if (!locked_.exchange(true, std::memory_order_acquire)) {
                GREEN_COUNT_SPINLOCK(1);
                return;
            }
            while (locked_.load(std::memory_order_relaxed)) __builtin_ia32_pause();
        }
    }
    bool try_lock() {
        if (locked_.exchange(true, std::memory_order_acquire)) return false;
        GREEN_COUNT_SPINLOCK(1);
        return true;
    }
    void unlock() {
        if (locked_.load(std::memory_order_relaxed)) GREEN_COUNT_SPINLOCK(-1);
        locked_.store(false, std::memory_order_release);
    }

private:
    std::atomic<bool> locked_{false};
};

class SpinGuard {
public:
    explicit SpinGuard(SpinLock& lock) : lock_(lock) { lock_.lock(); }
    ~SpinGuard() { lock_.unlock(); }
    SpinGuard(const SpinGuard&) = delete;
    SpinGuard& operator=(const SpinGuard&) = delete;

private:
    SpinLock& lock_;
};

}  // namespace green
