// The runtime's own lock: a test-and-test-and-set spinlock for short critical sections.
// The runtime never uses pthread mutexes, because libgreen interposes them: an internal lock
// must never re-enter our own hooks. Never held across a park or a switch, and nothing
// allocates while one is held (an allocator preloaded beside us may take locks that park).
// Each thread (each fiber, with per-fiber TLS: a lock is never held across a switch) counts
// the locks it holds, so that a signal handler can tell whether the code it interrupted holds
// one (it must then not take a runtime lock: see parking_lot.cpp), and a unit test can check
// that nothing allocates under one.
#pragma once

#include <atomic>

namespace green {

// initial-exec: read in signal handlers, where __tls_get_addr (which may allocate) is not safe.
inline __thread int t_spinlocks_held __attribute__((tls_model("initial-exec"))) = 0;
inline int spinlocks_held() { return t_spinlocks_held; }
#define GREEN_COUNT_SPINLOCK(delta) (t_spinlocks_held += (delta))

// How many signal handlers run on this thread now (the trampoline in hooks/signal.cpp counts
// them). In a handler the interrupted code may be anywhere in the runtime: inside a spinlock's
// critical section, or half-way through changing its carrier's run queue. Runtime work asked
// of a handler (an async-signal-safe call such as sem_post) is then deferred to the carrier's
// loop instead of done in place.
inline __thread int t_signal_handler_depth __attribute__((tls_model("initial-exec"))) = 0;
inline bool in_signal_handler() { return t_signal_handler_depth != 0; }
// Whether this thread may take a runtime spinlock now: not from a signal handler that
// interrupted code holding one (it may be the very lock wanted). Readers that must answer
// anyway (is this a fiber's handle?) then read their lists without the lock: their writers
// publish every link with a release store, and only this thread frees their nodes.
inline bool may_take_spinlocks() { return !in_signal_handler() || t_spinlocks_held == 0; }

class SpinLock {
public:
    // The count covers the whole of the holding, from before the attempt to after the
    // release: a signal handler that interrupts this thread anywhere in between sees it (the
    // signal fences keep the compiler from moving the count across the lock word).
    void lock() {
        held(1);
        for (;;) {
            if (!locked_.exchange(true, std::memory_order_acquire)) return;
            while (locked_.load(std::memory_order_relaxed)) __builtin_ia32_pause();
        }
    }
    bool try_lock() {
        held(1);
        if (!locked_.exchange(true, std::memory_order_acquire)) return true;
        held(-1);
        return false;
    }
    void unlock() {
        const bool was_locked = locked_.load(std::memory_order_relaxed);
        locked_.store(false, std::memory_order_release);
        if (was_locked) held(-1);  // (a fork's child unlocks what dead threads held: no count)
    }

private:
    static void held(int delta) {
        std::atomic_signal_fence(std::memory_order_seq_cst);
        GREEN_COUNT_SPINLOCK(delta);
        std::atomic_signal_fence(std::memory_order_seq_cst);
    }
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
