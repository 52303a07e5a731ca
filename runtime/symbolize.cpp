// dladdr-based naming for diagnostics. Runs on the scheduler or the monitor thread, never in a
// signal handler (dladdr takes the loader's lock).
#include "runtime/symbolize.h"

#include <dlfcn.h>

#include <cstdint>
#include <cstdio>

namespace green {

void describe_code(const void* address, char* out, size_t size) {
    Dl_info info{};
    auto pc = reinterpret_cast<uintptr_t>(address);
    if (!dladdr(address, &info) || !info.dli_fname) {
        snprintf(out, size, "%p", address);
    } else if (info.dli_sname && info.dli_saddr) {
        auto offset = static_cast<unsigned long>(pc - reinterpret_cast<uintptr_t>(info.dli_saddr));
        if (offset == 0)
            snprintf(out, size, "%s (%s)", info.dli_sname, info.dli_fname);
        else
            snprintf(out, size, "%s+0x%lx (%s)", info.dli_sname, offset, info.dli_fname);
    } else {
        snprintf(out, size, "%s+0x%lx", info.dli_fname,
                 static_cast<unsigned long>(pc - reinterpret_cast<uintptr_t>(info.dli_fbase)));
    }
}

void describe_data(const void* address, char* out, size_t size) {
    Dl_info info{};
    if (dladdr(address, &info) && info.dli_sname && info.dli_saddr) {
        auto offset =
            reinterpret_cast<uintptr_t>(address) - reinterpret_cast<uintptr_t>(info.dli_saddr);
        if (offset == 0)
            snprintf(out, size, "%s", info.dli_sname);
        else
            snprintf(out, size, "%s+0x%lx", info.dli_sname, static_cast<unsigned long>(offset));
        return;
    }
    snprintf(out, size, "%p", address);
}

const char* syscall_name(long nr) {
    switch (nr) {
#define GREEN_SYSCALL(number, name) \
    case number:                    \
        return #name;
#include "runtime/syscall_names.def"
#undef GREEN_SYSCALL
    }
    return "syscall";
}

}  // namespace green
