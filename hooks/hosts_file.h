// /etc/hosts, read the way glibc's nss_files module reads it (nss/nss_files/files-hosts.c),
// so that the names it holds resolve exactly as under glibc: case-insensitive matches on the
// name or an alias, IPv6 loopback and v4-mapped lines answering IPv4 queries, and, with
// `multi on` in /etc/host.conf, every matching line merged into one entry.
#pragma once

#include <sys/socket.h>

#include <cstddef>
#include <cstdint>

#include "runtime/resolver.h"

namespace green::hooks {

enum class HostsResult { kFound, kNotFound, kBufferTooSmall };

// af AF_INET or AF_INET6: glibc's gethostbyname3_r. af AF_UNSPEC: its gethostbyname4_r
// (every line's address in its own family; name is the first line's; no aliases).
// `buffer_size` is the caller's _r buffer: glibc parses each line inside it and fails with
// ERANGE when one does not fit, found or not.
HostsResult hosts_by_name(const char* name, int af, HostLookup* out, size_t buffer_size = SIZE_MAX);
// glibc's gethostbyaddr_r: the first line with that address.
HostsResult hosts_by_address(const void* addr, socklen_t len, int af, HostLookup* out,
                             size_t buffer_size = SIZE_MAX);

}  // namespace green::hooks
