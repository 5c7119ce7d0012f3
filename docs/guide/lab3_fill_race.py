#!/usr/bin/env python3
"""Lab 3, the fill race: a write memcached has received but not yet applied, a get of
the same key in between, and memcached's answer to that get (the old value) offered to
the cache as a fill. The write is held on purpose (it waits behind replies nobody reads),
so the outcome is certain. Three runs: --fill-guard-ms 0; the default guard with the get
inside it; the default guard with the get after it (the guard's documented limit: it
covers writes memcached applies within the guard). Draws lab3_fill_race.png. --quick:
fewer reads after the race (CI)."""
import re
import sys
import time

import labkit

BIG = 256 * 1024  # the value whose unread replies hold the write back


def race(guard_ms, get_after_ms, reads):
    """Stale reads the cache served after the race: reads answered by the cache with the
    value memcached had replaced."""
    args = [] if guard_ms is None else ["--fill-guard-ms", str(guard_ms)]
    lab = labkit.Lab("lab3", args)
    try:
        lab.start_trace()
        lab.set("big", "b" * BIG)
        lab.set("race", "old")
        time.sleep(0.02)
        lab.get("race")  # a miss: memcached's reply fills the cache
        time.sleep(0.02)
        assert "old" in lab.get("race")[0]
        lab.hold_write("race", "new", "big", 64)  # 16 MB of replies nobody reads yet
        time.sleep(get_after_ms / 1000)
        raced = lab.get("race")  # memcached answers: it has not applied the write
        time.sleep(0.02)
        lab.release_write()  # now memcached applies it
        stale = 0
        for _ in range(reads):
            reply, _, who = lab.get("race")
            stale += who == "cache" and "old" in reply
        trace = lab.trace_lines()
        fills = [l for l in trace if "fill - key=race" in l]
        print(f"  the raced get: answered by {raced[2]} with {re.findall(r'(old|new)', raced[0])}; its fill: "
              f"{fills[1].split()[-1] if len(fills) >= 2 else '?'}")
        print(f"  after the write was applied: {stale} of {reads} reads served the old value from the cache")
        return stale, raced[2], trace
    finally:
        lab.close()


def main():
    a = labkit.lab_args(__doc__, __file__)
    reads = 10 if a.quick else 50
    ok = True
    print("--fill-guard-ms 0, the get 2 ms after the write was received:")
    s0, who0, _ = race(0, 2, reads)
    print("default guard (10 ms), the get 2 ms after the write was received:")
    s1, who1, t1 = race(None, 2, reads)
    print("default guard (10 ms), the get 40 ms after the write was received (still not applied):")
    s2, who2, _ = race(None, 40, reads)
    ok &= labkit.check(who0 == who1 == who2 == "memcached", "each raced get went to memcached (the write had invalidated)")
    ok &= labkit.check(s0 == reads, "without the guard, the old value memcached gave the raced get was filled and "
                                     "served after the write: every read stale")
    ok &= labkit.check(s1 == 0, "with the guard, a miss that close to the write cannot fill: no stale read")
    ok &= labkit.check(any("fill_rejected" in l for l in t1), "the trace says why that fill was refused")
    ok &= labkit.check(s2 == reads, "the guard's limit: a write memcached applies later than the guard, with a get in "
                                    "between, is served stale (up to --max-age)")
    labkit.gnuplot(a.out, "set title 'Lab 3: stale reads after a held write, per setting'\n"
                   "set style data histograms\nset style fill solid 0.6\nset boxwidth 0.7\nset key off\n"
                   f"set ylabel 'stale reads of {reads}'\nset yrange [0:{reads * 1.15}]\n"
                   "plot '-' using 2:xtic(1)\n"
                   f'"no guard, get +2 ms" {s0}\n"guard, get +2 ms" {s1}\n'
                   f'"guard, get +40 ms" {s2}\ne\n')
    print(f"figure: {a.out}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
