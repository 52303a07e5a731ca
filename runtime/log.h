// Diagnostics for the runtime: one line per message on stderr, written with a single raw
// write(2) so that it never interleaves mid-line with the program's output and never
// re-enters our own hooks. Never allocates: safe in signal handlers and before main.
#pragma once

#include <cstdarg>

namespace green::log {

enum class Level { kError = 0, kWarn = 1, kInfo = 2, kDebug = 3 };

void set_level(Level level);
Level level();

// printf-style; the line is prefixed with "green: " and gets a trailing newline.
void write_line(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
void warn(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
void debug(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

// An invariant broken by our own bug: one line naming it, then abort().
[[noreturn]] void fatal(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

}  // namespace green::log
