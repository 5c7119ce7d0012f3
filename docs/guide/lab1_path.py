#!/usr/bin/env python3
"""Lab 1, the path of a get: answered in XDP, before the network stack, or carried
through the stack to memcached. Round trip per get seen by the client, and the CPU each
path spends per get: bmc_rx's own run time (kernel.bpf_stats_enabled) for a hit, and
memcached's CPU time for a get it answers (the stack's share of the path is in neither:
see the benchmark for whole-machine throughput). Draws lab1_path.png. --quick: fewer
gets (CI)."""
import os
import statistics
import sys
import time

import labkit
from harness import prog_stats, SIF




def main():
    a = labkit.lab_args(__doc__, __file__)
    n = 300 if a.quick else 2000
    # --max-amplification 2: a get whose reply is over twice the request goes to
    # memcached, so one bmcd shows both paths, chosen by value size.
    lab = labkit.Lab("lab1", ["--max-amplification", "2"])
    ok = True
    res = {}
    stats_before = labkit.bpf_stats_on()
    try:
        memcached = next(p for p in lab.tb.procs if "memcached" in " ".join(p.args))
        lab.set("small", "v")              # reply within 2x of the request: the cache answers
        lab.set("large", "v" * 64)         # larger: memcached answers
        time.sleep(0.02)
        lab.get("small")
        lab.get("large")  # cached too, but its reply would be over twice the request
        time.sleep(0.02)
        # What each path looks like in the trace, before the measurement (tracing off).
        lab.start_trace()
        lab.get_only("small")
        lab.get_only("large")
        trace = lab.trace_lines(want=("key=small hit_requests", "key=large pass_over_max_amplification"))
        print("trace:\n  " + "\n  ".join(trace))
        lab.stop_trace()
        ok &= labkit.check(any("key=small hit_requests" in l for l in trace) and
                           any("key=large pass_over_max_amplification" in l for l in trace),
                           "the trace shows the small value answered in XDP and the large one passed to memcached")
        for key, path in (("small", "xdp"), ("large", "memcached")):
            g0 = lab.mc_stat("cmd_get")
            p0, c0 = prog_stats(lab.tb.srv, SIF).get("bmc_rx", {}), labkit.cpu_seconds(memcached.pid)
            us = []
            for _ in range(n):
                _, t = lab.get_only(key)
                us.append(t)
            p1, c1 = prog_stats(lab.tb.srv, SIF).get("bmc_rx", {}), labkit.cpu_seconds(memcached.pid)
            answered_by_memcached = lab.mc_stat("cmd_get") - g0
            who = ["memcached"] * answered_by_memcached + ["cache"] * (n - answered_by_memcached)
            runs = p1.get("run_cnt", 0) - p0.get("run_cnt", 0)
            xdp_ns = (p1.get("run_time_ns", 0) - p0.get("run_time_ns", 0)) / runs if runs else 0
            res[path] = {"median_us": statistics.median(us), "p99_us": sorted(us)[int(len(us) * 0.99)],
                         "xdp_ns": xdp_ns, "memcached_us": (c1 - c0) / n * 1e6, "by": who}
            print(f"{path:9}: round trip median {res[path]['median_us']:.0f} us (p99 {res[path]['p99_us']:.0f}), "
                  f"bmc_rx {xdp_ns:.0f} ns per run, memcached CPU {res[path]['memcached_us']:.1f} us per get")
        ok &= labkit.check(res["xdp"]["by"].count("cache") == n, "the small value was answered by XDP every time")
        ok &= labkit.check(res["memcached"]["by"].count("memcached") == n, "the large one by memcached every time")
        ok &= labkit.check(res["xdp"]["median_us"] < res["memcached"]["median_us"],
                           "the XDP path's round trip is shorter")
        ok &= labkit.check(res["xdp"]["xdp_ns"] > 0 and res["memcached"]["memcached_us"] * 1000 > res["xdp"]["xdp_ns"],
                           "and it costs less CPU per get than memcached's share alone")
    finally:
        labkit.bpf_stats_restore(stats_before)
        lab.close()
    labkit.gnuplot(a.out, "set title 'Lab 1: the path of a get (the lab client in Python)'\n"
                   "set style data histograms\nset style fill solid 0.6\nset key outside bottom center horizontal\nset ylabel 'microseconds'\n"
                   "plot '-' using 2:xtic(1) title 'round trip (median)', '-' using 2 title 'CPU per get on the path "
                   "(bmc_rx, or memcached)'\n"
                   '"XDP hit" %.1f\nmemcached %.1f\ne\n' % (res["xdp"]["median_us"], res["memcached"]["median_us"]) +
                   '"XDP hit" %.2f\nmemcached %.2f\ne\n' % (res["xdp"]["xdp_ns"] / 1000, res["memcached"]["memcached_us"]))
    print(f"figure: {a.out}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
