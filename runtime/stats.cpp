// The registry of live carriers and the counters' dump (GREEN_STATS). The dump formats into a
// static buffer and leaves in one write, so it may run at exit or in a signal handler; it
// never allocates and never waits for a lock it could be interrupting.
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <new>

#include "runtime/carrier.h"
#include "runtime/log.h"
#include "runtime/spinlock.h"

namespace green {

// Every live carrier, linked through Carrier::next_carrier_. Named outside an anonymous
// namespace because scripts/gdb/green.py starts from it.
Carrier* g_carriers = nullptr;

namespace {

SpinLock g_lock;
int g_next_index = 0;
// Live carriers, readable without the lock (a close asks it, maybe in a signal handler).
std::atomic<size_t> g_carrier_count{0};
CarrierCounters g_retired;  // what carriers that have retired counted
std::atomic<uint64_t> g_passthrough{0};
std::atomic<bool> g_count_blocked{false};
std::atomic<bool> g_started{false};  // a carrier exists: hooked calls can be told apart
std::atomic<int> g_internal_threads{0};
std::atomic<bool> g_pool_started{false};
__thread bool t_internal __attribute__((tls_model("initial-exec"))) = false;

constexpr int kReasons = static_cast<int>(ParkReason::kCount);

// Plain numbers: a snapshot of one carrier's atomics, or a sum of them.
struct Snapshot {
    uint64_t created = 0, live = 0, peak = 0, switches = 0, blocked = 0;
    uint64_t parks[kReasons] = {};
    uint64_t preempted_at_call = 0, preempted_by_signal = 0, preempt_declined = 0;
    uint64_t stuck = 0, handed_over = 0;

    void add(const CarrierCounters& c) {
        auto get = [](const std::atomic<uint64_t>& v) { return v.load(std::memory_order_relaxed); };
        created += get(c.fibers_created);
        live += get(c.fibers_live);
        peak += get(c.fibers_peak);
        switches += get(c.switches);
        blocked += get(c.blocked_calls);
        for (int i = 0; i < kReasons; ++i) parks[i] += get(c.parks[i]);
        preempted_at_call += get(c.preempted_at_call);
        preempted_by_signal += get(c.preempted_by_signal);
        preempt_declined += get(c.preempt_declined);
        stuck += get(c.stuck);
        handed_over += get(c.handed_over);
    }
};

void fold_into_retired(const CarrierCounters& c) {
    auto add = [](std::atomic<uint64_t>& to, const std::atomic<uint64_t>& from) {
        to.fetch_add(from.load(std::memory_order_relaxed), std::memory_order_relaxed);
    };
    add(g_retired.fibers_created, c.fibers_created);
    add(g_retired.fibers_peak, c.fibers_peak);
    add(g_retired.switches, c.switches);
    add(g_retired.blocked_calls, c.blocked_calls);
    for (int i = 0; i < kReasons; ++i) add(g_retired.parks[i], c.parks[i]);
    add(g_retired.preempted_at_call, c.preempted_at_call);
    add(g_retired.preempted_by_signal, c.preempted_by_signal);
    add(g_retired.preempt_declined, c.preempt_declined);
    add(g_retired.stuck, c.stuck);
    add(g_retired.handed_over, c.handed_over);
}

// Appends formatted text to a fixed buffer; what does not fit is dropped whole lines first.
class Text {
  public:
    Text(char* buf, size_t cap) : buf_(buf), cap_(cap) {}
    void line(const char* fmt, ...) __attribute__((format(printf, 2, 3))) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(buf_ + len_, cap_ - len_, fmt, ap);
        va_end(ap);
        if (n < 0 || static_cast<size_t>(n) + 1 >= cap_ - len_) return;  // keep whole lines
        len_ += static_cast<size_t>(n);
        buf_[len_++] = '\n';
    }
    const char* data() const { return buf_; }
    size_t size() const { return len_; }

