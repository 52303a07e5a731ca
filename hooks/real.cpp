// Resolves the real libc functions. dlsym may call calloc: we do not interpose the
// allocator, so that is safe even on first use from inside a hook.
#include "hooks/real.h"

#include <dlfcn.h>

#include "runtime/log.h"

namespace green::real {

Table g_table;
bool g_resolved = false;
lib::Slots lib::g_slots;

void resolve() {
    // One thread fills the table (a program's static constructors may start threads that call
    // hooks before libgreen's constructor has run); the others wait for it.
    static bool g_resolving = false;
    static __thread bool t_resolving __attribute__((tls_model("initial-exec"))) = false;
    if (t_resolving) return;  // a hook called from inside dlsym: what is filled is there
    if (__atomic_exchange_n(&g_resolving, true, __ATOMIC_ACQ_REL)) {
        while (!__atomic_load_n(&g_resolved, __ATOMIC_ACQUIRE)) __builtin_ia32_pause();
        return;
    }
    t_resolving = true;
#define GREEN_HOOK(ret, name, params, args)                                        \
    g_table.name = reinterpret_cast<ret(*) params>(dlsym(RTLD_NEXT, #name));       \
    if (!g_table.name) log::fatal("cannot resolve the real %s: %s", #name, dlerror());
#define GREEN_HOOK_LIB(ret, name, params, args, absent)
#include "hooks/symbols.def"
    __atomic_store_n(&g_resolved, true, __ATOMIC_RELEASE);
    t_resolving = false;
}

void* optional(const char* name, void** slot) {
    void* found = __atomic_load_n(slot, __ATOMIC_ACQUIRE);
    if (__builtin_expect(found != nullptr, 1)) return found;
    found = dlsym(RTLD_NEXT, name);
    if (found) __atomic_store_n(slot, found, __ATOMIC_RELEASE);
    return found;
}

}  // namespace green::real
