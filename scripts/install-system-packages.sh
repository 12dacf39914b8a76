#!/usr/bin/env bash
# Installs the system packages leakharness needs on Debian or Ubuntu, skipping what is there.
# Used by the Makefile (so by the README's commands and CI) and by the Dockerfile: one list.
#
#   scripts/install-system-packages.sh          what `leakharness run/check` needs (make report, the image)
#   scripts/install-system-packages.sh --test   and what the project's own tests need (make test)
#
# Nothing missing: exits at once, without apt-get update (so `make` run twice installs nothing).
set -euo pipefail

# What leakharness needs to build and check programs.  apt-get runs with --no-install-recommends
# (a small image, no surprises), so whatever a compile needs is named here: gcc only *recommends*
# libc6-dev, and without it every build fails with "stdio.h: No such file or directory".
PACKAGES=(
    gcc libc6-dev make pkg-config libssl-dev openssl valgrind binutils
    cmake           # a project's [[ctest]] tables: configure, build, list the tests (make runs a project's builds)
    llvm            # llvm-symbolizer: symbolized sanitizer stacks
    golang-go       # the Go patterns and `check --build main.go` (cgo): go-asan, memcheck, cgocheck
    python3 python3-venv python3-pip
)
# What its own tests need besides (--test): a headless browser for the HTML report test,
# pgrep to prove no job outlives an interrupted run, clang (with its sanitizer runtimes) to
# check the catalog under the second compiler, and podman, runc and debootstrap to build and run
# the container image from a local Debian base (tests/test_docker.py, docs/container.md; crun,
# podman's default runtime, fails on this kind of host, see there).  uidmap: newuidmap and
# newgidmap, which podman needs when a developer runs it without root.  jq: the CI workflow's
# durations merge is run as written (tests/test_distributed.py).
TEST_PACKAGES=(chromium procps clang libclang-rt-14-dev podman runc debootstrap uidmap jq)

if [ "${1:-}" = "--test" ]; then
    PACKAGES+=("${TEST_PACKAGES[@]}")
elif [ $# -gt 0 ]; then
    echo "usage: $0 [--test]" >&2
    exit 2
fi

missing=()
for pkg in "${PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$pkg")
    fi
done

if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi

echo "installing system packages: ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || { echo "need root (or sudo) to install: ${missing[*]}" >&2; exit 1; }
    SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# A name this release does not have (package names vary across Debian and Ubuntu releases) is
# reported and skipped rather than failing everything; the tests that need it skip and say why.
# A name known only as a virtual package, with no version to install, counts as missing too
# (apt-get would refuse the whole list for it).  The output is kept before grep reads it: with
# pipefail, `apt-cache policy | grep -q` fails when grep exits early and apt-cache gets SIGPIPE.
available=()
for pkg in "${missing[@]}"; do
    policy=$(apt-cache policy "$pkg" 2>/dev/null || true)
    if grep -q "Candidate: [^(]" <<<"$policy"; then
        available+=("$pkg")
    else
        echo "warning: no installable package named $pkg in this release; skipped" >&2
    fi
done
if [ ${#available[@]} -gt 0 ]; then
    $SUDO apt-get install -y -qq --no-install-recommends "${available[@]}"
fi
