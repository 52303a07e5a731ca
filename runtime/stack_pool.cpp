// Stack pool. Guard pages cost one VMA each, so vm.max_map_count (65530 by default) caps the
// number of live guarded stacks near 32k; see docs/design.md. Pools only a bounded number of
// stacks per size so that a burst of fibers does not pin address space forever.
#include "runtime/stack_pool.h"

#include "runtime/spinlock.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <vector>

#ifdef GREEN_SANITIZE
#include <sanitizer/asan_interface.h>
#endif

namespace green {
namespace {

constexpr size_t kMaxPooledPerSize = 1024;
// The last few released stacks keep their pages: a thread-per-request server starts the
// next fiber on the stack the last one left, with no madvise and no page faults. Bounded,
// as a stack keeps whatever its last fiber touched until it is reused or cleaned.
constexpr size_t kMaxWarmPerSize = 16;

struct Bucket {
    size_t usable;
    std::vector<Stack> free;  // pages given back (MADV_DONTNEED)
    std::vector<Stack> warm;  // pages kept
};

SpinLock g_lock;
std::vector<Bucket>* g_buckets = nullptr;  // never destroyed: fibers may outlive static dtors

size_t round_up(size_t n, size_t to) { return (n + to - 1) / to * to; }

}  // namespace

size_t StackPool::page_size() {
    static const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
    return page;
}

bool StackPool::acquire(size_t size, Stack* out) {
    const size_t page = page_size();
    const size_t usable = round_up(size, page);
    {
        SpinGuard hold(g_lock);
        if (g_buckets) {
            for (Bucket& b : *g_buckets) {
                if (b.usable != usable) continue;
                std::vector<Stack>& from = b.warm.empty() ? b.free : b.warm;
                if (from.empty()) break;
                *out = from.back();
                from.pop_back();
                return true;
            }
        }
    }
    const size_t mapped = usable + page;
    void* mem = mmap(nullptr, mapped, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
    if (mem == MAP_FAILED) {
        errno = EAGAIN;
        return false;
    }
    char* base = static_cast<char*>(mem);
    if (mprotect(base, page, PROT_NONE) != 0) {
        int saved = errno;
        munmap(mem, mapped);
        errno = saved == ENOMEM ? EAGAIN : saved;
        return false;
    }
    madvise(base + page, usable, MADV_NOHUGEPAGE);
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
    {
        SpinGuard hold(g_lock);
        if (!g_buckets) g_buckets = new std::vector<Bucket>();
        for (Bucket& b : *g_buckets) {
            if (b.usable == stack.usable() && b.warm.size() < kMaxWarmPerSize) {
                b.warm.push_back(stack);
                return;
            }
        }
    }
    madvise(stack.limit, stack.usable(), MADV_DONTNEED);
    SpinGuard hold(g_lock);
    for (Bucket& b : *g_buckets) {
        if (b.usable == stack.usable()) {
            if (b.free.size() < kMaxPooledPerSize) {
                b.free.push_back(stack);
                return;
            }
            munmap(stack.base, stack.mapped);
            return;
        }
    }
    g_buckets->push_back(Bucket{stack.usable(), {stack}, {}});
}

}  // namespace green
