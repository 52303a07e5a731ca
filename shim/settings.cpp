// Parsing of the GREEN_* settings. Runs before main: no allocation, no stdio.
#include "shim/settings.h"

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "runtime/log.h"

extern char** environ;

namespace green::shim {
namespace {

constexpr size_t kMinStack = 16 * 1024;            // PTHREAD_STACK_MIN
constexpr size_t kMaxStack = 1024ull * 1024 * 1024;  // 1 GiB

const char* const kKnown[] = {"GREEN_DISABLE", "GREEN_STACK_SIZE", "GREEN_LOG"};

bool parse_bool(const char* name, const char* value, bool fallback) {
    if (!strcmp(value, "1") || !strcmp(value, "yes") || !strcmp(value, "true")) return true;
    if (!strcmp(value, "0") || !strcmp(value, "no") || !strcmp(value, "false") || !*value)
        return false;
    log::write_line("%s='%s' is not 0 or 1; using %d", name, value, fallback ? 1 : 0);
    return fallback;
}

// Bytes, or a number with a K, M or G suffix (powers of 1024).
bool parse_size(const char* value, size_t* out) {
    errno = 0;
    char* end = nullptr;
    unsigned long long n = strtoull(value, &end, 10);
    if (errno || end == value || *value == '-') return false;
    unsigned long long scale = 1;
    if (*end == 'k' || *end == 'K') scale = 1024, ++end;
    else if (*end == 'm' || *end == 'M') scale = 1024 * 1024, ++end;
    else if (*end == 'g' || *end == 'G') scale = 1024 * 1024 * 1024, ++end;
    if (*end == 'i' || *end == 'B') ++end;
    if (*end == 'B') ++end;
    if (*end != '\0' || n > kMaxStack / scale) return false;
    *out = static_cast<size_t>(n * scale);
    return true;
}

}  // namespace

Settings read_settings() {
    Settings s;
    if (const char* v = getenv("GREEN_LOG")) {
        static const char* const levels[] = {"error", "warn", "info", "debug"};
        int found = -1;
        for (int i = 0; i < 4; ++i)
            if (!strcmp(v, levels[i])) found = i;
        if (found < 0)
            log::write_line("GREEN_LOG='%s' is not error, warn, info or debug; using warn", v);
        else
            s.log_level = found;
    }
    log::set_level(static_cast<log::Level>(s.log_level));
    if (const char* v = getenv("GREEN_DISABLE")) s.disable = parse_bool("GREEN_DISABLE", v, false);
    if (const char* v = getenv("GREEN_STACK_SIZE")) {
        size_t size = 0;
        if (!parse_size(v, &size) || size < kMinStack) {
            log::write_line("GREEN_STACK_SIZE='%s' is not a size from 16K to 1G (bytes, or "
                            "with a K, M or G suffix); using glibc's default thread stack size",
                            v);
        } else {
            s.stack_size = size;
        }
    }
    // A misspelt setting would otherwise be ignored silently.
    for (char** e = environ; e && *e; ++e) {
        if (strncmp(*e, "GREEN_", 6) != 0) continue;
        const char* eq = strchr(*e, '=');
        size_t len = eq ? static_cast<size_t>(eq - *e) : strlen(*e);
        bool known = false;
        for (const char* k : kKnown) known |= strlen(k) == len && !strncmp(k, *e, len);
        if (!known) log::write_line("unknown setting %.*s ignored", static_cast<int>(len), *e);
    }
    return s;
}

}  // namespace green::shim
