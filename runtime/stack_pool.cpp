// Stack pool. A guard page made with mprotect is a mapping of its own, and splits the stack's
// from its neighbours': vm.max_map_count (65530 by default) then caps the live stacks near
// 32k. Where the kernel has lightweight guards (MADV_GUARD_INSTALL, Linux 6.13), the guard is
// a mark in the page table instead, adjacent stacks merge into a few mappings, and 100,000
// fibers fit; see docs/design.md. Pools only a bounded number of stacks per size so that a
// burst of fibers does not pin address space forever.
#include "runtime/stack_pool.h"

#include "runtime/intrusive_list.h"
#include "runtime/runtime.h"
#include "runtime/runtime_alloc.h"
#include "runtime/spinlock.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>

#ifdef GREEN_SANITIZE
#include <sanitizer/asan_interface.h>
#endif

namespace green {
namespace {

// Stacks kept for reuse per size, beyond the warm ones: mappings only (MAP_NORESERVE), so a
// burst of thousands of fibers that ends and comes again does not mmap and munmap each one.
constexpr size_t kMaxPooledPerSize = 16384;
// Released stacks keep their pages (warm) for a while: a thread-per-request server starts the
// next fiber on a stack the last ones left, with no madvise and no page faults. Giving pages
// back costs a TLB shootdown on every CPU that runs the process (an IPI each; a VM exit each
// in a VM), and touching them again a page fault each: per request, more than the request's
// own work on some VMs. A warm stack unused for kWarmKeepNs is cleaned (MADV_DONTNEED) by the
// next release or by a carrier about to sleep (scavenge_before_sleep), oldest first: after a burst the
// touched pages stay at most about that long. The count bound is a backstop.
constexpr size_t kMaxWarmPerSize = 65536;
constexpr uint64_t kWarmKeepNs = 1000ull * 1000 * 1000;
// A carrier about to sleep also cleans what falls due within this much, and sleeps until the
// next due one plus as much: a burst released over a second costs a few wake-ups, not one per
// release time on every carrier.
constexpr uint64_t kScavengeSlackNs = 250ull * 1000 * 1000;

// Pooled stacks wait in nodes allocated outside the lock: nothing allocates while it is held
// (an allocator preloaded beside us may itself take locks that park).
struct Node : RuntimeAllocated {
    Stack stack;
    Node* next;
    Node* prev;  // warm list only: toward the newer end
    uint64_t released_ns;
};

struct Bucket {
    size_t usable = 0;     // 0: an unused bucket
    Node* free = nullptr;  // pages given back (MADV_DONTNEED)
    size_t free_count = 0;
    IntrusiveList<Node> warm;  // pages kept: reused from the head (newest), cleaned from the tail
    size_t warm_count = 0;
};

// Stack sizes in use at once are few (the default, and what programs ask for); stacks of
// further sizes are not pooled.
constexpr size_t kMaxSizes = 32;
SpinLock g_lock;
Bucket g_buckets[kMaxSizes];

Bucket* bucket_for(size_t usable, bool make) {
    for (Bucket& b : g_buckets) {
        if (b.usable == usable) return &b;
        if (b.usable == 0) {
            if (!make) return nullptr;
            b.usable = usable;
            return &b;
        }
    }
    return nullptr;
}

Node* pop(Node*& list, size_t& count) {
    Node* node = list;
    list = node->next;
    --count;
    return node;
}

void push(Node*& list, size_t& count, Node* node) {
    node->next = list;
    list = node;
    ++count;
}

void push_warm(Bucket& b, Node* node) {
    b.warm.push_front(node);
    ++b.warm_count;
}

void unlink_warm(Bucket& b, Node* node) {
    b.warm.remove(node);
    --b.warm_count;
}

std::atomic<size_t> g_warm_total{0};  // warm stacks of every size, read without the lock

size_t round_up(size_t n, size_t to) { return (n + to - 1) / to * to; }

constexpr int kMadvGuardInstall = 102;  // <linux/mman.h> of Linux 6.13; glibc 2.36 lacks it
std::atomic<bool> g_light_guards{true};  // until the kernel says EINVAL

// Makes the first page of the mapping the stack's guard. A lightweight guard keeps the whole
// mapping one kind (the page-table mark faults like a PROT_NONE page: SIGSEGV at the address),
// so the hint against huge pages covers it all too: mappings that differ do not merge.
bool make_guard(char* base, size_t mapped) {
    const size_t page = StackPool::page_size();
    if (g_light_guards.load(std::memory_order_relaxed)) {
        if (madvise(base, page, kMadvGuardInstall) == 0) {
            madvise(base, mapped, MADV_NOHUGEPAGE);
            return true;
        }
        if (errno != EINVAL) return false;
        g_light_guards.store(false, std::memory_order_relaxed);  // an older kernel
    }
    if (mprotect(base, page, PROT_NONE) != 0) return false;
    madvise(base + page, mapped - page, MADV_NOHUGEPAGE);
    return true;
}

}  // namespace

size_t StackPool::page_size() {
    static const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
    return page;
}

bool StackPool::acquire(size_t size, Stack* out) {
    const size_t page = page_size();
    const size_t usable = round_up(size, page);
    Node* node = nullptr;
    {
        SpinGuard hold(g_lock);
        if (Bucket* b = bucket_for(usable, false)) {
            if (b->warm.head) {
                node = b->warm.head;
                unlink_warm(*b, node);
                g_warm_total.fetch_sub(1, std::memory_order_relaxed);
            } else if (b->free) {
                node = pop(b->free, b->free_count);
            }
        }
    }
    if (node) {
        *out = node->stack;
        delete node;
        return true;
    }
    const size_t mapped = usable + page;
    void* mem = mmap(nullptr, mapped, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
    if (mem == MAP_FAILED) {
        errno = EAGAIN;
        return false;
    }
    char* base = static_cast<char*>(mem);
    if (!make_guard(base, mapped)) {
        int saved = errno;
        munmap(mem, mapped);
        errno = saved == ENOMEM ? EAGAIN : saved;
        return false;
    }
    *out = Stack{base, mapped, base + page, base + mapped};
    return true;
}

void StackPool::release(const Stack& stack) {
    if (!stack.guarded()) return;  // the program's own memory (pthread_attr_setstack)
#ifdef GREEN_SANITIZE
    // The frames that lived here left their redzones poisoned; the stack's next owner must
    // not inherit them (ASan would report its own locals as out of bounds).
    ASAN_UNPOISON_MEMORY_REGION(stack.limit, stack.usable());
#endif
    const uint64_t now = monotonic_now_ns();
    auto* node = new Node{{}, stack, nullptr, nullptr, now};
    bool kept = false;
    {
        SpinGuard hold(g_lock);
        Bucket* b = bucket_for(stack.usable(), true);
        if (b && b->warm_count < kMaxWarmPerSize) {
            push_warm(*b, node);
            g_warm_total.fetch_add(1, std::memory_order_relaxed);
            kept = true;
        }
    }
    if (!kept) give_back(node);
    scavenge(now, 2);  // a release cleans what has waited too long, a little at a time
}

// Cleans warm stacks unused for kWarmKeepNs by `now`, oldest first, at most `max`; the
// madvise and munmap calls are made outside the lock. Returns when the oldest stack left warm
// falls due (UINT64_MAX: none is warm), read in the same pass under the lock.
uint64_t StackPool::scavenge(uint64_t now, size_t max) {
    if (g_warm_total.load(std::memory_order_relaxed) == 0) return UINT64_MAX;
    for (;;) {
        Node* batch[16];
        size_t n = 0;
        uint64_t next_due = UINT64_MAX;
        {
            SpinGuard hold(g_lock);
            for (Bucket& b : g_buckets) {
                if (b.usable == 0) break;
                // released_ns may be after `now` (another thread's release since it was read).
                while (n < 16 && n < max && b.warm.tail &&
                       b.warm.tail->released_ns + kWarmKeepNs <= now) {
                    Node* old = b.warm.tail;
                    unlink_warm(b, old);
                    batch[n++] = old;
                }
                if (b.warm.tail) next_due = std::min(next_due, b.warm.tail->released_ns + kWarmKeepNs);
            }
            g_warm_total.fetch_sub(n, std::memory_order_relaxed);
        }
        for (size_t i = 0; i < n; ++i) give_back(batch[i]);
        max -= n;
        if (n < 16 || max == 0) return next_due;
    }
}

uint64_t StackPool::scavenge_before_sleep(uint64_t now) {
    const uint64_t next_due = scavenge(now + kScavengeSlackNs, SIZE_MAX);
    return next_due == UINT64_MAX ? UINT64_MAX : next_due + kScavengeSlackNs;
}

// A stack's pages go back to the kernel; its mapping waits in the free list, or is unmapped.
void StackPool::give_back(void* pooled) {
    auto* node = static_cast<Node*>(pooled);
    const Stack stack = node->stack;
    madvise(stack.limit, stack.usable(), MADV_DONTNEED);
    {
        SpinGuard hold(g_lock);
        Bucket* b = bucket_for(stack.usable(), false);
        if (b && b->free_count < kMaxPooledPerSize) {
            push(b->free, b->free_count, node);
            return;
        }
    }
    munmap(stack.base, stack.mapped);
    delete node;
}

// For fork (fork.cpp): no other thread may be inside the pool when the process forks.
void lock_stack_pool(bool lock) {
    if (lock)
        g_lock.lock();
    else
        g_lock.unlock();
}

}  // namespace green
