// Name lookups that park only the calling fiber: one c-ares channel per carrier, whose
// sockets and timeouts are watched by handles on the carrier's libuv loop; and run_blocking,
// which parks a fiber while a call that cannot be made cooperative runs on libuv's thread
// pool. Knows the resolver's words (names, addresses, host entries) but nothing of
// getaddrinfo's or gethostbyname's semantics: hooks/dns.cpp builds those on top.
// Every function here that parks must be called on a fiber.
#pragma once

#include <string>
#include <vector>

#include "runtime/fiber.h"

namespace green {

enum class LookupStatus : uint8_t {
    kOk,
    kNotFound,    // no such name (NXDOMAIN)
    kNoData,      // the name exists but has no record of the type asked for
    kNoRecovery,  // an answer without records of the type (a CNAME alone), or malformed
    kTryAgain,    // no answer: timeout, server failure, refused
    kNoMemory,
};

struct ResolvedAddress {
    int family = 0;  // AF_INET (4 bytes used) or AF_INET6 (16 bytes)
    unsigned char bytes[16] = {};
};

// A host entry, as gethostbyname and gethostbyaddr report it.
struct HostLookup {
    std::string name;
    std::vector<std::string> aliases;
    int family = 0;
    std::vector<ResolvedAddress> addresses;
};

enum class DnsType : uint8_t { kA, kAAAA, kPTR };

// One DNS query. A and AAAA queries apply resolv.conf's search list and ndots, as glibc's
// res_search does; a PTR query asks for `address`'s in-addr.arpa / ip6.arpa name.
struct DnsQuery {
    DnsType type = DnsType::kA;
    const char* name = nullptr;
    ResolvedAddress address;
    LookupStatus status = LookupStatus::kNoRecovery;
    // A, AAAA: name = the records' owner (CNAMEs followed), aliases = the CNAMEs on the way.
    // PTR: name = the first PTR target, addresses = {address}.
    HostLookup answer;
};

// Where the resolver finds DNS servers. `servers` (c-ares's "host[:port],..." form, already
// validated) replaces resolv.conf's nameservers; null keeps them. Call before any lookup.
void configure_resolver(const char* servers);

// False when the channel cannot be made (the caller falls back to glibc on the thread pool).
bool resolver_available();

// Sends every query at once and parks until each is answered or has failed.
void query_dns(DnsQuery* queries, size_t count);

// The resolver's timeout per try and number of tries, as glibc reads them: resolv.conf's
// `options timeout:N attempts:N`, overridden by the RES_OPTIONS environment variable.
struct ResolverTiming {
    int timeout_ms = 5000;
    int tries = 2;
};
ResolverTiming resolver_timing();

// Runs fn(arg) on libuv's thread pool (an OS thread the runtime does not manage, so every
// call it makes is glibc's own) while the calling fiber is parked. If no pool thread can be
// had, runs fn(arg) here, blocking the carrier.
void run_blocking(void (*fn)(void*), void* arg, ParkReason reason);

}  // namespace green
