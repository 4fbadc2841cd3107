#!/bin/bash
# `make rootfs`: builds the container image's filesystem without a Docker engine, into build/rootfs
# (or $1). Debian 13 (trixie) from mmdebstrap with image/packages.txt (both stages' packages, as the
# Dockerfile installs them), uid/gid 101 created before any package, then the project installed the
# way the Dockerfile installs it: a venv in /opt/ingressctl (pip install .), templates/ and lua/ in
# /app, the work dir /var/run/ingressctl owned by 101 with mode 0700.
#
# Cached in two layers, each rebuilt only when its inputs change (keys next to the rootfs):
#   base: mmdebstrap + venv + dependencies   <- image/packages.txt, pyproject.toml, this script, mirror
#   app:  the package itself, /app          <- ingressctl/, templates/, lua/, pyproject.toml, README.md
# Needs root (mmdebstrap --mode=root, chroot, mount). Installs mmdebstrap when it is missing.
# The Debian mirror is the one apt on this machine uses (or $DEBIAN_MIRROR).
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
dest=$(realpath -m "${1:-$repo/build/rootfs}")
suite=trixie

if [ "$(id -u)" != 0 ]; then
    echo "make rootfs needs root (mmdebstrap --mode=root, chroot and mount): run it as root or with sudo" >&2
    exit 1
fi

# The Debian archive apt is configured with: deb822 URIs (sources.list.d/*.sources) or one-line
# `deb URI suite ...` entries; the security archive is not the one we want.
debian_mirror() {
    local files=() uri
    [ -f /etc/apt/sources.list ] && files+=(/etc/apt/sources.list)
    for f in /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] && files+=("$f")
    done
    [ ${#files[@]} -gt 0 ] || return 0
    while read -r uri; do
        case "$uri" in
            */debian-security | */debian-security/) ;;
            */debian | */debian/) echo "${uri%/}"; return 0 ;;
        esac
    done < <(awk '
        /^[[:space:]]*#/ { next }
        tolower($1) == "uris:" { for (i = 2; i <= NF; i++) print $i }
        $1 == "deb" { for (i = 2; i <= NF; i++) if ($i !~ /^\[/ && $i !~ /\]$/) { print $i; break } }
    ' "${files[@]}")
}

# The rootfs is replaced wholesale: never a directory this script did not build.
if [ "$dest" = / ] || { [ -e "$dest" ] && [ ! -f "$dest.base-key" ] && [ -n "$(ls -A "$dest" 2>/dev/null)" ]; }; then
    echo "$dest exists and is not a rootfs built by $0: refusing to replace it" >&2
    exit 1
fi

mirror=${DEBIAN_MIRROR:-$(debian_mirror)}
if [ -z "$mirror" ]; then
    echo "no Debian mirror in /etc/apt/sources.list*: set DEBIAN_MIRROR=http://<mirror>/debian" >&2
    exit 1
fi

if ! command -v mmdebstrap >/dev/null; then
    echo "installing mmdebstrap"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends mmdebstrap
fi

packages=$(awk '$1 == "build" || $1 == "runtime" { print $2 }' "$repo/image/packages.txt" | sort -u | paste -sd, -)
[ -n "$packages" ] || { echo "image/packages.txt lists no package" >&2; exit 1; }

hash_files() {
    (cd "$repo" && find "$@" -type f -not -path '*/__pycache__/*' -not -name '*.pyc' -print0 \
        | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1)
}
base_key=$( (hash_files image/packages.txt image/build-rootfs.sh pyproject.toml; echo "$mirror $suite") \
    | sha256sum | cut -d' ' -f1)
app_key=$(hash_files ingressctl templates lua pyproject.toml README.md)
base_stamp="$dest.base-key"
app_stamp="$dest.app-key"

# pip in the root filesystem trusts what the host trusts (a TLS-inspecting proxy included) and uses
# its proxy settings, nothing else of the host's environment.
host_ca=${PIP_CERT:-${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}}
pip_env=(env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 PIP_NO_CACHE_DIR=1
    PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_CERT=/tmp/host-ca.crt)
