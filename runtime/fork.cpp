// Fork handling (see fork.h). The parking lot needs no lock at a fork: in the child every
// waiter it holds belongs to a fiber or thread that is gone, so the child empties it.
#include "runtime/fork.h"

#include <pthread.h>
#include <signal.h>

#include "runtime/carrier.h"
#include "runtime/log.h"
#include "runtime/parking_lot.h"
#include "runtime/spinlock.h"

namespace green {

// The runtime's own locks (their owners define these; each is a SpinLock).
void lock_fiber_registry(bool lock);
void lock_stack_pool(bool lock);
void lock_carrier_registry(bool lock);

namespace {

struct ForkLock {
    void (*lock)();
    void (*unlock)();
};
constexpr int kMaxLocks = 8;
ForkLock g_locks[kMaxLocks];
int g_lock_count = 0;
void (*g_child_hooks[kMaxLocks])();
int g_child_hook_count = 0;

__thread sigset_t t_saved_mask;

void unlock_all() {
    lock_stack_pool(false);
    lock_fiber_registry(false);
    lock_carrier_registry(false);
    for (int i = g_lock_count - 1; i >= 0; --i) g_locks[i].unlock();
}

}  // namespace

void add_fork_lock(void (*lock)(), void (*unlock)()) {
    if (g_lock_count == kMaxLocks) log::fatal("too many fork locks");
    g_locks[g_lock_count++] = ForkLock{lock, unlock};
}

void add_fork_child_hook(void (*hook)()) {
    if (g_child_hook_count == kMaxLocks) log::fatal("too many fork child hooks");
    g_child_hooks[g_child_hook_count++] = hook;
}

void fork_prepare() {
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &t_saved_mask);
    // The others' first: one of them may park (a fiber-aware mutex), which must never
    // happen while this thread holds a spinlock.
    for (int i = 0; i < g_lock_count; ++i) g_locks[i].lock();
    lock_carrier_registry(true);
    lock_fiber_registry(true);
    lock_stack_pool(true);
}

void fork_parent() {
    unlock_all();
    pthread_sigmask(SIG_SETMASK, &t_saved_mask, nullptr);
}

void fork_child(bool prepared) {
    unlock_all();  // without a prepare, held by threads that do not exist here
    t_spinlocks_held = 0;  // this thread forked from program code, holding none
    parking_lot::reset_after_fork();
    if (Carrier* carrier = Carrier::current()) carrier->reset_after_fork();
    for (int i = 0; i < g_child_hook_count; ++i) g_child_hooks[i]();
    if (prepared) pthread_sigmask(SIG_SETMASK, &t_saved_mask, nullptr);
}

void install_fork_handlers() {
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, [] {
        pthread_atfork(fork_prepare, fork_parent, [] { fork_child(true); });
    });
}

}  // namespace green
