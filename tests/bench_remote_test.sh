#!/usr/bin/env bash
# The benchmark across two hosts, with two namespaces standing in for them: the server
# side is started here by hand (memcached and bmcd, as a user would on the server host),
# and the harness runs on the "client host" driven only by --remote --iface --server-ip
# --server-mac. Passes when the harness reports correct answers (it fails on any wrong
# one) and the server's bmcd says it served them from XDP.
#   bash tests/bench_remote_test.sh BUILD_DIR
set -euo pipefail
build=$(cd "$1" && pwd)
root=$(cd "$(dirname "$0")/.." && pwd)
[[ $(id -u) == 0 ]] || { [[ "${CI:-}" == true ]] && { echo "needs root, and CI=true forbids skipping"; exit 1; }; echo "SKIP: needs root"; exit 77; }
srv=bmcr-$$-s cli=bmcr-$$-c cg=/tmp/bmct-cgroup2/bmcr-$$ out=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  ip netns del "$srv" 2>/dev/null || true
  ip netns del "$cli" 2>/dev/null || true
  rmdir "$cg" 2>/dev/null || true
  rm -rf "$out"
}
trap cleanup EXIT
# what a crashed earlier run left
for ns in $(ip netns list | awk '/^bmcr-/ {print $1}'); do
  p=${ns#bmcr-}; p=${p%%-*}; [[ -d /proc/$p ]] || ip netns del "$ns"
done
mkdir -p /tmp/bmct-cgroup2
mountpoint -q /tmp/bmct-cgroup2 || mount -t cgroup2 none /tmp/bmct-cgroup2
mkdir -p "$cg"

ip netns add "$srv"; ip netns add "$cli"
ip link add r0 netns "$srv" type veth peer name r1 netns "$cli"
ip -n "$srv" addr add 198.19.2.1/30 dev r0; ip -n "$cli" addr add 198.19.2.2/30 dev r1
for x in "$srv r0" "$cli r1"; do set -- $x; ip -n "$1" link set lo up; ip -n "$1" link set "$2" up; done
mac=$(ip -n "$srv" -br link show r0 | awk '{print $3}')

# The server host: memcached with UDP on, and bmcd in front of it.
( echo $BASHPID > "$cg/cgroup.procs"; exec ip netns exec "$srv" memcached -u root -U 11211 -p 11211 -l 198.19.2.1 -t 1 ) &
pids+=($!)
ip netns exec "$srv" "$build/apps/bmcd" -i r0 --cgroup "$cg" --max-connections 1024 --interval 0 \
  --stats-file "$out/bmcd.json" --name "bmcr-$$" >"$out/bmcd.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do [[ -s "$out/bmcd.json" ]] && break; sleep 0.1; done
[[ -s "$out/bmcd.json" ]] || { cat "$out/bmcd.log"; echo "bmcd did not start"; exit 1; }

# The client host: only the flags.
ip netns exec "$cli" python3 "$root/bench/harness.py" --build "$build" --remote --quick \
  --iface r1 --server-ip 198.19.2.1 --server-mac "$mac" --out "$out/results"

sleep 0.5  # bmcd rewrites its stats file every 200 ms
python3 - "$out/results/results.json" "$out/bmcd.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["configs"]["remote/q1"]["xdpgen"]["checked"]
hits = json.load(open(sys.argv[2]))["counters"]["hit_requests"]
print(f"remote: {r}; bmcd served {hits} hits from XDP")
assert r["answered"] > 1000 and r["wrong"] == 0 and r["bad_header"] == 0, r
assert hits >= r["answered"] // 2, (hits, r["answered"])
PY
