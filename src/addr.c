/*
 * addr.c - socket addresses to text and back.
 */
#include "addr.h"

#include <stdio.h>
#include <string.h>

int addr_host_port(const union addr *a, char *host, size_t len)
{
    if (a->sa.sa_family == AF_INET6) {
        uv_ip6_name(&a->in6, host, len);
        return ntohs(a->in6.sin6_port);
    }
    if (a->sa.sa_family == AF_INET) {
        uv_ip4_name(&a->in, host, len);
        return ntohs(a->in.sin_port);
    }
    snprintf(host, len, "?");
    return 0;
}

const char *addr_format(const union addr *a, char *buf, size_t len)
{
    char host[INET6_ADDRSTRLEN + 16];
    int port = addr_host_port(a, host, sizeof host);
    if (a->sa.sa_family == AF_INET6)
        snprintf(buf, len, "[%s]:%d", host, port);
    else
        snprintf(buf, len, "%s:%d", host, port);
    return buf;
}

int addr_from_sockaddr(union addr *a, const struct sockaddr *sa)
{
    memset(a, 0, sizeof *a);
    if (sa->sa_family == AF_INET)
        memcpy(&a->in, sa, sizeof a->in);
    else if (sa->sa_family == AF_INET6)
        memcpy(&a->in6, sa, sizeof a->in6);
    else
        return UV_EAFNOSUPPORT;
    return 0;
}

int addr_resolve_blocking(uv_loop_t *loop, const char *host, int port, union addr *out)
{
    /* Literals need no lookup, and must not depend on the resolver. */
    if (uv_ip4_addr(host, port, &out->in) == 0 || uv_ip6_addr(host, port, &out->in6) == 0)
        return 0;
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE};
    char service[16];
    snprintf(service, sizeof service, "%d", port);
    uv_getaddrinfo_t req;
    int rc = uv_getaddrinfo(loop, &req, NULL, host, service, &hints);
    if (rc != 0)
        return rc;
    rc = UV_EAI_NONAME;
    for (struct addrinfo *ai = req.addrinfo; ai; ai = ai->ai_next) {
        if (addr_from_sockaddr(out, ai->ai_addr) == 0) {
            rc = 0;
            break;
        }
    }
    uv_freeaddrinfo(req.addrinfo);
    return rc;
}
