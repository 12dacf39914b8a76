#!/usr/bin/env bash
# Builds the leakharness image.  `make docker` runs it, and so does tests/test_docker.py, so the
# way the image is built here is the way it is tested.
#
#   scripts/build-image.sh [TAG ...]      (default TAG: leakharness; every TAG names the image)
#
# With docker (and not podman): a plain `docker build`; FROM debian:12-slim comes from the registry.
# With podman, the way these machines need it (docs/container.md, measured in
# ../shared/containers.md):
#   - runtime runc (crun fails: "cgroups in hybrid mode not supported"), and ulimits lowered to
#     what the host allows (otherwise "setrlimit RLIMIT_NOFILE: Operation not permitted");
#   - no registry: the base is made from Debian's packages by debootstrap, once per machine, and
#     given to `podman build --from`, which replaces the Dockerfile's FROM (the Dockerfile stays
#     standard).  The rootfs tarball is kept in the harness's cache folder
#     ($LEAKHARNESS_CACHE or ~/.cache/leakharness)/docker/debian-12-minbase.tar, and imported as
#     localhost/debian:12-local when podman does not have that image; a lock makes concurrent
#     builds (pytest -n 2, several developers) wait for one of them to make it.
#     LEAKHARNESS_BASE_IMAGE=debian:12-slim uses that image instead (where a registry is reachable);
#   - the host's CA bundle mounted read-only and --network host for the build only (pip reaches
#     the package index through a certificate only the host's bundle trusts); the image itself
#     runs with --network none.
# Environment: LEAKHARNESS_ENGINE=podman|docker to choose, DEBIAN_MIRROR for debootstrap.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ $# -eq 0 ]; then
    set -- leakharness
fi
TAGS=()
for tag in "$@"; do
    TAGS+=(-t "$tag")
done
ENGINE=${LEAKHARNESS_ENGINE:-}
if [ -z "$ENGINE" ]; then
    if command -v podman >/dev/null 2>&1; then
        ENGINE=podman
    elif command -v docker >/dev/null 2>&1; then
        ENGINE=docker
    else
        echo "build-image: neither podman nor docker found (make setup installs podman)" >&2
        exit 2
    fi
fi

if [ "$ENGINE" = docker ]; then
    exec docker build "${TAGS[@]}" .
fi

PODMAN=(podman --runtime runc)
ULIMITS=(--ulimit nofile=1024:1024 --ulimit nproc=4096:4096)
LOCAL_BASE=localhost/debian:12-local
BASE=${LEAKHARNESS_BASE_IMAGE:-$LOCAL_BASE}

cache_dir() {
    if [ -n "${LEAKHARNESS_CACHE:-}" ]; then
        echo "$LEAKHARNESS_CACHE/docker"
    else
        echo "${XDG_CACHE_HOME:-$HOME/.cache}/leakharness/docker"
    fi
}

# The local Debian 12 base: what debian:12-slim is, made from Debian's own packages.
make_local_base() {
    local cache tarball rootfs
    cache=$(cache_dir)
    tarball=$cache/debian-12-minbase.tar
    mkdir -p "$cache"
    exec 9>"$cache/base.lock"
    flock -w 900 9 || { echo "build-image: waited 15 min for $cache/base.lock" >&2; exit 1; }
    # Asked again under the lock: another build may have made it while this one waited.
    if "${PODMAN[@]}" image exists "$LOCAL_BASE"; then
        flock -u 9
        return
    fi
    if [ ! -s "$tarball" ]; then
        [ "$(id -u)" -eq 0 ] || { echo "build-image: debootstrap needs root (or set LEAKHARNESS_BASE_IMAGE)" >&2; exit 1; }
        command -v debootstrap >/dev/null 2>&1 || { echo "build-image: debootstrap not found (make setup installs it)" >&2; exit 1; }
        echo "build-image: making $LOCAL_BASE with debootstrap (once per machine, about a minute)"
        rootfs=$(mktemp -d "$cache/rootfs.XXXXXX")
        # --one-file-system: should debootstrap fail with /proc still mounted in the rootfs, the
        # clean-up must not descend into it.
        trap 'rm -rf --one-file-system "$rootfs" "$tarball.tmp"' EXIT
        debootstrap --variant=minbase bookworm "$rootfs" "${DEBIAN_MIRROR:-http://deb.debian.org/debian}" \
            > "$cache/debootstrap.log" 2>&1 \
            || { echo "build-image: debootstrap failed, see $cache/debootstrap.log" >&2; exit 1; }
        # The sources debian:12-slim has: updates and security too, not only the release.
        rm -f "$rootfs/etc/apt/sources.list"
        cat > "$rootfs/etc/apt/sources.list.d/debian.sources" <<'EOF'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
        rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/archives/*.deb
        tar -C "$rootfs" -cf "$tarball.tmp" .
        mv "$tarball.tmp" "$tarball"
        rm -rf --one-file-system "$rootfs"
        trap - EXIT
    fi
    # An imported tarball has no configuration: give it debian:12-slim's PATH and command.
    "${PODMAN[@]}" import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'CMD ["bash"]' \
        "$tarball" "$LOCAL_BASE" >/dev/null
    flock -u 9
}

if [ "$BASE" = "$LOCAL_BASE" ]; then
    make_local_base
fi

# The host's CA bundle, for pip only.  Not mounted over the image's own
# /etc/ssl/certs/ca-certificates.crt: the image installs ca-certificates (python3-venv needs it),
# whose post-install script must replace that file and fails on a read-only mount.
CA=/etc/ssl/certs/ca-certificates.crt
CA_ARGS=()
if [ -f "$CA" ]; then
    CA_ARGS=(-v "$CA:/run/host-ca-certificates.crt:ro" --build-arg PIP_CERT=/run/host-ca-certificates.crt)
fi
# One build at a time on this machine: two at once (pytest -n 2 workers, or developers) would
# both run the slow apt and pip steps; the second one to get the lock finds them cached.  The lock
# is held by the exec'd podman until the build ends.
mkdir -p "$(cache_dir)"
exec 8>"$(cache_dir)/build.lock"
flock -w 1800 8 || { echo "build-image: waited 30 min for $(cache_dir)/build.lock" >&2; exit 1; }
exec "${PODMAN[@]}" build "${ULIMITS[@]}" --network host "${CA_ARGS[@]}" \
    --from "$BASE" "${TAGS[@]}" -f Dockerfile .
