// Fiber stacks: private mmap'd regions with one PROT_NONE guard page below, pooled per size.
// Owns nothing but memory; never called from a signal handler except stack_contains_guard().
#pragma once

#include <cstddef>
#include <cstdint>

namespace green {

struct Stack {
    char* base = nullptr;   // lowest address of the mapping (the guard page starts here)
    size_t mapped = 0;      // whole mapping, guard included; 0 for a stack the caller owns
    char* limit = nullptr;  // lowest usable address (just above the guard)
    char* top = nullptr;    // highest address; stacks grow down from here
    size_t usable() const { return static_cast<size_t>(top - limit); }
    bool guarded() const { return mapped != 0; }
};

class StackPool {
public:
    // A stack with at least `size` usable bytes (rounded up to whole pages). Returns false
    // with errno set (ENOMEM, or EAGAIN when the map count is exhausted) on failure.
    static bool acquire(size_t size, Stack* out);
    // Keeps the mapping for reuse, with its pages for a while (warm, for the next fiber: see
    // stack_pool.cpp); then the pages go back to the kernel (MADV_DONTNEED).
    static void release(const Stack& stack);
    // A carrier about to sleep gives back the pages of the stacks that stayed warm long
    // enough (so an idle process does not keep a burst's pages); returns when it should wake
    // to give back the next ones (UINT64_MAX: no stack is warm).
    static uint64_t scavenge_before_sleep(uint64_t now_ns);
    static size_t page_size();

private:
    static uint64_t scavenge(uint64_t now_ns, size_t max);
    static void give_back(void* pooled);
};

}  // namespace green
