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

tag="bmc-demo-$$"
srv="$tag-s" cli="$tag-c" work=$(mktemp -d /tmp/bmc-demo.XXXXXX)
# memcached runs in a cgroup of the demo's own, which bmcd's write observer watches. The
# cgroup2 hierarchy is mounted where `ip netns exec` (which remounts /sys) still sees it.
cgmount=/tmp/bmct-cgroup2 cg=""
mc_pid="" bmcd_pid=""
cleanup() {
  [ -n "$bmcd_pid" ] && kill "$bmcd_pid" 2>/dev/null && wait "$bmcd_pid" 2>/dev/null || true
  [ -n "$mc_pid" ] && kill "$mc_pid" 2>/dev/null && wait "$mc_pid" 2>/dev/null || true
  ip netns del "$srv" 2>/dev/null || true
  ip netns del "$cli" 2>/dev/null || true
  [ -n "$cg" ] && rmdir "$cg" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

bash "$root/.ci/install-deps"
echo "== building into $build"
bash "$root/.ci/build" --target bmcd xdp_pass_obj >"$work/build.log" 2>&1 ||
  { tail -40 "$work/build.log" >&2; exit 1; }

echo "== testbed: namespaces $srv and $cli, veth bmcs0 <-> bmcc0"
ip netns add "$srv"
ip netns add "$cli"
ip link add bmcs0 netns "$srv" type veth peer name bmcc0 netns "$cli"
ip -n "$srv" addr add 198.18.0.1/30 dev bmcs0
ip -n "$cli" addr add 198.18.0.2/30 dev bmcc0
for ns in "$srv" "$cli"; do ip -n "$ns" link set lo up; done
ip -n "$srv" link set bmcs0 up
ip -n "$cli" link set bmcc0 up
# Replies sent with XDP_TX on a veth reach the peer only if the peer runs XDP.
ip -n "$cli" link set dev bmcc0 xdp obj "$build/bpf/xdp_pass.bpf.o" sec xdp

mkdir -p "$cgmount"
grep -q " $cgmount cgroup2 " /proc/self/mounts || mount -t cgroup2 none "$cgmount"
cg="$cgmount/$tag"
mkdir -p "$cg"

echo "== memcached $(memcached -V | cut -d' ' -f2) on 198.18.0.1:11211 (TCP and UDP), in cgroup $tag"
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
sleep 0.5
echo "== the same workload again, backend afxdp (an AF_XDP poller answers from the same warm cache)"
ip netns exec "$cli" python3 "$root/apps/demo_client.py" --stats-file "$work/bmcd.json" --no-preload

kill -TERM "$bmcd_pid"
wait "$bmcd_pid"
bmcd_pid=""
echo "== done; removing the testbed"
