/*
 * addr.h - socket addresses: printing them the way users type them, and
 * turning a host and port into one.
 */
#ifndef LUAECHO_ADDR_H
#define LUAECHO_ADDR_H

#include <stddef.h>
#include <uv.h>

/* Room for "[ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255%ifname]:65535". */
#define ADDR_STRLEN 80

/* A peer on a Unix socket: its credentials (SO_PEERCRED), not its path,
 * which is nearly always empty and would make every address 110 bytes. */
struct addr_local {
    sa_family_t family; /* AF_UNIX, where sockaddr keeps its family */
    int pid;            /* 0: not known (a peer in another PID namespace) */
    unsigned uid, gid;
};

/* An IPv4 or IPv6 socket address, or a Unix socket's peer: small enough
 * to keep per connection. */
union addr {
    struct sockaddr sa;
    struct sockaddr_in in;
    struct sockaddr_in6 in6;
    struct addr_local local;
};

/* "127.0.0.1:2222", "[::1]:2222" or "unix peer (pid 12, uid 1000)" into
 * buf (ADDR_STRLEN bytes). */
const char *addr_format(const union addr *a, char *buf, size_t len);
/* The host part alone ("::1", no brackets) into buf; returns the port. */
int addr_host_port(const union addr *a, char *host, size_t len);
/* Copy a sockaddr of either IP family into 'a' (AF_UNIX: a peer with no
 * credentials yet). Returns 0 or UV_EAFNOSUPPORT. */
int addr_from_sockaddr(union addr *a, const struct sockaddr *sa);

/* Resolve host and port for a listener, blocking: only before the loop runs. */
int addr_resolve_blocking(uv_loop_t *loop, const char *host, int port, union addr *out);



/* Resolve host and port without blocking the loop. 'done' gets 0 and the
 * first usable address, or a libuv error. The request frees itself. */
typedef void (*addr_resolved_cb)(void *data, int status, const union addr *addr);
int addr_resolve(uv_loop_t *loop, const char *host, int port, addr_resolved_cb done, void *data);

#endif
