#!/usr/bin/env bash
# Builds one libFuzzer target with ASan and UBSan and runs it for a bounded time from the
# checked-in seed corpus. A crash, a sanitizer report or a failed check fails the run.
#   tests/fuzz/run.sh TARGET SECONDS WORKDIR
# The compiler and the core's sources come from CMake (BMC_FUZZ_CXX, BMC_CORE_SOURCES).
set -euo pipefail
target=$1 seconds=$2 work=$3
here=$(cd "$(dirname "$0")" && pwd)
core=$(cd "$here/../../core" && pwd)
mkdir -p "$work"
bin="$work/fuzz_$target"
sources=${BMC_CORE_SOURCES:-"$core/datapath.cpp $core/allowlist.cpp $core/interface.cpp"}
# shellcheck disable=SC2086  # a list of paths
"${BMC_FUZZ_CXX:-clang++}" -std=c++20 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
  -I"$core" "$here/fuzz_$target.cpp" $sources -o "$bin"
corpus="$work/corpus-$target"
rm -rf "$corpus" && mkdir -p "$corpus"
cp "$here/corpus/$target"/* "$corpus"/
cd "$work"
"$bin" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 "$corpus" 2>&1 | tail -15
