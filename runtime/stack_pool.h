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
    // Keeps the mapping for reuse: the last few released per size keep their pages (warm, for
    // the next fiber); the others give them back to the kernel (MADV_DONTNEED).
    static void release(const Stack& stack);
    static size_t page_size();
};

}  // namespace green
