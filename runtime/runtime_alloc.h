// Memory for the runtime's own objects that the scheduler frees (fibers, wake-up nodes, the
// stack pool's nodes): glibc's allocator, never the program's. A program that brings its own
// malloc (redis links jemalloc) guards it with a lock that a pre-empted fiber may hold; the
// scheduler, on that fiber's carrier, would wait for it for ever. The sanitizer builds keep
// the interposed allocator, whose bookkeeping they need.
#pragma once

#include <cstddef>
#include <new>

#if !defined(GREEN_SANITIZE) && !defined(GREEN_TSAN)
extern "C" void* __libc_malloc(size_t size);
extern "C" void __libc_free(void* p);
#endif

namespace green {

struct RuntimeAllocated {
#if !defined(GREEN_SANITIZE) && !defined(GREEN_TSAN)
    static void* operator new(size_t size) {
        if (void* p = __libc_malloc(size)) return p;
        throw std::bad_alloc();
    }
    static void operator delete(void* p) { __libc_free(p); }
#endif
};

}  // namespace green
