// The real libc functions behind every interposed symbol, resolved once with
// dlsym(RTLD_NEXT). The only place in libgreen that calls dlsym. Safe before main: a hook
// that runs before our constructor resolves the table on first use. Functions of other
// libraries (GREEN_HOOK_LIB) are looked up apart, when first needed (real::lib).
#pragma once

#include <linux/time_types.h>

#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <semaphore.h>
#include <signal.h>
#include <stdio.h>
#include <sys/epoll.h>
#include <sys/file.h>
#include <fcntl.h>
#include <mqueue.h>
#include <sys/resource.h>
#include <sys/sendfile.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

// liburing's types, used only through pointers here (hooks/uring.cpp knows their layout).
struct io_uring;
struct io_uring_cqe;

namespace green::real {

struct Table {
#define GREEN_HOOK(ret, name, params, args) ret(*name) params;
#define GREEN_HOOK_LIB(ret, name, params, args, absent)
#include "hooks/symbols.def"
};

extern Table g_table;
extern bool g_resolved;
void resolve();

// The table is filled once; a thread that arrives while another fills it waits (resolve).
inline const Table& get() {
    if (__builtin_expect(!__atomic_load_n(&g_resolved, __ATOMIC_ACQUIRE), 0)) resolve();
    return g_table;
}

// A function of a library the program may load after libgreen, or never (liburing): looked up
// with dlsym(RTLD_NEXT) when first asked for, and again while absent (a later dlopen with
// RTLD_GLOBAL brings it). nullptr while absent; never fatal.
void* optional(const char* name, void** slot);

namespace lib {
struct Slots {
#define GREEN_HOOK(ret, name, params, args)
#define GREEN_HOOK_MANUAL(ret, name, params)
#define GREEN_HOOK_LIB(ret, name, params, args, absent) void* name = nullptr;
#include "hooks/symbols.def"
};
extern Slots g_slots;
#define GREEN_HOOK(ret, name, params, args)
#define GREEN_HOOK_MANUAL(ret, name, params)
#define GREEN_HOOK_LIB(ret, name, params, args, absent)                    \
    inline auto name() {                                                    \
        return reinterpret_cast<ret(*) params>(optional(#name, &g_slots.name)); \
    }
#include "hooks/symbols.def"
}  // namespace lib

}  // namespace green::real
