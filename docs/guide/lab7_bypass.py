#!/usr/bin/env python3
"""Lab 7, kernel against bypass: the same warm cache served by XDP (in the kernel, in the
driver's receive path) and by AF_XDP (a userspace poller per queue), switched on the
running bmcd. Round trip per get and bmcd's own CPU time per get, for each. Draws
lab7_bypass.png. --quick: fewer gets (CI)."""
import json
import os
import statistics
import sys
import time

import labkit




def main():
    a = labkit.lab_args(__doc__, __file__)
    n = 300 if a.quick else 2000
    lab = labkit.Lab("lab7")
    ok = True
    res = {}
    try:
        lab.set("hot", "v" * 32)
        time.sleep(0.02)
        lab.get("hot")  # fills the cache
        for backend in ("kernel", "afxdp"):
            lab.bmcctl("switch", backend)
            for _ in range(100):
                if json.loads(lab.bmcctl("--json", "status"))["backend"] == backend:
                    break
                time.sleep(0.02)
            lab.get("hot")
            lab.start_trace()
            lab.get_only("hot")
            trace = lab.trace_lines()
            lab.stop_trace()
            print(f"trace ({backend}):\n  " + "\n  ".join(trace))
            ok &= labkit.check(any((" xdp get " if backend == "kernel" else " afxdp get ") in l and "hit_requests" in l
                                   for l in trace), f"the trace shows the hit on the {backend} backend's path")
            c0, s0 = labkit.cpu_seconds(lab.bmcd.pid), json.loads(lab.bmcctl("--json", "stats"))["hit_requests"]
            us, who = [], []
            t0 = time.monotonic()
            for _ in range(n):
                reply, t, w = lab.get("hot")
                us.append(t)
                who.append(w)
            wall = time.monotonic() - t0
            c1, s1 = labkit.cpu_seconds(lab.bmcd.pid), json.loads(lab.bmcctl("--json", "stats"))["hit_requests"]
            res[backend] = {"median_us": statistics.median(us), "cpu_us_per_get": (c1 - c0) / n * 1e6,
                            "cpu_share": (c1 - c0) / wall, "hits": s1 - s0, "cache": who.count("cache")}
            print(f"{backend:6}: round trip median {res[backend]['median_us']:.0f} us, bmcd CPU "
                  f"{res[backend]['cpu_us_per_get']:.1f} us per get ({res[backend]['cpu_share']:.0%} of a CPU while "
                  f"serving), {res[backend]['cache']} of {n} from the cache")
            ok &= labkit.check(res[backend]["cache"] == n, f"{backend}: every get was answered by the cache")
        ok &= labkit.check(res["afxdp"]["cpu_us_per_get"] > res["kernel"]["cpu_us_per_get"],
                           "bmcd's own CPU per get: XDP answers in the kernel's receive path and bmcd spends "
                           "nothing; the pollers spend it in bmcd")
    finally:
        lab.close()
    labkit.gnuplot(a.out, "set title 'Lab 7: the same cache, XDP against AF_XDP (the lab client in Python)'\n"
                   "set style data histograms\nset style fill solid 0.6\nset boxwidth 0.8\nset key outside bottom center horizontal\n"
                   "set ylabel 'microseconds'\n"
                   "plot '-' using 2:xtic(1) title 'round trip (median)', '-' using 2 title 'bmcd CPU per get'\n"
                   f"XDP {res['kernel']['median_us']:.1f}\nAF_XDP {res['afxdp']['median_us']:.1f}\ne\n"
                   f"XDP {res['kernel']['cpu_us_per_get']:.2f}\nAF_XDP {res['afxdp']['cpu_us_per_get']:.2f}\ne\n")
    print(f"figure: {a.out}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
