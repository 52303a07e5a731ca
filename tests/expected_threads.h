// What a test may expect of the OS threads of a program under the shim: the carrier threads
// (GREEN_CARRIERS, else one per CPU the process may run on: docs/settings.md) and the monitor.
// The runtime decides the same way; tests read the test process's own environment and
// affinity, which a program they start inherits unless the test sets GREEN_CARRIERS for it.
#pragma once

#include <sched.h>

#include <cstdlib>

namespace green_test {

inline int carriers_expected() {
    if (const char* v = getenv("GREEN_CARRIERS")) {
        int n = atoi(v);
        if (n >= 1 && n <= 64) return n;
    }
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) != 0) return 1;
    int n = CPU_COUNT(&set);
    return n < 1 ? 1 : n > 64 ? 64 : n;
}

}  // namespace green_test
