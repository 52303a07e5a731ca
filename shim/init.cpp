// Start-up of libgreen.so: resolve the real libc functions, read the settings and make the
// main thread a carrier whose current context (main's stack) is the root fiber. Runs as a
// constructor, before main; a hook called earlier passes through (no carrier yet).
#include <sys/syscall.h>
#include <unistd.h>

#include "hooks/hooks.h"
#include "runtime/log.h"
#include "runtime/resolver.h"
#include "runtime/runtime.h"
#include "shim/settings.h"

namespace {

__attribute__((constructor(101))) void green_start() {
    green::real::resolve();
    green::shim::Settings settings = green::shim::read_settings();
    if (settings.disable) return;
    if (getpid() != static_cast<pid_t>(syscall(SYS_gettid))) {
        // Loaded by dlopen on another thread: too late to make main a fiber.
        green::log::warn("not loaded at start-up (use LD_PRELOAD); passing every call through");
        return;
    }
    green::hooks::install();
    green::configure_resolver(settings.dns_servers);
    green::RuntimeConfig config;
    config.default_stack_size = settings.stack_size;
    if (!green::adopt_current_thread(config))
        green::log::write_line("cannot start the runtime (%m); passing every call through");
}

}  // namespace
