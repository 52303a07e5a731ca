// FILE streams over sockets, pipes and FIFOs. glibc's stdio reads and writes its fd with its
// internal __read/__write, which no hook sees, so a fiber in fgets on a socket held its whole
// carrier. fdopen and fopen on a socket, pipe or FIFO, popen, and at start-up stdin on one of
// those and stdout/stderr on a socket therefore give the program a FILE made by glibc's own
// fopencookie, whose callbacks make the exported, cooperative read/write/close. glibc keeps:
// buffering, ungetc, locking, flags, line and column state, getline, scanf, flush at exit.
// Never blocks the carrier itself; never changes the fd's flags.
#include <fcntl.h>
#include <malloc.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <ext/stdio_sync_filebuf.h>
#include <iostream>
#include <new>

#include "hooks/hooks.h"

// glibc's vtable of wide-character file streams (exported since glibc 2.2).
extern "C" const char _IO_wfile_jumps[];

namespace green::hooks {
namespace {

// glibc's FILE flag bits (libio.h, stable since glibc 2.1): what the stream may do.
constexpr int kNoReads = 0x0004;
constexpr int kNoWrites = 0x0008;
constexpr int kUnbuffered = 0x0002;
constexpr int kLineBuffered = 0x0200;
constexpr int kAppending = 0x1000;
constexpr int kUserBuffer = 0x0001;  // the program's buffer: glibc never frees it

// The buffer glibc gives a file stream (filedoalloc.c): st_blksize when below BUFSIZ. Its
// cookie streams get BUFSIZ (their stat is a stub), so a twin's buffer is made here.
size_t buffer_size(const struct stat& st) {
    return st.st_blksize > 0 && st.st_blksize < BUFSIZ ? static_cast<size_t>(st.st_blksize)
                                                        : BUFSIZ;
}

// The cookie of one stream. `process` is popen's own FILE, kept open in glibc's list of
// popen streams (a later popen's child closes its fd, as POSIX asks) until pclose.
struct Stream {
    int fd;
    FILE* process;
    FILE* file;  // the FILE the program has
    void* wide;  // the FILE's wide-character state, or nullptr
};

// Wide orientation. glibc makes cookie streams byte-oriented for good (no wide state:
// fwide(f, 1) is -1 and fwprintf fails), where its fdopen FILE can turn wide. A twin gets
// wide state of its own: zeroes and the wide vtable, as glibc's _IO_no_init leaves it, in
// glibc's internal struct _IO_wide_data, whose size is found once from a FILE glibc makes
// itself: the struct ends with that vtable's address. None if it is not found there.
// Turning wide, glibc makes that vtable the FILE's own (iofwide.c): from then on the stream is
// glibc's file stream on _fileno, exact but no longer cooperative, and our close callback is
// never called, so its Stream and wide state (272 bytes) are not freed.
struct WideLayout {
    size_t size = 0;
};

const WideLayout& wide_layout() {
    static const WideLayout layout = [] {
        WideLayout found;
        int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
        FILE* probe = fd >= 0 ? real::get().fdopen(fd, "r") : nullptr;
        if (!probe) {
            if (fd >= 0) ::close(fd);
            return found;
        }
        const char* start = reinterpret_cast<const char*>(probe->_wide_data);
        const char* end = reinterpret_cast<const char*>(probe) + malloc_usable_size(probe);
        const void* vtable = _IO_wfile_jumps;
        for (const char* at = start; start && at + sizeof vtable <= end; at += sizeof vtable) {
            const void* word;
            memcpy(&word, at, sizeof word);
            if (word == vtable) {
                found.size = static_cast<size_t>(at - start) + sizeof vtable;
                break;
            }
        }
        fclose(probe);
        return found;
    }();
    return layout;
}

void give_wide_state(Stream* s) {
    const WideLayout& layout = wide_layout();
    if (!layout.size || !(s->wide = calloc(1, layout.size))) return;
    const void* vtable = _IO_wfile_jumps;
    memcpy(static_cast<char*>(s->wide) + layout.size - sizeof vtable, &vtable, sizeof vtable);
    s->file->_wide_data = static_cast<struct _IO_wide_data*>(s->wide);
    s->file->_mode = 0;  // not oriented yet
}

void free_stream(Stream* s) {
    free(s->wide);
    free(s);
}

// The callbacks run wherever the FILE is used. They call the exported functions, whose guard
// (shim/exports.cpp) decides: cooperative on a fiber, the real call elsewhere.
ssize_t stream_read(void* cookie, char* buf, size_t size) {
    return ::read(static_cast<Stream*>(cookie)->fd, buf, size);
}

// As glibc's _IO_new_file_write: every byte unless a write fails; the count written.
ssize_t stream_write(void* cookie, const char* buf, size_t size) {
    const int fd = static_cast<Stream*>(cookie)->fd;
    size_t done = 0;
    while (done < size) {
        ssize_t n = ::write(fd, buf + done, size - done);
        if (n < 0) break;
        done += static_cast<size_t>(n);
    }
    return static_cast<ssize_t>(done);
}

int stream_seek(void* cookie, off64_t* offset, int whence) {
    off64_t at = lseek64(static_cast<Stream*>(cookie)->fd, *offset, whence);
    if (at < 0) return -1;
    *offset = at;
    return 0;
}

// popen's process id, from glibc's struct _IO_proc_file: the FILE, its vtable pointer, then
// the pid (libio/iopopen.c; unchanged since glibc 2.1).
pid_t process_id(FILE* process) {
    pid_t pid;
    memcpy(&pid, reinterpret_cast<const char*>(process) + sizeof(FILE) + sizeof(void*), sizeof pid);
    return pid;
}

// pclose: glibc closes its end of the pipe and waits for the child in the kernel. Here the end
// is closed first (the child sees end-of-file or EPIPE), the fiber parks until the child has
// exited (waitid with WNOWAIT leaves it to be reaped), and glibc's own pclose then finds it
// at once: its list, its status and its errors (ECHILD when SIGCHLD is ignored or the program
// reaped the child itself). Its fd is a stand-in by then, /dev/null, which it closes.
int close_process(Stream* s) {
    FILE* process = s->process;
    const pid_t pid = process_id(process);
    siginfo_t info{};
    int stand_in = -1;
    if (pid > 0 &&
        real::get().waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG | WNOWAIT) == 0)
        stand_in = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (stand_in >= 0) {
        ::close(s->fd);
        process->_fileno = stand_in;
        while (::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOWAIT) != 0 &&
               errno == EINTR) {
        }
    }
    return pclose(process);  // without a stand-in: the real wait, on the carrier
}

