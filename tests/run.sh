#!/usr/bin/env bash
# README command 2: installs what is missing, builds, and runs every test (as root).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bash "$root/.ci/install-deps"
bash "$root/.ci/build"
cd "${BMC_BUILD_DIR:-$root/build}"
ctest --output-on-failure --timeout 300 -j"$(nproc)" "$@"
