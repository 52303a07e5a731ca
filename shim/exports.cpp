// The exported symbols of libgreen.so, one wrapper per hooks/symbols.def entry. A wrapper
// runs the cooperative hook only on a fiber and outside our own code; everywhere else
// (unmanaged threads, the scheduler, nested calls from inside a hook, GREEN_DISABLE=1)
// it calls the real function. This is the one place where that guard lives.
#include <cerrno>
#include <cstdarg>
#include <algorithm>
#include <cstdint>
#include <string_view>
#include <type_traits>

#include "hooks/hooks.h"
#include "runtime/runtime.h"

#define GREEN_EXPORT __attribute__((visibility("default")))

namespace {

// Marks the fiber as inside a hook for the duration of the call; nested libc calls made by
// the hook (or by the runtime under it) see a non-zero depth and pass straight through.
class InHook {
public:
    explicit InHook(green::Fiber* fiber) : fiber_(fiber) {
        if (fiber_->hook_depth++ == 0) {
            fiber_->handlers_at_call = fiber_->handlers_ran;
            fiber_->handlers_no_restart_at_call = fiber_->handlers_ran_no_restart;
        }
    }
    ~InHook() { --fiber_->hook_depth; }
    InHook(const InHook&) = delete;
    InHook& operator=(const InHook&) = delete;

private:
    green::Fiber* fiber_;
};

// A successful call leaves errno as it found it, as glibc's do; our hooks make internal
// attempts (EAGAIN, ENOTSOCK, an epoll_ctl's ENOENT) on the way to success. Every interposed
// call that sets errno reports failure as -1 (SIG_ERR for signal); the pthread calls return
// error numbers and never touch errno, so theirs is always kept.
template <typename T>
bool failed(T result) {
    if constexpr (std::is_pointer_v<T>)
        return result == reinterpret_cast<T>(intptr_t{-1});
    else
        return result == static_cast<T>(-1);
}

template <typename Call>
auto keep_errno_unless_failed(Call call) {
    const int saved = errno;
    if constexpr (std::is_void_v<decltype(call())>) {
        call();
        errno = saved;
    } else {
        auto result = call();
        if (!failed(result)) errno = saved;
        return result;
    }
}

// Off any fiber: counted for GREEN_STATS (unless the thread is a carrier's scheduler or the
// runtime's own), then the real function. errno is kept for the real call.
template <typename Fn>
Fn passed_through(Fn real) {
    int saved = errno;
    green::note_passthrough();
    errno = saved;
    return real;
}

// FILE locks are taken (+1) and released (-1): the fiber counts what it holds and is not
// pre-empted meanwhile (Fiber::file_locks). One released by another fiber than took it only
// leaves the taker's count high: it then gives way later, not sooner.
constexpr int lock_effect(std::string_view name) {
    if (name == "flockfile" || name == "ftrylockfile") return 1;
    if (name == "funlockfile") return -1;
    return 0;
}

template <int kEffect, typename Call>
auto counting_locks(Call call) {
    if constexpr (kEffect == 0) {
        return call();
    } else {
        green::Fiber* fiber = green::current_fiber();
        if constexpr (std::is_void_v<decltype(call())>) {
            call();
            if (fiber) fiber->file_locks = std::max(0, fiber->file_locks + kEffect);
        } else {
            auto result = call();
            if (fiber && result == 0) fiber->file_locks = std::max(0, fiber->file_locks + kEffect);
            return result;
        }
    }
}

// Every hooked call is a point where a fiber that has had its time slice gives way
// (runtime.h, preempt_point): the ones that never block too (a trylock, a zero-timeout poll,
// an EAGAIN), which is how a spin-wait lets the fiber it waits for run.
inline void preemption_point() {
    green::Fiber* fiber = green::current_fiber();
    if (fiber && fiber->hook_depth == 0) green::preempt_point(fiber);
}

}  // namespace

extern "C" {

#define GREEN_HOOK(ret, name, params, args)                                  \
    GREEN_EXPORT ret name params {                                           \
        green::Fiber* fiber = green::current_fiber();                        \
        if (!fiber) return passed_through(green::real::get().name) args;     \
        if (fiber->hook_depth != 0 || green::hooks::filtered_and_alone())    \
            return green::real::get().name args;                             \
        green::preempt_point(fiber);                                         \
        InHook in_hook(fiber);                                               \
        return keep_errno_unless_failed([&] { return green::hooks::name args; }); \
    }
#define GREEN_HOOK_OWN_ERRNO(ret, name, params, args)                        \
    GREEN_EXPORT ret name params {                                           \
        green::Fiber* fiber = green::current_fiber();                        \
        if (!fiber) return passed_through(green::real::get().name) args;     \
        if (fiber->hook_depth != 0) return green::real::get().name args;     \
        green::preempt_point(fiber);                                         \
        InHook in_hook(fiber);                                               \
        return green::hooks::name args;                                      \
    }
#define GREEN_HOOK_ALWAYS(ret, name, params, args)                                    \
    GREEN_EXPORT ret name params {                                                    \
        preemption_point();                                                           \
        auto call = [&] { return green::hooks::name args; };                          \
        return counting_locks<lock_effect(#name)>(                                    \
            [&] { return keep_errno_unless_failed(call); });                          \
    }
// A library's function (liburing): the real one may be absent (`absent` is then the result).
// Its results are -errno values and it leaves errno alone, so the hook's own attempts must not
// show in errno either.
#define GREEN_HOOK_LIB(ret, name, params, args, absent)                                  \
    GREEN_EXPORT ret name params {                                                      \
        green::Fiber* fiber = green::current_fiber();                                   \
        if (!fiber || fiber->hook_depth != 0 || green::hooks::filtered_and_alone()) {   \
            auto real = fiber ? green::real::lib::name() : passed_through(green::real::lib::name()); \
            return real ? real args : absent;                                           \
        }                                                                               \
        green::preempt_point(fiber);                                                    \
        InHook in_hook(fiber);                                                          \
        const int saved = errno;                                                        \
        ret result = green::hooks::name args;                                           \
        errno = saved;                                                                  \
        return result;                                                                  \
    }
#define GREEN_HOOK_MANUAL(ret, name, params)
#define GREEN_HOOK_NORETURN(name, params, args) \
    GREEN_EXPORT void name params {             \
        green::hooks::name args;                \
    }
// glibc declares pthread_setspecific's value with access(none), which makes GCC think that
// forwarding it reads uninitialised memory.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include "hooks/symbols.def"
#pragma GCC diagnostic pop

// syscall(2) is variadic: take the six argument registers the kernel ABI can use.
GREEN_EXPORT long syscall(long number, ...) {
    va_list ap;
    va_start(ap, number);
    long a[6];
    for (long& v : a) v = va_arg(ap, long);
    va_end(ap);
    preemption_point();
    return green::hooks::syscall6(number, a[0], a[1], a[2], a[3], a[4], a[5]);
}

// prctl(2) is variadic too: the four further arguments the kernel takes.
GREEN_EXPORT int prctl(int option, ...) {
    va_list ap;
    va_start(ap, option);
    unsigned long a[4];
    for (unsigned long& v : a) v = va_arg(ap, unsigned long);
    va_end(ap);
    return green::hooks::prctl5(option, a[0], a[1], a[2], a[3]);
}

// Lets a program or a test ask whether libgreen is loaded and running this thread on fibers.
GREEN_EXPORT int green_active(void) { return green::current_fiber() != nullptr; }

}  // extern "C"
