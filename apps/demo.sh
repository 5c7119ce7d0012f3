#!/usr/bin/env bash
# README command 1: builds bmc and shows it in front of a real memcached.
#
# Makes two network namespaces joined by a veth pair (198.18.0.1 server, 198.18.0.2
# client; nothing is added to the root namespace), starts memcached and bmcd in the
# server namespace, runs a short bounded workload from the client namespace, prints who
# answered what, and removes everything it made.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${BMC_BUILD_DIR:-$root/build}

work=$(mktemp -d /tmp/bmc-demo.XXXXXX)
tool="$build/tests/bmc-testbed"
srv="" cli="" cg=""
mc_pid="" bmcd_pid=""
cleanup() {
  [ -n "$bmcd_pid" ] && kill "$bmcd_pid" 2>/dev/null && wait "$bmcd_pid" 2>/dev/null || true
  [ -n "$mc_pid" ] && kill "$mc_pid" 2>/dev/null && wait "$mc_pid" 2>/dev/null || true
  [ -n "$srv" ] && "$tool" down --server-ns "$srv" --client-ns "$cli" --cgroup "$cg" || true
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

bash "$root/.ci/install-deps"
echo "== building into $build"
bash "$root/.ci/build" --target bmcd bmc-testbed xdp_pass_obj >"$work/build.log" 2>&1 ||
  { tail -40 "$work/build.log" >&2; exit 1; }

# The tests' testbed (tests/testbed.hpp): two namespaces joined by a veth pair, the
# client end running XDP_PASS (replies sent with XDP_TX on a veth reach the peer only if
# it runs XDP), and a cgroup of its own, where memcached runs and which bmcd observes.
testbed=$("$tool" up --tag demo --owner $$)
field() { python3 -c 'import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$testbed" "$1"; }
srv=$(field server_ns) cli=$(field client_ns) cg=$(field cgroup)
echo "== testbed: namespaces $srv and $cli, veth bmcs0 <-> bmcc0"

echo "== memcached $(memcached -V | cut -d' ' -f2) on 198.18.0.1:11211 (TCP and UDP), in cgroup $(basename "$cg")"
sh -c 'echo $$ > "$1/cgroup.procs" && shift && exec "$@"' sh "$cg" \
  ip netns exec "$srv" memcached -u root -U 11211 -p 11211 -l 198.18.0.1 -t 1 -m 64 &
mc_pid=$!

echo "== bmcd on bmcs0, observing memcached's sockets in its cgroup"
ip netns exec "$srv" "$build/apps/bmcd" --iface bmcs0 --interval 0 --stats-file "$work/bmcd.json" --cgroup "$cg" &
bmcd_pid=$!
for _ in $(seq 100); do [ -s "$work/bmcd.json" ] && break; sleep 0.05; done
[ -s "$work/bmcd.json" ] || { echo "bmcd did not start" >&2; exit 1; }

echo "== workload from $cli, backend kernel (XDP answers)"
ip netns exec "$cli" python3 "$root/apps/demo_client.py" --stats-file "$work/bmcd.json"

echo "== switching the running bmcd to the AF_XDP backend (SIGUSR1); memcached keeps running"
kill -USR1 "$bmcd_pid"
for _ in $(seq 100); do
  python3 -c 'import json,sys; sys.exit(json.load(open(sys.argv[1])).get("backend") != "afxdp")' "$work/bmcd.json" \
    2>/dev/null && break
  sleep 0.05
done
echo "== the same workload again, backend afxdp (an AF_XDP poller answers from the same warm cache)"
ip netns exec "$cli" python3 "$root/apps/demo_client.py" --stats-file "$work/bmcd.json" --no-preload

kill -TERM "$bmcd_pid"
wait "$bmcd_pid"
bmcd_pid=""
echo "== done; removing the testbed"