  private:
    char* buf_;
    size_t cap_;
    size_t len_ = 0;
};

void counters_lines(Text& out, const char* scope, const Snapshot& s) {
    out.line("green.stats.%s.fibers_created=%llu", scope, (unsigned long long)s.created);
    out.line("green.stats.%s.fibers_live=%llu", scope, (unsigned long long)s.live);
    out.line("green.stats.%s.fibers_peak=%llu", scope, (unsigned long long)s.peak);
    out.line("green.stats.%s.switches=%llu", scope, (unsigned long long)s.switches);
    for (int i = 1; i < kReasons; ++i) {
        if (static_cast<ParkReason>(i) == ParkReason::kExited) continue;
        out.line("green.stats.%s.parks.%s=%llu", scope,
                 park_reason_name(static_cast<ParkReason>(i)), (unsigned long long)s.parks[i]);
    }
    out.line("green.stats.%s.blocked_calls=%llu", scope, (unsigned long long)s.blocked);
    out.line("green.stats.%s.preempted_at_call=%llu", scope,
             (unsigned long long)s.preempted_at_call);
    out.line("green.stats.%s.preempted_by_signal=%llu", scope,
             (unsigned long long)s.preempted_by_signal);
    out.line("green.stats.%s.preempt_declined=%llu", scope, (unsigned long long)s.preempt_declined);
    out.line("green.stats.%s.stuck=%llu", scope, (unsigned long long)s.stuck);
    out.line("green.stats.%s.handed_over=%llu", scope, (unsigned long long)s.handed_over);
}

// The same totals in one sentence, for a person reading stderr.
void summary_line(Text& out, const Snapshot& s, const char* reason) {
    char parks[512] = "";
    size_t len = 0;
    for (int i = 1; i < kReasons; ++i) {
        if (!s.parks[i] || static_cast<ParkReason>(i) == ParkReason::kExited) continue;
        int n =
            snprintf(parks + len, sizeof parks - len, "%s%s %llu", len ? ", " : "",
                     park_reason_name(static_cast<ParkReason>(i)), (unsigned long long)s.parks[i]);
        if (n < 0 || static_cast<size_t>(n) >= sizeof parks - len) break;
        len += static_cast<size_t>(n);
    }
    out.line(
        "green: stats at %s: %llu fibers created (peak %llu live, %llu live now), %llu "
        "switches; parks: %s; %llu pre-emptions (%llu by signal); %llu calls held a carrier, "
        "%llu passed through off-fiber",
        reason, (unsigned long long)s.created, (unsigned long long)s.peak,
        (unsigned long long)s.live, (unsigned long long)s.switches, len ? parks : "none",
        (unsigned long long)(s.preempted_at_call + s.preempted_by_signal),
        (unsigned long long)s.preempted_by_signal, (unsigned long long)s.blocked,
        (unsigned long long)g_passthrough.load(std::memory_order_relaxed));
    if (s.stuck)
        out.line("green: a carrier was found held by a call no hook reached %llu times; %llu "
                 "fibers not yet started moved to other carriers",
                 (unsigned long long)s.stuck, (unsigned long long)s.handed_over);
}

std::atomic<bool> g_dumping{false};
char g_dump[64 * 1024];

}  // namespace

void register_carrier(Carrier* carrier) {
    {
        SpinGuard hold(g_lock);
        carrier->next_carrier_ = g_carriers;
        g_carriers = carrier;
        g_carrier_count.fetch_add(1, std::memory_order_release);
        g_started.store(true, std::memory_order_relaxed);
    }
    carrier_busy_again();  // a monitor asleep for want of busy carriers has one now
}

void unregister_carrier(Carrier* carrier) {
    SpinGuard hold(g_lock);
    for (Carrier** link = &g_carriers; *link; link = &(*link)->next_carrier_) {
        if (*link == carrier) {
            *link = carrier->next_carrier_;
            g_carrier_count.fetch_sub(1, std::memory_order_release);
            break;
        }
    }
    fold_into_retired(carrier->counters());
}

void registry_after_fork(Carrier* survivor) {
    new (&g_lock) SpinLock();  // another thread may have held it at the fork
    survivor->next_carrier_ = nullptr;
    g_carriers = survivor;
    g_carrier_count.store(1);
    g_internal_threads.store(0);  // only the forking thread is in the child
    g_pool_started.store(false);  // libuv remakes its pool in the child at the next work
}

// For fork (fork.cpp): no other thread may be inside the registry when the process forks.
void lock_carrier_registry(bool lock) {
    if (lock)
        g_lock.lock();
    else
        g_lock.unlock();
}

bool for_each_carrier(void (*visit)(Carrier*, void*), void* context, bool try_only) {
    if (try_only) {
        int tries = 1000;
        while (!g_lock.try_lock())
            if (--tries == 0) return false;
    } else {
        g_lock.lock();
    }
    for (Carrier* c = g_carriers; c; c = c->next_carrier_) visit(c, context);
    g_lock.unlock();
    return true;
}

