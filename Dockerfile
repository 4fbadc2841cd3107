# syntax=docker/dockerfile:1
#
# ingressctl container image on Debian 13 (trixie): the controller (Python 3.13, Debian's, in a venv)
# plus exactly the nginx + ngx_lua stack the test suite runs against, tini as PID 1. The Debian
# packages of both stages are listed in image/packages.txt, which `make rootfs` (image/build-rootfs.sh)
# reads too: build/rootfs is this image's filesystem, built and tested without a Docker engine.
#
# Runs as uid/gid 101 on a read-only root filesystem: every write goes to the work dir
# (/var/run/ingressctl, an emptyDir in deploy/deployment.yaml) and /tmp (another emptyDir).
# nginx listens on 8080/8443 (unprivileged ports; the Service maps 80/443 to them), so the container
# needs no capability at all. A file capability on the nginx binary is deliberately not used: with
# `drop: [ALL]` it would make exec fail (EPERM), and with allowPrivilegeEscalation=false (no_new_privs)
# the kernel would ignore it anyway.
#
#   docker build --build-arg VERSION="$(python3 -c 'import ingressctl; print(ingressctl.__version__)')" \
#       -t ghcr.io/ingressctl/ingressctl:0.1.0 .

ARG DEBIAN_IMAGE=debian:trixie-slim

# ---- build: install the package and its dependencies into a self-contained venv ------------------
FROM ${DEBIAN_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
COPY image/packages.txt /tmp/packages.txt
RUN apt-get update \
    && apt-get install -y --no-install-recommends $(awk '$1 == "build" { print $2 }' /tmp/packages.txt) \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /opt/ingressctl
WORKDIR /src
COPY pyproject.toml README.md ./
COPY ingressctl/ ingressctl/
# pip byte-compiles what it installs, so nothing is written to the read-only venv at run time.
RUN /opt/ingressctl/bin/pip install . \
    && /opt/ingressctl/bin/ingressctl --version

# ---- runtime ------------------------------------------------------------------------------------
# Same base image as the build stage: the venv's python is a link to /usr/bin/python3 (package python3).
FROM ${DEBIAN_IMAGE} AS runtime
ARG VERSION=0.1.0
ARG SOURCE=https://github.com/ingressctl/ingressctl
LABEL org.opencontainers.image.title="ingressctl" \
      org.opencontainers.image.description="Kubernetes Ingress controller: nginx with an ngx_lua balancer" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"

# The data plane, exactly as in the tests. Installing nginx does not start it; its Debian config in
# /etc/nginx is never used (the controller runs nginx with -p <work dir> -c <work dir>/nginx.conf).
# The user first, so no package's own system user can take uid/gid 101.
COPY image/packages.txt /tmp/packages.txt
RUN groupadd --system --gid 101 ingressctl \
    && useradd --system --uid 101 --gid 101 --home-dir /var/run/ingressctl --no-create-home \
        --shell /usr/sbin/nologin ingressctl \
    && apt-get update \
    && apt-get install -y --no-install-recommends $(awk '$1 == "runtime" { print $2 }' /tmp/packages.txt) \
    && rm -rf /var/lib/apt/lists/* /tmp/packages.txt \
    && install -d -o 101 -g 101 -m 0700 /var/run/ingressctl

COPY --from=build /opt/ingressctl /opt/ingressctl
COPY templates/ /app/templates/
COPY lua/ /app/lua/

ENV PATH=/opt/ingressctl/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/var/run/ingressctl \
    INGRESSCTL_TEMPLATES_DIR=/app/templates \
    INGRESSCTL_LUA_DIR=/app/lua \
    INGRESSCTL_WORK_DIR=/var/run/ingressctl \
    INGRESSCTL_NGINX_BINARY=/usr/sbin/nginx \
    INGRESSCTL_HTTP_PORT=8080 \
    INGRESSCTL_HTTPS_PORT=8443

USER 101:101
WORKDIR /var/run/ingressctl
EXPOSE 8080 8443 10254
# tini is PID 1: it forwards SIGTERM to the controller only (no -g), which then shuts nginx down
# gracefully, and it reaps any zombie. Exec form throughout: no shell is needed at run time.
ENTRYPOINT ["/usr/bin/tini", "--", "/opt/ingressctl/bin/ingressctl"]
CMD ["run"]
