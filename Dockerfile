# luaecho in a container: run it, telnet in, swap the handler by mounting a script.
#
#   docker build -t luaecho .
#   docker run --rm -p 2222:2222 luaecho                     # the bundled echo.lua
#   docker run --rm -p 2222:2222 -v "$PWD/my.lua:/scripts/my.lua:ro" luaecho /scripts/my.lua
#   docker run --rm -p 3000:3000 -e LUAECHO_PORT=3000 luaecho
#
# Both stages start from debian:bookworm-slim and take everything else from
# Debian packages, so the build needs no registry but Debian's and no network
# but the apt mirror. The build stage is thrown away: the image holds the two
# runtime libraries, the installed binary and its Lua files.
#
# Where no registry can be reached, a Debian 12 image prepared locally can
# stand in for the base of both stages:
#   podman build --pull=never --build-arg BASE_IMAGE=localhost/my-bookworm -t luaecho .

ARG BASE_IMAGE=debian:bookworm-slim

FROM ${BASE_IMAGE} AS build

# A C toolchain without build-essential (which would add g++ and dpkg-dev):
# the project is C only.
RUN set -eux; \
    apt-get update; \
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        cmake gcc libc6-dev make pkg-config libuv1-dev liblua5.4-dev libssl-dev libhiredis-dev; \
    rm -rf /var/lib/apt/lists/*

WORKDIR /src
COPY . .

# The install prefix is the one the runtime stage uses (/usr/local), given at
# configure time and at install time, so the binary finds its bundled scripts
# whether it locates them from its own path or from a compiled-in prefix.
# DESTDIR stages the tree for the COPY below.
RUN set -eux; \
    cmake -S . -B /build -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX=/usr/local; \
    cmake --build /build --parallel "$(nproc)"; \
    DESTDIR=/staging cmake --install /build --prefix /usr/local --strip; \
    /staging/usr/local/bin/luaecho --version

FROM ${BASE_IMAGE}

# Runtime libraries only. The base image keeps no pkgcache, but apt still
# leaves the downloaded .debs, the package lists and its logs: none of that
# belongs in the image.
RUN set -eux; \
    apt-get update; \
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        libuv1 liblua5.4-0 libssl3 libhiredis0.14 ca-certificates; \
    apt-get clean; \
    rm -rf /var/lib/apt/lists/* /var/log/apt/* /var/log/dpkg.log; \
    useradd --system --uid 10001 --user-group --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin luaecho

COPY --from=build /staging/usr/local/ /usr/local/

# Inside a container the server must listen on every interface to be
# reachable through a published port. Through the environment rather than a
# flag, so `--host`/`--port` given to `docker run` still override it.
ENV LUAECHO_HOST=0.0.0.0 \
    LUAECHO_PORT=2222
EXPOSE 2222

# Relative script names resolve here: -v "$PWD:/scripts:ro" ... luaecho my.lua
WORKDIR /scripts
USER 10001:10001

# A real TCP connect to the port luaecho listens on, with bash's /dev/tcp:
# bash is already in the base image, so the check costs no package (curl or
# netcat would add one), and it fails at once when nothing listens. It follows
# LUAECHO_PORT; after `--port N` instead, set -e LUAECHO_PORT=N as well.
# Each check is one short connection, so the handler sees it come and go.
HEALTHCHECK --interval=30s --timeout=3s --start-period=5s --retries=3 \
    CMD ["bash", "-c", "exec 3<>\"/dev/tcp/127.0.0.1/${LUAECHO_PORT:-2222}\""]

# luaecho handles SIGTERM itself (graceful shutdown, exit 0) as PID 1.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/luaecho"]
# The base image's CMD is ["bash"]: cleared, so no argument means echo.lua.
CMD []
