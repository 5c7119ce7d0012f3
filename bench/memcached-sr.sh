#!/usr/bin/env bash
# Builds Memcached-SR, the BMC paper's baseline: Debian's own memcached (the version
# installed here) with one SO_REUSEPORT UDP socket per worker thread instead of one
# shared socket (bench/memcached-sr.patch). Benchmark use only: it is built under DIR and
# never installed. The source package comes from the Debian archive the machine already
# uses, through a deb-src list kept under DIR (the system's apt configuration is not
# changed).
#   bash bench/memcached-sr.sh DIR      prints the path of the built binary
set -euo pipefail
dir=$(mkdir -p "$1" && cd "$1" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
bin="$dir/memcached-sr"
if [[ -x "$bin" && "$bin" -nt "$here/memcached-sr.patch" ]]; then echo "$bin"; exit 0; fi
version=$(dpkg-query -W -f='${Version}' memcached)
for pkg in dpkg-dev libevent-dev gcc make; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=" $pkg"
done
if [[ -n "${need:-}" ]]; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q $need >&2
fi
apt="$dir/apt"
mkdir -p "$apt/lists/partial" "$apt/parts" "$dir/src"
# deb-src entries for exactly the Debian archives the machine's deb entries name
rm -f "$apt/parts/"*
for f in /etc/apt/sources.list.d/*.sources; do
  [[ -f "$f" ]] && grep -q 'debian' "$f" && sed 's/^Types: deb$/Types: deb-src/' "$f" > "$apt/parts/$(basename "$f")"
done
if [[ -f /etc/apt/sources.list ]]; then
  grep -E '^deb [^#]*debian' /etc/apt/sources.list | sed 's/^deb /deb-src /' > "$apt/parts/system.list" || true
fi
opts=(-o "Dir::Etc::SourceList=/dev/null" -o "Dir::Etc::SourceParts=$apt/parts" -o "Dir::State::Lists=$apt/lists")
apt-get "${opts[@]}" -q update >&2
cd "$dir/src"
rm -rf memcached-*/
apt-get "${opts[@]}" -q source --download-only "memcached=$version" >&2
dpkg-source -x ./memcached_*.dsc >&2
cd memcached-*/
patch -p1 < "$here/memcached-sr.patch" >&2
./configure -q --disable-dependency-tracking >&2
make -j"$(nproc)" memcached >&2
cp memcached "$bin.tmp" && mv "$bin.tmp" "$bin"
echo "$bin"
