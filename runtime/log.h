// Diagnostics for the runtime: one line per message on stderr (or GREEN_LOG_FILE), written
// with a single raw write(2) so that it never interleaves mid-line with the program's output
// and never re-enters our own hooks. Never allocates: safe in signal handlers and before main.
#pragma once

#include <cstdarg>
#include <cstddef>

namespace green::log {

enum class Level { kError = 0, kWarn = 1, kInfo = 2, kDebug = 3 };

void set_level(Level level);
Level level();

// Sends messages to `path` instead of stderr (GREEN_LOG_FILE). The file is opened for each
// message (O_APPEND), so a program that closes every fd, or forks, cannot make us write into
// one of its own files. "%p" in the path stands for the process id. False if it cannot be
// opened now (errno set); messages then stay on stderr.
bool set_file(const char* path);
// For a thread with a private fd table (the monitor): reach the program's current stderr
// through `pidfd` (a pidfd of this process, in that table) at each write.
void use_program_stderr_via(int pidfd);
// Whether `path` ("%p": the pid) can be opened for appending now (it is created if missing).
bool can_append(const char* path);
// Writes `len` bytes of whole lines, in one write(2), to `path` ("%p": the pid) or, when
// `path` is null, to the log's destination. False if the file could not be opened.
bool write_raw(const char* path, const char* data, size_t len);

// printf-style; the line is prefixed with "green: " and gets a trailing newline.
void write_line(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
void info(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
void warn(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
void debug(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

// An invariant broken by our own bug: one line naming it, then abort().
[[noreturn]] void fatal(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

}  // namespace green::log
