/* resolve_table: resolves a fixed table of inputs with getaddrinfo, getnameinfo and the
 * gethostby* calls and prints every result in one canonical line per case. Plain C, no
 * knowledge of libgreen: integration/dns_compare.sh runs it natively and under the shim and
 * requires identical output.
 *
 *   resolve_table [--dns]   --dns adds the names served by the test's DNS server
 *
 * The hosts file the table expects is the one dns_compare.sh mounts (see there); without
 * --dns only localhost, numeric hosts and services are used, which any /etc/hosts has. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

static const char* text_or_null(const char* s) {
    return s ? s : "(null)";
}

static void print_address(const struct sockaddr* sa) {
    char host[INET6_ADDRSTRLEN + 16], serv[16];
    socklen_t len =
        sa->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
    int rc =
        getnameinfo(sa, len, host, sizeof host, serv, sizeof serv, NI_NUMERICHOST | NI_NUMERICSERV);
    if (rc)
        printf(" <%s>", gai_strerror(rc));
    else
        printf(" %s/%s", host, serv);
}

static void gai(const char* node, const char* service, int family, int flags, int socktype,
                int protocol) {
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = family;
    hints.ai_flags = flags;
    hints.ai_socktype = socktype;
    hints.ai_protocol = protocol;
    int rc = getaddrinfo(node, service, &hints, &res);
    printf("getaddrinfo(%s, %s, family=%d flags=%#x socktype=%d protocol=%d) = %d",
           text_or_null(node), text_or_null(service), family, flags, socktype, protocol, rc);
    if (rc) {
        printf(" (%s)\n", gai_strerror(rc));
        return;
    }
    for (struct addrinfo* ai = res; ai; ai = ai->ai_next) {
        printf(" |%d/%d/%d", ai->ai_family, ai->ai_socktype, ai->ai_protocol);
        print_address(ai->ai_addr);
        if (ai->ai_canonname) printf(" canon=%s", ai->ai_canonname);
    }
    printf("\n");
    freeaddrinfo(res);
}

static void gni(const char* address, int port, int flags, socklen_t hostlen) {
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    socklen_t len;
    if (strchr(address, ':')) {
        struct sockaddr_in6* s6 = (struct sockaddr_in6*)&ss;
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons((unsigned short)port);
        inet_pton(AF_INET6, address, &s6->sin6_addr);
        len = sizeof *s6;
    } else {
        struct sockaddr_in* s4 = (struct sockaddr_in*)&ss;
        s4->sin_family = AF_INET;
        s4->sin_port = htons((unsigned short)port);
        inet_pton(AF_INET, address, &s4->sin_addr);
        len = sizeof *s4;
    }
    char host[256] = "", serv[64] = "";
    int rc = getnameinfo((struct sockaddr*)&ss, len, host, hostlen, serv, sizeof serv, flags);
    printf("getnameinfo(%s, %d, flags=%#x, hostlen=%u) = %d", address, port, flags,
           (unsigned)hostlen, rc);
    if (rc)
        printf(" (%s)\n", gai_strerror(rc));
    else
        printf(" host=%s serv=%s\n", host, serv);
}

static void print_host(const struct hostent* h) {
    printf(" name=%s type=%d length=%d aliases=[", h->h_name, h->h_addrtype, h->h_length);
    for (char** a = h->h_aliases; *a; ++a) printf("%s%s", a == h->h_aliases ? "" : " ", *a);
    printf("] addresses=[");
    for (char** a = h->h_addr_list; *a; ++a) {
        char text[INET6_ADDRSTRLEN];
        inet_ntop(h->h_addrtype, *a, text, sizeof text);
        printf("%s%s", a == h->h_addr_list ? "" : " ", text);
    }
    printf("]\n");
}

static void ghbn(const char* name, int family) {
    h_errno = 0;
    struct hostent* h = family ? gethostbyname2(name, family) : gethostbyname(name);
    printf("gethostbyname%s(%s, %d) =", family ? "2" : "", name, family);
    if (!h)
        printf(" NULL h_errno=%d\n", h_errno);
    else
        print_host(h);
}

static void ghbn_r(const char* name, int family, size_t buflen) {
    struct hostent entry, *result = NULL;
    char* buf = malloc(buflen);
    int herr = 0;
    int rc = gethostbyname2_r(name, family, &entry, buf, buflen, &result, &herr);
    printf("gethostbyname2_r(%s, %d, buflen=%zu) = %d errno=%d result=%s", name, family, buflen, rc,
           errno, result ? "set" : "NULL");
    if (result)
        print_host(result);
    else
        printf(" h_errno=%d\n", herr);
    free(buf);
}

static void ghba(const char* address, int family, int length, size_t buflen) {
    unsigned char bytes[16] = {0};
    inet_pton(family == AF_INET6 ? AF_INET6 : AF_INET, address, bytes);
    struct hostent entry, *result = NULL;
    char* buf = malloc(buflen);
    int herr = 0;
    int rc = gethostbyaddr_r(bytes, (socklen_t)length, family, &entry, buf, buflen, &result, &herr);
    printf("gethostbyaddr_r(%s, %d, %d, buflen=%zu) = %d result=%s", address, length, family,
           buflen, rc, result ? "set" : "NULL");
    if (result)
        print_host(result);
    else
        printf(" h_errno=%d\n", herr);
    free(buf);
    h_errno = 0;
    struct hostent* h = gethostbyaddr(bytes, (socklen_t)length, family);
    printf("gethostbyaddr(%s, %d, %d) =", address, length, family);
    if (!h)
        printf(" NULL h_errno=%d\n", h_errno);
    else
        print_host(h);
}

int main(int argc, char** argv) {
    int dns = argc > 1 && !strcmp(argv[1], "--dns");
    setvbuf(stdout, NULL, _IOLBF, 0);

    /* Numeric hosts, no node, services, socket types and the errors glibc checks first. */
    const char* numeric[] = {"127.0.0.1", "127.1", "0x7f.1", "::1", "::ffff:127.0.0.1",
                             "1.2.3.4.5", "*",     "",       NULL};
    for (const char** n = numeric; *n; ++n) {
        gai(*n, "80", AF_UNSPEC, 0, 0, 0);
        gai(*n, "80", AF_INET6, AI_V4MAPPED, SOCK_STREAM, 0);
    }
    gai(NULL, "http", AF_UNSPEC, AI_PASSIVE, SOCK_STREAM, 0);
    gai(NULL, "http", AF_UNSPEC, 0, 0, 0);
    gai(NULL, "http", AF_UNSPEC, AI_CANONNAME, 0, 0);
    gai(NULL, NULL, AF_UNSPEC, 0, 0, 0);
    gai("localhost", "http", AF_UNSPEC, AI_NUMERICSERV, 0, 0);
    gai("localhost", "80", AF_UNSPEC, AI_NUMERICHOST, 0, 0);
    gai("localhost", "no-such-service", AF_UNSPEC, 0, 0, 0);
    gai("localhost", "domain", AF_INET, 0, SOCK_DGRAM, 0);
    gai("localhost", "tftp", AF_INET, 0, SOCK_STREAM, 0);
    gai("localhost", "80", AF_INET, 0, SOCK_STREAM, IPPROTO_UDP);
    gai("localhost", "80", AF_INET, 0, SOCK_SEQPACKET, 0);
    gai("localhost", "80", AF_INET, 0, 0, IPPROTO_SCTP);
    gai("localhost", "80", AF_UNIX, 0, 0, 0);
    gai("localhost", "80", AF_UNSPEC, 0x10000, 0, 0);
    gai("no-such-name.invalid", "no-such-service", AF_UNSPEC, 0, 0, 0);

    /* Names from the hosts file. */
    const char* hosts[] = {"localhost", "LocalHost", "localhost.", NULL};
    const char* more_hosts[] = {"multi.test",   "multialias",    "MULTI.test",  "web.test",
                                "www.web.test", "ip6-localhost", "v6only.test", NULL};
    const char** lists[] = {hosts, dns ? more_hosts : NULL};
    for (int l = 0; l < 2 && lists[l]; ++l) {
        for (const char** n = lists[l]; *n; ++n) {
            gai(*n, "80", AF_UNSPEC, AI_CANONNAME, 0, 0);
            gai(*n, NULL, AF_INET, 0, SOCK_STREAM, 0);
            gai(*n, "ssh", AF_INET6, 0, 0, 0);
            gai(*n, "ssh", AF_INET6, AI_V4MAPPED, SOCK_STREAM, 0);
            gai(*n, "ssh", AF_INET6, AI_V4MAPPED | AI_ALL, SOCK_STREAM, 0);
            gai(*n, "80", AF_UNSPEC, AI_ADDRCONFIG, SOCK_DGRAM, 0);
            ghbn(*n, 0);
            ghbn(*n, AF_INET6);
            ghbn_r(*n, AF_INET, 4096);
            ghbn_r(*n, AF_INET, 16);
        }
    }
    ghbn("127.0.0.1", 0);
    ghbn("::1", AF_INET6);
    ghbn_r("127.0.0.1", AF_INET, 4096);

    gni("127.0.0.1", 80, 0, 256);
    gni("127.0.0.1", 80, NI_NUMERICHOST | NI_NUMERICSERV, 256);
    gni("127.0.0.1", 53, NI_DGRAM, 256);
    gni("127.0.0.1", 80, 0, 4);
    gni("::1", 22, 0, 256);
    gni("192.0.2.99", 80, 0, 256);
    gni("192.0.2.99", 80, NI_NAMEREQD, 256);
    gni("192.0.2.99", 80, 0x4000, 256);
    ghba("127.0.0.1", AF_INET, 4, 4096);
    ghba("127.0.0.1", AF_INET, 4, 8);
    ghba("127.0.0.1", AF_INET, 3, 4096);
    ghba("::", AF_INET6, 16, 4096);
    ghba("::1", AF_INET6, 16, 4096);

    if (dns) {
        /* Names only the DNS server knows (a CNAME, both families, IPv6 only, none). */
        const char* served[] = {"name.test",    "alias.test", "dual.test", "six.test",
                                "nothere.test", "name.test.", "NAME.TEST", NULL};
        for (const char** n = served; *n; ++n) {
            gai(*n, "80", AF_UNSPEC, AI_CANONNAME, 0, 0);
            gai(*n, "http", AF_INET, AI_CANONNAME, SOCK_STREAM, 0);
            gai(*n, "80", AF_INET6, 0, SOCK_STREAM, 0);
            gai(*n, "80", AF_INET6, AI_V4MAPPED, SOCK_STREAM, 0);
            gai(*n, "80", AF_INET6, AI_V4MAPPED | AI_ALL, SOCK_STREAM, 0);
            ghbn(*n, 0);
            ghbn(*n, AF_INET6);
            ghbn_r(*n, AF_INET, 4096);
        }
        gni("10.1.2.3", 80, 0, 256);
        gni("10.1.2.3", 80, NI_NOFQDN, 256);
        gni("192.0.2.20", 80, 0, 256);
        gni("192.0.2.20", 80, NI_NAMEREQD, 256);
        gni("2001:db8::20", 80, NI_NAMEREQD, 256);
        ghba("10.1.2.3", AF_INET, 4, 4096);
        ghba("192.0.2.20", AF_INET, 4, 4096);
        ghba("2001:db8::20", AF_INET6, 16, 4096);
        ghba("192.0.2.99", AF_INET, 4, 4096);
    }
    return 0;
}
