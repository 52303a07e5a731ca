// The deadlock check (GREEN_DEADLOCK). It runs on the scheduler when the run queue is empty
// and every live fiber of the carrier waits, with no deadline, on something only another
// fiber or thread can end (a lock, a condition, a join): then nothing on this carrier can
// ever run again. A thread the runtime does not know (a SIGEV_THREAD timer, a thread made
// before us) could still end a wait, so the check needs the process's threads to be this
// carrier and the runtime's own. It reports once, then the carrier hangs, as a deadlocked
// threaded process does, or aborts with GREEN_DEADLOCK=abort.
#include <fcntl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <cstring>

#include "runtime/carrier.h"
#include "runtime/log.h"
#include "runtime/symbolize.h"

namespace green {
namespace {

std::atomic<int> g_mode{static_cast<int>(DeadlockMode::kReport)};
int32_t (*g_holder_probe)(ParkReason, const void*) = nullptr;

// Field 20 of /proc/self/stat. Raw syscalls: this runs on the scheduler.
long process_threads() {
    char buf[1024];
    int fd =
        static_cast<int>(syscall(SYS_openat, AT_FDCWD, "/proc/self/stat", O_RDONLY | O_CLOEXEC));
    if (fd < 0) return -1;
    long n = syscall(SYS_read, fd, buf, sizeof buf - 1);
    syscall(SYS_close, fd);
    if (n <= 0) return -1;
    buf[n] = '\0';
    const char* p = strrchr(buf, ')');  // the command name may hold spaces and parentheses
    for (int field = 2; p && field < 20; ++field) p = strchr(p + 1, ' ');
    return p ? strtol(p + 1, nullptr, 10) : -1;
}

void describe_fiber(const Fiber* f, char* out, size_t size) {
    char start[256] = "main";
    if (!f->is_root) describe_code(reinterpret_cast<const void*>(f->start), start, sizeof start);
    if (f->name[0])
        snprintf(out, size, "fiber %llu \"%s\" (%s)", static_cast<unsigned long long>(f->id),
                 f->name, start);
    else
        snprintf(out, size, "fiber %llu (%s)", static_cast<unsigned long long>(f->id), start);
}

}  // namespace

void set_deadlock_mode(DeadlockMode mode) {
    g_mode.store(static_cast<int>(mode));
}

void set_lock_holder_probe(int32_t (*probe)(ParkReason, const void*)) {
    g_holder_probe = probe;
}

void Carrier::check_deadlock() {
    auto mode = static_cast<DeadlockMode>(g_mode.load(std::memory_order_relaxed));
    if (mode == DeadlockMode::kOff) return;
    uint64_t switches = counters_.switches.load(std::memory_order_relaxed);
    if (switches == deadlock_checked_at_) return;  // nothing ran since the last check
    deadlock_checked_at_ = switches;
    if (carrier_count() != 1) return;  // a fiber of another carrier may release the lock
    long threads = process_threads();
    if (threads < 0 || threads != 1 + internal_thread_count()) return;

    log::write_line("deadlock: every thread of process %ld waits for another, and none can run:",
                    static_cast<long>(syscall(SYS_getpid)));
    for (const Fiber* f = all_fibers_; f; f = f->next_on_carrier) {
        if (f->state != FiberState::kParked || f->park_reason == ParkReason::kExited) continue;
        char who[320], what[256] = "";
        describe_fiber(f, who, sizeof who);
        if (f->park_reason == ParkReason::kJoin && f->park_object) {
            describe_fiber(static_cast<const Fiber*>(f->park_object), what, sizeof what);
        } else if (f->park_object) {
            describe_data(f->park_object, what, sizeof what);
        }
        char holder[64] = "";
        int32_t tid =
            g_holder_probe && f->park_object ? g_holder_probe(f->park_reason, f->park_object) : 0;
        for (const Fiber* h = all_fibers_; h && tid; h = h->next_on_carrier)
            if (h->tid == tid)
                snprintf(holder, sizeof holder, ", held by fiber %llu",
                         static_cast<unsigned long long>(h->id));
        log::write_line("  %s waits in %s%s%s%s", who, park_reason_name(f->park_reason),
                        what[0] ? " on " : "", what, holder);
    }
    if (mode == DeadlockMode::kAbort) {
        log::write_line("deadlock: aborting (GREEN_DEADLOCK=abort)");
        abort();
    }
    log::write_line(
        "deadlock: the process hangs, as it would on threads (GREEN_DEADLOCK=abort ends it)");
}

}  // namespace green
