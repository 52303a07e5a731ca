// A fiber: one green thread with its own stack, saved context and thread-local storage (a
// glibc thread descriptor of its own: runtime/tls.h). Fibers never migrate: once
// started, a fiber runs only on the carrier it was placed on (design.md, "Carriers").
// Owned by its carrier; only the carrier's thread may touch a fiber's mutable fields, except
// the atomics that say how it ends (join and detach may come from any carrier).
#pragma once


#include <atomic>
#include <cstddef>
#include <cstdint>

#include "runtime/runtime_alloc.h"
#include "runtime/stack_pool.h"

namespace green {

class Carrier;

enum class FiberState : uint8_t { kRunnable, kRunning, kParked, kDone };

// Why a fiber is parked; kept for diagnostics and statistics.
enum class ParkReason : uint8_t {
    kNone,
    kYield,
    kRead,
    kWrite,
    kAccept,
    kConnect,
    kPoll,
    kSleep,
    kJoin,
    kMutex,
    kCond,
    kRwlock,
    kSemaphore,
    kBarrier,
    kOnce,
    kFutex,
    kDns,       // a name lookup on the carrier's resolver
    kChild,     // waitpid and friends
    kSignal,    // pause, sigsuspend
    kExited,  // the root fiber after pthread_exit: never resumed
    kCount
};

const char* park_reason_name(ParkReason reason);

struct Fiber : RuntimeAllocated {
    uint64_t id = 0;
    // A 32-bit identity in the space of kernel thread ids, for lock owners (glibc stores a
    // TID in a mutex's __owner): the root fiber's is its real TID, others' lie above any TID.
    int32_t tid = 0;
    Carrier* carrier = nullptr;
    void* context = nullptr;  // boost fcontext_t of the suspended fiber
    Stack stack;
    FiberState state = FiberState::kRunnable;
    ParkReason park_reason = ParkReason::kNone;  // while running: the last park's reason
    const void* park_object = nullptr;  // the lock or fiber waited on, for diagnostics
    bool is_root = false;  // the carrier thread's original context (main() for the process)
    bool tls_ready = false;  // its TLS block has had glibc's per-thread set-up (fiber_entry)
    // How the fiber's end is shared with other carriers' threads (join, detach): kFinished
    // once its stack is released, kDetached once no one may join it. Whoever sets the second
    // of the two frees the handle.
    static constexpr uint8_t kFinished = 1, kDetached = 2;
    std::atomic<uint8_t> ending{0};
    bool detached() const { return ending.load(std::memory_order_acquire) & kDetached; }

    // The fiber's own thread pointer (glibc descriptor + static TLS), switched in by the
    // scheduler; null for the root fiber and when per-fiber TLS is off (tls::enabled()).
    char* tls = nullptr;
    // errno of a fiber that shares the carrier's TLS (the root fiber; every fiber when
    // per-fiber TLS is off), swapped on every switch.
    int saved_errno = 0;
    // > 0 while the fiber is inside one of our hooks: nested libc calls pass straight through.
    int hook_depth = 0;
    // FILE locks it holds (flockfile): it is not pre-empted meanwhile. glibc's are per OS
    // thread, so another fiber of the carrier would walk into the middle of its lines.
    int file_locks = 0;
    // The carrier's preemption request (Carrier::preempt_requested_), read by every hooked
    // call: there because the shim knows fibers, not carriers.
    const std::atomic<bool>* preempt_flag = nullptr;

    void* (*start)(void*) = nullptr;
    void* arg = nullptr;
    void* result = nullptr;
    std::atomic<Fiber*> joiner{nullptr};  // the fiber that joins this one (claimed by join())

    Fiber* next_runnable = nullptr;  // run-queue link
    uint64_t park_seq = 0;           // bumped by every park: tells a stale wake-up from a live one
    // References to the Fiber object: one for its handle (until joined, or ended detached)
    // and one per wake-up sent from another thread and not yet delivered. Freed at 0.
    std::atomic<uint32_t> refs{1};
    Fiber* next_on_carrier = nullptr;  // every started fiber of the carrier not yet ended
    Fiber* prev_on_carrier = nullptr;
    Fiber* next_in_registry = nullptr;  // the process-wide handle registry's chain (fiber.cpp)

    // A parked wait's deadline; while it is set the fiber sits in its carrier's timer heap at
    // timer_index (see Carrier::park_until).
    uint64_t deadline_ns = 0;
    size_t timer_index = SIZE_MAX;
    bool timed_out = false;

    // Signals: a park that a handler may interrupt (I/O and sleeps; not locks), and what
    // interrupted it: 0 nothing, 1 a handler without SA_RESTART, 2 one with SA_RESTART.
    bool interruptible = false;
    uint8_t interrupted = 0;
    // Handlers that ran while the fiber ran (all of them; those without SA_RESTART): a wait
    // that saw one run between its start and its park is interrupted by it (wait_fds).
    uint32_t handlers_ran = 0;
    uint32_t handlers_ran_no_restart = 0;
    // Their counts when the outermost hooked call began (shim/exports.cpp): the call has begun
    // there, so a handler that runs on the way to its wait (a forked child's first wait makes
    // the loop, pays copy-on-write faults) interrupts it, as the kernel's would.
    uint32_t handlers_at_call = 0;
    uint32_t handlers_no_restart_at_call = 0;
    // The fiber's signal mask, as the kernel's 64-bit sigset (bit n-1: signal n). While the
    // fiber runs it is the carrier thread's kernel mask (Carrier::resume); pthread_create
    // copies the creator's. `awaited`: the signals it waits for in sigwait, else 0.
    uint64_t sigmask = 0;
    uint64_t awaited = 0;

    void* exit_value = nullptr;  // pthread_exit's value, or what the start routine returned

    void* locals = nullptr;  // owned by hooks (thread-specific data); freed by the exit hook
    char name[16] = {};

#ifdef GREEN_TSAN
    void* tsan_fiber = nullptr;  // ThreadSanitizer's view of this context
#endif
#ifdef GREEN_SANITIZE
    void* asan_fake_stack = nullptr;
    const void* asan_stack_bottom = nullptr;
    size_t asan_stack_size = 0;
#endif
};

}  // namespace green
