// The deadlock check (GREEN_DEADLOCK). It runs on a carrier's scheduler when its run queue is
// empty and every program thread on it waits, with no deadline, on something only another
// fiber or thread can end (a lock, a condition, a join): the carrier is then "quiet". When
// every carrier is quiet nothing can ever run again. A thread the runtime does not know (a
// SIGEV_THREAD timer, a thread made before us) could still end a wait, so the check needs the
// process's threads to be the carriers and the runtime's own. The last carrier to become quiet
// sees it: each one says so before it looks at the others. It reports once, then the process
// hangs, as a deadlocked threaded process does, or aborts with GREEN_DEADLOCK=abort.
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

namespace {

// Every other carrier quiet, with nothing queued for it, the same way twice: a carrier woken in
// between (its quiet flag goes first) or one quiet again since (its epoch) fails the second.
struct QuietLook {
    const Carrier* self;
    bool all;
    uint64_t epochs;
};

bool others_quiet(const Carrier* self, uint64_t* epochs) {
    QuietLook look{self, true, 0};
    for_each_carrier(
        [](Carrier* c, void* context) {
            auto* l = static_cast<QuietLook*>(context);
            if (c == l->self) return;
            l->epochs += c->quiet_epoch();
            if (!c->quiet() || c->remote_work_waiting()) l->all = false;
        },
        &look);
    *epochs = look.epochs;
    return look.all;
}

void list_waiters(Carrier* c, void*);

}  // namespace

void Carrier::check_deadlock() {
    auto mode = static_cast<DeadlockMode>(g_mode.load(std::memory_order_relaxed));
    if (mode == DeadlockMode::kOff) return;
    uint64_t switches = counters_.switches.load(std::memory_order_relaxed);
    if (switches == deadlock_checked_at_) return;  // nothing ran since the last check
    deadlock_checked_at_ = switches;
    uint64_t first = 0, second = 0;
    if (carrier_count() != 1 && !(others_quiet(this, &first) && others_quiet(this, &second) &&
                                  first == second))
        return;
    // A wake-up another carrier sent here before it became quiet: after the looks, so that
    // one sent before the other carrier's flag was read is seen.
    if (remote_work_waiting()) return;
    long threads = process_threads();
    if (threads < 0 || threads != static_cast<long>(carrier_count()) + internal_thread_count())
        return;

    log::write_line("deadlock: every thread of process %ld waits for another, and none can run:",
                    static_cast<long>(syscall(SYS_getpid)));
    for_each_carrier(list_waiters, nullptr);
    if (mode == DeadlockMode::kAbort) {
        log::write_line("deadlock: aborting (GREEN_DEADLOCK=abort)");
        abort();
    }
    log::write_line(
        "deadlock: the process hangs, as it would on threads (GREEN_DEADLOCK=abort ends it)");
}

namespace {

// Every carrier is quiet: their fiber lists hold still while the report reads them.
void list_waiters(Carrier* c, void*) {
    for (const Fiber* f = c->all_fibers(); f; f = f->next_on_carrier) {
        if (f->state != FiberState::kParked || f->park_reason == ParkReason::kExited) continue;
        char who[320], what[256] = "";
        describe_fiber(f, who, sizeof who);
        if (f->park_reason == ParkReason::kJoin && f->park_object) {
            describe_fiber(static_cast<const Fiber*>(f->park_object), what, sizeof what);
        } else if (f->park_object) {
            describe_data(f->park_object, what, sizeof what);
        }
        char holder[64] = "";
        const int32_t tid =
            g_holder_probe && f->park_object ? g_holder_probe(f->park_reason, f->park_object) : 0;
        const Fiber* held_by = nullptr;
        // Under the registry's lock already (for_each_carrier): walk it by its links.
        for (Carrier* other = first_carrier(); other && tid && !held_by;
             other = other->next_carrier_)
            for (const Fiber* h = other->all_fibers(); h && !held_by; h = h->next_on_carrier)
                if (h->tid == tid) held_by = h;
        if (held_by)
            snprintf(holder, sizeof holder, ", held by fiber %llu",
                     static_cast<unsigned long long>(held_by->id));
        log::write_line("  %s waits in %s%s%s%s", who, park_reason_name(f->park_reason),
                        what[0] ? " on " : "", what, holder);
    }
}

}  // namespace

}  // namespace green
