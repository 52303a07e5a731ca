// Fiber life cycle: spawn, entry, finish, join, detach, and pthread_exit's forced unwind.
// The registry of live handles lets hooks tell a fiber's pthread_t from a real thread's.
#include <boost/context/detail/fcontext.hpp>
#include <unwind.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <exception>

#include "runtime/carrier.h"
#include "runtime/log.h"
#include "runtime/parking_lot.h"
#include "runtime/spinlock.h"
#include "runtime/tls.h"

#ifdef GREEN_SANITIZE
#include <sanitizer/asan_interface.h>
#endif
#ifdef GREEN_TSAN
#include <sanitizer/tsan_interface.h>
#endif

namespace ctx = boost::context::detail;

namespace green {
namespace {

// Root fibers are numbered from 1 (carrier.cpp); spawned fibers from here, so ids never clash.
std::atomic<uint64_t> g_next_fiber_id{1000};
// Above the largest pid_max (2^22), below INT32_MAX; wraps after two billion fibers.
constexpr int32_t kFirstFiberTid = 1 << 22;
std::atomic<int32_t> g_next_fiber_tid{kFirstFiberTid};

int32_t next_fiber_tid() {
    int32_t tid = g_next_fiber_tid.fetch_add(1, std::memory_order_relaxed);
    if (tid > 0 && tid < INT32_MAX) return tid;
    g_next_fiber_tid.store(kFirstFiberTid + 1, std::memory_order_relaxed);
    return kFirstFiberTid;
}

// The registry of live fiber handles, so that hooks can tell a fiber's pthread_t from a real
// thread's without dereferencing it: a fixed hash table chained through the fibers
// themselves, so registering allocates nothing under the lock.
SpinLock g_registry_lock;
std::atomic<size_t> g_registered{0};  // no lock to ask while no fiber exists (GREEN_DISABLE)
constexpr size_t kRegistryBits = 12;
Fiber* g_registry[size_t{1} << kRegistryBits];

Fiber*& registry_chain(const void* handle) {
    uint64_t h = (reinterpret_cast<uintptr_t>(handle) >> 4) * 0x9E3779B97F4A7C15ull;
    return g_registry[h >> (64 - kRegistryBits)];
}

void register_fiber(Fiber* fiber) {
    SpinGuard hold(g_registry_lock);
    Fiber*& head = registry_chain(fiber);
    fiber->next_in_registry = head;
    __atomic_store_n(&head, fiber, __ATOMIC_RELEASE);  // see may_take_spinlocks()
    g_registered.fetch_add(1, std::memory_order_release);
}

void unregister_fiber(Fiber* fiber) {
    SpinGuard hold(g_registry_lock);
    for (Fiber** link = &registry_chain(fiber); *link; link = &(*link)->next_in_registry) {
        if (*link == fiber) {
            __atomic_store_n(link, fiber->next_in_registry, __ATOMIC_RELEASE);
            g_registered.fetch_sub(1, std::memory_order_release);
            return;
        }
    }
}

void fiber_entry(ctx::transfer_t transfer);

}  // namespace

bool is_fiber(const void* handle) {
    if (g_registered.load(std::memory_order_acquire) == 0) return false;
    auto find = [handle] {
        for (const Fiber* f = __atomic_load_n(&registry_chain(handle), __ATOMIC_ACQUIRE); f;
             f = __atomic_load_n(&f->next_in_registry, __ATOMIC_ACQUIRE))
            if (f == handle) return true;
        return false;
    };
    if (!may_take_spinlocks()) return find();  // a handler (pthread_kill) in the middle of a spawn
    SpinGuard hold(g_registry_lock);
    return find();
}

// For fork (fork.cpp): no other thread may be inside the registry when the process forks.
void lock_fiber_registry(bool lock) {
    if (lock)
        g_registry_lock.lock();
    else
        g_registry_lock.unlock();
}

int spawn(void* (*start)(void*), void* arg, const SpawnOptions& options, Fiber** out) {
    int err = 0;
    Fiber* fiber = place_new_fiber()->spawn_fiber(start, arg, options, &err);
    if (!fiber) return err;
    *out = fiber;
    return 0;
}

// On any thread: the fiber is made here, for this carrier (its TLS block copies this
// carrier's descriptor template), and handed to this carrier's thread to start.
Fiber* Carrier::spawn_fiber(void* (*start)(void*), void* arg, const SpawnOptions& options,
                            int* err) {
    Carrier* here = Carrier::current();
    if (here == this && !ensure_loop()) {
        *err = EAGAIN;
        return nullptr;
    }
    auto* fiber = new Fiber();
    if (options.user_stack_top) {
        char* top = static_cast<char*>(options.user_stack_top);
        fiber->stack = Stack{nullptr, 0, top - options.user_stack_size, top};
    } else {
        size_t size = options.stack_size ? options.stack_size : default_stack_size_;
        if (!StackPool::acquire(size, &fiber->stack)) {
            *err = EAGAIN;
            delete fiber;
            return nullptr;
        }
    }
    if (fiber_tls_ && !give_own_tls(fiber)) {
        if (fiber->stack.guarded()) StackPool::release(fiber->stack);
        *err = EAGAIN;
        delete fiber;
        return nullptr;
    }
    fiber->id = g_next_fiber_id.fetch_add(1, std::memory_order_relaxed);
    fiber->tid = next_fiber_tid();
    belong_here(fiber);
    fiber->start = start;
    fiber->arg = arg;
    if (options.detached) fiber->ending.store(Fiber::kDetached, std::memory_order_relaxed);
    // As pthread_create: the new thread starts with its creator's signal mask.
    Fiber* creator = current_fiber();
    fiber->sigmask = creator ? creator->sigmask : root_->sigmask;
#ifdef GREEN_SANITIZE
    fiber->asan_stack_bottom = fiber->stack.limit;
    fiber->asan_stack_size = fiber->stack.usable();
#endif
    fiber->context = ctx::make_fcontext(fiber->stack.top, fiber->stack.usable(), fiber_entry);
#ifdef GREEN_TSAN
    fiber->tsan_fiber = __tsan_create_fiber(0);
#endif
    register_fiber(fiber);
    placed_.fetch_add(1, std::memory_order_relaxed);
    note_program_thread_started();
    if (options.before_start) options.before_start(fiber);
    if (here == this)
        start_fiber(fiber);
    else
        send_arrival(fiber);
    return fiber;
}

// On this carrier's thread: a new fiber joins its fibers and its run queue.
void Carrier::start_fiber(Fiber* fiber) {
    count_mask(fiber->sigmask, 1);
    track(fiber);
    ++live_fibers_;
    fiber_started(counters_);
    push_runnable(fiber);
}

void Carrier::finish(Fiber* fiber) {
    // As glibc's start_thread: thread_local destructors, then thread-specific data's.
    if (fiber->tls) tls::run_destructors();
    if (auto hook = exit_hook()) hook(fiber);
    fiber->result = fiber->exit_value;
    fiber->state = FiberState::kDone;
    switch_to_scheduler(fiber);  // after_switch_back tells a joiner
    log::fatal("finished fiber %llu was resumed", static_cast<unsigned long long>(fiber->id));
}

// The handle's reference: the fiber leaves the registry (its pthread_t is no longer valid).
void release_fiber(Fiber* fiber) {
    unregister_fiber(fiber);
    drop_fiber_ref(fiber);
}

void drop_fiber_ref(Fiber* fiber) {
    if (fiber->refs.fetch_sub(1, std::memory_order_acq_rel) != 1) return;
#ifdef GREEN_TSAN
    __tsan_destroy_fiber(fiber->tsan_fiber);
#endif
    delete fiber;
}

namespace {

void fiber_entry(ctx::transfer_t transfer) {
    auto* fiber = static_cast<Fiber*>(transfer.data);
#ifdef GREEN_SANITIZE
    __sanitizer_finish_switch_fiber(nullptr, nullptr, nullptr);
#endif
    // Entered from Carrier::resume(): record the scheduler's context to switch back to.
    fiber->carrier->set_scheduler_context(transfer.fctx);
    if (fiber->tls) {
        tls::start_thread();
        fiber->carrier->tls_set_up(fiber);
    }
    // On a fiber of this carrier: the TLS blocks of its ended fibers (never on the scheduler,
    // which must not call a program's free: runtime_alloc.h).
    fiber->carrier->free_dead_tls();
    errno = 0;
    try {
        fiber->exit_value = fiber->start(fiber->arg);
    } catch (...) {
        // As with a real thread: an exception that escapes the start routine terminates.
        // (pthread_exit's forced unwind never reaches here: it stops one frame above.)
        std::terminate();
    }
    fiber->carrier->finish(fiber);
}

// pthread_exit: a forced unwind of the fiber's stack, as glibc does for a real thread, so
// that C++ destructors and catch(...) { throw; } blocks run. It stops at the entry frame.
_Unwind_Reason_Code exit_stop(int, _Unwind_Action actions, _Unwind_Exception_Class,
                              _Unwind_Exception*, _Unwind_Context* context, void* param) {
    auto* fiber = static_cast<Fiber*>(param);
    // The entry frame is the one whose code is fiber_entry (a CFA comparison is unreliable
    // at the bottom of an fcontext stack, which is entered by a jump, not a call).
    void* ip = reinterpret_cast<void*>(_Unwind_GetIP(context));
    bool at_entry = (actions & _UA_END_OF_STACK) ||
                    _Unwind_FindEnclosingFunction(ip) == reinterpret_cast<void*>(&fiber_entry);
    if (at_entry) fiber->carrier->finish(fiber);  // never returns
    return _URC_NO_REASON;
}

void exit_cleanup(_Unwind_Reason_Code, _Unwind_Exception*) {}

}  // namespace

void exit_current(void* value) {
    Fiber* self = current_fiber();
    if (self->is_root) Carrier::current()->root_exited();
    self->exit_value = value;
    static thread_local _Unwind_Exception exception;
    std::memset(&exception, 0, sizeof exception);
    exception.exception_class = 0x47524e4578697400ULL;  // "GRNExit\0"
    exception.exception_cleanup = exit_cleanup;
    _Unwind_ForcedUnwind(&exception, exit_stop, self);
    // Unwinding failed (no unwind info at all): end the fiber without running cleanups.
    self->carrier->finish(self);
}

int join(Fiber* target, void** result, uint64_t deadline_ns) {
    Fiber* self = current_fiber();
    if (target == self) return EDEADLK;
    if (target->detached()) return EINVAL;
    Fiber* joiner = nullptr;
    if (!target->joiner.compare_exchange_strong(joiner, self) && joiner != self) return EINVAL;
    if (self->joiner.load() == target) {  // A joins B joins A
        target->joiner.store(nullptr);
        return EDEADLK;
    }
    // The target may end on another carrier: its end is an unpark of its handle's address.
    auto running = [target] {
        return !(target->ending.load(std::memory_order_acquire) & Fiber::kFinished);
    };
    while (running()) {
        if (parking_lot::park(target, running, deadline_ns, ParkReason::kJoin) ==
                parking_lot::Parked::kTimedOut &&
            running()) {
            target->joiner.store(nullptr);
            return deadline_ns == 0 ? EBUSY : ETIMEDOUT;
        }
    }
    if (result) *result = target->result;
    release_fiber(target);
    return 0;
}

int detach(Fiber* target) {
    const uint8_t was = target->ending.fetch_or(Fiber::kDetached, std::memory_order_acq_rel);
    if (was & Fiber::kDetached) return EINVAL;
    if (was & Fiber::kFinished) release_fiber(target);
    return 0;
}

}  // namespace green