int stream_close(void* cookie) {
    auto* s = static_cast<Stream*>(cookie);
    int r = s->process ? close_process(s) : ::close(s->fd);
    const int saved = errno;
    free_stream(s);  // the FILE is byte-oriented or unused here: fclose has no use for it
    errno = saved;
    return r;
}

// Whether a stream on `fd` can wait: a socket, a pipe or a FIFO. Regular files and ttys keep
// glibc's own FILE (a file never waits for a peer; a tty's line buffering comes from glibc).
bool waits_for_peer(int fd, struct stat* st) {
    return fstat(fd, st) == 0 && (S_ISSOCK(st->st_mode) || S_ISFIFO(st->st_mode));
}

// A cookie FILE in the image of `native`, glibc's FILE on `fd`: same direction, appending and
// buffering mode, the buffer size glibc would pick, wide state, and fileno(). nullptr when one
// cannot be made (no memory): the caller keeps `native`.
FILE* cooperative_twin(FILE* native, const struct stat& st, FILE* process) {
    const int flags = native->_flags;
    if (native->_mode != 0) return nullptr;  // oriented already (fopen's ccs=): keep glibc's
    const bool reads = !(flags & kNoReads), writes = !(flags & kNoWrites);
    const bool append = flags & kAppending;
    const char* mode = reads && writes ? (append ? "a+" : "r+")
                       : writes        ? (append ? "a" : "w")
                                       : "r";
    auto* s = static_cast<Stream*>(calloc(1, sizeof(Stream)));
    if (!s) return nullptr;
    s->fd = native->_fileno;
    s->process = process;
    FILE* twin = fopencookie(s, mode, {stream_read, stream_write, stream_seek, stream_close});
    if (!twin) {
        free(s);
        return nullptr;
    }
    s->file = twin;
    twin->_fileno = s->fd;  // fileno(): glibc marks cookie streams with -2 and answers EBADF
    give_wide_state(s);
    if (flags & kUnbuffered) {
        setvbuf(twin, nullptr, _IONBF, 0);
    } else if (char* buffer = static_cast<char*>(malloc(buffer_size(st)))) {
        setvbuf(twin, buffer, flags & kLineBuffered ? _IOLBF : _IOFBF, buffer_size(st));
        twin->_flags &= ~kUserBuffer;  // glibc's to free, as the buffer it makes itself
    }
    return twin;
}

