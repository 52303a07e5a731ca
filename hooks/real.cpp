// Resolves the real libc functions. dlsym may call calloc: we do not interpose the
// allocator, so that is safe even on first use from inside a hook.
#include "hooks/real.h"

#include <dlfcn.h>

#include "runtime/log.h"

namespace green::real {

Table g_table;
bool g_resolved = false;

void resolve() {
#define GREEN_HOOK(ret, name, params, args)                                        \
    g_table.name = reinterpret_cast<ret(*) params>(dlsym(RTLD_NEXT, #name));       \
    if (!g_table.name) log::fatal("cannot resolve the real %s: %s", #name, dlerror());
#include "hooks/symbols.def"
    __atomic_store_n(&g_resolved, true, __ATOMIC_RELEASE);
}

}  // namespace green::real
