#!/usr/bin/env bash
# Installs what is missing, builds, and runs every test:
#   1. release build (warnings are errors): unit + integration tests through ctest
#   2. AddressSanitizer + UndefinedBehaviorSanitizer build: the same tests, and no reports
#   3. libFuzzer targets built with clang, each run for a bounded time
#   4. clang-format check of the C++ sources
# FUZZ_SECONDS (default 30) bounds each fuzzer run.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
jobs=$(nproc)

echo "== setup"
CMAKE_ARGS="-DTOLLGATE_WERROR=ON" bash scripts/setup.sh test

echo "== tests (release build)"
ctest --test-dir build --output-on-failure -j "$jobs"

echo "== tests (ASan + UBSan build)"
cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DTOLLGATE_WERROR=ON \
      -DTOLLGATE_SANITIZE=address,undefined >/dev/null
cmake --build build-asan
reports=$(mktemp -d)
chmod 1777 "$reports"  # workers run as nobody and must be able to write their reports
export ASAN_OPTIONS="log_path=$reports/asan:detect_leaks=1:abort_on_error=0"
export UBSAN_OPTIONS="log_path=$reports/ubsan:print_stacktrace=1:halt_on_error=1"
export TOLLGATE_SANITIZED=1
ctest --test-dir build-asan --output-on-failure -j "$jobs"
if compgen -G "$reports/*" >/dev/null; then
    echo "sanitizer reports:"; cat "$reports"/*; exit 1
fi
unset ASAN_OPTIONS UBSAN_OPTIONS TOLLGATE_SANITIZED

echo "== fuzzing (${FUZZ_SECONDS:-30}s per target)"
CC=clang CXX=clang++ cmake -S . -B build-fuzz -G Ninja -DTOLLGATE_FUZZ=ON >/dev/null
cmake --build build-fuzz
for fuzzer in build-fuzz/tests/fuzz/fuzz_*; do
    name=$(basename "$fuzzer")
    corpus="$root/tests/fuzz/corpus/${name#fuzz_}"
    work=$(mktemp -d)
    [ -d "$corpus" ] && cp -r "$corpus"/. "$work"/
    echo "-- $name"
    "$fuzzer" -max_total_time="${FUZZ_SECONDS:-30}" -print_final_stats=1 "$work" 2>&1 | tail -n 3
    rm -rf "$work"
done

echo "== clang-format"
files=$(git ls-files '*.cpp' '*.hpp')
clang-format --dry-run -Werror $files

echo "== all tests passed"
