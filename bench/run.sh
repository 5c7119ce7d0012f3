#!/usr/bin/env bash
# The benchmark suite in one command (as root): installs what is missing, builds,
# runs every configuration on a fresh namespace testbed and writes a report.
#   bash bench/run.sh [--quick] [--duration S] [--out DIR]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bash "$root/.ci/install-deps"
bash "$root/.ci/build" >/dev/null
cd "$root"
exec python3 bench/harness.py --build "${BMC_BUILD_DIR:-$root/build}" "$@"