// fdopen and fopen: glibc makes its FILE (mode checks, O_APPEND, errno); a stream that can
// wait is swapped for its twin and glibc's FILE is freed without closing the fd.
FILE* made_cooperative(FILE* native) {
    struct stat st;
    if (!native || !waits_for_peer(native->_fileno, &st)) return native;
    const int saved = errno;
    FILE* twin = cooperative_twin(native, st, nullptr);
    if (twin) {
        native->_fileno = -1;  // glibc's fclose then frees the FILE and leaves the fd alone
        fclose(native);
    }
    errno = saved;
    return twin ? twin : native;
}

}  // namespace

FILE* fdopen(int fd, const char* mode) {
    return made_cooperative(real::get().fdopen(fd, mode));
}

FILE* fopen(const char* path, const char* mode) {
    return made_cooperative(real::get().fopen(path, mode));
}

FILE* fopen64(const char* path, const char* mode) {
    return made_cooperative(real::get().fopen64(path, mode));
}

// popen: glibc spawns the shell and keeps its FILE (pid, list of popen streams); the program
// gets a twin on the same fd, whose close is pclose's (close_process).
FILE* popen(const char* command, const char* mode) {
    FILE* process = real::get().popen(command, mode);
    struct stat st;
    if (!process || !waits_for_peer(process->_fileno, &st)) return process;
    const int saved = errno;
    FILE* twin = cooperative_twin(process, st, process);
    errno = saved;
    return twin ? twin : process;
}

// At start-up (shim/init.cpp), before the program runs: stdin becomes a twin when it is a
// socket, pipe or FIFO (a reader waits for its peer); stdout and stderr when they are sockets
// (inetd, systemd's Accept=yes: the stream is the connection). stdout and stderr on a pipe stay
// glibc's: they are often shared by many threads for logging, and a flush that parked would
// let another fiber of its carrier into the FILE (glibc's FILE lock is per OS thread), which
// would write or drop the half-flushed buffer; a pipe write waits only when its reader is
// 64 KiB behind. libstdc++'s standard streams, synchronised with stdio, follow the swap.
void adopt_standard_streams() {
    static std::ios_base::Init iostreams;  // cin and cout exist before they are rebound
    struct Standard {
        FILE** stream;
        bool sockets_only;
        std::ios* narrow[2];
        std::wios* wide[2];
    };
    Standard standard[] = {{&stdin, false, {&std::cin, nullptr}, {&std::wcin, nullptr}},
                           {&stdout, true, {&std::cout, nullptr}, {&std::wcout, nullptr}},
                           {&stderr, true, {&std::cerr, &std::clog}, {&std::wcerr, &std::wclog}}};
    for (Standard& one : standard) {
        FILE* native = *one.stream;
        struct stat st;
        if (!waits_for_peer(native->_fileno, &st)) continue;
        if (one.sockets_only && !S_ISSOCK(st.st_mode)) continue;
        FILE* twin = cooperative_twin(native, st, nullptr);
        if (!twin) continue;
        *one.stream = twin;  // glibc's own stays as it was, unused, and is flushed at exit
        // The stream buffers are never destroyed: the streams live until exit.
        for (std::ios* cxx : one.narrow)
            if (auto* buf = cxx ? new (std::nothrow) __gnu_cxx::stdio_sync_filebuf<char>(twin)
                                : nullptr)
                cxx->rdbuf(buf);
        if (twin->_mode != 0) continue;  // no wide state: wcin and wcout keep glibc's FILE
        for (std::wios* cxx : one.wide)
            if (auto* buf = cxx ? new (std::nothrow) __gnu_cxx::stdio_sync_filebuf<wchar_t>(twin)
                                : nullptr)
                cxx->rdbuf(buf);
    }
}

}  // namespace green::hooks