for var in http_proxy https_proxy no_proxy HTTP_PROXY HTTPS_PROXY NO_PROXY; do
    [ -n "${!var:-}" ] && pip_env+=("$var=${!var}")
done

# Runs a command in the root filesystem, with /dev, /proc and /sys, in a private mount namespace
# (so no mount outlives the command, whatever happens).
in_root() {
    local root=$1
    shift
    # shellcheck disable=SC2016 # expanded by the inner shell
    unshare --mount --propagation private -- /bin/sh -eu -c '
        root=$1; shift
        mount --rbind /dev "$root/dev"
        mount -t proc proc "$root/proc"
        mount -t sysfs sys "$root/sys"
        exec chroot "$root" "$@"
    ' in_root "$root" "$@"
}

# The project's sources, as the Dockerfile's build stage copies them.
copy_sources() {
    local root=$1
    rm -rf "$root/src"
    mkdir -p "$root/src"
    cp -r "$repo/pyproject.toml" "$repo/README.md" "$repo/ingressctl" "$root/src/"
    find "$root/src" -name __pycache__ -prune -exec rm -rf {} +
}

if [ "$(cat "$base_stamp" 2>/dev/null)" != "$base_key" ] || [ ! -x "$dest/opt/ingressctl/bin/python" ]; then
    echo "rootfs: building Debian $suite from $mirror into $dest"
    rm -f "$base_stamp" "$app_stamp"
    new="$dest.new"
    rm -rf "$new"
    mkdir -p "$(dirname "$dest")"
    # shellcheck disable=SC2016 # mmdebstrap's hook gets the root as $1
    # The user before any package (as in the Dockerfile), so no package's system user takes 101.
    mmdebstrap --mode=root --variant=apt --include="$packages" \
        --essential-hook='echo "ingressctl:x:101:" >> "$1/etc/group"; echo "ingressctl:x:101:101:ingressctl:/var/run/ingressctl:/usr/sbin/nologin" >> "$1/etc/passwd"' \
        "$suite" "$new" "$mirror"
    cp /etc/resolv.conf "$new/etc/resolv.conf"
    cp "$host_ca" "$new/tmp/host-ca.crt"
    copy_sources "$new"
    # The build stage: a venv, and pip install . (dependencies from PyPI); setuptools stays in the
    # venv so that the app layer can reinstall the package alone, offline.
    in_root "$new" "${pip_env[@]}" /bin/sh -eu -c '
        python3 -m venv /opt/ingressctl
        /opt/ingressctl/bin/pip install -q "setuptools>=68" /src
        install -d -o 101 -g 101 -m 0700 /var/run/ingressctl
    '
    rm -rf "$new/src" "$new/tmp/host-ca.crt" "$new/var/lib/apt/lists/"*
    : > "$new/etc/resolv.conf"
    rm -rf "$dest"
    mv "$new" "$dest"
    echo "$base_key" > "$base_stamp"
fi

if [ "$(cat "$app_stamp" 2>/dev/null)" != "$app_key" ]; then
    echo "rootfs: installing ingressctl into $dest"
    copy_sources "$dest"
    in_root "$dest" "${pip_env[@]}" /opt/ingressctl/bin/pip install -q --no-deps --no-build-isolation --force-reinstall /src
    rm -rf "$dest/src" "$dest/app"
    mkdir -p "$dest/app"
    cp -r "$repo/templates" "$repo/lua" "$dest/app/"
    find "$dest/app" -name __pycache__ -prune -exec rm -rf {} +
    find "$dest/app" -type d -exec chmod 0755 {} +
    find "$dest/app" -type f -exec chmod 0644 {} +
    in_root "$dest" /opt/ingressctl/bin/ingressctl --version
    echo "$app_key" > "$app_stamp"
else
    echo "rootfs: $dest is up to date"
fi
