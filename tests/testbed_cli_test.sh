#!/usr/bin/env bash
# bmc-testbed, as the harness, the labs and the demo use it: `up` makes the testbed it
# prints (namespaces, addresses, the client's XDP_PASS program, a cgroup), `down` removes
# it, only testbed names are accepted, and `clean` removes a testbed whose owner is gone.
set -euo pipefail
tool=$1
fail() { echo "FAIL: $*" >&2; exit 1; }
field() { python3 -c 'import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"; }

[ "$(id -u)" = 0 ] || { [ "${CI:-}" = true ] && fail "needs root"; echo "SKIP: needs root"; exit 0; }

j=$("$tool" up --tag clitest --queues 2 --owner $$)
s=$(field "$j" server_ns) c=$(field "$j" client_ns) cg=$(field "$j" cgroup)
ip netns list | grep -q "^$s" || fail "no server namespace $s"
ip -n "$s" -br addr show bmcs0 | grep -q "198.18.0.1/30" || fail "server address"
ip -n "$c" -br addr show bmcc0 | grep -q "2001:2::2/64" || fail "client IPv6 address"
ip -n "$c" link show bmcc0 | grep -q "xdp" || fail "no XDP_PASS on the client end"
[ "$(ls /sys/class/net 2>/dev/null | grep -c '^bmcs0$' || true)" = 0 ] || fail "an interface in the root namespace"
ip -n "$s" link show bmcs0 | grep -q "$(field "$j" server_mac)" || fail "server_mac"
[ -d "$cg" ] || fail "no cgroup $cg"
"$tool" down --server-ns "$s" --client-ns "$c" --cgroup "$cg"
! ip netns list | grep -q "^$s" || fail "server namespace left"
[ ! -d "$cg" ] || fail "cgroup left"

if "$tool" down --server-ns "$s; reboot" --client-ns "$c" 2>/dev/null; then fail "took a name that is no testbed's"; fi
if "$tool" down --server-ns other-s --client-ns other-c 2>/dev/null; then fail "took a name that is no testbed's"; fi

sleep 0 & gone=$!; wait $gone
j=$("$tool" up --tag clitest --owner $gone)
s=$(field "$j" server_ns)
"$tool" clean
! ip netns list | grep -q "^$s" || fail "clean left the testbed of a process that is gone"
echo "PASS"
