// Time slices: a fiber that has run for a whole slice while others live gives up its carrier,
// as a thread is pre-empted. The monitor thread (monitor.cpp) notices it and sets the
// carrier's preempt_requested_; the fiber's next hooked call then switches it out
// (preempt_at_call). With the request comes a signal, whose handler switches a fiber that has
// made no hooked call meanwhile out where it stands (preempt_in_handler) when that is a safe
// point: its own code, not libc's, the loader's or the runtime's, and no frame of libc or the
// loader further up its stack (a callback such as dl_iterate_phdr's or a FILE's cookie
// functions runs with a lock of theirs held, which the other fibers would then wait for in
// the kernel). Never while the fiber holds a FILE lock (Fiber::file_locks).
// Elsewhere the request waits for the next hooked call or the next signal.
// The preempted fiber resumes inside the handler, which returns through sigreturn: registers,
// flags, FPU and SSE state and the signal mask come back as the kernel saved them.
#include <signal.h>
#include <ucontext.h>
#include <unwind.h>

#include "runtime/carrier.h"
#include "runtime/code_ranges.h"

namespace green {

namespace {

PreemptConfig g_preempt;

constexpr int kMaxFrames = 128;

struct Frames {
    const void* pcs[kMaxFrames];
    int count = 0;
};

_Unwind_Reason_Code collect(_Unwind_Context* context, void* arg) {
    auto* frames = static_cast<Frames*>(arg);
    if (frames->count == kMaxFrames) return _URC_END_OF_STACK;
    const auto pc = reinterpret_cast<const void*>(_Unwind_GetIP(context));
    if (!pc) return _URC_END_OF_STACK;  // past the outermost frame (_start, a thread's start)
    frames->pcs[frames->count++] = pc;
    return _URC_NO_REASON;
}

// True if, from the frame at `first` outwards, no frame of libc or the loader has a caller
// that is other code: the outermost frames (main's callers in libc, then _start) excepted.
bool no_callback_from_libc(const Frames& frames, int first) {
    bool libc_seen = false;
    for (int i = first; i < frames.count - 1; ++i) {
        // A return address may lie just past its call's function: look at the call itself.
        const void* pc = static_cast<const char*>(frames.pcs[i]) - (i > first ? 1 : 0);
        bool libc = code_kind(pc) == CodeKind::kLibc;
        if (libc_seen && !libc) return false;
        libc_seen |= libc;
    }
    return true;
}

// The stack check for a switch at a hooked call: the runtime's own frames come first.
bool safe_at_call() {
    Frames frames;
    _Unwind_Backtrace(collect, &frames);
    int first = 0;
    while (first < frames.count && code_kind(frames.pcs[first]) == CodeKind::kRuntime) ++first;
    return no_callback_from_libc(frames, first);
}

// The stack check in the handler: the handler's frames and the kernel's signal return come
// first, then the interrupted pc exactly. False if the unwinder did not get through to it.
bool safe_in_handler(const void* interrupted_pc) {
    Frames frames;
    _Unwind_Backtrace(collect, &frames);
    for (int i = 0; i < frames.count; ++i)
        if (frames.pcs[i] == interrupted_pc) return no_callback_from_libc(frames, i);
    return false;
}

// True while the handler runs on an alternate signal stack (the program's SIGURG action has
// SA_ONSTACK): it cannot be switched away from, the stack is the thread's, not the fiber's.
bool on_alternate_stack(const ucontext_t* uc) {
    const stack_t& alt = uc->uc_stack;
    if (alt.ss_flags & SS_DISABLE) return false;
    const char* here = static_cast<const char*>(__builtin_frame_address(0));
    const char* base = static_cast<const char*>(alt.ss_sp);
    return here >= base && here < base + alt.ss_size;
}

// What rules out a switch wherever it is asked for: the fiber is in the runtime (a hook, a
// runtime lock), in one of the program's signal handlers, or holds a FILE lock.
bool fiber_may_switch(const Fiber* self) {
    return self && self->state == FiberState::kRunning && self->hook_depth == 0 &&
           self->file_locks == 0 && !in_signal_handler() && spinlocks_held() == 0;
}

}  // namespace

void configure_preemption(const PreemptConfig& config) {
    g_preempt = config;
    if (config.slice_ns) note_code_ranges();
}

const PreemptConfig& preemption() {
    return g_preempt;
}

void preempt_at_call(Fiber* fiber) {
    // Where the fiber may not switch (a hooked call made by a handler), the request waits.
    if (fiber != current_fiber() || !fiber_may_switch(fiber)) return;
    Carrier* carrier = fiber->carrier;
    carrier->preempt_requested_.store(false, std::memory_order_relaxed);
    if (!safe_at_call()) {
        bump(carrier->counters().preempt_declined);
        return;
    }
    bump(carrier->counters().preempted_at_call);
    carrier->preempt();
}

void preempt_in_handler(const void* ucontext) {
    Carrier* carrier = Carrier::current();
    Fiber* self = current_fiber();
    // A request that comes late (the fiber already gave way at a call) is dropped.
    if (!carrier || !ucontext || !carrier->preempt_requested_.load(std::memory_order_relaxed))
        return;
    if (!fiber_may_switch(self)) return;
    const auto* uc = static_cast<const ucontext_t*>(ucontext);
    const auto* pc = reinterpret_cast<const void*>(uc->uc_mcontext.gregs[REG_RIP]);
    // The unwinder calls hooked functions (pthread_once): as a handler's, they never switch.
    ++t_signal_handler_depth;
    bool safe = code_kind(pc) == CodeKind::kProgram && !on_alternate_stack(uc) &&
                safe_in_handler(pc);
    --t_signal_handler_depth;
    if (!safe) {
        bump(carrier->counters().preempt_declined);
        return;
    }
    carrier->preempt_requested_.store(false, std::memory_order_relaxed);
    bump(carrier->counters().preempted_by_signal);
    // The kernel added the handler's mask: the switches set each fiber's own again, and
    // sigreturn then restores the interrupted one.
    carrier->handler_mask_unknown();
    carrier->preempt();
}

}  // namespace green
