// A system call without libc: syscall(), pthread_sigmask and the futex calls are interposed by
// libgreen itself, and some callers run on a half-switched thread or in a signal handler.
// Returns the kernel's result: negative errno on failure (errno is left alone).
#pragma once

namespace green {

inline long raw_syscall(long number, long a1 = 0, long a2 = 0, long a3 = 0, long a4 = 0,
                        long a5 = 0, long a6 = 0) {
    long ret;
    register long r10 asm("r10") = a4;
    register long r8 asm("r8") = a5;
    register long r9 asm("r9") = a6;
    asm volatile("syscall"
                 : "=a"(ret)
                 : "0"(number), "D"(a1), "S"(a2), "d"(a3), "r"(r10), "r"(r8), "r"(r9)
                 : "rcx", "r11", "memory");
    return ret;
}

}  // namespace green
