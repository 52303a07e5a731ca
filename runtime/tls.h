// Per-fiber thread-local storage: each non-root fiber gets its own glibc thread descriptor
// (TCB) and static TLS block, made by ld.so, and the thread pointer (%fs) is switched around
// every switch into and out of it. The root fiber and the scheduler keep the carrier thread's
// own TCB. Never used in the sanitizer build (ASan keeps its per-thread state in TLS).
#pragma once

#include <cstddef>
#include <cstdint>

namespace green {

struct Stack;

namespace tls {

// True once this process gives fibers their own TLS (glibc 2.36 with ld.so's private
// symbols, not the sanitizer build). The first call decides, printing one line on stderr if
// per-fiber TLS is unavailable; call it on an OS thread's own TCB (Carrier::init does).
bool enabled();

inline char* thread_pointer() {
    char* tp;
    asm("mov %%fs:0, %0" : "=r"(tp));  // header.tcb: the descriptor's own address
    return tp;
}

// Points %fs at `tp`: wrfsbase where the kernel allows it, arch_prctl otherwise. Nothing
// between this and the context switch may touch thread-local storage.
void set_thread_pointer_slow(void* tp);
extern bool g_fsgsbase;
inline void set_thread_pointer(void* tp) {
    if (g_fsgsbase)
        asm volatile("wrfsbase %0" ::"r"(tp) : "memory");
    else
        set_thread_pointer_slow(tp);
}

// What a fiber's block copies from its carrier thread's: the descriptor and the words of
// its TLS that a fiber shares (malloc cache and arena, resolver state). Made on the carrier's
// own thread, after its first malloc, so that any thread can make blocks for that carrier
// while it runs (a descriptor read as it changes could be torn).
struct Template;
Template* make_template(char* thread_tp);
// In a forked child: the thread's new tid.
void template_after_fork(Template* t, char* thread_tp);
void free_template(Template* t);
// A new TCB and TLS block for a fiber running on `stack`, from a carrier's template; null if
// out of memory. The block's libc malloc cache and arena are the carrier's (see tls.cpp).
char* make_block(const Template* from, const Stack& stack);
// A block made for one carrier, whose fiber has not run yet, becomes one for another's.
void move_block(char* tp, const Template* to);
// On the fiber, first thing: what glibc's start_thread sets up in a new thread's TLS (the
// <ctype.h> tables' pointers; isspace() crashed without them).
void start_thread();
// On the fiber, at its end, before a joiner may wake: C++ thread_local destructors, in reverse
// order of construction (glibc's __call_tls_dtors), as a real thread runs them at its exit.
void run_destructors();
// After the fiber's last instruction (on the scheduler): frees the block.
void free_block(char* tp);

// The OS thread's own thread pointer in a fiber's block; null in the OS thread's own block.
extern __thread char* t_os_thread_tp __attribute__((tls_model("initial-exec")));

// The address of `var` (a variable of this thread's static TLS) in the block at `block_tp`.
template <typename T>
T* in_block(char* block_tp, T& var) {
    return reinterpret_cast<T*>(block_tp + (reinterpret_cast<char*>(&var) - thread_pointer()));
}

// `var` as the OS thread (not the running fiber) sees it: for libgreen's own state that
// means "this carrier thread" (signal counters, the accept guard's timer).
template <typename T>
T& per_thread(T& var) {
    char* os = t_os_thread_tp;
    return os ? *in_block(os, var) : var;
}

// In a forked child, on a fiber with its own block: glibc wrote the child's tid into the
// carrier thread's descriptor only; the fiber's copy gets it too.
void copy_tid(const char* from_tp, char* to_tp);

}  // namespace tls
}  // namespace green
