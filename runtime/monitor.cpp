// The monitor thread: time slices (preempt.cpp) and the watchdog (GREEN_MONITOR_MS). One real
// OS thread, started with the second fiber (or at start for the watchdog), wakes a few times
// per slice and per threshold and looks at every carrier's switch counter; it sleeps while
// every carrier waits in the kernel. A carrier whose fiber has run a whole slice is asked to
// give way. One whose fiber has held the thread past the watchdog's threshold is reported
// once per incident, and at most once per second: the fiber, what it last parked on, and where
// the thread is: a backtrace taken on the carrier thread by a signal handler when it runs the
// program's own code (the monitor cannot unwind another thread's stack; inside libc, ld.so or
// libgreen the handler must not unwind either, and the pc alone is reported), or the system
// call the kernel says it waits in.
// The monitor only reads the running fiber's identity, and only while the carrier's switch
// counter shows that the fiber is still the one running (so it cannot have been freed).
#include <execinfo.h>
#include <linux/futex.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/ucontext.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <new>

#include "runtime/carrier.h"
#include "runtime/code_ranges.h"
#include "runtime/log.h"
#include "runtime/raw_syscall.h"
#include "runtime/symbolize.h"

namespace green {
namespace {

MonitorConfig g_config;
constexpr uint64_t kMinReportGapNs = 1000ull * 1000 * 1000;
constexpr int kMaxStalls = 64;
// Carriers whose epoll sets and signals the monitor keeps: as many as there may be.
constexpr int kMaxLooked = static_cast<int>(kMaxCarriers);

struct Stall {
    int index;
    int32_t tid;
    uint64_t held_ms;
    uint64_t suppressed;
    StallSample fiber;  // what the monitor read of the running fiber (no backtrace)
};

struct Scan {
    uint64_t now_ns;
    uint64_t threshold_ns;
    Stall stalls[kMaxStalls];
    int count;
};

// The program installed a seccomp filter (monitor_sandboxed), which may reach this thread:
// no signals, no epoll looks, no reports.
std::atomic<bool> g_sandboxed{false};

// Copies what identifies the fiber holding `c`. Under the registry's lock; the fiber cannot
// have been freed while the switch counter stayed the same, which is checked after the copy.
bool copy_running_fiber(Carrier* c, uint64_t switches, StallSample* out) {
    const Fiber* f = c->running_fiber();
    if (!f) return false;
    out->on_fiber = true;
    out->is_root = f->is_root;
    out->fiber_id = f->id;
    out->start = f->start;
    out->last_park = f->park_reason;
    memcpy(out->name, f->name, sizeof out->name);
    out->name[sizeof out->name - 1] = '\0';
    return c->counters().switches.load(std::memory_order_acquire) == switches;
}

void look_at(Carrier* c, void* context) {
    auto* scan = static_cast<Scan*>(context);
    Carrier::MonitorView& v = c->monitor_view_;
    uint64_t switches = c->counters().switches.load(std::memory_order_relaxed);
    // A fiber alone on its carrier holds no one up, as a thread alone on its core does not.
    const bool alone = c->counters().fibers_live.load(std::memory_order_relaxed) < 2;
    if (switches != v.switches || !c->running_fiber() || v.since_ns == 0 || alone) {  // 0: first
        v.switches = switches;
        v.since_ns = scan->now_ns;
        v.reported = false;  // a new incident may begin
        return;
    }
    uint64_t held = scan->now_ns - v.since_ns;
    if (v.reported || held < scan->threshold_ns || scan->count == kMaxStalls) return;
    Stall& stall = scan->stalls[scan->count];
    new (&stall.fiber) StallSample();
    if (!copy_running_fiber(c, switches, &stall.fiber)) return;  // it switched: no stall
    v.reported = true;
    if (v.last_report_ns && scan->now_ns - v.last_report_ns < kMinReportGapNs) {
        ++v.suppressed;
        return;
    }
    v.last_report_ns = scan->now_ns;
    stall.index = c->index();
    stall.tid = c->tid();
    stall.held_ms = held / 1000000;
    stall.suppressed = v.suppressed;
    ++scan->count;
    v.suppressed = 0;
}

// Frames of the handler itself (take_stall_sample, the trampoline, the kernel's signal
// return) come first: the interrupted code starts after glibc's __restore_rt, which has no
// dynamic symbol but a fixed body: mov $SYS_rt_sigreturn, %rax; syscall.
int first_program_frame(const StallSample& s) {
    static const unsigned char kRestoreRt[] = {0x48, 0xc7, 0xc0, 0x0f, 0x00,
                                               0x00, 0x00, 0x0f, 0x05};
    for (int i = 0; i < s.frames && i < 8; ++i)
        if (!memcmp(s.pcs[i], kRestoreRt, sizeof kRestoreRt)) return i + 1;
    return 0;
}

// Reads /proc/self/task/TID/NAME into buf; false if it cannot.
bool read_task_file(int32_t tid, const char* name, char* buf, size_t size) {
    char path[64];
    snprintf(path, sizeof path, "/proc/self/task/%d/%s", tid, name);
    int fd = static_cast<int>(syscall(SYS_openat, AT_FDCWD, path, O_RDONLY | O_CLOEXEC));
    if (fd < 0) return false;
    long n = syscall(SYS_read, fd, buf, size - 1);
    syscall(SYS_close, fd);
    if (n <= 0) return false;
    buf[n] = '\0';
    return true;
}

// The thread's scheduler state: 'R' running user code (or runnable), 'S'/'D' in a syscall.
char thread_state(int32_t tid) {
    char stat[512];
    if (!read_task_file(tid, "stat", stat, sizeof stat)) return '?';
    const char* p = strrchr(stat, ')');
    return p && p[1] == ' ' ? p[2] : '?';
}

// Asks the carrier thread for a sample. One that stopped in code where it could not unwind is
// asked again a little later, as long as the same fiber holds the thread (Go retries its
// preemption signal in the same way): a program loop that calls into libc is caught in its own
// code on one of the next tries; a thread that stays inside libc is reported by its pc.
bool take_sample(const Stall& stall, StallSample* sample) {
    constexpr int kTries = 20;
    bool taken = false;
    for (int attempt = 0; attempt < kTries; ++attempt) {
        if (attempt) {
            timespec wait{0, 2 * 1000 * 1000};
            clock_nanosleep(CLOCK_MONOTONIC, 0, &wait, nullptr);
            if (thread_state(stall.tid) != 'R') break;  // it moved on: keep the last sample
        }
        StallSample* next = sample;
        static StallSample retry;  // static: a late handler may still write into it
        if (attempt) next = &retry;
        new (next) StallSample();
        if (!g_config.sample_thread(stall.tid, next)) break;
        if (attempt && (next->on_fiber != sample->on_fiber || next->fiber_id != sample->fiber_id))
            break;  // another fiber runs now: the first sample stands for this stall
        if (attempt) {
            sample->pc = next->pc;
            sample->unsafe_pc = next->unsafe_pc;
            sample->frames = next->frames;
            memcpy(sample->pcs, next->pcs, sizeof sample->pcs);
        }
        taken = true;
        if (!sample->unsafe_pc) break;
    }
    return taken;
}

void report(Stall& stall) {
    // A thread in user code gets the sampling signal; one inside a system call does not (the
    // signal could make that call fail with EINTR): the kernel says where it waits instead.
    static StallSample sample;  // static: a late handler may still write into it
    new (&sample) StallSample();
    char state = thread_state(stall.tid);
    bool taken = state == 'R' && g_config.sample_thread && take_sample(stall, &sample);
    const StallSample& fiber = taken && sample.on_fiber ? sample : stall.fiber;
    char more[64] = "";
    if (stall.suppressed)
        snprintf(more, sizeof more, " (%llu earlier stalls not reported)",
                 static_cast<unsigned long long>(stall.suppressed));
    char start[256] = "main";
    if (!fiber.is_root)
        describe_code(reinterpret_cast<const void*>(fiber.start), start, sizeof start);
    char name[24] = "";
    if (fiber.name[0]) snprintf(name, sizeof name, " \"%s\"", fiber.name);
    log::write_line(
        "watchdog: fiber %llu%s (%s) has held carrier %d (thread %d) for %llu ms without a "
        "switch; %s%s%s",
        static_cast<unsigned long long>(fiber.fiber_id), name, start, stall.index, stall.tid,
        static_cast<unsigned long long>(stall.held_ms),
        fiber.last_park == ParkReason::kNone ? "it has not parked since it started"
                                             : "it last parked on ",
        fiber.last_park == ParkReason::kNone ? "" : park_reason_name(fiber.last_park), more);
    if (taken && sample.unsafe_pc) {
        char where[320];
        describe_code(sample.pc, where, sizeof where);
        const char* module = unsafe_module_of(sample.pc);
        if (!module) module = "?";
        if (const char* slash = strrchr(module, '/')) module = slash + 1;
        log::write_line(
            "  running in %s at %p %s; no backtrace (an unwinder started there "
            "could wait for a lock the thread holds)",
            module, sample.pc, where);
        return;
    }
    if (taken) {
        for (int i = first_program_frame(sample), n = 0; i < sample.frames; ++i, ++n) {
            char where[320];
            describe_code(sample.pcs[i], where, sizeof where);
            log::write_line("  #%d %p %s", n, sample.pcs[i], where);
        }
        return;
    }
    // /proc/PID/task/TID/syscall: "NR ARG1 .. ARG6 SP PC" while in a call, else "running".
    char call[256];
    long nr = -1;
    unsigned long pc = 0;
    if (state != 'R' && read_task_file(stall.tid, "syscall", call, sizeof call)) {
        nr = strtol(call, nullptr, 10);
        const char* last = strrchr(call, ' ');
        pc = last ? strtoul(last + 1, nullptr, 16) : 0;
    }
    if (nr < 0) {
        log::write_line("  (no backtrace: the thread did not answer the sampling signal)");
        return;
    }
    char where[320];
    describe_code(reinterpret_cast<const void*>(pc), where, sizeof where);
    log::write_line("  blocked in the %s system call (%ld), at %#lx %s", syscall_name(nr), nr, pc,
                    where);
}

// A second thread that shares the fd table costs every carrier: the kernel then takes and
// drops a reference on the file in each fd syscall (fdget's single-threaded shortcut is
// gone), 10% of a switch-bound loop as measured. So the monitor leaves the shared table for
// an empty one of its own, and reaches the program's stderr through a pidfd when it reports.
// A close() by the program in the instant between the two steps takes effect when we let go.
// The program's fd table as the monitor reaches it: through this pidfd once it has left it.
int g_program_pidfd = -1;
bool g_own_table = false;

void leave_fd_table() {
    // First make sure stderr can be had that way (seccomp or an LSM may refuse pidfd_getfd).
    int probe = static_cast<int>(syscall(SYS_pidfd_open, getpid(), 0));
    if (probe < 0) return;  // then we share the table, and the carriers are a little slower
    int fd = static_cast<int>(syscall(SYS_pidfd_getfd, probe, 2, 0));
    syscall(SYS_close, probe);
    if (fd < 0) return;
    syscall(SYS_close, fd);
    if (unshare(CLONE_FILES) != 0) return;
    g_own_table = true;
    syscall(SYS_close_range, 0, ~0U, 0);
    g_program_pidfd = static_cast<int>(syscall(SYS_pidfd_open, getpid(), 0));
    if (g_program_pidfd >= 0) log::use_program_stderr_via(g_program_pidfd);
}

// Whether a parked fiber of carrier `c` has a ready fd: its epoll set is readable (poll()
// on an epoll fd reports that it has events without taking them). The sets are copied into
// the monitor's own table (pidfd_getfd) and kept while their carrier lives.
struct EpollCopy {
    const Carrier* carrier;
    int index;   // the carrier's, against a new carrier at a freed one's address
    int source;  // the fd number in the program's table
    int fd;      // the copy in ours
    bool seen;   // at this look
};
EpollCopy g_epoll_copies[kMaxLooked];

EpollCopy* copy_of(const Carrier* c) {
    for (EpollCopy& e : g_epoll_copies)
        if (e.carrier == c && e.index == c->index()) return &e;
    return nullptr;
}

int epoll_set_of(const Carrier* c, int source) {
    if (!g_own_table) return source;
    EpollCopy* copy = copy_of(c);
    EpollCopy* unused = nullptr;
    for (EpollCopy& e : g_epoll_copies)
        if (!e.carrier && !unused) unused = &e;
    if (copy && copy->source != source) {
        raw_syscall(SYS_close, copy->fd);
        copy->fd = -1;
    }
    if (!copy) {
        if (!unused || g_program_pidfd < 0) return -1;
        copy = unused;
        *copy = EpollCopy{c, c->index(), source, -1, false};
    }
    if (copy->fd < 0) {
        copy->source = source;
        copy->fd = static_cast<int>(raw_syscall(SYS_pidfd_getfd, g_program_pidfd, source, 0));
    }
    copy->seen = true;
    return copy->fd;
}

bool has_ready_fds(const Carrier* c) {
    if (g_sandboxed.load(std::memory_order_relaxed)) return false;
    const int source = c->epoll_fd();
    const int fd = source < 0 ? -1 : epoll_set_of(c, source);
    if (fd < 0) return false;
    pollfd p{fd, POLLIN, 0};
    return raw_syscall(SYS_poll, reinterpret_cast<long>(&p), 1, 0) > 0;
}

// After a look: the copies of carriers that were not looked at (they are gone, or have no
// epoll set any more) are closed.
void forget_gone_carriers() {
    for (EpollCopy& e : g_epoll_copies) {
        if (e.carrier && !e.seen) {
            if (e.fd >= 0) raw_syscall(SYS_close, e.fd);
            e = EpollCopy{};
        }
        e.seen = false;
    }
}

// Set once the monitor has its own fd table (create_monitor_thread waits for it).
std::atomic<uint32_t> g_table_left{0};

// Time slices: a carrier whose fiber has run a whole slice without a switch, while another
// fiber lives (which a poll might find ready), is asked to give way at its next hooked call
// and, if the thread runs user code, by the preemption signal; again at every look until it
// does. Threads to signal are collected here, under the registry's lock, and signalled after.
struct SliceScan {
    uint64_t now_ns;
    uint64_t slice_ns;
    uint64_t look_ns;  // the monitor's period
    bool all_idle;
    int32_t to_signal[kMaxLooked];
    int count;
};

// Whether the fiber running on `c` blocks SIGURG. Read as copy_running_fiber reads: the
// fiber cannot have been freed while the carrier began no slice since `slices`.
bool blocks_sigurg(const Carrier* c, uint64_t slices) {
    const Fiber* f = c->running_fiber();
    if (!f) return true;
    const uint64_t mask = __atomic_load_n(&f->sigmask, __ATOMIC_RELAXED);
    return c->slices_begun() != slices || (mask & (uint64_t{1} << (SIGURG - 1))) != 0;
}

void look_for_slice(Carrier* c, void* context) {
    auto* scan = static_cast<SliceScan*>(context);
    if (!c->idle()) scan->all_idle = false;
    if (EpollCopy* copy = copy_of(c); copy && copy->source == c->epoll_fd()) copy->seen = true;
    Carrier::MonitorView& v = c->monitor_view_;
    uint64_t switches = c->slices_begun();
    if (switches != v.slice_switches || !c->running_fiber() || v.slice_since_ns == 0) {
        v.slice_switches = switches;
        v.slice_since_ns = scan->now_ns;
        return;
    }
    // The slice is over; or, while this fiber has run for a look at least, a parked one's
    // deadline has come or its fd is ready: that one then waits a look, not a whole slice, as
    // a thread woken by a timer or by I/O is soon scheduled (CPython's GIL waiters, which time
    // out every 5 ms, and its socket threads depend on it).
    const uint64_t ran = scan->now_ns - v.slice_since_ns;
    const bool waited = ran >= scan->look_ns;
    if (ran < scan->slice_ns && !(waited && (c->next_deadline() <= scan->now_ns ||
                                             has_ready_fds(c))))
        return;
    // Alone on its carrier, a fiber holds no one up; unless others wait to start there.
    if (c->counters().fibers_live.load(std::memory_order_relaxed) < 2 &&
        !c->remote_work_waiting())
        return;
    // The signal goes with the request: a fiber that makes a hooked call first gives way
    // there, and the handler then finds no request and returns at once. Not to a fiber that
    // blocks SIGURG: it would stay pending, for the program's sigpending and signalfd to see.
    c->preempt_requested_.store(true, std::memory_order_relaxed);
    if (preemption().by_signal && scan->count < kMaxLooked && !blocks_sigurg(c, switches))
        scan->to_signal[scan->count++] = c->tid();
}

// Stuck carriers: one whose fiber has held it for kStuckNs without a switch while its thread
// waits in the kernel (a call no hook reached: a raw system call, a lock glibc takes inside,
// a page fault on a network file) gets no new fibers, and those made for it and not started
// yet go to other carriers, until it switches again. A thread that computes is not stuck:
// time slices are for that, and it is looked at again only after another kStuckNs. Computing
// is told by the thread's CPU time, not only by its state at the look: a loop that makes
// system calls (mmap, a short write) is caught inside one at times, and a thread that waits
// for a CPU is 'R' and gets little CPU time.
constexpr uint64_t kStuckNs = 20 * 1000 * 1000;

// The CPU time of another thread of this process (glibc's pthread_getcpuclockid makes the same
// clock id from a thread id).
uint64_t thread_cpu_ns(int32_t tid) {
    const clockid_t clock = static_cast<clockid_t>((~static_cast<unsigned>(tid) << 3) | 6);
    timespec ts{};
    if (clock_gettime(clock, &ts) != 0) return 0;
    return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

struct StuckScan {
    uint64_t now_ns;
    int32_t to_wake[kMaxLooked];  // sleeping carriers that were handed fibers
    int count;
};

void look_for_stuck(Carrier* c, void* context) {
    auto* scan = static_cast<StuckScan*>(context);
    const uint64_t now = scan->now_ns;
    Carrier::MonitorView& v = c->monitor_view_;
    const uint64_t switches = c->counters().switches.load(std::memory_order_relaxed);
    if (switches != v.stuck_switches || !c->running_fiber() || c->idle() ||
        v.stuck_since_ns == 0) {
        v.stuck_switches = switches;
        v.stuck_since_ns = now;
        v.stuck_cpu_ns = thread_cpu_ns(c->tid());
        if (c->stuck()) c->set_stuck(false);
        return;
    }
    if (now - v.stuck_since_ns < kStuckNs) return;
    if (!c->stuck()) {
        const uint64_t cpu = thread_cpu_ns(c->tid());
        const bool computing = (cpu - v.stuck_cpu_ns) * 4 >= now - v.stuck_since_ns;
        if (carrier_count() < 2 || computing || thread_state(c->tid()) == 'R') {
            v.stuck_since_ns = now;  // not stuck (or no one to give its work): look later
            v.stuck_cpu_ns = cpu;
            return;
        }
        c->set_stuck(true);
        bump(c->counters().stuck);
        log::info("carrier %d (thread %d) is held by a call no hook reached; new threads go to "
                  "other carriers", c->index(), c->tid());
    }
    // Without signals (a sandbox) a sleeping carrier could not be woken: they stay.
    if (c->remote_work_waiting() && !g_sandboxed.load(std::memory_order_relaxed)) {
        if (size_t moved = c->hand_over_arrivals(scan->to_wake, &scan->count, kMaxLooked))
            bump(c->counters().handed_over, moved);
    }
}

// Every carrier waits in the kernel: nothing can stall or need pre-empting until one wakes,
// and the first that does wakes the monitor (carrier_busy_again). 0 awake, 1 asleep.
std::atomic<uint32_t> g_asleep{0};

bool all_idle(uint64_t now_ns) {
    SliceScan scan{};
    scan.now_ns = now_ns;
    scan.slice_ns = UINT64_MAX;
    scan.look_ns = UINT64_MAX;
    scan.all_idle = true;
    for_each_carrier(look_for_slice, &scan);
    return scan.all_idle;
}

void sleep_while_idle() {
    g_asleep.store(1, std::memory_order_seq_cst);
    if (!all_idle(monotonic_now_ns())) {  // one woke before it could see the flag
        g_asleep.store(0, std::memory_order_relaxed);
        return;
    }
    while (g_asleep.load(std::memory_order_acquire) == 1)
        raw_syscall(SYS_futex, reinterpret_cast<long>(&g_asleep), FUTEX_WAIT_PRIVATE, 1);
}

void* monitor_main(void*) {
    mark_internal_thread();
    if (!g_sandboxed.load(std::memory_order_relaxed)) leave_fd_table();  // pidfd_*, unshare
    g_table_left.store(1, std::memory_order_release);
    raw_syscall(SYS_futex, reinterpret_cast<long>(&g_table_left), FUTEX_WAKE_PRIVATE, 1);
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, nullptr);  // program signals go to program threads
    pthread_setname_np(pthread_self(), "green-monitor");
    const uint64_t threshold_ns = g_config.threshold_ms * 1000000;
    const uint64_t slice_ns = preemption().slice_ns;
    // Four looks per threshold: a stall is reported between 1 and 1.25 thresholds in; and per
    // slice: a fiber is asked to give way between 1 and 1.25 slices in.
    uint64_t period_ns = UINT64_MAX;
    if (threshold_ns) period_ns = std::max<uint64_t>(threshold_ns / 4, 1000000);
    if (slice_ns) period_ns = std::min(period_ns, std::max<uint64_t>(slice_ns / 4, 125000));
    const bool several = carriers_wanted() > 1;
    if (several) period_ns = std::min(period_ns, kStuckNs / 4);
    const timespec period = timespec_from_ns(period_ns);
    static Scan scan;
    static SliceScan slices;
    int idle_looks = 0;
    for (;;) {
        clock_nanosleep(CLOCK_MONOTONIC, 0, &period, nullptr);
        const uint64_t now = monotonic_now_ns();
        if (threshold_ns) {
            scan.now_ns = now;
            scan.threshold_ns = threshold_ns;
            scan.count = 0;
            for_each_carrier(look_at, &scan);
            // A sandboxed program's stderr is out of reach (pidfd_getfd may kill it).
            for (int i = 0; i < scan.count && !g_sandboxed.load(std::memory_order_relaxed); ++i)
                report(scan.stalls[i]);
        }
        slices.now_ns = now;
        slices.slice_ns = slice_ns ? slice_ns : UINT64_MAX;
        slices.look_ns = slice_ns ? period_ns : UINT64_MAX;
        slices.all_idle = true;
        slices.count = 0;
        for_each_carrier(look_for_slice, &slices);
        if (several) {
            static StuckScan stuck;
            stuck.now_ns = now;
            stuck.count = 0;
            for_each_carrier(look_for_stuck, &stuck);
            // A carrier that sleeps in epoll_wait and was handed fibers: the preemption signal
            // ends its wait (EINTR), and it takes them (its eventfd is not in our fd table).
            for (int i = 0; i < stuck.count && g_config.preempt_thread; ++i)
                g_config.preempt_thread(stuck.to_wake[i]);
        }
        forget_gone_carriers();
        for (int i = 0; i < slices.count && !g_sandboxed.load(std::memory_order_relaxed); ++i)
            if (thread_state(slices.to_signal[i]) == 'R')  // not in a system call: see report()
                g_config.preempt_thread(slices.to_signal[i]);
        idle_looks = slices.all_idle ? idle_looks + 1 : 0;
        if (idle_looks >= 2) {
            sleep_while_idle();
            idle_looks = 0;
        }
    }
    return nullptr;
}

bool create_monitor_thread() {
    pthread_t thread;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, 256 * 1024);
    // Born with every signal blocked: until monitor_main blocks them itself, a signal sent to
    // the process (one the program blocks, to take it with sigwait) could land here instead.
    sigset_t all, saved;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &saved);
    g_table_left.store(0);
    g_asleep.store(0);
    // In a forked child the copies are numbers in the parent monitor's table: forgotten.
    for (EpollCopy& e : g_epoll_copies) e = EpollCopy{};
    int rc = g_config.create_thread(&thread, &attr, monitor_main, nullptr);
    pthread_sigmask(SIG_SETMASK, &saved, nullptr);
    pthread_attr_destroy(&attr);
    // While the monitor shares the fd table, the kernel waits for an RCU grace period (10 to
    // 30 ms) each time the table grows, as it does for the runtime's first high fd: so the
    // program goes on once the monitor has a table of its own (a few tens of microseconds),
    // or after 100 ms whatever happens: the wait saves time, it must never cost a hang (a
    // forked child's monitor could be held up by what the fork left behind).
    const uint64_t give_up = deadline_after_ns(100 * 1000000ull);
    while (rc == 0 && g_table_left.load(std::memory_order_acquire) == 0) {
        const uint64_t now = monotonic_now_ns();
        if (now >= give_up) break;
        const timespec left = timespec_from_ns(give_up - now);
        raw_syscall(SYS_futex, reinterpret_cast<long>(&g_table_left), FUTEX_WAIT_PRIVATE, 0,
                    reinterpret_cast<long>(&left));
    }
    return rc == 0;
}

}  // namespace

