// The real libc functions behind every interposed symbol, resolved once with
// dlsym(RTLD_NEXT). The only place in libgreen that calls dlsym. Safe before main: a hook
// that runs before our constructor resolves the table on first use.
#pragma once

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

namespace green::real {

struct Table {
#define GREEN_HOOK(ret, name, params, args) ret(*name) params;
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

}  // namespace green::real
