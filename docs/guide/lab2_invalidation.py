#!/usr/bin/env python3
"""Lab 2, a write invalidates: watch the key's bucket generation move, and the next get
miss and refill. Draws lab2_invalidation.png. --quick: fewer gets (CI)."""
import os
import re
import sys
import time

import labkit


def gen_of(dump):
    m = re.search(r"STAT bucket_gen (\d+)", dump)
    return int(m.group(1)) if m else None


def main():
    a = labkit.lab_args(__doc__, __file__)
    n = 6 if a.quick else 12
    lab = labkit.Lab("lab2")
    ok = True
    try:
        lab.start_trace()
        lab.set("lab", "v1")
        time.sleep(0.02)  # past the fill guard
        rows = []  # (get number, who answered, value, bucket generation before it)
        value = "v1"
        for i in range(2 * n):
            if i == n:
                gen_before = gen_of(lab.bmcctl("dump", "lab"))
                print(f"write: set lab v2 (bucket generation {gen_before})")
                lab.set("lab", "v2")
                value = "v2"
                gen_after = gen_of(lab.bmcctl("dump", "lab"))
                print(f"       bucket generation now {gen_after}:")
                print("       " + "\n       ".join(l for l in lab.bmcctl("dump", "lab").splitlines() if "entry" in l))
                time.sleep(0.02)
            g = gen_of(lab.bmcctl("dump", "lab"))
            reply, us, who = lab.get("lab")
            got = re.search(r"VALUE lab 0 \d+\r\n(\w+)", reply)
            rows.append((i, who, got.group(1) if got else "?", g))
            print(f"get {i:2}: {who:9} {rows[-1][2]}  ({us:.0f} us, generation {g})")
            ok &= labkit.check(rows[-1][2] == value, f"get {i} returns the latest value {value}") or False
        trace = lab.trace_lines(want=("key=lab miss_invalidated",))
        print("trace:\n  " + "\n  ".join(trace))
        ok &= labkit.check(gen_after == gen_before + 1 or gen_after == gen_before + 2,
                           "the write moved the bucket's generation on (once for its line, once for its data)")
        ok &= labkit.check(rows[n][1] == "memcached", "the first get after the write went to memcached")
        miss = [k for k, l in enumerate(trace) if "key=lab miss_invalidated" in l]
        gets = [k for k, l in enumerate(trace[:miss[0]] if miss else []) if " get " in l]
        write = trace[gets[-1] + 1:miss[0]] if miss and gets else []
        ok &= labkit.check(len(write) == 2 and all(" invalidate tcp:set " in l and "inval_text" in l for l in write),
                           "between the last hit and the miss, the trace shows the write: two invalidations "
                           "by a set read from a TCP connection")
        ok &= labkit.check(any("key=lab miss_invalidated" in l for l in trace), "the trace names it: miss_invalidated")
        ok &= labkit.check(all(r[1] == "cache" for r in rows[n + 2:]), "and the gets after the refill hit the cache")
        labkit.gnuplot(a.out, "set title 'Lab 2: a write invalidates (get number; 1 = answered by the cache)'\n"
                       "set yrange [-0.2:1.4]\nset key bottom right\nset xlabel 'get'\nset ytics ('memcached' 0, 'cache' 1)\n"
                       f"set arrow from {n - 0.5},-0.2 to {n - 0.5},1.4 nohead dt 2\n"
                       f"set label 'set lab v2' at {n - 0.4},1.25\n"
                       "plot '-' using 1:2 with linespoints pt 7 title 'who answered'\n" +
                       "".join(f"{r[0]} {1 if r[1] == 'cache' else 0}\n" for r in rows) + "e\n")
        print(f"figure: {a.out}")
    finally:
        lab.close()
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
