/*
 * addr.c - socket addresses to text and back.
 */
#include "addr.h"

#include <stdio.h>
#include <stdlib.h>
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
    if (a->sa.sa_family == AF_UNIX) {
        if (a->local.pid > 0)
            snprintf(buf, len, "unix peer (pid %d, uid %u)", a->local.pid, a->local.uid);
        else
            snprintf(buf, len, "unix peer");
        return buf;
    }
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
    else if (sa->sa_family == AF_UNIX)
        a->local.family = AF_UNIX;
    else
        return UV_EAFNOSUPPORT;
    return 0;
}

/* The first IPv4 or IPv6 address of a lookup. */
static int first_address(const struct addrinfo *list, union addr *out)
{
    for (const struct addrinfo *ai = list; ai; ai = ai->ai_next) {
        if (addr_from_sockaddr(out, ai->ai_addr) == 0)
            return 0;
    }
    return UV_EAI_NONAME;
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
    rc = first_address(req.addrinfo, out);
    uv_freeaddrinfo(req.addrinfo);
    return rc;
}

struct resolve_req {
    uv_getaddrinfo_t req;
    addr_resolved_cb done;
    void *data;
};

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    struct resolve_req *r = (struct resolve_req *)req;
    union addr a;
    if (status == 0)
        status = first_address(res, &a);
    uv_freeaddrinfo(res);
    r->done(r->data, status, status == 0 ? &a : NULL);
    free(r);
}

int addr_resolve(uv_loop_t *loop, const char *host, int port, addr_resolved_cb done, void *data)
{
    struct resolve_req *r = malloc(sizeof *r);
    if (!r)
        return UV_ENOMEM;
    r->done = done;
    r->data = data;
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    char service[16];
    snprintf(service, sizeof service, "%d", port);
    int rc = uv_getaddrinfo(loop, &r->req, on_resolved, host, service, &hints);
    if (rc != 0)
        free(r);
    return rc;
}
