#!/usr/bin/env python3
"""Lab 6, the verifier: what it accepts, and at what cost. The project's own measurement
(bench/bmc-verifier, log level 4) of every program in bmc's object, beside a variant of
the same source built only for this lab (bpf/bmc_kern_lab_unrolled.bpf.o) in which the
payload scanner is a plain bounded loop over the bytes instead of bpf_loop. Then the
programs the verifier accepted, at work: a memcached with bmcd in front on a namespace
testbed, a few gets traced with bmcctl trace, and bmc_rx's run time per hit beside the
verification time its load cost once. Draws lab6_verifier.png. --quick: fewer gets (CI)."""
import json
import os
import subprocess
import sys
import time

import labkit
from harness import prog_stats, SIF


def measure(build, obj):
    r = subprocess.run([os.path.join(build, "bench", "bmc-verifier"), os.path.join(build, "bpf", obj)],
                       capture_output=True, text=True, timeout=600)
    return {j["program"]: j for j in map(json.loads, r.stdout.splitlines())}


def main():
    a = labkit.lab_args(__doc__, __file__)
    if os.geteuid() != 0:
        sys.exit("lab6: run as root (loading BPF programs)")
    build = os.path.abspath(os.environ.get("BMC_BUILD_DIR", os.path.join(labkit.ROOT, "build")))
    real, lab = measure(build, "bmc_kern.bpf.o"), measure(build, "bmc_kern_lab_unrolled.bpf.o")
    ok = True
    print(f"{'program':18} {'bpf_loop':>12} {'plain loop':>12}")
    for name in real:
        r, u = real[name], lab.get(name, {})
        show = lambda x: str(x.get("processed_insns", "?")) + ("" if x.get("loaded") else " REFUSED")
        print(f"{name:18} {show(r):>12} {show(u):>12}")
        if u.get("refused"):
            print(f"{'':18} the verifier: {u['refused']}")
    rx, rx_lab = real["bmc_rx"], lab["bmc_rx"]
    ok &= labkit.check(all(p["loaded"] and p.get("processed_insns", 1 << 30) < 100000 for p in real.values()),
                       "bmc's programs all load, each well under 100,000 processed instructions")
    grown = rx_lab.get("processed_insns", 0) / rx["processed_insns"]
    ok &= labkit.check(not rx_lab["loaded"] or grown >= 5,
                       "with the scanner as a plain loop, bmc_rx is refused or costs five times as much to verify "
                       f"({'refused' if not rx_lab['loaded'] else f'{grown:.0f}x'})")
    # The accepted programs at work: verification is paid once, at load; a hit's run
    # time is paid on every packet.
    bed = labkit.Lab("lab6")
    stats_before = labkit.bpf_stats_on()
    try:
        bed.set("lab", "verified")
        time.sleep(0.02)  # past the fill guard
        bed.start_trace()
        answers = [bed.get("lab") for _ in range(3)]
        trace = bed.trace_lines(want=("key=lab hit_requests",))
        bed.stop_trace()
        print("trace:\n  " + "\n  ".join(trace))
        n = 20 if a.quick else 200
        p0 = prog_stats(bed.tb.srv, SIF).get("bmc_rx", {})
        for _ in range(n):
            bed.get_only("lab")
        p1 = prog_stats(bed.tb.srv, SIF).get("bmc_rx", {})
    finally:
        labkit.bpf_stats_restore(stats_before)
        bed.close()
    runs = p1.get("run_cnt", 0) - p0.get("run_cnt", 0)
    hit_ns = (p1.get("run_time_ns", 0) - p0.get("run_time_ns", 0)) / runs if runs else 0
    verify_us = rx.get("verification_us", 0)
    print(f"bmc_rx: verified once in {verify_us / 1000:.1f} ms at load; a hit runs {hit_ns:.0f} ns "
          f"(the verification equals about {verify_us * 1000 / hit_ns if hit_ns else 0:,.0f} hits)")
    ok &= labkit.check([w for _, _, w in answers] == ["memcached", "cache", "cache"] and
                       all("VALUE lab 0 8\r\nverified\r\n" in r for r, _, _ in answers),
                       "the accepted program serves: the first get fills the cache, the next two are hits")
    ok &= labkit.check(sum("key=lab hit_requests" in l for l in trace) == 2, "the trace shows the two hits in XDP")
    ok &= labkit.check(runs >= n and 0 < hit_ns < verify_us * 1000,
                       "bmc_rx ran for every get, each far quicker than its one-time verification")
    pts = [(n, real[n].get("processed_insns", 0), lab.get(n, {}).get("processed_insns", 0)) for n in ("bmc_rx", "bmc_tx")]
    labkit.gnuplot(a.out, "set title 'Lab 6: instructions the verifier processed (log scale; 1,000,000 is its limit)'\n"
                   "set style data histograms\nset style fill solid 0.6\nset logscale y\nset yrange [1000:2000000]\n"
                   "set key top left\nset arrow from graph 0, first 1000000 to graph 1, first 1000000 nohead dt 2\n"
                   "plot '-' using 2:xtic(1) title 'scanner in bpf_loop (bmc)', "
                   f"'-' using 2 title 'scanner as a plain loop (lab variant){'; bmc_rx refused there' if not rx_lab['loaded'] else ''}'\n" +
                   "".join(f"{n} {r}\n" for n, r, u in pts) + "e\n" + "".join(f"{n} {u}\n" for n, r, u in pts) + "e\n")
    print(f"figure: {a.out}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
