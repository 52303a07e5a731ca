// pthreads as fibers: creation, join/detach, identity, exit, thread-specific data, and the
// calls that take a pthread_t (a fiber's pthread_t is its Fiber*; passing one to glibc would
// crash it, so every such call is interposed). The root fiber (main) keeps its real
// pthread_t and glibc's own thread-specific data, so values set before our start survive.
// Thread ids: a fiber's is Fiber::tid (above pid_max); gettid() and the calls that send a
// signal to a thread id (tgkill, tkill) know it, other calls get the kernel's ESRCH.
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/syscall.h>
#include <threads.h>
#include <unistd.h>

#include "runtime/spinlock.h"
#include <new>
#include <vector>

#include "hooks/deadline.h"
#include "hooks/hooks.h"
#include "hooks/wait.h"
#include "runtime/fork.h"
#include "runtime/log.h"
#include "runtime/runtime.h"

// glibc clears this in its pthread_create; libstdc++ reads it to choose between the single-
// and multi-threaded versions of static-initialisation guards, shared_ptr reference counts
// and more. A fiber is a thread to the program, so creating one must clear it too.
extern "C" char __libc_single_threaded;

namespace green::hooks {
namespace {

Fiber* as_fiber(pthread_t thread) {
    void* handle = reinterpret_cast<void*>(thread);
    return is_fiber(handle) ? static_cast<Fiber*>(handle) : nullptr;
}

pthread_t handle_of(Fiber* fiber) { return reinterpret_cast<pthread_t>(fiber); }

// Whether `sig` sent to `fiber` should interrupt its call: only a parked fiber is in one. A
// fiber that runs or is about to run takes the signal as a running thread does, in its
// handler, and no one's call is interrupted (the handler runs on the carrier while the sender
// or another fiber runs, which the runtime then takes as theirs).
// A signal the target blocks interrupts nothing, on its carrier or from another one: it
// runs a handler for whichever fiber accepts it, or stays pending, and must not leave the
// target named for whichever handler runs next.
bool interrupts(const Fiber* fiber, int sig) {
    if (sig <= 0 || sig >= NSIG) return false;
    if (__atomic_load_n(&fiber->state, __ATOMIC_ACQUIRE) != FiberState::kParked) return false;
    const uint64_t mask = __atomic_load_n(&fiber->sigmask, __ATOMIC_RELAXED);
    return (mask & (uint64_t{1} << (sig - 1))) == 0;  // the target's own mask
}

// A non-root fiber: the one kind of "thread" whose identity and data we keep ourselves.
Fiber* spawned_fiber() {
    Fiber* self = current_fiber();
    return self && !self->is_root ? self : nullptr;
}

// Thread-specific data. Keys are glibc's own (so unmanaged threads and the root fiber keep
// using glibc's storage); each key has a sequence number so that a deleted and re-created key
// reads as NULL in every fiber, as glibc guarantees.
struct KeyInfo {
    uint64_t seq = 0;
    void (*destructor)(void*) = nullptr;
    bool in_use = false;
};
SpinLock g_keys_lock;  // held for a few instructions; never across a park
KeyInfo g_keys[PTHREAD_KEYS_MAX];

struct Slot {
    pthread_key_t key;
    uint64_t seq;
    void* value;
};
using Locals = std::vector<Slot>;

Slot* find_slot(Fiber* fiber, pthread_key_t key) {
    auto* locals = static_cast<Locals*>(fiber->locals);
    if (!locals) return nullptr;
    for (Slot& slot : *locals)
        if (slot.key == key) return &slot;
    return nullptr;
}

// At fiber exit, as glibc: call each destructor whose value is non-NULL, up to
// PTHREAD_DESTRUCTOR_ITERATIONS rounds while destructors keep setting values.
void run_destructors(Fiber* fiber) {
    for (int round = 0; round < PTHREAD_DESTRUCTOR_ITERATIONS && fiber->locals; ++round) {
        bool called = false;
        auto* locals = static_cast<Locals*>(fiber->locals);
        for (size_t i = 0; i < locals->size(); ++i) {
            Slot slot = (*locals)[i];
            void (*destructor)(void*) = nullptr;
            {
                SpinGuard hold(g_keys_lock);
                const KeyInfo& info = g_keys[slot.key];
                if (info.in_use && info.seq == slot.seq) destructor = info.destructor;
            }
            if (!slot.value || !destructor) continue;
            (*locals)[i].value = nullptr;
            destructor(slot.value);
            called = true;
            locals = static_cast<Locals*>(fiber->locals);
        }
        if (!called) break;
    }
    delete static_cast<Locals*>(fiber->locals);
    fiber->locals = nullptr;
}

// The thread ids of the live spawned fibers, for the calls that take one (tgkill, tkill): a
// chained hash on Fiber::tid whose nodes are allocated outside the lock. A fiber enters at
// pthread_create and leaves when it ends (the exit hook), as a kernel task leaves when its
// thread ends, joined or not.
struct TidEntry {
    int32_t tid;
    Fiber* fiber;  // the real thread that runs it is its carrier's (carrier_tid)
    TidEntry* next;
};
SpinLock g_tids_lock;  // never held across a park or an allocation
constexpr size_t kTidBuckets = 4096;
TidEntry* g_tids[kTidBuckets];

TidEntry*& tid_chain(int32_t tid) { return g_tids[static_cast<uint32_t>(tid) % kTidBuckets]; }

void add_tid(Fiber* fiber) {
    auto* entry = new (std::nothrow) TidEntry{fiber->tid, fiber, nullptr};
    if (!entry) return;  // out of memory: the id then reaches no one (ESRCH)
    SpinGuard hold(g_tids_lock);
    TidEntry*& head = tid_chain(entry->tid);
    entry->next = head;
    __atomic_store_n(&head, entry, __ATOMIC_RELEASE);  // see may_take_spinlocks()
}

void remove_tid(Fiber* fiber) {
    TidEntry* gone = nullptr;
    {
        SpinGuard hold(g_tids_lock);
        for (TidEntry** link = &tid_chain(fiber->tid); *link; link = &(*link)->next) {
            if ((*link)->fiber == fiber) {
                gone = *link;
                __atomic_store_n(link, gone->next, __ATOMIC_RELEASE);
                break;
            }
        }
    }
    delete gone;
}

// If `tid` names a live spawned fiber: its carrier's real tid, and (for a signal `sig` that
// should interrupt it) the fiber named as the one the signal is for, under the lock, so that
// the fiber cannot end and be freed in between. 0 when no fiber has that id.
int32_t fiber_carrier_tid(int32_t tid, int sig = 0) {
    auto find = [tid, sig] {
        for (TidEntry* e = __atomic_load_n(&tid_chain(tid), __ATOMIC_ACQUIRE); e;
             e = __atomic_load_n(&e->next, __ATOMIC_ACQUIRE)) {
            if (e->tid != tid) continue;
            if (interrupts(e->fiber, sig)) target_signal(e->fiber);
            return carrier_tid(e->fiber);
        }
        return 0;
    };
    if (!may_take_spinlocks()) return find();  // a handler's tgkill in the middle of a spawn
    SpinGuard hold(g_tids_lock);
    return find();
}

// In a fork's child the forking thread is the only one, and its id is the child's pid: the
// fiber that forked takes it (the root keeps its own, set by the runtime), and every other
// fiber id is gone, as the parent's other threads are.
void tids_after_fork() {
    for (TidEntry*& head : g_tids) {
        while (head) {
            TidEntry* next = head->next;
            delete head;
            head = next;
        }
    }
    Fiber* self = current_fiber();
    if (!self || self->is_root) return;
    self->tid = static_cast<int32_t>(getpid());
    // The root stays parked for good; its id is the carrier's for the fibers made from here.
    if (Fiber* root = root_fiber_of(real::get().pthread_self())) root->tid = self->tid;
}

void on_fiber_exit(Fiber* fiber) {
    run_destructors(fiber);
    remove_tid(fiber);
}

int join_fiber(Fiber* target, void** result, uint64_t deadline) {
    if (!on_fiber()) {
        log::warn("pthread_join of a fiber from a thread libgreen does not manage: EINVAL");
        return EINVAL;
    }
    return join(target, result, deadline);
}

// Signals to a fiber go to its carrier thread: the handler runs there, on whichever fiber
// is running (docs/compat.md). `send` makes the real call for an OS thread. A fiber that has
// ended (not yet joined) gets nothing, and the call returns `if_ended`, as glibc's do for a
// thread that has exited (pthread_kill: 0; pthread_sigqueue: ESRCH).
template <typename Send>
int signal_thread(pthread_t thread, int sig, int if_ended, Send send) {
    Fiber* fiber = as_fiber(thread);
    if (!fiber) fiber = root_fiber_of(thread);  // main keeps its real pthread_t
    if (!fiber) return send(thread);
    if (sig < 0 || sig >= NSIG) return EINVAL;
    if (__atomic_load_n(&fiber->state, __ATOMIC_ACQUIRE) == FiberState::kDone) return if_ended;
    if (sig == 0) return 0;
    if (interrupts(fiber, sig)) target_signal(fiber);  // its parked call is interrupted
    return send(carrier_os_thread(fiber));
}

// The kernel's check of a priority for a policy (sched_setscheduler: EINVAL), for the calls
// that are accepted and ignored on a fiber.
bool valid_priority(int policy, int priority) {
    int min = sched_get_priority_min(policy & ~SCHED_RESET_ON_FORK);
    int max = sched_get_priority_max(policy & ~SCHED_RESET_ON_FORK);
    return min >= 0 && max >= 0 && priority >= min && priority <= max;
}

}  // namespace

void install() {
    set_fiber_exit_hook(on_fiber_exit);
    set_lock_holder_probe(lock_holder);
    // The hooks' own tables must not be held by a thread that a fork leaves behind.
    add_fork_lock([] { g_keys_lock.lock(); }, [] { g_keys_lock.unlock(); });
    add_fork_lock(lock_signal_table, unlock_signal_table);
    add_fork_lock(lock_system_callers, unlock_system_callers);
    add_fork_lock([] { g_tids_lock.lock(); }, [] { g_tids_lock.unlock(); });
    add_fork_child_hook(tids_after_fork);
}

int pthread_create(pthread_t* thread, const pthread_attr_t* attr, void* (*start)(void*),
                   void* arg) {
    SpawnOptions options;
    if (attr) {
        int detach_state = PTHREAD_CREATE_JOINABLE;
        pthread_attr_getdetachstate(attr, &detach_state);
        options.detached = detach_state == PTHREAD_CREATE_DETACHED;
        size_t size = 0;
        pthread_attr_getstacksize(attr, &size);
        // glibc keeps the stack's top; getstack reports top - size, so an attr that was
        // never given a stack reports an address that adds up to NULL.
        void* stack_low = nullptr;
        size_t stack_size = 0;
        pthread_attr_getstack(attr, &stack_low, &stack_size);
        void* stack_top = static_cast<char*>(stack_low) + stack_size;
        if (stack_top) {
            options.user_stack_top = stack_top;
            options.user_stack_size = size;
        } else {
            // glibc reports its default for an attr whose size was never set; that default
            // then means "not set" and GREEN_STACK_SIZE applies.
            pthread_attr_t defaults;
            size_t glibc_default = 0;
            if (pthread_getattr_default_np(&defaults) == 0) {
                pthread_attr_getstacksize(&defaults, &glibc_default);
                pthread_attr_destroy(&defaults);
            }
            if (size != glibc_default) options.stack_size = size;
        }
    }
    // Two fibers: one can now starve the other. The monitor thread first, while glibc still
    // believes the process single-threaded: its pthread_create then installs the SIGSETXID
    // handler that setuid's round of signals needs once there is a second OS thread. Then the
    // other carriers, which the new fiber may be placed on.
    monitor_needed();
    carriers_needed();
    __libc_single_threaded = 0;
    Fiber* fiber = nullptr;
    options.before_start = add_tid;  // before it can end, on whichever carrier it runs
    int err = spawn(start, arg, options, &fiber);
    if (err) return err;
    *thread = handle_of(fiber);
    return 0;
}

int pthread_join(pthread_t thread, void** result) {
    if (Fiber* target = as_fiber(thread)) return join_fiber(target, result, kNoDeadline);
    return real::get().pthread_join(thread, result);
}

int pthread_tryjoin_np(pthread_t thread, void** result) {
    if (Fiber* target = as_fiber(thread)) return join_fiber(target, result, 0);
    return real::get().pthread_tryjoin_np(thread, result);
}

int pthread_timedjoin_np(pthread_t thread, void** result, const timespec* abstime) {
    if (Fiber* target = as_fiber(thread)) {
        if (!abstime) return join_fiber(target, result, kNoDeadline);
        uint64_t deadline = 0;
        int err = deadline_at(CLOCK_REALTIME, abstime, &deadline);
        return err ? err : join_fiber(target, result, deadline == 0 ? 1 : deadline);
    }
    return real::get().pthread_timedjoin_np(thread, result, abstime);
}

int pthread_clockjoin_np(pthread_t thread, void** result, clockid_t clock,
                         const timespec* abstime) {
    if (Fiber* target = as_fiber(thread)) {
        if (!abstime) return join_fiber(target, result, kNoDeadline);
        if (!waitable_clock(clock)) return EINVAL;
        uint64_t deadline = 0;
        int err = deadline_at(clock, abstime, &deadline);
        return err ? err : join_fiber(target, result, deadline == 0 ? 1 : deadline);
    }
    return real::get().pthread_clockjoin_np(thread, result, clock, abstime);
}

int pthread_detach(pthread_t thread) {
    if (Fiber* target = as_fiber(thread)) return detach(target);
    return real::get().pthread_detach(thread);
}

void pthread_exit(void* value) {
    Fiber* self = current_fiber();
    if (!self) real::get().pthread_exit(value);
    self->hook_depth = 0;  // destructors run by the unwind are program code again
    exit_current(value);
}

pthread_t pthread_self() {
    if (Fiber* self = spawned_fiber()) return handle_of(self);
    return real::get().pthread_self();
}

int pthread_equal(pthread_t a, pthread_t b) { return a == b; }

int pthread_key_create(pthread_key_t* key, void (*destructor)(void*)) {
    int err = real::get().pthread_key_create(key, destructor);
    if (err == 0 && *key < PTHREAD_KEYS_MAX) {
        SpinGuard hold(g_keys_lock);
        KeyInfo& info = g_keys[*key];
        ++info.seq;
        info.destructor = destructor;
        info.in_use = true;
    }
    return err;
}

int pthread_key_delete(pthread_key_t key) {
    int err = real::get().pthread_key_delete(key);
    if (err == 0 && key < PTHREAD_KEYS_MAX) {
        SpinGuard hold(g_keys_lock);
        KeyInfo& info = g_keys[key];
        ++info.seq;
        info.destructor = nullptr;
        info.in_use = false;
    }
    return err;
}

void* pthread_getspecific(pthread_key_t key) {
    Fiber* self = spawned_fiber();
    if (!self) return real::get().pthread_getspecific(key);
    if (key >= PTHREAD_KEYS_MAX) return nullptr;
    Slot* slot = find_slot(self, key);
    if (!slot) return nullptr;
    uint64_t seq = __atomic_load_n(&g_keys[key].seq, __ATOMIC_RELAXED);
    return slot->seq == seq ? slot->value : nullptr;
}

int pthread_setspecific(pthread_key_t key, const void* value) {
    Fiber* self = spawned_fiber();
    if (!self) return real::get().pthread_setspecific(key, value);
    if (key >= PTHREAD_KEYS_MAX) return EINVAL;
    uint64_t seq;
    {
        SpinGuard hold(g_keys_lock);
        if (!g_keys[key].in_use) return EINVAL;
        seq = g_keys[key].seq;
    }
    if (Slot* slot = find_slot(self, key)) {
        slot->seq = seq;
        slot->value = const_cast<void*>(value);
        return 0;
    }
    if (!self->locals) self->locals = new Locals();
    static_cast<Locals*>(self->locals)->push_back(Slot{key, seq, const_cast<void*>(value)});
    return 0;
}

int pthread_getattr_np(pthread_t thread, pthread_attr_t* attr) {
    Fiber* fiber = as_fiber(thread);
    if (!fiber) return real::get().pthread_getattr_np(thread, attr);
    int err = pthread_attr_init(attr);
    if (err) return err;
    pthread_attr_setstack(attr, fiber->stack.limit, fiber->stack.usable());
    pthread_attr_setguardsize(attr, fiber->stack.guarded() ? StackPool::page_size() : 0);
    pthread_attr_setdetachstate(attr, fiber->detached() ? PTHREAD_CREATE_DETACHED
                                                      : PTHREAD_CREATE_JOINABLE);
    return 0;
}

int pthread_setname_np(pthread_t thread, const char* name) {
    Fiber* fiber = as_fiber(thread);
    if (!fiber) return real::get().pthread_setname_np(thread, name);
    size_t len = strlen(name);
    if (len >= sizeof fiber->name) return ERANGE;
    memcpy(fiber->name, name, len + 1);
    return 0;
}

int pthread_getname_np(pthread_t thread, char* name, size_t len) {
    Fiber* fiber = as_fiber(thread);
    if (!fiber) return real::get().pthread_getname_np(thread, name, len);
    if (fiber->name[0] == '\0') {
        // Like a new thread: it bears the process's name until named.
        return real::get().pthread_getname_np(real::get().pthread_self(), name, len);
    }
    size_t need = strlen(fiber->name) + 1;
    if (len < need) return ERANGE;
    memcpy(name, fiber->name, need);
    return 0;
}

int pthread_kill(pthread_t thread, int sig) {
    return signal_thread(thread, sig, 0, [&](pthread_t os_thread) {
        return real::get().pthread_kill(os_thread, sig);
    });
}

// As pthread_kill, with the value for a SA_SIGINFO handler (si_code SI_QUEUE).
int pthread_sigqueue(pthread_t thread, int sig, const sigval value) {
    return signal_thread(thread, sig, ESRCH, [&](pthread_t os_thread) {
        return real::get().pthread_sigqueue(os_thread, sig, value);
    });
}

int pthread_cancel(pthread_t thread) {
    if (!as_fiber(thread)) return real::get().pthread_cancel(thread);
    log::warn("pthread_cancel of a fiber is not supported yet; the fiber keeps running");
    return ENOTSUP;
}

int pthread_getschedparam(pthread_t thread, int* policy, sched_param* param) {
    Fiber* fiber = as_fiber(thread);
    return real::get().pthread_getschedparam(fiber ? carrier_os_thread(fiber) : thread, policy,
                                             param);
}

// Fibers share their carrier's scheduling: a change is checked as the kernel would check it
// (EINVAL for a priority the policy does not take), then ignored.
int pthread_setschedparam(pthread_t thread, int policy, const sched_param* param) {
    if (!as_fiber(thread)) return real::get().pthread_setschedparam(thread, policy, param);
    if (!param) return EINVAL;
    return valid_priority(policy, param->sched_priority) ? 0 : EINVAL;
}

int pthread_setschedprio(pthread_t thread, int priority) {
    Fiber* fiber = as_fiber(thread);
    if (!fiber) return real::get().pthread_setschedprio(thread, priority);
    int policy = SCHED_OTHER;
    sched_param param{};
    int err = real::get().pthread_getschedparam(carrier_os_thread(fiber), &policy, &param);
    if (err) return err;
    return valid_priority(policy, priority) ? 0 : EINVAL;
}

int pthread_getaffinity_np(pthread_t thread, size_t size, cpu_set_t* set) {
    Fiber* fiber = as_fiber(thread);
    return real::get().pthread_getaffinity_np(fiber ? carrier_os_thread(fiber) : thread, size,
                                              set);
}

// Fibers run wherever their carrier runs: a set is accepted and ignored, unless it names
// none of the CPUs the carrier may use (the kernel's EINVAL).
int pthread_setaffinity_np(pthread_t thread, size_t size, const cpu_set_t* set) {
    Fiber* fiber = as_fiber(thread);
    if (!fiber) return real::get().pthread_setaffinity_np(thread, size, set);
    cpu_set_t allowed;
    CPU_ZERO(&allowed);
    int err =
        real::get().pthread_getaffinity_np(carrier_os_thread(fiber), sizeof allowed, &allowed);
    if (err) return err;
    size_t common = size < sizeof allowed ? size : sizeof allowed;
    cpu_set_t both;
    CPU_ZERO(&both);
    CPU_AND_S(common, &both, set, &allowed);
    return CPU_COUNT_S(common, &both) > 0 ? 0 : EINVAL;
}

// A live fiber's id names its carrier thread for affinity, as pthread_getaffinity_np and
// pthread_setaffinity_np do with its handle (runtimes pin their threads by native id).
int sched_getaffinity(pid_t pid, size_t size, cpu_set_t* set) {
    if (int32_t carrier_tid = pid > 0 ? fiber_carrier_tid(pid) : 0) pid = carrier_tid;
    return real::get().sched_getaffinity(pid, size, set);
}

int sched_setaffinity(pid_t pid, size_t size, const cpu_set_t* set) {
    int32_t carrier_tid = pid > 0 ? fiber_carrier_tid(pid) : 0;
    if (!carrier_tid) return real::get().sched_setaffinity(pid, size, set);
    cpu_set_t allowed;
    CPU_ZERO(&allowed);
    if (real::get().sched_getaffinity(carrier_tid, sizeof allowed, &allowed) != 0) return -1;
    cpu_set_t wanted;
    CPU_ZERO(&wanted);
    if (!copy_from_user(&wanted, set, size < sizeof wanted ? size : sizeof wanted)) return -1;
    size_t common = size < sizeof allowed ? size : sizeof allowed;
    cpu_set_t both;
    CPU_ZERO(&both);
    CPU_AND_S(common, &both, &wanted, &allowed);
    if (CPU_COUNT_S(common, &both) > 0) return 0;  // accepted and ignored, as for the handle
    errno = EINVAL;
    return -1;
}

// A timer that signals a thread by id (SIGEV_THREAD_ID, as profilers and per-thread timeouts
// use with gettid()) signals a fiber's carrier: its handler runs there, as for pthread_kill.
int timer_create(clockid_t clock, sigevent* event, timer_t* timer) {
    sigevent copy;
    if (event && copy_from_user(&copy, event, sizeof copy) &&
        copy.sigev_notify == SIGEV_THREAD_ID) {
        if (int32_t carrier_tid = fiber_carrier_tid(copy._sigev_un._tid)) {
            copy._sigev_un._tid = carrier_tid;
            return real::get().timer_create(clock, &copy, timer);
        }
    }
    return real::get().timer_create(clock, event, timer);
}

int pthread_getcpuclockid(pthread_t thread, clockid_t* clock) {
    Fiber* fiber = as_fiber(thread);
    return real::get().pthread_getcpuclockid(fiber ? carrier_os_thread(fiber) : thread, clock);
}

// C11 threads share pthread_t with pthreads (thrd_t is the same type in glibc): a fiber's
// handle may reach them, and glibc's versions would take it for its own descriptor.
int thrd_join(pthread_t thread, int* result) {
    Fiber* target = as_fiber(thread);
    if (!target) return real::get().thrd_join(thread, result);
    void* value = nullptr;
    if (join_fiber(target, &value, kNoDeadline) != 0) return thrd_error;
    if (result) *result = static_cast<int>(reinterpret_cast<intptr_t>(value));
    return thrd_success;
}

int thrd_detach(pthread_t thread) {
    Fiber* target = as_fiber(thread);
    if (!target) return real::get().thrd_detach(thread);
    return detach(target) == 0 ? thrd_success : thrd_error;
}

// glibc's reads the thread pointer, which is the carrier's on a fiber.
pthread_t thrd_current() {
    return hooks::pthread_self();
}

pid_t gettid() {
    return current_fiber()->tid;
}

// tgkill(2) and tkill(2) with a fiber's id: the signal goes to the fiber's carrier thread
// and interrupts the fiber's parked call, as pthread_kill. The kernel checks the rest (a bad
// signal: EINVAL; 0: nothing sent). An id that is no live fiber's is the kernel's to answer:
// a fiber id that has ended gets its ESRCH, as a thread id that has ended does.
int tgkill(pid_t tgid, pid_t tid, int sig) {
    if (tgid > 0 && tid > 0) {
        if (int32_t carrier_tid = fiber_carrier_tid(tid, tgid == own_pid() ? sig : 0)) {
            if (tgid != own_pid()) {
                errno = ESRCH;  // the id exists, in another thread group
                return -1;
            }
            return static_cast<int>(real::get().syscall(SYS_tgkill, tgid, carrier_tid, sig));
        }
    }
    return static_cast<int>(real::get().syscall(SYS_tgkill, tgid, tid, sig));
}

int tkill(pid_t tid, int sig) {
    if (tid > 0) {
        if (int32_t carrier_tid = fiber_carrier_tid(tid, sig))
            return static_cast<int>(real::get().syscall(SYS_tkill, carrier_tid, sig));
    }
    return static_cast<int>(real::get().syscall(SYS_tkill, tid, sig));
}

int sched_yield() {
    green::yield();
    return 0;
}

}  // namespace green::hooks
