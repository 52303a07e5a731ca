// The order glibc's getaddrinfo gives its answers: RFC 3484/6724 destination address
// selection with glibc's default tables, for lists we assemble from several of its results.
#pragma once

#include <netdb.h>

namespace green::hooks {

// Reorders `*list` in place as glibc's getaddrinfo would (a no-op for one address). Never
// blocks: source addresses come from connect() on UDP sockets, which sends nothing.
void sort_like_glibc(addrinfo** list);

}  // namespace green::hooks
