#!/usr/bin/env python3
"""Lab 5, the cost budget: how many requests per second one CPU can answer as the work
done per request grows (the BMC paper's figure on per-request processing time). The
benchmark's XDP_TX echo (bench/bench.bpf.c) with N extra iterations of a bpf_loop
callback per packet (bmc-floor --work N), driven at capacity by the in-kernel generator
(bmc-xdpgen); the echo's own time per packet from kernel.bpf_stats_enabled. Then the
real thing on the same testbed: a memcached with bmcd in front, every get a hit (bmc_rx's
time per packet, and a few of its decisions from bmcctl trace), and memcached alone (its
CPU time per request), placed on the same curve. Draws lab5_budget.png. --quick: fewer
points, shorter runs (CI)."""
import argparse
import os
import shutil
import sys
import tempfile
import time

import labkit
import harness


def main():
    a = labkit.lab_args(__doc__, __file__)
    if os.geteuid() != 0:
        sys.exit("lab5: run as root (namespaces, BPF)")
    work = [0, 64, 256, 1024] if a.quick else [0, 16, 32, 64, 128, 256, 512, 1024, 2048]
    out = tempfile.mkdtemp(prefix="bmclab-lab5-")
    args = argparse.Namespace(build=os.environ.get("BMC_BUILD_DIR", os.path.join(labkit.ROOT, "build")), out=out,
                              quick=True, duration=0.3 if a.quick else 1.0, repetitions=1, keys=1000)
    b = harness.Bench(args)
    rows = []  # (extra iterations, ns per packet in the echo program, answers per second)
    ok = True
    bmc, mc, trace = (0, 0), 1, []
    stats_before = labkit.bpf_stats_on()
    try:
        tb = b.testbed(1)
        for n in work:
            b.floor_args = ["--work", str(n)]
            with b.server(tb, "echo-xdp") as stats:
                p0 = harness.prog_stats(tb.srv, harness.SIF).get("bench_echo", {})
                gen = b.xdpgen(tb, f"work{n}", 1000, "echo-xdp", latency=False, stats=stats)
                p1 = harness.prog_stats(tb.srv, harness.SIF).get("bench_echo", {})
            runs = p1.get("run_cnt", 0) - p0.get("run_cnt", 0)
            ns = (p1.get("run_time_ns", 0) - p0.get("run_time_ns", 0)) / runs if runs else 0
            rps = gen["capacity_rps"]["median"]
            rows.append((n, ns, rps))
            print(f"extra iterations {n:5}: echo {ns:7.0f} ns per packet, {rps:12,.0f} answers/s "
                  f"(the echo alone would allow {1e9 / ns if ns else 0:12,.0f}/s on its CPU)", flush=True)
        # The real cache: memcached preloaded, bmcd in front, every get a hit.
        keys = 1000
        with b.memcached(tb, 1, keys, 32), b.server(tb, "kernel") as stats:
            p0 = harness.prog_stats(tb.srv, harness.SIF).get("bmc_rx", {})
            gen = b.xdpgen(tb, "bmc", keys, "kernel", latency=False, stats=stats)
            p1 = harness.prog_stats(tb.srv, harness.SIF).get("bmc_rx", {})
            runs = p1.get("run_cnt", 0) - p0.get("run_cnt", 0)
            bmc = ((p1.get("run_time_ns", 0) - p0.get("run_time_ns", 0)) / runs if runs else 0,
                   gen["capacity_rps"]["median"])
            print(f"bmc, every get a hit: bmc_rx {bmc[0]:7.0f} ns per packet, {bmc[1]:12,.0f} answers/s", flush=True)
            # What those packets were: a few decisions, sampled 1 in 10,000 while the
            # generator runs again briefly.
            log = os.path.join(out, "trace.log")
            tracer = tb.spawn(tb.srv, [os.path.join(b.build, "apps", "bmcctl"), "--name", os.path.basename(tb.srv),
                                       "trace", "--sample", "10000", "--count", "5", "--seconds", "10"], open(log, "w"))
            time.sleep(0.5)
            b.xdpgen(tb, "bmc-traced", keys, "kernel", latency=False, duration=0.3)
            tb.stop(tracer)
            trace = [l.rstrip() for l in open(log) if " get " in l]
            print("trace (1 in 10,000):\n  " + "\n  ".join(trace))
        with b.memcached(tb, 1, keys, 32), b.server(tb, "none"):
            gen = b.xdpgen(tb, "memcached", keys, "none", latency=False)
            mc = gen["capacity_rps"]["median"]
            print(f"memcached alone (one thread): {mc:12,.0f} answers/s, so {1e9 / mc:7.0f} ns of its CPU per request",
                  flush=True)
        ok &= labkit.check(all(rows[i][1] < rows[i + 1][1] for i in range(len(rows) - 1)),
                           "more work per packet is more time per packet")
        ok &= labkit.check(rows[-1][2] < rows[0][2] / 2, "and, past the budget, fewer answers per second")
        ok &= labkit.check(all(r[2] <= 1.1e9 / r[1] for r in rows if r[1]),
                           "a CPU never answers more per second than 1 s / its time per packet")
        ok &= labkit.check(bool(trace) and all("hit_requests" in l for l in trace),
                           "the trace shows bmc answering the generator's gets in XDP (hit_requests)")
        ok &= labkit.check(0 < bmc[0] < 1e9 / mc and bmc[1] > 2 * mc,
                           "bmc's hit takes less time than memcached's request, and answers more than twice as many")
    finally:
        labkit.bpf_stats_restore(stats_before)
        b.close()
        shutil.rmtree(out, ignore_errors=True)
    labkit.gnuplot(a.out, "set termoption noenhanced\nset title 'Lab 5: answers per second against time per packet (XDP_TX echo, one queue)'\n"
                   "set xlabel 'ns per packet in the XDP program'\nset ylabel 'answers per second'\n"
                   "set logscale xy\nset key top right\n"
                   "plot '-' using 1:2 with linespoints pt 7 title 'echo with added work', "
                   "'-' using 1:2 with lines dt 2 title '1 s / time per packet (one CPU, nothing else)', "
                   "'-' using 1:2 with points pt 5 ps 2 title 'bmc, every get a hit (bmc_rx)', "
                   "'-' using 1:2 with points pt 9 ps 2 title 'memcached alone (CPU per request)'\n" +
                   "".join(f"{ns:.1f} {rps:.0f}\n" for n, ns, rps in rows if ns) + "e\n" +
                   "".join(f"{ns:.1f} {1e9 / ns:.0f}\n" for n, ns, rps in rows if ns) + "e\n" +
                   f"{bmc[0]:.1f} {bmc[1]:.0f}\ne\n{1e9 / mc:.1f} {mc:.0f}\ne\n")
    print(f"figure: {a.out}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
