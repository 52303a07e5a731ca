// getaddrinfo, getnameinfo and the gethostby* family, through "files dns" as glibc's
// nsswitch goes: /etc/hosts read as nss_files reads it (hooks/hosts_file.cpp), then DNS
// queries on the carrier's resolver (runtime/resolver.h: c-ares on the loop), so only the
// calling fiber waits. Everything that needs no lookup is glibc's own. getaddrinfo hands glibc one
// resolved address at a time (AI_NUMERICHOST): services, socket types, flags, error codes and the
// memory of every node are then exactly glibc's, and glibc's freeaddrinfo frees our lists.
// Where nsswitch.conf names sources c-ares cannot serve (myhostname, mdns, ...), the real
// call runs on libuv's thread pool while the fiber is parked.
#include <arpa/inet.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netdb.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "hooks/address_sort.h"
#include "hooks/hooks.h"
#include "hooks/hosts_file.h"
#include "runtime/resolver.h"
#include "runtime/runtime.h"

namespace green::hooks {
namespace {

// True when nsswitch.conf's hosts line names only `files` and `dns` (or is absent, which
// glibc reads as "files dns"): the sources c-ares serves from the same files.
bool nsswitch_sources_served() {
    FILE* conf = fopen("/etc/nsswitch.conf", "re");
    if (!conf) return true;
    bool served = true;
    char line[512];
    while (fgets(line, sizeof line, conf)) {
        char* p = line + strspn(line, " \t");
        if (strncmp(p, "hosts:", 6) != 0) continue;
        p += 6;
        for (char* token = strtok(p, " \t\n"); token; token = strtok(nullptr, " \t\n")) {
            if (token[0] == '[' || token[0] == '#') {  // an action, or the rest is a comment
                if (token[0] == '#') break;
                continue;
            }
            if (strcmp(token, "files") != 0 && strcmp(token, "dns") != 0) served = false;
        }
    }
    fclose(conf);
    return served;
}

// Whether our resolver can answer as glibc would; else glibc runs on the thread pool.
bool resolver_serves() {
    static const bool served = nsswitch_sources_served();
    return served && resolver_available();
}

// Runs `call` (glibc's own function) on libuv's thread pool with the fiber parked.
template <typename Call>
void on_thread_pool(Call& call) {
    run_blocking([](void* arg) { (*static_cast<Call*>(arg))(); }, &call, ParkReason::kDns);
}

// glibc's getaddrinfo reports NO_RECOVERY (a CNAME without addresses) as "no such name".
int eai_of(LookupStatus status) {
    switch (status) {
        case LookupStatus::kOk:
            return 0;
        case LookupStatus::kNoData:
            return EAI_NODATA;
        case LookupStatus::kTryAgain:
            return EAI_AGAIN;
        case LookupStatus::kNoMemory:
            return EAI_MEMORY;
        case LookupStatus::kNotFound:
        case LookupStatus::kNoRecovery:
            break;
    }
    return EAI_NONAME;
}

int h_errno_of(LookupStatus status) {
    switch (status) {
        case LookupStatus::kNotFound:
            return HOST_NOT_FOUND;
        case LookupStatus::kNoData:
            return NO_DATA;
        case LookupStatus::kTryAgain:
            return TRY_AGAIN;
        default:
            return NO_RECOVERY;
    }
}

// Two answers for one name (A and AAAA): the better failure when neither has addresses.
LookupStatus either(LookupStatus a, LookupStatus b) {
    for (LookupStatus s : {LookupStatus::kOk, LookupStatus::kTryAgain, LookupStatus::kNoMemory,
                           LookupStatus::kNoData, LookupStatus::kNoRecovery})
        if (a == s || b == s) return s;
    return LookupStatus::kNotFound;
}

// Sends the queries; an empty name fails as glibc's res_context_querydomain fails it, with
// NO_RECOVERY and nothing sent.
void ask_dns(DnsQuery* queries, size_t count) {
    if (count && queries[0].type != DnsType::kPTR && queries[0].name[0] == '\0') {
        for (size_t i = 0; i < count; ++i) queries[i].status = LookupStatus::kNoRecovery;
        return;
    }
    query_dns(queries, count);
}

DnsQuery address_query(const char* name, int af) {
    DnsQuery query;
    query.type = af == AF_INET6 ? DnsType::kAAAA : DnsType::kA;
    query.name = name;
    return query;
}

// True when the hosts file settled the lookup (found it, or glibc would fail with ERANGE
// there); false: DNS is next.
bool answered_by_hosts(HostsResult result, bool* too_small, LookupStatus* status) {
    if (result == HostsResult::kNotFound) return false;
    if (result == HostsResult::kBufferTooSmall) *too_small = true;
    *status = result == HostsResult::kFound ? LookupStatus::kOk : LookupStatus::kNoRecovery;
    return true;
}

// A name in one family through "files dns" (glibc's gethostbyname3_r via nsswitch).
// `buffer_size`: the _r caller's buffer; *too_small when glibc would fail with ERANGE.
LookupStatus host_by_name(const char* name, int af, HostLookup* out, size_t buffer_size = SIZE_MAX,
                          bool* too_small = nullptr) {
    LookupStatus status;
    if (answered_by_hosts(hosts_by_name(name, af, out, buffer_size), too_small, &status))
        return status;
    DnsQuery query = address_query(name, af);
    ask_dns(&query, 1);
    if (query.status == LookupStatus::kOk) *out = std::move(query.answer);
    return query.status;
}

// An address through "files dns" (glibc's gethostbyaddr_r via nsswitch).
LookupStatus host_by_address(const void* addr, socklen_t len, int af, HostLookup* out,
                             size_t buffer_size = SIZE_MAX, bool* too_small = nullptr) {
    LookupStatus status;
    if (answered_by_hosts(hosts_by_address(addr, len, af, out, buffer_size), too_small, &status))
        return status;
    DnsQuery query;
    query.type = DnsType::kPTR;
    query.address.family = af;
    memcpy(query.address.bytes, addr, len);
    query_dns(&query, 1);
    if (query.status == LookupStatus::kOk) *out = std::move(query.answer);
    return query.status;
}

// Which address families the machine has, as glibc's AI_ADDRCONFIG counts them: any IPv4
// address but 127.0.0.1, any IPv6 address but ::1.
void configured_families(bool* ipv4, bool* ipv6) {
    *ipv4 = *ipv6 = false;
    ifaddrs* interfaces = nullptr;
    if (getifaddrs(&interfaces) != 0) return;
    for (ifaddrs* i = interfaces; i; i = i->ifa_next) {
        if (!i->ifa_addr) continue;
        if (i->ifa_addr->sa_family == AF_INET)
            *ipv4 |= reinterpret_cast<sockaddr_in*>(i->ifa_addr)->sin_addr.s_addr !=
                     htonl(INADDR_LOOPBACK);
        else if (i->ifa_addr->sa_family == AF_INET6)
            *ipv6 |=
                !IN6_IS_ADDR_LOOPBACK(&reinterpret_cast<sockaddr_in6*>(i->ifa_addr)->sin6_addr);
    }
    freeifaddrs(interfaces);
}

// glibc's default hints when the caller gives none.
addrinfo default_hints() {
    addrinfo hints{};
    hints.ai_flags = AI_V4MAPPED | AI_ADDRCONFIG;
    return hints;
}

// The addrinfo list for the resolved addresses: glibc's answer for each address alone,
// joined and ordered as glibc orders one answer. Returns 0 or an EAI_* code.
int build_list(const std::vector<ResolvedAddress>& addresses, const std::string& canonical,
               const char* service, const addrinfo& hints, addrinfo** res) {
    addrinfo per_address = hints;
    per_address.ai_flags = (hints.ai_flags | AI_NUMERICHOST) & ~AI_CANONNAME;
    addrinfo* head = nullptr;
    addrinfo** tail = &head;
    int first_error = 0;
    for (const ResolvedAddress& address : addresses) {
        char text[INET6_ADDRSTRLEN];
        inet_ntop(address.family, address.bytes, text, sizeof text);
        addrinfo* part = nullptr;
        int rc = real::get().getaddrinfo(text, service, &per_address, &part);
        if (rc != 0) {
            if (!first_error) first_error = rc;
            continue;
        }
        *tail = part;
        while (*tail) tail = &(*tail)->ai_next;
    }
    if (!head) return first_error ? first_error : EAI_NONAME;
    sort_like_glibc(&head);
    if (hints.ai_flags & AI_CANONNAME) {
        head->ai_canonname = strdup(canonical.c_str());
        if (!head->ai_canonname) {
            real::get().freeaddrinfo(head);
            return EAI_MEMORY;
        }
    }
    *res = head;
    return 0;
}

// The addresses of `node` for getaddrinfo, in the order glibc collects them before sorting.
// AF_UNSPEC: every hosts line, else A then AAAA answers. AF_INET6 with AI_V4MAPPED: IPv6
// addresses, and IPv4 ones (mapped later) when there are none or AI_ALL asks for both; each
// source (files, then dns) is asked for both before the next is tried.
LookupStatus addresses_for(const char* node, int family, int flags,
                           std::vector<ResolvedAddress>* addresses, std::string* canonical) {
    const bool mapped = family == AF_INET6 && (flags & AI_V4MAPPED);
    const bool all = flags & AI_ALL;
    HostLookup v4, v6;
    if (family == AF_UNSPEC) {
        if (hosts_by_name(node, AF_UNSPEC, &v6) == HostsResult::kFound) {
            *addresses = std::move(v6.addresses);
            *canonical = std::move(v6.name);
            return LookupStatus::kOk;
        }
    } else if (!mapped) {
        HostLookup found;
        LookupStatus status = host_by_name(node, family, &found);
        *addresses = std::move(found.addresses);
        *canonical = std::move(found.name);
        return status;
    } else {
        bool have_v6 = hosts_by_name(node, AF_INET6, &v6) == HostsResult::kFound;
        bool have_v4 =
            (all || !have_v6) && hosts_by_name(node, AF_INET, &v4) == HostsResult::kFound;
        if (have_v6 || have_v4) {
            *canonical = have_v6 ? v6.name : v4.name;
            *addresses = std::move(v6.addresses);
            addresses->insert(addresses->end(), v4.addresses.begin(), v4.addresses.end());
            return LookupStatus::kOk;
        }
    }
    DnsQuery queries[2] = {address_query(node, AF_INET), address_query(node, AF_INET6)};
    ask_dns(queries, 2);
    HostLookup& a = queries[0].answer;
    HostLookup& aaaa = queries[1].answer;
    bool have_a = queries[0].status == LookupStatus::kOk;
    bool have_aaaa = queries[1].status == LookupStatus::kOk;
    if (mapped) {
        if (have_aaaa && !all) have_a = false;
        std::swap(a, aaaa);  // IPv6 first
        std::swap(have_a, have_aaaa);
    }
    if (have_a) *addresses = std::move(a.addresses);
    if (have_aaaa)
        addresses->insert(addresses->end(), aaaa.addresses.begin(), aaaa.addresses.end());
    *canonical = have_a ? a.name : aaaa.name;
    return either(queries[0].status, queries[1].status);
}

}  // namespace

int getaddrinfo(const char* node, const char* service, const addrinfo* hints, addrinfo** res) {
    const auto& real = real::get();
    addrinfo probe = hints ? *hints : default_hints();
    // No name to look up: glibc answers at once.
    if (!node || (probe.ai_flags & AI_NUMERICHOST))
        return real.getaddrinfo(node, service, hints, res);
    if (!resolver_serves()) {
        int rc = 0;
        auto call = [&] { rc = real.getaddrinfo(node, service, hints, res); };
        on_thread_pool(call);
        return rc;
    }
    // glibc checks flags, family, socket type and service before any lookup, and takes a
    // numeric address without one: asking it with AI_NUMERICHOST settles all of that, and
    // only EAI_NONAME means there is a name to look up.
    probe.ai_flags |= AI_NUMERICHOST;
    int rc = real.getaddrinfo(node, service, &probe, res);
    if (rc != EAI_NONAME) return rc;
    probe.ai_flags &= ~AI_NUMERICHOST;

    int family = probe.ai_family;
    if (probe.ai_flags & AI_ADDRCONFIG) {  // glibc narrows the lookup to what is configured
        bool ipv4, ipv6;
        configured_families(&ipv4, &ipv6);
        if (family == AF_UNSPEC && ipv4 != ipv6) family = ipv4 ? AF_INET : AF_INET6;
        if ((family == AF_INET && !ipv4) || (family == AF_INET6 && !ipv6)) return EAI_NONAME;
    }
    std::vector<ResolvedAddress> addresses;
    std::string canonical;
    LookupStatus status = addresses_for(node, family, probe.ai_flags, &addresses, &canonical);
    if (status != LookupStatus::kOk) return eai_of(status);
    return build_list(addresses, canonical, service, probe, res);
}

void freeaddrinfo(addrinfo* list) {
    real::get().freeaddrinfo(list);
}

const char* gai_strerror(int code) {
    return real::get().gai_strerror(code);
}

// ---------------------------------------------------------------------------------------
// getnameinfo

namespace {

// The local domain, as glibc's getnameinfo finds it for NI_NOFQDN: what follows the first
// dot of the host name, or of the name the host name resolves to.
std::string local_domain() {
    char host[256];
    if (gethostname(host, sizeof host) != 0) return "";
    host[sizeof host - 1] = '\0';
    if (const char* dot = strchr(host, '.')) return dot + 1;
    HostLookup found;
    if (host_by_name(host, AF_INET, &found) != LookupStatus::kOk) return "";
    size_t dot = found.name.find('.');
    return dot == std::string::npos ? "" : found.name.substr(dot + 1);
}

}  // namespace

int getnameinfo(const sockaddr* addr, socklen_t addrlen, char* host, socklen_t hostlen, char* serv,
                socklen_t servlen, int flags) {
    const auto& real = real::get();
    bool lookup = host && hostlen > 0 && !(flags & NI_NUMERICHOST) && addr &&
                  addrlen >= sizeof(sa_family_t) &&
                  (addr->sa_family == AF_INET || addr->sa_family == AF_INET6);
    if (!lookup) return real.getnameinfo(addr, addrlen, host, hostlen, serv, servlen, flags);
    if (!resolver_serves()) {
        int rc = 0;
        auto call = [&] {
            rc = real.getnameinfo(addr, addrlen, host, hostlen, serv, servlen, flags);
        };
        on_thread_pool(call);
        return rc;
    }
    // glibc validates the flags and the address, and formats the service and the numeric
    // host; only the name is ours to find.
    char numeric[INET6_ADDRSTRLEN + IF_NAMESIZE + 2];
    int rc = real.getnameinfo(addr, addrlen, numeric, sizeof numeric, serv, servlen,
                              (flags | NI_NUMERICHOST) & ~NI_NAMEREQD);
    if (rc != 0) return rc;
    HostLookup found;
    LookupStatus status;
    if (addr->sa_family == AF_INET)
        status = host_by_address(&reinterpret_cast<const sockaddr_in*>(addr)->sin_addr, 4, AF_INET,
                                 &found);
    else
        status = host_by_address(&reinterpret_cast<const sockaddr_in6*>(addr)->sin6_addr, 16,
                                 AF_INET6, &found);
    std::string name;
    if (status == LookupStatus::kOk) {
        name = found.name;
        if (flags & NI_NOFQDN) {
            std::string domain = local_domain();
            size_t at = domain.empty() ? std::string::npos : name.find(domain);
            if (at != std::string::npos && at > 0 && name[at - 1] == '.') name.resize(at - 1);
        }
    } else if (status == LookupStatus::kTryAgain) {
        return EAI_AGAIN;
    } else if (flags & NI_NAMEREQD) {
        return EAI_NONAME;
    } else {
        name = numeric;
    }
    if (name.size() >= hostlen) return EAI_OVERFLOW;
    memcpy(host, name.c_str(), name.size() + 1);
    return 0;
}

// ---------------------------------------------------------------------------------------
// gethostbyname, gethostbyname2, gethostbyaddr and their _r forms

namespace {

// Lays `found` out in buf the way the _r calls fill their buffer; false if it does not fit.
bool fill_host(const HostLookup& found, hostent* ret, char* buf, size_t buflen) {
    const size_t length = found.family == AF_INET6 ? 16 : 4;
    uintptr_t start = reinterpret_cast<uintptr_t>(buf);
    uintptr_t aligned = (start + alignof(char*) - 1) & ~(uintptr_t{alignof(char*)} - 1);
    size_t need = (aligned - start) +
                  sizeof(char*) * (found.aliases.size() + 1 + found.addresses.size() + 1) +
                  length * found.addresses.size() + found.name.size() + 1;
    for (const std::string& alias : found.aliases) need += alias.size() + 1;
    if (!buf || need > buflen) return false;

    char** aliases = reinterpret_cast<char**>(aligned);
    char** addresses = aliases + found.aliases.size() + 1;
    char* p = reinterpret_cast<char*>(addresses + found.addresses.size() + 1);
    for (size_t i = 0; i < found.addresses.size(); ++i, p += length) {
        memcpy(p, found.addresses[i].bytes, length);
        addresses[i] = p;
    }
    addresses[found.addresses.size()] = nullptr;
    auto put = [&p](const std::string& s) {
        char* at = p;
        memcpy(p, s.c_str(), s.size() + 1);
        p += s.size() + 1;
        return at;
    };
    ret->h_name = put(found.name);
    for (size_t i = 0; i < found.aliases.size(); ++i) aliases[i] = put(found.aliases[i]);
    aliases[found.aliases.size()] = nullptr;
    ret->h_aliases = aliases;
    ret->h_addrtype = found.family;
    ret->h_length = static_cast<int>(length);
    ret->h_addr_list = addresses;
    return true;
}

// What glibc's gethostby*_r return and leave in errno (nss/getXXbyYY_r.c): 0 for success
// and "no such host", ERANGE for a buffer too small, and for "try again" EAGAIN by name but
// 0 by address (its nss_dns reports a failed PTR query as "not found", h_errno TRY_AGAIN).
int finish_r(LookupStatus status, bool by_name, bool too_small, const HostLookup& found,
             hostent* ret, char* buf, size_t buflen, hostent** result, int* h_errnop) {
    *result = nullptr;
    int rc = 0;
    if (status == LookupStatus::kOk && fill_host(found, ret, buf, buflen)) {
        *result = ret;
    } else if (status == LookupStatus::kOk || too_small) {
        *h_errnop = NETDB_INTERNAL;
        rc = ERANGE;
    } else {
        *h_errnop = h_errno_of(status);
        if (status == LookupStatus::kNoMemory) rc = ENOMEM;
        if (status == LookupStatus::kTryAgain && by_name) rc = EAGAIN;
    }
    errno = rc;
    return rc;
}

// A name glibc takes as an address without any lookup (nss's digits-and-dots check).
bool looks_numeric(const char* name) {
    size_t len = strlen(name);
    if (len == 0 || name[len - 1] == '.') return false;
    if (strspn(name, "0123456789.") == len) return true;
    return strchr(name, ':') && strspn(name, "0123456789abcdefABCDEF:.") == len;
}

bool name_lookup_needed(const char* name, int af) {
    return name && !looks_numeric(name) && (af == AF_INET || af == AF_INET6);
}

// glibc fails a bad length or family, and the unspecified address ::, without a lookup.
bool address_lookup_needed(const void* addr, socklen_t len, int type) {
    static const unsigned char zero[16] = {};
    if (!addr) return false;
    if (type == AF_INET) return len == 4;
    return type == AF_INET6 && len == 16 && memcmp(addr, zero, 16) != 0;
}

// The non-_r calls return one static entry, as glibc's do (and, as with glibc, the next call
// from any thread overwrites it).
struct StaticHost {
    hostent entry{};
    std::vector<char> buffer;

