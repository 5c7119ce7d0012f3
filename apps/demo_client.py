#!/usr/bin/env python3
"""Demo workload: stores keys over TCP, reads them over UDP, writes a few, reads again.

Every reply is checked against what was stored; the split between answers from XDP and
from memcached comes from bmcd's counters and memcached's own stats."""
import argparse
import json
import random
import socket
import sys
import time

import mc
from mc import tcp_call, udp_get

SERVER = ("198.18.0.1", 11211)


def stat(sock, name):
    v = mc.stat(sock, name)
    if v is None:
        raise SystemExit(f"memcached has no stat {name}")
    return v


def bmcd_counters(path):
    """bmcd's counters, with the AF_XDP path's hits as 'afxdp_hit_requests'."""
    time.sleep(0.5)  # bmcd refreshes its stats file every 200 ms
    with open(path) as f:
        stats = json.load(f)
    counters = dict(stats["counters"])
    afxdp = stats.get("afxdp", {}).get("counters", {})
    counters["afxdp_hit_requests"] = afxdp.get("hit_requests", 0)
    for name, value in afxdp.items():
        if name.startswith("fill") or name.startswith("inval"):
            counters[name] += value
    counters["backend"] = stats["backend"]
    return counters


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--stats-file", required=True)
    ap.add_argument("--keys", type=int, default=200)
    ap.add_argument("--gets", type=int, default=4000)
    ap.add_argument("--seconds", type=float, default=20.0, help="upper bound on the run")
    ap.add_argument("--no-preload", action="store_true", help="keys are already stored")
    args = ap.parse_args()

    rnd = random.Random(7)
    tcp = socket.create_connection(SERVER, timeout=5)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.connect(SERVER)
    keys = [b"key:%012d" % i for i in range(args.keys)]          # 16-byte keys
    store = {k: b"%032d" % rnd.randrange(10**31) for k in keys}   # 32-byte values
    if args.no_preload:  # learn the stored values over TCP
        for k in keys:
            reply = tcp_call(tcp, b"get %s\r\n" % k)
            store[k] = reply.split(b"\r\n")[1]
    else:
        for k, v in store.items():
            assert tcp_call(tcp, b"set %s 0 0 %d\r\n%s\r\n" % (k, len(v), v)) == b"STORED\r\n"
    time.sleep(0.05)  # writes hold off fills for --fill-guard-ms

    before = bmcd_counters(args.stats_file)
    mc_gets_before = stat(tcp, b"cmd_get")
    deadline = time.monotonic() + args.seconds
    sent = ok = wrong = lost = writes = 0
    for i in range(args.gets):
        if time.monotonic() > deadline:
            break
        if i % 500 == 250:  # a write now and then: the cache must not serve the old value
            k = rnd.choice(keys)
            store[k] = b"%032d" % rnd.randrange(10**31)
            tcp_call(tcp, b"set %s 0 0 %d\r\n%s\r\n" % (k, len(store[k]), store[k]))
            writes += 1
        k = keys[min(int(rnd.paretovariate(1.2)) - 1, len(keys) - 1)]  # skewed, like Zipf
        sent += 1
        reply = udp_get(udp, i & 0xFFFF, k)
        if reply is None:
            lost += 1
        elif reply == b"VALUE %s 0 %d\r\n%s\r\nEND\r\n" % (k, len(store[k]), store[k]):
            ok += 1
        else:
            wrong += 1
            print(f"wrong reply for {k!r}: {reply!r}", file=sys.stderr)
    after = bmcd_counters(args.stats_file)
    mc_gets = stat(tcp, b"cmd_get") - mc_gets_before
    xdp = after["hit_requests"] - before["hit_requests"]
    afxdp = after["afxdp_hit_requests"] - before["afxdp_hit_requests"]

    print(f"bmcd backend:             {after['backend']}")
    print(f"UDP gets sent:            {sent}")
    print(f"  correct replies:        {ok}")
    print(f"  wrong replies:          {wrong}")
    print(f"  no reply (timeout):     {lost}")
    print(f"answered by XDP:          {xdp} ({100.0 * xdp / max(sent, 1):.1f}%)")
    print(f"answered by AF_XDP:       {afxdp} ({100.0 * afxdp / max(sent, 1):.1f}%)")
    print(f"answered by memcached:    {mc_gets}")
    print(f"writes over TCP:          {writes} (invalidations seen: "
          f"{after['inval_text'] - before['inval_text']})")
    print(f"fills accepted/rejected:  {after['fill_accepted'] - before['fill_accepted']}/"
          f"{sum(after[n] - before[n] for n in after if n.startswith('fill_rejected'))}")
    return 0 if wrong == 0 and lost == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
