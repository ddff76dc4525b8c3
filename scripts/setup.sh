#!/usr/bin/env bash
# Installs the Debian packages tollgate needs (idempotently) and builds it into build/.
#   scripts/setup.sh [KIND...]   KIND: build (always), test, bench
# The package list lives in packaging/debian-packages.txt.
set -euo pipefail
cd "$(dirname "$0")/.."

kinds=" build $* "
wanted=()
while read -r kind pkg; do
    case "$kind" in ''|'#'*) continue ;; esac
    [[ "$kinds" == *" $kind "* ]] && wanted+=("$pkg")
done < packaging/debian-packages.txt

missing=()
for pkg in "${wanted[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
    echo "setup: installing ${missing[*]}"
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    # The Debian nginx/haproxy/redis packages start system services; the benchmarks and tests
    # run their own instances, so stop those where a service manager exists.
    for svc in nginx haproxy redis-server; do
        if command -v systemctl >/dev/null && systemctl is-active --quiet "$svc" 2>/dev/null; then
            $SUDO systemctl stop "$svc" || true
        fi
    done
fi

BUILD_DIR="${BUILD_DIR:-build}"
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo ${CMAKE_ARGS:-} >/dev/null
cmake --build "$BUILD_DIR" ${BUILD_TARGET:+--target "$BUILD_TARGET"}
