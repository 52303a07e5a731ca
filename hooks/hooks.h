// The cooperative versions of the interposed calls: one per symbols.def entry, with glibc's
// exact signature. shim/ calls them only on a fiber and outside our own code (GREEN_HOOK),
// or always (GREEN_HOOK_ALWAYS). They return what glibc returns and set errno as it does.
#pragma once

#include "hooks/real.h"

namespace green::hooks {

#define GREEN_HOOK(ret, name, params, args) ret name params;
#define GREEN_HOOK_NORETURN(name, params, args) [[noreturn]] void name params;
#include "hooks/symbols.def"

// Registers the runtime callbacks hooks need (thread-specific data destructors).
void install();

}  // namespace green::hooks
