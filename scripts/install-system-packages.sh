#!/usr/bin/env bash
# Installs the system packages leakharness needs on Debian or Ubuntu, skipping what is there.
# Used by the Makefile (so by the README's commands and CI) and by the Dockerfile: one list.
set -euo pipefail

# What leakharness needs to build and check programs.
PACKAGES=(
    gcc make pkg-config libssl-dev openssl valgrind binutils
    llvm            # llvm-symbolizer: symbolized sanitizer stacks
    python3 python3-venv python3-pip
)
# What its own tests need besides (--test): a headless browser for the HTML report test,
# pgrep to prove no job outlives an interrupted run, clang (with its sanitizer runtimes) to
# check the catalog under the second compiler.
TEST_PACKAGES=(chromium procps clang libclang-rt-14-dev)

if [ "${1:-}" = "--test" ]; then
    PACKAGES+=("${TEST_PACKAGES[@]}")
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
available=()
for pkg in "${missing[@]}"; do
    if apt-cache show "$pkg" >/dev/null 2>&1; then
        available+=("$pkg")
    else
        echo "warning: no package named $pkg in this release; skipped" >&2
    fi
done
if [ ${#available[@]} -gt 0 ]; then
    $SUDO apt-get install -y -qq --no-install-recommends "${available[@]}"
fi
