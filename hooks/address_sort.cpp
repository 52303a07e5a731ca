// glibc's destination address sort (getaddrinfo.c: rfc3484_sort) with its default label,
// precedence and scope tables. Rules 3, 4 and 7 (deprecated, home and tunnelled source
// addresses) need flags that only netlink gives; they are not applied (docs/compat.md).
// /etc/gai.conf is not read: Debian ships it with every line commented out.
#include "hooks/address_sort.h"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "hooks/real.h"

namespace green::hooks {
namespace {

struct PrefixEntry {
    unsigned char prefix[16];
    unsigned bits;
    int value;
};

// glibc's default_labels and default_precedence (RFC 3484, with site-local and ULA labels).
const PrefixEntry kLabels[] = {
    {{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}, 128, 0},
    {{0x20, 0x02}, 16, 2},
    {{0}, 96, 3},
    {{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff}, 96, 4},
    {{0xfe, 0xc0}, 10, 5},
    {{0xfc}, 7, 6},
    {{0x20, 0x01}, 32, 7},
    {{0}, 0, 1},
};
const PrefixEntry kPrecedence[] = {
    {{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}, 128, 50},
    {{0x20, 0x02}, 16, 30},
    {{0}, 96, 20},
    {{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff}, 96, 10},
    {{0}, 0, 40},
};

// An address as IPv6 (IPv4 mapped), the form the tables speak of.
struct Address16 {
    unsigned char bytes[16] = {};
    bool v4 = false;
};

Address16 as16(const sockaddr* sa) {
    Address16 a;
    if (sa->sa_family == AF_INET6) {
        memcpy(a.bytes, &reinterpret_cast<const sockaddr_in6*>(sa)->sin6_addr, 16);
    } else {
        a.v4 = true;
        a.bytes[10] = a.bytes[11] = 0xff;
        memcpy(a.bytes + 12, &reinterpret_cast<const sockaddr_in*>(sa)->sin_addr, 4);
    }
    return a;
}

template <size_t N>
int match(const Address16& a, const PrefixEntry (&table)[N]) {
    for (const PrefixEntry& e : table) {
        unsigned full = e.bits / 8, rest = e.bits % 8;
        if (memcmp(a.bytes, e.prefix, full) != 0) continue;
        if (rest) {
            unsigned char mask = static_cast<unsigned char>(0xff00 >> rest);
            if ((a.bytes[full] & mask) != (e.prefix[full] & mask)) continue;
        }
        return e.value;
    }
    return table[N - 1].value;
}

// glibc's get_scope, with its default IPv4 scope table.
int scope_of(const Address16& a) {
    if (a.v4) {
        uint32_t v =
            (uint32_t(a.bytes[12]) << 24) | (a.bytes[13] << 16) | (a.bytes[14] << 8) | a.bytes[15];
        if ((v & 0xffff0000) == 0xa9fe0000 || (v & 0xff000000) == 0x7f000000) return 2;
        if ((v & 0xff000000) == 0x0a000000 || (v & 0xfff00000) == 0xac100000 ||
            (v & 0xffff0000) == 0xc0a80000)
            return 5;
        return 14;
    }
    if (a.bytes[0] == 0xff) return a.bytes[1] & 0xf;  // multicast
    bool loopback = true;
    for (int i = 0; i < 15; ++i) loopback &= a.bytes[i] == 0;
    loopback &= a.bytes[15] == 1;
    if ((a.bytes[0] == 0xfe && (a.bytes[1] & 0xc0) == 0x80) || loopback) return 2;
    if (a.bytes[0] == 0xfe && (a.bytes[1] & 0xc0) == 0xc0) return 5;
    return 14;
}

// Position of the highest set bit counted from the top (glibc's fls: 32 for 0).
int leading_zeros(uint32_t v) {
    return v ? __builtin_clz(v) : 32;
}

struct Entry {
    addrinfo* dest;
    Address16 dest16;
    Address16 source16;
    bool got_source = false;
    unsigned prefix_len = 0;  // of the interface address the source belongs to
    size_t index;
};

// The prefix length of the interface address `source` is, as glibc's __check_pf reports it;
// IPv4 loopback sources count as 127.0.0.1 (glibc's special case for lo).
unsigned interface_prefix(const ifaddrs* interfaces, const sockaddr* source) {
    for (const ifaddrs* i = interfaces; i; i = i->ifa_next) {
        if (!i->ifa_addr || !i->ifa_netmask || i->ifa_addr->sa_family != source->sa_family)
            continue;
        unsigned bits = 0;
        if (source->sa_family == AF_INET) {
            in_addr want = reinterpret_cast<const sockaddr_in*>(source)->sin_addr;
            if ((ntohl(want.s_addr) >> 24) == 127) want.s_addr = htonl(INADDR_LOOPBACK);
            if (reinterpret_cast<const sockaddr_in*>(i->ifa_addr)->sin_addr.s_addr != want.s_addr)
                continue;
            bits = static_cast<unsigned>(__builtin_popcount(
                reinterpret_cast<const sockaddr_in*>(i->ifa_netmask)->sin_addr.s_addr));
        } else {
            if (memcmp(&reinterpret_cast<const sockaddr_in6*>(i->ifa_addr)->sin6_addr,
                       &reinterpret_cast<const sockaddr_in6*>(source)->sin6_addr, 16) != 0)
                continue;
            const auto* mask = reinterpret_cast<const sockaddr_in6*>(i->ifa_netmask);
            for (unsigned char byte : mask->sin6_addr.s6_addr) bits += __builtin_popcount(byte);
        }
        return bits;
    }
    return 0;
}

// glibc's rfc3484_sort without rules 3, 4 and 7; true if a goes before b.
bool before(const Entry& a, const Entry& b) {
    // Rule 1: avoid unusable destinations.
    if (a.got_source != b.got_source) return a.got_source;
    // Rule 2: prefer matching scope.
    int a_scope = scope_of(a.dest16), b_scope = scope_of(b.dest16);
    if (a.got_source) {
        bool a_match = a_scope == scope_of(a.source16);
        bool b_match = b_scope == scope_of(b.source16);
        if (a_match != b_match) return a_match;
        // Rule 5: prefer matching label.
        a_match = match(a.dest16, kLabels) == match(a.source16, kLabels);
        b_match = match(b.dest16, kLabels) == match(b.source16, kLabels);
        if (a_match != b_match) return a_match;
    }
    // Rule 6: prefer higher precedence.
    int a_prec = match(a.dest16, kPrecedence), b_prec = match(b.dest16, kPrecedence);
    if (a_prec != b_prec) return a_prec > b_prec;
    // Rule 8: prefer smaller scope.
    if (a_scope != b_scope) return a_scope < b_scope;
    // Rule 9: longest matching prefix (IPv4: only within the source's subnet).
    if (a.got_source && a.dest->ai_family == b.dest->ai_family) {
        int a_bits = 0, b_bits = 0;
        if (a.dest->ai_family == AF_INET) {
            auto v4 = [](const Address16& x) {
                uint32_t v;
                memcpy(&v, x.bytes + 12, 4);
                return ntohl(v);
            };
            auto common = [&](const Entry& e) {
                uint32_t mask = e.prefix_len ? 0xffffffffu << (32 - e.prefix_len) : 0xffffffffu;
                uint32_t d = v4(e.dest16), s = v4(e.source16);
                return (d & mask) == (s & mask) ? leading_zeros(d ^ s) : 0;
            };
            a_bits = common(a);
            b_bits = common(b);
        } else {
            int word = 0;
            for (; word < 4; ++word)
                if (memcmp(a.dest16.bytes + 4 * word, a.source16.bytes + 4 * word, 4) != 0 ||
                    memcmp(b.dest16.bytes + 4 * word, b.source16.bytes + 4 * word, 4) != 0)
                    break;
            if (word < 4) {
                auto diff = [&](const Entry& e) {
                    uint32_t d, s;
                    memcpy(&d, e.dest16.bytes + 4 * word, 4);
                    memcpy(&s, e.source16.bytes + 4 * word, 4);
                    return leading_zeros(ntohl(d ^ s));
                };
                a_bits = diff(a);
                b_bits = diff(b);
            }
        }
        if (a_bits != b_bits) return a_bits > b_bits;
    }
    // Rule 10: keep the order the sources gave.
    return a.index < b.index;
}

}  // namespace

void sort_like_glibc(addrinfo** list) {
    std::vector<Entry> entries;
    for (addrinfo* ai = *list; ai; ai = ai->ai_next)
        entries.push_back(Entry{ai, as16(ai->ai_addr), {}, false, 0, entries.size()});
    // glibc sorts only when there is more than one address (not entry).
    bool several = false;
    for (const Entry& e : entries)
        several |= e.dest->ai_addrlen != entries[0].dest->ai_addrlen ||
                   memcmp(e.dest->ai_addr, entries[0].dest->ai_addr, e.dest->ai_addrlen) != 0;
    if (!several) return;

    ifaddrs* interfaces = nullptr;
    getifaddrs(&interfaces);
    int sockets[2] = {-1, -1};  // AF_INET, AF_INET6
    for (size_t i = 0; i < entries.size(); ++i) {
        Entry& e = entries[i];
        if (i > 0 && e.dest->ai_addrlen == entries[i - 1].dest->ai_addrlen &&
            memcmp(e.dest->ai_addr, entries[i - 1].dest->ai_addr, e.dest->ai_addrlen) == 0) {
            e.got_source = entries[i - 1].got_source;
            e.source16 = entries[i - 1].source16;
            e.prefix_len = entries[i - 1].prefix_len;
            continue;
        }
        int& fd = sockets[e.dest->ai_family == AF_INET6];
        if (fd < 0) {
            fd = socket(e.dest->ai_family, SOCK_DGRAM | SOCK_CLOEXEC, IPPROTO_IP);
        } else {
            sockaddr reset{};
            reset.sa_family = AF_UNSPEC;
            real::get().connect(fd, &reset, sizeof reset);
        }
        sockaddr_storage source{};
        socklen_t len = sizeof source;
        if (fd >= 0 && real::get().connect(fd, e.dest->ai_addr, e.dest->ai_addrlen) == 0 &&
            getsockname(fd, reinterpret_cast<sockaddr*>(&source), &len) == 0) {
            e.got_source = true;
            e.source16 = as16(reinterpret_cast<sockaddr*>(&source));
            e.prefix_len = interface_prefix(interfaces, reinterpret_cast<sockaddr*>(&source));
        }
    }
    for (int fd : sockets)
        if (fd >= 0) real::get().close(fd);
    if (interfaces) freeifaddrs(interfaces);

    std::sort(entries.begin(), entries.end(), before);
    for (size_t i = 0; i + 1 < entries.size(); ++i) entries[i].dest->ai_next = entries[i + 1].dest;
    entries.back().dest->ai_next = nullptr;
    *list = entries.front().dest;
}

}  // namespace green::hooks