Carrier* first_carrier() {
    return g_carriers;
}

size_t carrier_count() {
    return g_carrier_count.load(std::memory_order_acquire);
}

int next_carrier_index() {
    SpinGuard hold(g_lock);
    return g_next_index++;
}

RuntimeStats stats() {
    Snapshot total;
    total.add(g_retired);
    for_each_carrier([](Carrier* c, void* t) { static_cast<Snapshot*>(t)->add(c->counters()); },
                     &total);
    RuntimeStats s{};
    s.fibers_created = total.created;
    s.fibers_live = total.live;
    s.fibers_peak = total.peak;
    s.switches = total.switches;
    for (int i = 0; i < kReasons; ++i) s.parks[i] = total.parks[i];
    s.blocked_calls = total.blocked;
    s.passthrough_calls = g_passthrough.load(std::memory_order_relaxed);
    s.preempted_at_call = total.preempted_at_call;
    s.preempted_by_signal = total.preempted_by_signal;
    s.preempt_declined = total.preempt_declined;
    return s;
}

void write_stats(const char* path, const char* reason) {
    if (g_dumping.exchange(true, std::memory_order_acquire)) return;  // a dump is being written
    Text out(g_dump, sizeof g_dump);
    out.line("green.stats.pid=%ld", static_cast<long>(syscall(SYS_getpid)));
    out.line("green.stats.reason=%s", reason);
    struct Walk {
        Text* out;
        Snapshot total;
        size_t carriers;
    } walk{&out, {}, 0};
    walk.total.add(g_retired);
    bool complete = for_each_carrier(
        [](Carrier* c, void* context) {
            auto* w = static_cast<Walk*>(context);
            Snapshot one;
            one.add(c->counters());
            w->total.add(c->counters());
            ++w->carriers;
            char scope[32];
            snprintf(scope, sizeof scope, "carrier%d", c->index());
            w->out->line("green.stats.%s.tid=%d", scope, c->tid());
            counters_lines(*w->out, scope, one);
        },
        &walk, spinlocks_held() != 0);  // wait unless this thread may hold the lock
    out.line("green.stats.carriers=%zu", walk.carriers);
    summary_line(out, walk.total, reason);
    if (!complete) out.line("green.stats.incomplete=1");
    counters_lines(out, "total", walk.total);
    out.line("green.stats.total.passthrough_calls=%llu",
             (unsigned long long)g_passthrough.load(std::memory_order_relaxed));
    out.line("green.stats.end=1");
    log::write_raw(path, out.data(), out.size());
    g_dumping.store(false, std::memory_order_release);
}

void note_passthrough() {
    if (t_internal || Carrier::current() || !g_started.load(std::memory_order_relaxed))
        return;  // the runtime's own call, or no runtime yet
    g_passthrough.fetch_add(1, std::memory_order_relaxed);
}

size_t fibers_on_this_carrier() {
    Carrier* c = Carrier::current();
    return c ? c->counters().fibers_live.load(std::memory_order_relaxed) : 0;
}

void note_carrier_blocked() {
    if (Carrier* c = Carrier::current()) bump(c->counters().blocked_calls);
}

void set_count_blocked_calls(bool on) {
    g_count_blocked.store(on, std::memory_order_relaxed);
}
bool count_blocked_calls() {
    return g_count_blocked.load(std::memory_order_relaxed);
}
bool on_internal_thread() {
    return t_internal;
}

void mark_internal_thread() {
    t_internal = true;
    g_internal_threads.fetch_add(1, std::memory_order_relaxed);
}

// libuv starts its whole pool at the first queued work: UV_THREADPOOL_SIZE threads, 4 by
// default, clamped to 1..1024 (libuv 1.44's threadpool.c).
bool note_thread_pool_starting() {
    return !g_pool_started.exchange(true, std::memory_order_relaxed);
}

int internal_thread_count() {
    int pool = 0;
    if (g_pool_started.load(std::memory_order_relaxed)) {
        const char* v = getenv("UV_THREADPOOL_SIZE");
        pool = v ? atoi(v) : 4;
        if (pool < 1) pool = 1;
        if (pool > 1024) pool = 1024;
    }
    return g_internal_threads.load(std::memory_order_relaxed) + pool;
}

}  // namespace green
