// Code a signal handler must not treat as the program's own (code_ranges.h).
//
// An unwinder finds each frame's unwind table through dl_iterate_phdr, which takes the dynamic
// loader's lock, and libgcc_s keeps locks of its own; malloc and stdio hold locks of libc. A
// handler that interrupted code holding one of them and then needed it (to unwind, or by
// switching to a fiber that calls malloc) would wait for itself. So the watchdog takes a
// backtrace, and preemption switches fibers, only when the interrupted pc is outside libc,
// the dynamic loader, libgcc_s, libgreen and the libraries libgreen uses. The executable
// segments of those modules are found once, outside any handler, and only read afterwards.
#include "runtime/code_ranges.h"

#include <link.h>
#include <pthread.h>

#include <cstdint>
#include <cstring>

namespace green {
namespace {

struct CodeRange {
    uintptr_t begin, end;
    CodeKind kind;
    const char* module;  // the loader's name for it (lives as long as the module)
};
constexpr int kMaxCodeRanges = 64;
CodeRange g_ranges[kMaxCodeRanges];
int g_range_count = 0;

// Module names (up to the version): libc's and the loader's, whose locks the program's
// threads take without going through libgreen; then libgreen's dependencies (ldd
// libgreen.so) and the rest of glibc's libraries.
constexpr const char* kLibcModules[] = {"libc.so", "ld-linux-x86-64.so"};
constexpr const char* kRuntimeModules[] = {
    "libgcc_s.so",   "libstdc++.so", "libm.so",  "libuv.so",
    "libboost_context.so", "libpthread.so", "libdl.so", "librt.so",
};

bool named(const char* base, const char* prefix) {
    return !strncmp(base, prefix, strlen(prefix));
}

bool holds(const dl_phdr_info* info, uintptr_t address) {
    for (int i = 0; i < info->dlpi_phnum; ++i) {
        const ElfW(Phdr)& ph = info->dlpi_phdr[i];
        uintptr_t begin = info->dlpi_addr + ph.p_vaddr;
        if (ph.p_type == PT_LOAD && address >= begin && address < begin + ph.p_memsz) return true;
    }
    return false;
}

bool kind_of(const dl_phdr_info* info, CodeKind* kind) {
    const char* name = info->dlpi_name ? info->dlpi_name : "";
    const char* base = strrchr(name, '/');
    base = base ? base + 1 : name;
    *kind = CodeKind::kLibc;
    for (const char* prefix : kLibcModules)
        if (named(base, prefix)) return true;
    *kind = CodeKind::kRuntime;
    for (const char* prefix : kRuntimeModules)
        if (named(base, prefix)) return true;
    // libgreen itself: the module whose code holds this function.
    return holds(info, reinterpret_cast<uintptr_t>(&note_code_ranges));
}

int add_ranges(dl_phdr_info* info, size_t, void*) {
    CodeKind kind;
    if (!kind_of(info, &kind)) return 0;
    for (int i = 0; i < info->dlpi_phnum && g_range_count < kMaxCodeRanges; ++i) {
        const ElfW(Phdr)& ph = info->dlpi_phdr[i];
        if (ph.p_type != PT_LOAD || !(ph.p_flags & PF_X)) continue;
        uintptr_t begin = info->dlpi_addr + ph.p_vaddr;
        const char* name = info->dlpi_name && *info->dlpi_name ? info->dlpi_name : "libgreen";
        g_ranges[g_range_count++] = CodeRange{begin, begin + ph.p_memsz, kind, name};
    }
    return 0;
}

const CodeRange* range_of(const void* pc) {
    auto at = reinterpret_cast<uintptr_t>(pc);
    for (int i = 0; i < g_range_count; ++i)
        if (at >= g_ranges[i].begin && at < g_ranges[i].end) return &g_ranges[i];
    return nullptr;
}

}  // namespace

void note_code_ranges() {
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, [] { dl_iterate_phdr(add_ranges, nullptr); });
}

CodeKind code_kind(const void* pc) {
    const CodeRange* range = range_of(pc);
    return range ? range->kind : CodeKind::kProgram;
}

const char* unsafe_module_of(const void* pc) {
    const CodeRange* range = range_of(pc);
    return range ? range->module : nullptr;
}

}  // namespace green
