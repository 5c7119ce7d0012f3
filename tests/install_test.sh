#!/usr/bin/env bash
# cmake --install puts everything an operator needs in place, and what it installs works:
# the programs run, the example configuration parses, the systemd unit verifies.
#   tests/install_test.sh BUILD_DIR
set -euo pipefail
build=$1
prefix=$(mktemp -d /tmp/bmct-install.XXXXXX)
trap 'rm -rf "$prefix"' EXIT
cmake --install "$build" --prefix "$prefix" >/dev/null
for f in sbin/bmcd sbin/bmcctl lib/systemd/system/bmcd@.service share/man/man8/bmcd.8 \
         share/man/man8/bmcctl.8 share/doc/bmc/bmc.conf.example; do
  [ -e "$prefix/$f" ] || { echo "install: $f missing"; exit 1; }
done
"$prefix/sbin/bmcd" --version | grep -q "^bmcd .* (cache layout [0-9]*)$"
"$prefix/sbin/bmcctl" --help >/dev/null
# The example configuration parses (a bad one exits 2); the interface does not exist (1).
set +e
out=$("$prefix/sbin/bmcd" --config "$prefix/share/doc/bmc/bmc.conf.example" --iface bmct-noif0 2>&1)
status=$?
set -e
[ "$status" -eq 1 ] && grep -q "interface 'bmct-noif0' not found" <<<"$out" ||
  { echo "install: the example configuration: status $status: $out"; exit 1; }
# The unit, with its paths pointing at this prefix rather than the configured one.
sbindir=$(sed -n 's|^ExecStart=\(.*\)/bmcd .*|\1|p' "$prefix/lib/systemd/system/bmcd@.service")
sed "s|$sbindir|$prefix/sbin|g" "$prefix/lib/systemd/system/bmcd@.service" > "$prefix/lib/systemd/system/bmcd@test.service"
MANPATH="$prefix/share/man" systemd-analyze verify "$prefix/lib/systemd/system/bmcd@test.service"
echo "install: ok"
