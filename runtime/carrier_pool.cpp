// Several carriers (GREEN_CARRIERS): the threads that run fibers beside main's, and where a new
// fiber goes. Carrier 0 is the thread that adopted main; the others start at the first spawn,
// each an OS thread whose own context parks for good once its carrier serves (Carrier::serve).
// A fiber is placed once, when it is made, and never moves (design.md, "Carriers").
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/syscall.h>

#include <atomic>

#include "runtime/carrier.h"
#include "runtime/log.h"
#include "runtime/raw_syscall.h"

namespace green {
namespace {

CarrierPoolConfig g_config;
unsigned g_wanted = 1;  // carriers in all, main's included

// The carriers new fibers may go to. A slot is filled (or emptied, when its carrier retires)
// with one compare-and-swap, and the count covers every slot ever filled: readers need no lock
// and skip empty slots.
std::atomic<Carrier*> g_placeable[kMaxCarriers];
std::atomic<uint32_t> g_placeable_count{0};
std::atomic<bool> g_started{false};      // carriers_needed() ran in this process
std::atomic<uint32_t> g_rotor{0};        // where the search for the least loaded one begins

unsigned cpus_allowed() {
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) != 0) return 1;
    int n = CPU_COUNT(&set);
    return n > 0 ? static_cast<unsigned>(n) : 1;
}

bool is_placeable(const Carrier* carrier, uint32_t count) {
    for (uint32_t i = 0; i < count; ++i)
        if (g_placeable[i].load(std::memory_order_relaxed) == carrier) return true;
    return false;
}

// Into the first free slot (one a retired carrier left, or a new one).
void add_placeable(Carrier* carrier) {
    uint32_t slot = 0;
    for (;; ++slot) {
        if (slot >= kMaxCarriers) return;
        Carrier* expected = nullptr;
        if (g_placeable[slot].compare_exchange_strong(expected, carrier)) break;
    }
    uint32_t count = g_placeable_count.load(std::memory_order_relaxed);
    while (count < slot + 1 &&
           !g_placeable_count.compare_exchange_weak(count, slot + 1, std::memory_order_release)) {
    }
    raw_syscall(SYS_futex, reinterpret_cast<long>(&g_placeable_count), FUTEX_WAKE_PRIVATE,
                INT32_MAX);
}

void* carrier_main(void*) {
    if (!adopt_current_thread(g_config.runtime)) {
        log::warn("cannot start a carrier thread: %m");
        return nullptr;
    }
    Carrier* carrier = Carrier::current();
    if (!carrier->ensure_loop()) {
        log::warn("cannot make a carrier's event loop: %m");
        retire_current_thread();
        return nullptr;
    }
    carrier->serve(add_placeable);  // never returns
}

bool start_carrier_thread() {
    pthread_t thread;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, 256 * 1024);  // its own context only starts the carrier
    // Every signal blocked, for good, in its own context: while it runs no fiber it lets in
    // only what its fibers accept (Carrier::idle_mask), so a signal the program's threads
    // block, to take it with sigwait, never lands on an empty carrier.
    sigset_t all, saved;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &saved);
    int rc = g_config.create_thread(&thread, &attr, carrier_main, nullptr);
    pthread_sigmask(SIG_SETMASK, &saved, nullptr);
    pthread_attr_destroy(&attr);
    return rc == 0;
}

}  // namespace

void configure_carriers(const CarrierPoolConfig& config) {
    g_config = config;
    g_wanted = config.count ? config.count : cpus_allowed();
    if (g_wanted > kMaxCarriers) g_wanted = kMaxCarriers;
}

unsigned carriers_wanted() {
    return g_wanted;
}

void carriers_needed() {
    if (g_wanted <= 1 || !g_config.create_thread) return;
    Carrier* here = Carrier::current();
    if (!here) return;
    if (g_started.load(std::memory_order_relaxed) || g_started.exchange(true)) {
        // A carrier adopted after the pool started (a library's user, a test) joins it.
        if (!is_placeable(here, g_placeable_count.load(std::memory_order_acquire)) &&
            here->ensure_loop())
            add_placeable(here);
        return;
    }
    // This carrier's loop first: its runtime fds grow the fd table while no other thread
    // shares it (a shared table's growth waits for an RCU grace period).
    if (!here->ensure_loop()) return;
    add_placeable(here);
    unsigned started = 1;
    for (; started < g_wanted; ++started) {
        if (!start_carrier_thread()) {
            log::warn("cannot start carrier thread %u of %u (%m); running on %u", started + 1,
                      g_wanted, started);
            break;
        }
    }
    // New fibers should find the carriers ready (a loop each: tens of microseconds), but
    // never wait long for them: until one is ready the others take its share.
    const uint64_t give_up = deadline_after_ns(100 * 1000000ull);
    for (;;) {
        const uint32_t ready = g_placeable_count.load(std::memory_order_acquire);
        const uint64_t now = monotonic_now_ns();
        if (ready >= started || now >= give_up) break;
        const timespec left = timespec_from_ns(give_up - now);
        raw_syscall(SYS_futex, reinterpret_cast<long>(&g_placeable_count), FUTEX_WAIT_PRIVATE,
                    ready, reinterpret_cast<long>(&left));
    }
}

unsigned carriers_placeable() {
    const uint32_t n = g_placeable_count.load(std::memory_order_acquire);
    unsigned placeable = 0;
    for (uint32_t i = 0; i < n; ++i)
        if (g_placeable[i].load(std::memory_order_relaxed)) ++placeable;
    return placeable;
}

// The least loaded carrier that is not stuck, by threads placed and not yet ended (main
// counted on its carrier); a tie goes to the caller's carrier (what the two threads share
// stays in one cache), else round the carriers in turn. With one carrier, or from a carrier
// not on the list, the caller's.
Carrier* place_new_fiber() {
    Carrier* here = Carrier::current();
    const uint32_t n = g_placeable_count.load(std::memory_order_acquire);
    if (n <= 1 || (here && !is_placeable(here, n))) return here;
    const uint32_t start = g_rotor.fetch_add(1, std::memory_order_relaxed);
    Carrier* best = nullptr;
    uint32_t best_load = UINT32_MAX;
    for (uint32_t i = 0; i < n; ++i) {
        Carrier* c = g_placeable[(start + i) % n].load(std::memory_order_relaxed);
        if (!c || c->stuck()) continue;
        const uint32_t load = c->placed() + (c->serving() ? 0 : 1);  // main is a thread too
        if (load < best_load || (load == best_load && c == here)) {
            best = c;
            best_load = load;
        }
    }
    return best ? best : here;
}

// A carrier that retires (a thread that adopted itself and leaves) takes no more fibers.
void carrier_pool_remove(Carrier* carrier) {
    const uint32_t n = g_placeable_count.load(std::memory_order_acquire);
    for (uint32_t i = 0; i < n; ++i) {
        Carrier* expected = carrier;
        g_placeable[i].compare_exchange_strong(expected, nullptr);
    }
}

// In a forked child: the other carriers' threads are gone. The child starts its own at its
// first spawn, as it would if it had never run any.
void carrier_pool_after_fork() {
    for (auto& slot : g_placeable) slot.store(nullptr, std::memory_order_relaxed);
    g_placeable_count.store(0, std::memory_order_relaxed);
    g_started.store(false, std::memory_order_relaxed);
}

}  // namespace green
