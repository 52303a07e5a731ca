// Names for addresses in diagnostics (watchdog, deadlock report): the nearest dynamic symbol
// and its module, via dladdr. Symbols that are not exported show as module+offset, which
// `addr2line -f -e MODULE OFFSET` turns into a function and line. Not for signal handlers.
#pragma once

#include <cstddef>

namespace green {

// "function+0x1c (/path/module)" or "/path/module+0x1234" or "0x7f..." into out.
void describe_code(const void* address, char* out, size_t size);
// "symbol" when `address` is a named object (a global mutex), "symbol+0x10" inside one,
// else "0x55..." into out.
void describe_data(const void* address, char* out, size_t size);
// The x86-64 system call `nr`'s name ("io_uring_enter" for 426), or "syscall" when unknown.
// Any context, signal handlers included.
const char* syscall_name(long nr);

}  // namespace green