void take_stall_sample(StallSample* sample, const void* ucontext) {
    // In the carrier's signal handler: nothing here may take a lock or allocate, and
    // backtrace() only runs where unsafe_module_of says no lock of the unwinder's is held.
    Fiber* fiber = current_fiber();
    sample->on_fiber = fiber != nullptr;
    if (fiber) {
        sample->is_root = fiber->is_root;
        sample->fiber_id = fiber->id;
        sample->start = fiber->start;
        sample->last_park = fiber->park_reason;
        memcpy(sample->name, fiber->name, sizeof sample->name);
    }
    const auto* uc = static_cast<const ucontext_t*>(ucontext);
    sample->pc = uc ? reinterpret_cast<const void*>(uc->uc_mcontext.gregs[REG_RIP]) : nullptr;
    sample->unsafe_pc = !uc || unsafe_module_of(sample->pc) != nullptr;
    sample->frames = sample->unsafe_pc ? 0 : backtrace(sample->pcs, 48);
    sample->taken.store(true, std::memory_order_release);
}

namespace {

std::atomic<bool> g_running{false};  // the monitor thread was started (in this process)

bool run_monitor() {
    if (g_running.exchange(true)) return true;
    if (create_monitor_thread()) return true;
    g_running.store(false);
    return false;
}

}  // namespace