    hostent* set(LookupStatus status, const HostLookup& found) {
        hostent* result = nullptr;
        int error = 0;
        for (size_t size = 1024;; size *= 2) {
            if (buffer.size() < size) buffer.resize(size);
            if (finish_r(status, true, false, found, &entry, buffer.data(), buffer.size(), &result,
                         &error) != ERANGE)
                break;
        }
        if (!result) h_errno = error;
        return result;
    }
};
StaticHost g_static_host;

}  // namespace

int gethostbyname2_r(const char* name, int af, hostent* ret, char* buf, size_t buflen,
                     hostent** result, int* h_errnop) {
    const auto& real = real::get();
    if (!name_lookup_needed(name, af))
        return real.gethostbyname2_r(name, af, ret, buf, buflen, result, h_errnop);
    if (!resolver_serves()) {
        int rc = 0;
        auto call = [&] {
            rc = real.gethostbyname2_r(name, af, ret, buf, buflen, result, h_errnop);
        };
        on_thread_pool(call);
        errno = rc;
        return rc;
    }
    HostLookup found;
    bool too_small = false;
    LookupStatus status = host_by_name(name, af, &found, buflen, &too_small);
    return finish_r(status, true, too_small, found, ret, buf, buflen, result, h_errnop);
}

int gethostbyname_r(const char* name, hostent* ret, char* buf, size_t buflen, hostent** result,
                    int* h_errnop) {
    return hooks::gethostbyname2_r(name, AF_INET, ret, buf, buflen, result, h_errnop);
}

int gethostbyaddr_r(const void* addr, socklen_t len, int type, hostent* ret, char* buf,
                    size_t buflen, hostent** result, int* h_errnop) {
    const auto& real = real::get();
    if (!address_lookup_needed(addr, len, type))
        return real.gethostbyaddr_r(addr, len, type, ret, buf, buflen, result, h_errnop);
    if (!resolver_serves()) {
        int rc = 0;
        auto call = [&] {
            rc = real.gethostbyaddr_r(addr, len, type, ret, buf, buflen, result, h_errnop);
        };
        on_thread_pool(call);
        errno = rc;
        return rc;
    }
    HostLookup found;
    bool too_small = false;
    LookupStatus status = host_by_address(addr, len, type, &found, buflen, &too_small);
    return finish_r(status, false, too_small, found, ret, buf, buflen, result, h_errnop);
}

hostent* gethostbyname2(const char* name, int af) {
    const auto& real = real::get();
    if (!name_lookup_needed(name, af)) return real.gethostbyname2(name, af);
    if (!resolver_serves()) {
        hostent* result = nullptr;
        int error = 0;
        auto call = [&] {
            result = real.gethostbyname2(name, af);
            error = h_errno;  // the pool thread's
        };
        on_thread_pool(call);
        h_errno = error;
        return result;
    }
    HostLookup found;
    LookupStatus status = host_by_name(name, af, &found);
    return g_static_host.set(status, found);
}

hostent* gethostbyname(const char* name) {
    return hooks::gethostbyname2(name, AF_INET);
}

hostent* gethostbyaddr(const void* addr, socklen_t len, int type) {
    const auto& real = real::get();
    if (!address_lookup_needed(addr, len, type)) return real.gethostbyaddr(addr, len, type);
    if (!resolver_serves()) {
        hostent* result = nullptr;
        int error = 0;
        auto call = [&] {
            result = real.gethostbyaddr(addr, len, type);
            error = h_errno;
        };
        on_thread_pool(call);
        h_errno = error;
        return result;
    }
    HostLookup found;
    LookupStatus status = host_by_address(addr, len, type, &found);
    return g_static_host.set(status, found);
}

}  // namespace green::hooks
