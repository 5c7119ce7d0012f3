#!/usr/bin/env python3
"""Lab 5, the cost budget: how many requests per second one CPU can answer as the work
done per request grows (the BMC paper's figure on per-request processing time). The
benchmark's XDP_TX echo (bench/bench.bpf.c) with N extra iterations of a bpf_loop
callback per packet (bmc-floor --work N), driven at capacity by the in-kernel generator
(bmc-xdpgen); the echo's own time per packet from kernel.bpf_stats_enabled. Draws
lab5_budget.png. --quick: fewer points, shorter runs (CI)."""
import argparse
import os
import shutil
import sys
import tempfile

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
        ok &= labkit.check(all(rows[i][1] < rows[i + 1][1] for i in range(len(rows) - 1)),
                           "more work per packet is more time per packet")
        ok &= labkit.check(rows[-1][2] < rows[0][2] / 2, "and, past the budget, fewer answers per second")
        ok &= labkit.check(all(r[2] <= 1.1e9 / r[1] for r in rows if r[1]),
                           "a CPU never answers more per second than 1 s / its time per packet")
    finally:
        labkit.bpf_stats_restore(stats_before)
        b.close()
        shutil.rmtree(out, ignore_errors=True)
    labkit.gnuplot(a.out, "set title 'Lab 5: answers per second against time per packet (XDP_TX echo, one queue)'\n"
                   "set xlabel 'ns per packet in the XDP program'\nset ylabel 'answers per second'\n"
                   "set logscale xy\nset key top right\n"
                   "plot '-' using 1:2 with linespoints pt 7 title 'measured', "
                   "'-' using 1:2 with lines dt 2 title '1 s / time per packet (one CPU, nothing else)'\n" +
                   "".join(f"{ns:.1f} {rps:.0f}\n" for n, ns, rps in rows if ns) + "e\n" +
                   "".join(f"{ns:.1f} {1e9 / ns:.0f}\n" for n, ns, rps in rows if ns) + "e\n")
    print(f"figure: {a.out}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
