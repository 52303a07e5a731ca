// /etc/hosts as glibc's nss_files reads it. Never blocks: a local file.
#include "hooks/hosts_file.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <strings.h>

#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace green::hooks {
namespace {

// glibc's `multi` option: /etc/host.conf's `multi on`, overridden by RESOLV_MULTI.
bool multi() {
    static const bool on = [] {
        bool value = false;
        if (FILE* conf = fopen("/etc/host.conf", "re")) {
            char line[256];
            while (fgets(line, sizeof line, conf)) {
                char word[32], arg[32];
                if (sscanf(line, " %31s %31s", word, arg) == 2 && !strcasecmp(word, "multi"))
                    value = !strcasecmp(arg, "on");
            }
            fclose(conf);
        }
        if (const char* env = getenv("RESOLV_MULTI")) value = !strcasecmp(env, "on");
        return value;
    }();
    return on;
}

struct Line {
    ResolvedAddress address;
    char* name = nullptr;
    std::vector<char*> aliases;
};

// The buffer glibc needs to parse `text` (with `aliases` aliases) in a caller's _r buffer:
// its hostent_data (32 bytes), the line, then the alias pointer array.
size_t glibc_parse_size(size_t text_length, size_t aliases) {
    size_t line_end = 32 + text_length + 1;
    return ((line_end + 7) & ~size_t{7}) + (aliases + 1) * sizeof(char*);
}

// glibc's LINE_PARSER for the hosts database: false if the line is ignored for `af`.
bool parse(char* text, int af, Line* out) {
    if (char* hash = strchr(text, '#')) *hash = '\0';
    std::vector<char*>& fields = out->aliases;  // address, name, then the aliases
    fields.clear();
    for (char* p = text; *p;) {
        while (*p && isspace(static_cast<unsigned char>(*p))) ++p;
        if (!*p) break;
        fields.push_back(p);
        while (*p && !isspace(static_cast<unsigned char>(*p))) ++p;
        if (*p) *p++ = '\0';
    }
    if (fields.empty()) return false;
    unsigned char* bytes = out->address.bytes;
    int family = af == AF_UNSPEC ? AF_INET : af;
    if (inet_pton(family, fields[0], bytes) > 0) {
    } else if (af == AF_INET && inet_pton(AF_INET6, fields[0], bytes) > 0) {
        // An IPv4 query also takes v4-mapped lines, and ::1 as 127.0.0.1.
        const auto* v6 = reinterpret_cast<const in6_addr*>(bytes);
        if (IN6_IS_ADDR_V4MAPPED(v6)) {
            memmove(bytes, bytes + 12, 4);
        } else if (IN6_IS_ADDR_LOOPBACK(v6)) {
            in_addr_t loopback = htonl(INADDR_LOOPBACK);
            memcpy(bytes, &loopback, 4);
        } else {
            return false;
        }
    } else if (af == AF_UNSPEC && inet_pton(AF_INET6, fields[0], bytes) > 0) {
        family = AF_INET6;
    } else {
        return false;
    }
    out->address.family = family;
    static char empty[] = "";
    out->name = fields.size() > 1 ? fields[1] : empty;
    fields.erase(fields.begin(), fields.begin() + (fields.size() > 1 ? 2 : 1));
    return true;
}

bool names(const Line& line, const char* name) {
    if (!strcasecmp(line.name, name)) return true;
    for (const char* alias : line.aliases)
        if (!strcasecmp(alias, name)) return true;
    return false;
}

// Calls visit(line) for each line parsed for `af`; stops when it returns false.
template <typename Visit>
HostsResult scan(int af, size_t buffer_size, Visit visit) {
    if (buffer_size < 32 + 2) return HostsResult::kBufferTooSmall;
    FILE* hosts = fopen("/etc/hosts", "re");
    if (!hosts) return HostsResult::kNotFound;
    HostsResult result = HostsResult::kNotFound;
    char* text = nullptr;
    size_t capacity = 0;
    ssize_t length;
    Line line;
    while ((length = getline(&text, &capacity, hosts)) > 0) {
        size_t text_length = static_cast<size_t>(length);
        if (!parse(text, af, &line)) continue;
        if (glibc_parse_size(text_length, line.aliases.size()) > buffer_size) {
            result = HostsResult::kBufferTooSmall;
            break;
        }
        if (!visit(line)) break;
    }
    free(text);
    fclose(hosts);
    return result;
}

}  // namespace

HostsResult hosts_by_name(const char* name, int af, HostLookup* out, size_t buffer_size) {
    bool found = false;
    HostsResult scanned = scan(af, buffer_size, [&](const Line& line) {
        if (!names(line, name)) return true;
        if (!found) {
            found = true;
            out->name = line.name;
            out->family = af;
            if (af != AF_UNSPEC)
                out->aliases.insert(out->aliases.end(), line.aliases.begin(), line.aliases.end());
        } else if (af != AF_UNSPEC) {
            // glibc's gethostbyname3_multi: later lines add their aliases, and their name
            // when it differs from the first line's.
            out->aliases.insert(out->aliases.end(), line.aliases.begin(), line.aliases.end());
            if (out->name != line.name) out->aliases.emplace_back(line.name);
        }
        out->addresses.push_back(line.address);
        return multi();
    });
    if (scanned == HostsResult::kBufferTooSmall) return scanned;
    return found ? HostsResult::kFound : HostsResult::kNotFound;
}

HostsResult hosts_by_address(const void* addr, socklen_t len, int af, HostLookup* out,
                             size_t buffer_size) {
    bool found = false;
    HostsResult scanned = scan(af, buffer_size, [&](const Line& line) {
        socklen_t line_len = line.address.family == AF_INET6 ? 16 : 4;
        if (line_len != len || memcmp(line.address.bytes, addr, len) != 0) return true;
        found = true;
        out->name = line.name;
        out->aliases.insert(out->aliases.end(), line.aliases.begin(), line.aliases.end());
        out->family = af;
        out->addresses.push_back(line.address);
        return false;
    });
    if (scanned == HostsResult::kBufferTooSmall) return scanned;
    return found ? HostsResult::kFound : HostsResult::kNotFound;
}

}  // namespace green::hooks
