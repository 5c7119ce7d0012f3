#!/usr/bin/env python3
"""Lab 4, expiry and --max-age: memcached expires an item on its own clock, which bmc does
not see; bmc bounds instead how long after a fill an entry is served (--max-age). Gets
every 50 ms of an item stored with a 2-second exptime, bmcd --max-age 0.5. Draws
lab4_expiry.png. --quick: the same (it is short), for CI."""
import os
import re
import sys
import time

import labkit

MAX_AGE = 0.5


def main():
    a = labkit.lab_args(__doc__, __file__)
    lab = labkit.Lab("lab4", ["--max-age", str(MAX_AGE)])
    ok = True
    try:
        lab.start_trace()
        lab.set("exp", "soon", exptime=2)
        t0 = time.monotonic()
        time.sleep(0.02)
        rows = []  # (seconds since the set, who, what came back)
        while time.monotonic() - t0 < 3.0:
            reply, _, who = lab.get("exp")
            rows.append((time.monotonic() - t0, who, "value" if "VALUE" in reply else "absent"))
            time.sleep(0.05)
        trace = lab.trace_lines()
        # The trace's clock: seconds since bmcd started. Each hit serves the latest fill.
        fills = [float(l.split()[0]) for l in trace if "fill - key=exp fill_accepted" in l]
        hits = [float(l.split()[0]) for l in trace if "get" in l and "key=exp hit_requests" in l]
        ages = [h - max(f for f in fills if f <= h) for h in hits if any(f <= h for f in fills)]
        expired_at = next((t for t, who, what in rows if what == "absent"), None)
        for t, who, what in rows:
            print(f"{t:5.2f} s  {who:9} {what}")
        print("trace (excerpt):\n  " + "\n  ".join(trace[:12]))
        print(f"fills: {len(fills)}, hits: {len(hits)}, oldest entry served: {max(ages) * 1000 if ages else 0:.0f} ms")
        ok &= labkit.check(len(hits) > 0, "the cache answered")
        ok &= labkit.check(len(fills) >= 2, "entries were refilled as they aged out (a miss refills)")
        ok &= labkit.check(any("key=exp miss_expired" in l for l in trace), "the trace names those misses: miss_expired")
        ok &= labkit.check(bool(ages) and max(ages) <= MAX_AGE + 0.01,
                           f"no entry was served more than --max-age {MAX_AGE} s after its fill")
        ok &= labkit.check(expired_at is not None, "memcached expired the item (its gets came back absent)")
        if expired_at is not None:
            late = [t for t, who, what in rows if who == "cache" and t > expired_at]
            ok &= labkit.check(not late or max(late) - expired_at <= MAX_AGE + 0.05,
                               f"after memcached's expiry the cache served it at most {MAX_AGE} s "
                               f"(here {max(late) - expired_at if late else 0:.2f} s)")
            ok &= labkit.check(all(what == "absent" for t, who, what in rows if t > expired_at + MAX_AGE + 0.05),
                               "and after that, nobody did")
        label = {"cache": 1, "memcached": 0}
        labkit.gnuplot(a.out, "set title 'Lab 4: memcached exptime 2 s, bmcd --max-age 0.5 s'\n"
                       "set xlabel 'seconds since the set'\nset yrange [-0.7:1.4]\nset key bottom left\n"
                       "set ytics ('memcached' 0, 'cache' 1, 'absent' -0.5)\n" +
                       (f"set arrow from {expired_at},-0.7 to {expired_at},1.4 nohead dt 2\n"
                        f"set label 'memcached expired it' at {expired_at + 0.03},1.25\n" if expired_at else "") +
                       "plot '-' using 1:2 with points pt 7 title 'who answered (absent: no value)'\n" +
                       "".join(f"{t:.3f} {label[who] if what == 'value' else -0.5}\n" for t, who, what in rows) + "e\n")
        print(f"figure: {a.out}")
    finally:
        lab.close()
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
