# deploy/kubernetes/redis.Dockerfile - a Redis 7 image from Debian's
# redis-server package, for where the official redis:7.0 cannot be pulled
# (scripts/kube-test builds it from the same local Debian base image as the
# luaecho image). Arguments go to redis-server, as with the official image
# when they start with "--".
# The rule not to break: only Debian packages, from the base image's own
# apt sources, so it builds where no registry can be reached.
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}
RUN set -eux; \
    apt-get update; \
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends redis-server; \
    apt-get clean; \
    rm -rf /var/lib/apt/lists/* /var/log/apt/* /var/log/dpkg.log
WORKDIR /data
USER 999:999
EXPOSE 6379
ENTRYPOINT ["redis-server"]
CMD ["--save", "", "--appendonly", "no", "--protected-mode", "no"]
