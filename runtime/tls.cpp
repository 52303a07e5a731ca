// Per-fiber thread-local storage (see tls.h and docs/design.md, "Thread-local storage").
// Relies on glibc 2.36's private layout of struct pthread (x86-64): the version and every
// offset we can check against libc's debugger descriptors are checked once, and anything
// unexpected turns the feature off with one line on stderr (fibers then share their carrier's
// TLS, as before). Never called from a signal handler. Its dlvsym/dlsym calls are the only
// ones outside hooks/real.cpp: they find glibc internals, not functions libgreen interposes.
#include "runtime/tls.h"

#include <asm/prctl.h>
#include <dlfcn.h>
#include <gnu/libc-version.h>
#include <malloc.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/syscall.h>

#include <cstdlib>
#include <cstring>

#include "runtime/log.h"
#include "runtime/raw_syscall.h"
#include "runtime/stack_pool.h"

namespace green::tls {

bool g_fsgsbase = false;
__thread char* t_os_thread_tp __attribute__((tls_model("initial-exec"))) = nullptr;

namespace {

// struct pthread in glibc 2.36, x86-64 (nptl/descr.h). The first four are checked against
// libc's _thread_db_* descriptors and __rseq_offset; the others follow from the same struct
// (stackblock and tls_state were also found by experiment on this machine).
constexpr size_t kSizeofPthread = 2368;
constexpr size_t kListOffset = 704;           // list_t list (the thread lists' links)
constexpr size_t kTidOffset = 720;            // pid_t tid
constexpr size_t kRobustPrevOffset = 728;     // void* robust_prev
constexpr size_t kRobustHeadOffset = 736;     // struct robust_list_head (3 words)
constexpr size_t kCleanupOffset = 760;        // cleanup, cleanup_jmp_buf
constexpr size_t kCancelOffset = 776;         // int cancelhandling
constexpr size_t kSpecificFirstOffset = 784;  // specific_1stblock[32]
constexpr size_t kSpecificOffset = 1296;      // specific[32]
constexpr size_t kSpecificUsedOffset = 1552;  // bool specific_used
constexpr size_t kStackBlockOffset = 1680;    // void* stackblock, size_t stackblock_size
constexpr size_t kTlsStateOffset = 2304;      // strsignal_buf, strerror_l_buf (malloc'd)
constexpr size_t kRseqOffset = 2336;          // struct rseq: cpu_id_start, cpu_id, ...
constexpr size_t kMultipleThreadsOffset = 24;  // tcbhead_t.multiple_threads
constexpr size_t kGscopeFlagOffset = 28;      // tcbhead_t.gscope_flag

using AllocateTls = void* (*)(void*);
using DeallocateTls = void (*)(void*, bool);
using GetStaticInfo = void (*)(size_t*, size_t*);
using CallTlsDtors = void (*)();
using CtypeInit = void (*)();

AllocateTls g_allocate = nullptr;
DeallocateTls g_deallocate = nullptr;
CallTlsDtors g_call_tls_dtors = nullptr;
CtypeInit g_ctype_init = nullptr;
ptrdiff_t g_resp_slot = 0;  // libc's __resp (the resolver state in use), from the thread pointer
size_t g_static_size = 0;   // the TLS below a descriptor (static TLS minus the descriptor)

// libc's `tcache` and `thread_arena` slots, as offsets from the thread pointer (0: unknown).
ptrdiff_t g_tcache_slot = 0;
ptrdiff_t g_arena_slot = 0;

template <typename T>
T& at(char* base, ptrdiff_t offset) {
    return *reinterpret_cast<T*>(base + offset);
}
template <typename T>
const T& at(const char* base, ptrdiff_t offset) {
    return *reinterpret_cast<const T*>(base + offset);
}

void* private_symbol(const char* name) {
    return dlvsym(RTLD_DEFAULT, name, "GLIBC_PRIVATE");
}

// A libc debugger descriptor (nptl_db): {size in bits, count, offset}.
bool descriptor_offset_is(const char* name, uint32_t offset) {
    auto* d = static_cast<const uint32_t*>(private_symbol(name));
    return d && d[2] == offset;
}

[[maybe_unused]] const char* check_glibc() {
    if (std::strcmp(gnu_get_libc_version(), "2.36") != 0) return "glibc is not 2.36";
    g_allocate = reinterpret_cast<AllocateTls>(private_symbol("_dl_allocate_tls"));
    g_deallocate = reinterpret_cast<DeallocateTls>(private_symbol("_dl_deallocate_tls"));
    auto get_static = reinterpret_cast<GetStaticInfo>(private_symbol("_dl_get_tls_static_info"));
    g_call_tls_dtors = reinterpret_cast<CallTlsDtors>(private_symbol("__call_tls_dtors"));
    g_ctype_init = reinterpret_cast<CtypeInit>(private_symbol("__ctype_init"));
    auto* resp = static_cast<char*>(private_symbol("__resp"));  // this thread's copy
    if (!g_allocate || !g_deallocate || !get_static || !g_call_tls_dtors || !g_ctype_init || !resp)
        return "glibc's private TLS functions are missing";
    g_resp_slot = resp - thread_pointer();
    auto* size = static_cast<const uint32_t*>(private_symbol("_thread_db_sizeof_pthread"));
    auto* rseq = static_cast<const ptrdiff_t*>(dlsym(RTLD_DEFAULT, "__rseq_offset"));
    if (!size || *size != kSizeofPthread || !rseq || *rseq != static_cast<ptrdiff_t>(kRseqOffset) ||
        !descriptor_offset_is("_thread_db_pthread_list", kListOffset) ||
        !descriptor_offset_is("_thread_db_pthread_tid", kTidOffset) ||
        !descriptor_offset_is("_thread_db_pthread_cancelhandling", kCancelOffset) ||
        !descriptor_offset_is("_thread_db_pthread_specific", kSpecificOffset))
        return "struct pthread is not laid out as expected";
    size_t static_size = 0, align = 0;
    get_static(&static_size, &align);
    if (static_size <= kSizeofPthread) return "no static TLS size";
    g_static_size = static_size - kSizeofPthread;
    return nullptr;
}

// A new thread's descriptor in `tcb`, as a copy of the one at `thread_tp`; the block keeps its
// own DTV.
void fill_descriptor(char* tcb, const char* thread_tp, char* stack_limit, size_t stack_size) {
    void* dtv = at<void*>(tcb, 8);
    std::memcpy(tcb, thread_tp, kSizeofPthread);  // canary (0x28), pointer guard (0x30), tid
    at<void*>(tcb, 0) = tcb;                      // header.tcb: %fs:0, the TLS base
    at<void*>(tcb, 8) = dtv;                      // header.dtv: the new block's own
    // header.self (THREAD_SELF) stays the carrier thread's descriptor: glibc walks its thread
    // list comparing entries with THREAD_SELF (setuid's SIGSETXID round, which would signal
    // the carrier as "another thread" whose handler glibc never installed, and loop; fork's
    // reclaim of the other threads' stacks). Fields glibc reads %fs-relative are the copy's.
    at<int>(tcb, kGscopeFlagOffset) = 0;
    // A fiber is another thread: glibc's malloc must take its arena's fastbins atomically.
    // (A carrier's template may be older than the process's second thread: carrier 0's is
    // taken at start, when glibc still said single-threaded, and skipped the atomics.)
    at<int>(tcb, kMultipleThreadsOffset) = 1;
    // Not on glibc's thread lists: links to itself, as an empty list head.
    at<void*>(tcb, kListOffset) = tcb + kListOffset;
    at<void*>(tcb, kListOffset + 8) = tcb + kListOffset;
    // An empty robust-mutex list, no cleanup handlers, cancellation enabled and deferred, no
    // thread-specific data: what a new thread starts with.
    at<void*>(tcb, kRobustPrevOffset) = tcb + kRobustHeadOffset;
    at<void*>(tcb, kRobustHeadOffset) = tcb + kRobustHeadOffset;
    at<void*>(tcb, kRobustHeadOffset + 16) = nullptr;  // list_op_pending
    std::memset(tcb + kCleanupOffset, 0, 16);
    at<int>(tcb, kCancelOffset) = 0;
    std::memset(tcb + kSpecificFirstOffset, 0, kSpecificUsedOffset + 1 - kSpecificFirstOffset);
    // glibc's alloca cutoff (__libc_alloca_cutoff) reads the stack size.
    at<char*>(tcb, kStackBlockOffset) = stack_limit;
    at<size_t>(tcb, kStackBlockOffset + 8) = stack_size;
    std::memset(tcb + kTlsStateOffset, 0, 16);  // strsignal's and strerror_l's buffers
    // rseq: the kernel updates only the carrier's registered area; -1 ("uninitialised")
    // makes sched_getcpu ask the kernel.
    at<uint32_t>(tcb, kRseqOffset) = 0;
    at<uint32_t>(tcb, kRseqOffset + 4) = UINT32_MAX;
}

// A fresh block: ld.so's initial values for every module's TLS, a copy of the descriptor at
// `thread_tp` made fit for a new thread of its own.
char* fresh_block(const char* thread_tp, char* stack_limit, size_t stack_size) {
    char* tcb = static_cast<char*>(g_allocate(nullptr));
    if (!tcb) return nullptr;
    fill_descriptor(tcb, thread_tp, stack_limit, stack_size);
    return tcb;
}

// glibc makes a thread's malloc cache (tcache, 640 bytes) at its first malloc and frees it
// only when a real thread exits, in code no one else can call: a fiber that mallocs would
// leak it. Instead every fiber uses its carrier's cache and arena, as it uses its CPU (one
// fiber runs at a time on a carrier). libc does not say where the two slots are: a fresh block
// is given to this thread for one malloc, and the two words of its TLS that changed are them;
// the cache is the one whose malloc chunk is 656 bytes. Costs one malloc arena, made here.
[[maybe_unused]] void find_malloc_slots() {
    // Only with glibc's own malloc: another allocator (redis links jemalloc) keeps its own
    // per-thread state, which a probe thread that never exits would leave in its lists, and
    // glibc's cache is then never made at all.
    void* libc = dlopen("libc.so.6", RTLD_NOW | RTLD_NOLOAD);
    void* own_malloc = libc ? dlsym(libc, "malloc") : nullptr;
    if (libc) dlclose(libc);
    if (!own_malloc || dlsym(RTLD_DEFAULT, "malloc") != own_malloc) {
        log::debug("malloc is not glibc's: no malloc cache to share");
        return;
    }
    char* own = thread_pointer();
    char* probe = fresh_block(own, nullptr, 0);
    if (!probe) return;
    const size_t words = g_static_size / sizeof(uintptr_t);
    auto* before = static_cast<uintptr_t*>(std::malloc(g_static_size));
    auto* after = static_cast<uintptr_t*>(std::malloc(g_static_size));
    if (!before || !after) {
        std::free(before);
        std::free(after);
        g_deallocate(probe, true);
        return;
    }
    char* area = probe - words * sizeof(uintptr_t);
    std::memcpy(before, area, words * sizeof(uintptr_t));
    // Through volatile pointers: the compiler may not drop a malloc/free pair.
    void* (*volatile allocate)(size_t) = std::malloc;
    void (*volatile release)(void*) = std::free;
    set_thread_pointer(probe);
    release(allocate(1));
    set_thread_pointer(own);
    std::memcpy(after, area, words * sizeof(uintptr_t));

    int changed = 0;
    ptrdiff_t slots[2] = {};
    uintptr_t values[2] = {};
    for (size_t i = 0; i < words; ++i) {
        if (before[i] == after[i]) continue;
        if (changed < 2) {
            slots[changed] = static_cast<ptrdiff_t>(i * sizeof(uintptr_t)) -
                             static_cast<ptrdiff_t>(words * sizeof(uintptr_t));
            values[changed] = after[i];
        }
        ++changed;
    }
    std::free(before);
    std::free(after);
    auto mapped = [](uintptr_t v) {
        unsigned char vec;
        uintptr_t page = v & ~uintptr_t{4095};
        return mincore(reinterpret_cast<void*>(page), 1, &vec) == 0;
    };
    auto is_cache = [&](uintptr_t v) {
        return v >= 4096 + 16 && v % 16 == 0 && mapped(v - 8) &&
               (*reinterpret_cast<size_t*>(v - 8) & ~size_t{7}) == 656;
    };
    if (changed == 2) {
        int cache = is_cache(values[0]) ? 0 : is_cache(values[1]) ? 1 : -1;
        if (cache >= 0) {
            g_tcache_slot = slots[cache];
            g_arena_slot = slots[1 - cache];
            std::free(reinterpret_cast<void*>(values[cache]));  // the probe's cache
        }
    }
    log::debug("malloc cache slot %td, arena slot %td (%d TLS words changed)", g_tcache_slot,
               g_arena_slot, changed);
    if (g_tcache_slot == 0 && changed != 0)
        log::warn(
            "fibers' malloc caches cannot be shared with their carrier (%d TLS words "
            "changed); each fiber that mallocs leaks one",
            changed);
    g_deallocate(probe, true);
}

bool initialize() {
#if defined(GREEN_SANITIZE) || defined(GREEN_TSAN)
    return false;  // the sanitizers keep per-thread state in TLS: fibers share their carrier's
#else
    if (const char* why = check_glibc()) {
        log::write_line(
            "per-fiber thread-local storage is off (%s, glibc %s): fibers share "
            "their carrier thread's __thread variables",
            why, gnu_get_libc_version());
        return false;
    }
    g_fsgsbase = (getauxval(AT_HWCAP2) & 2) != 0;  // HWCAP2_FSGSBASE: the kernel allows wrfsbase
    find_malloc_slots();
    return true;
#endif
}

}  // namespace

bool enabled() {
    static const bool on = initialize();
    return on;
}

void set_thread_pointer_slow(void* tp) {
    // A raw system call: syscall() is interposed, and no libc code may run on a half-switched
    // thread.
    long ret = raw_syscall(SYS_arch_prctl, ARCH_SET_FS, reinterpret_cast<long>(tp));
    if (ret != 0) log::fatal("arch_prctl(ARCH_SET_FS) failed: %ld", -ret);
}

// A copy of the descriptor, then the three words a fiber's block takes from the thread's TLS.
struct Template {
    char descriptor[kSizeofPthread];
    void* resp;
    void* tcache;
    void* arena;
};

Template* make_template(char* thread_tp) {
    auto* t = static_cast<Template*>(std::malloc(sizeof(Template)));
    if (!t) return nullptr;
    std::memcpy(t->descriptor, thread_tp, kSizeofPthread);
    t->resp = at<void*>(thread_tp, g_resp_slot);
    t->tcache = g_tcache_slot ? at<void*>(thread_tp, g_tcache_slot) : nullptr;
    t->arena = g_tcache_slot ? at<void*>(thread_tp, g_arena_slot) : nullptr;
    return t;
}

void free_template(Template* t) {
    std::free(t);
}

void template_after_fork(Template* t, char* thread_tp) {
    copy_tid(thread_tp, t->descriptor);
}

// The words a block takes from its carrier's TLS. Resolver state (res_init, res_query): the
// carrier's, as glibc gives a new thread its descriptor's and libgreen's descriptor is the
// carrier's (THREAD_SELF, above).
void share_carrier_words(char* tcb, const Template* from) {
    at<void*>(tcb, g_resp_slot) = from->resp;
    if (g_tcache_slot != 0) {
        at<void*>(tcb, g_tcache_slot) = from->tcache;
        at<void*>(tcb, g_arena_slot) = from->arena;
    }
}

char* make_block(const Template* from, const Stack& stack) {
    char* tcb = fresh_block(from->descriptor, stack.limit, stack.usable());
    if (!tcb) return nullptr;
    share_carrier_words(tcb, from);
    return tcb;
}

void move_block(char* tp, const Template* to) {
    fill_descriptor(tp, to->descriptor, at<char*>(tp, kStackBlockOffset),
                    at<size_t>(tp, kStackBlockOffset + 8));
    share_carrier_words(tp, to);
}

void start_thread() {
    g_ctype_init();  // the <ctype.h> tables' per-thread pointers: null in a fresh block
}

void run_destructors() {
    g_call_tls_dtors();
}

void free_block(char* tp) {
    // What glibc's __libc_thread_freeres frees at a real thread's exit.
    std::free(at<void*>(tp, kTlsStateOffset));
    std::free(at<void*>(tp, kTlsStateOffset + 8));
    g_deallocate(tp, true);
}

void copy_tid(const char* from_tp, char* to_tp) {
    at<int32_t>(to_tp, kTidOffset) = at<int32_t>(from_tp, kTidOffset);
}

}  // namespace green::tls