bool start_monitor(const MonitorConfig& config) {
    g_config = config;
    // backtrace() loads libgcc_s on its first call: do that here, not in a signal handler;
    // then note where the code is that a handler must not unwind from (libgcc_s included).
    void* warm[2];
    backtrace(warm, 2);
    note_code_ranges();
    static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;
    pthread_once(&atfork_once, [] {
        pthread_atfork(nullptr, nullptr, [] {
            if (g_running.load() && !create_monitor_thread())
                log::warn("cannot restart the monitor thread in the child");
        });
    });
    if (!config.threshold_ms) return true;  // time slices start it at the first spawn
    return run_monitor();
}

void monitor_needed() {
    if ((!preemption().slice_ns && carriers_wanted() < 2) || !g_config.create_thread ||
        g_running.load(std::memory_order_relaxed))
        return;
    if (!run_monitor())
        log::warn("cannot start the monitor thread; fibers are not pre-empted and a stuck "
                  "carrier goes unnoticed");
}

void monitor_sandboxed() {
    g_sandboxed.store(true, std::memory_order_relaxed);
}

void carrier_busy_again() {
    if (g_asleep.load(std::memory_order_seq_cst) == 1 && g_asleep.exchange(0) == 1)
        raw_syscall(SYS_futex, reinterpret_cast<long>(&g_asleep), FUTEX_WAKE_PRIVATE, 1);
}

}  // namespace green
