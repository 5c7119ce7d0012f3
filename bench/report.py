#!/usr/bin/env python3
"""Writes report.md and plots (gnuplot, PNG) from a harness run's results.json."""
import json
import math
import os
import subprocess
import sys

NAMES = {"memcached-t1": "memcached -t 1", "memcached-t2": "memcached -t 2", "memcached-sr": "Memcached-SR (-t 2)",
         "kernel": "bmc kernel backend", "afxdp": "bmc AF_XDP backend", "floor-xdp-echo": "floor: XDP_TX echo",
         "floor-afxdp-echo": "floor: AF_XDP echo", "floor-ideal-hit": "floor: ideal hit",
         "floor-afxdp-ideal": "floor: ideal AF_XDP hit", "remote": "remote server"}
LOADS = ("10%", "50%", "90%")


def gnuplot(out, name, script):
    path = os.path.join(out, name + ".gp")
    with open(path, "w") as f:
        f.write(f"set terminal png size 900,520 noenhanced\nset output '{os.path.join(out, name)}.png'\n" + script)
    subprocess.run(["gnuplot", path], check=True)


def write_data(out, name, rows):
    path = os.path.join(out, name + ".dat")
    with open(path, "w") as f:
        for row in rows:
            f.write(" ".join(str(x) for x in row) + "\n")
    return path


def yscale(values, label):
    """Linear when the data spans less than two decades."""
    v = [x for x in values if x and x > 0]
    if v and max(v) / min(v) >= 100:
        return f"set logscale y\nset ylabel '{label} (log)'\n"
    return f"set yrange [0:*]\nset ylabel '{label}'\n"


def fmt_rate(s):
    return f"{s['median']:,.0f} [{s['min']:,.0f}–{s['max']:,.0f}]" if s["n"] > 1 else f"{s['median']:,.0f}"


def main(out):
    with open(os.path.join(out, "results.json")) as f:
        r = json.load(f)
    c = r["configs"]
    names = [n for n in NAMES if any(k.startswith(n + "/") for k in c)]
    queues = sorted({v["queues"] for v in c.values()})

    # capacity per configuration and queue count, median with min-max
    rows, allv = [], []
    for n in names:
        row = [f'"{NAMES[n]}"']
        for q in queues:
            e = c.get(f"{n}/q{q}")
            s = e["capacity_rps"] if e else {"median": 0, "min": 0, "max": 0}
            row += [s["median"], s["min"], s["max"]]
            allv.append(s["median"])
        rows.append(row)
    d = write_data(out, "capacity", rows)
    plots = [f"'{d}' using {2 + 3 * i}:{3 + 3 * i}:{4 + 3 * i}{':xtic(1)' if i == 0 else ''} "
             f"title '{q} queue{'s' if q > 1 else ''}'" for i, q in enumerate(queues)]
    gnuplot(out, "capacity", f"""set title 'Capacity: correct answers per second (in-kernel generator), median and min-max'
set style data histograms
set style histogram errorbars gap 2 lw 1
set style fill solid 0.8
{yscale(allv, 'answers/s')}set xtics rotate by -20
set key top left
plot {', '.join(plots)}
""")

    # latency tail at 50 % of capacity, in-kernel timestamps: log(1 - p) against latency
    plots = []
    for n in names:
        e = c.get(f"{n}/q1")
        if not e or "50%" not in e["latency"]:
            continue
        h = e["latency"]["50%"].get("histogram", [])
        total = sum(cnt for _, cnt in h)
        if not total:
            continue
        acc, rows = 0, []
        for upper, cnt in h:
            acc += cnt
            if acc < total:
                rows.append([upper / 1000.0, 1 - acc / total])
        d = write_data(out, f"tail-{n}", rows)
        plots.append(f"'{d}' using 1:2 with steps lw 2 title '{NAMES[n]}'")
    if plots:
        gnuplot(out, "latency_tail", """set title 'Latency tail at 50% of capacity, 1 queue (in-kernel timestamps)'
set logscale x
set logscale y
set xlabel 'round trip (us, log)'
set ylabel 'fraction of requests slower (1 - p, log)'
set key top right
plot """ + ", ".join(plots) + "\n")

    titles = {"value_size": ("Capacity against value size (in-kernel generator, 1 queue)", "value size (bytes)"),
              "multiget": ("Capacity against multi-get width (in-kernel generator, 1 queue)", "keys per get"),
              "keys": ("Capacity against key count, Zipf 0.99 (in-kernel generator, 1 queue)", "keys")}
    for sweep, series in r.get("sweeps", {}).items():
        title, xlabel = titles[sweep]
        plots, allv, xs = [], [], []
        for label, pts in series.items():
            rows = [[p["x"], p["answer_rps"]["median"], p["answer_rps"]["min"], p["answer_rps"]["max"]] for p in pts]
            allv += [p["answer_rps"]["median"] for p in pts]
            xs += [p["x"] for p in pts]
            d = write_data(out, f"sweep-{sweep}-{label.replace(' ', '_')}", rows)
            plots.append(f"'{d}' using 1:2:3:4 with yerrorlines lw 2 title '{label}'")
        logx = xs and min(xs) > 0 and max(xs) / min(xs) >= 100
        gnuplot(out, sweep, f"""set title '{title}'
{'set logscale x' if logx else ''}
{yscale(allv, 'answers/s')}set xlabel '{xlabel}'
set key outside right
plot """ + ", ".join(plots) + "\n")

    m = r.get("meta", {})
    lines = ["# bmc benchmark report", "",
             f"{'Quick run (smoke check: short runs, one repetition)' if r['quick'] else 'Full run'}, "
             f"{m.get('date', '')}, commit {m.get('commit')}, kernel {m.get('kernel')}, {m.get('cpu_model')} "
             f"({m.get('cpus')} CPUs), {m.get('memcached')}; BPF built with "
             f"{', '.join(m.get('clang', {}).values()) or 'clang'}. {m.get('keys')} keys (Zipf 0.99), 16-byte "
             "keys, 32-byte values unless a sweep says otherwise. All figures come from this one run; ratios are "
             "the comparable result, absolute numbers are not comparable across runs on a shared machine.", ""]
    if m.get("bmcd"):
        b = m["bmcd"]
        lines += [f"bmcd {b.get('version')}: {b.get('small_buckets'):,} small and {b.get('large_buckets'):,} large "
                  f"buckets, XDP {b.get('xdp_mode')}, TC {b.get('tc_mode')}, --max-amplification "
                  f"{b.get('max_amplification')} (so that 1 KB values are answered).", ""]
    busy = [x for v in c.values() for run in v["xdpgen"]["capacity"] for x in run.get("generator_cpu_busy", [])]
    calls = [run["call_us_mean"] for v in c.values() for run in v["xdpgen"]["capacity"] if run.get("calls")]
    if busy and calls:
        lines += [f"Generator: its CPUs were {min(busy):.0%} to {max(busy):.0%} busy in capacity runs; a call of "
                  f"4,096 frames took {min(calls) / 1e3:.1f} to {max(calls) / 1e3:.1f} ms.", ""]
    if r.get("memcached_sr"):
        lines += [f"Memcached-SR: {r['memcached_sr']}.", ""]
    bad = []
    for n, e in c.items():
        k = e["xdpgen"]["checked"]
        if k["wrong"] or k.get("bad_header") or k.get("incomplete"):
            bad.append(f"{n}: {k['wrong']} wrong, {k.get('incomplete', 0)} incomplete of {k['answered']:,} answered")
    for sweep, series in r.get("sweeps", {}).items():
        for label, pts in series.items():
            for p in pts:
                k = p["checked"]
                if k["wrong"] or k.get("bad_header") or k.get("incomplete"):
                    bad.append(f"{sweep} sweep, {label} at {p['x']}: {k['wrong']} wrong, "
                               f"{k.get('incomplete', 0)} incomplete of {k['answered']:,} answered")
    lines += ["## Correctness", "",
              "Every reply was checked against the exact bytes memcached would send for its request id. "
              + ("Replies that were not right:" if bad else "No reply was wrong or incomplete."), ""]
    lines += [f"- {b}" for b in bad] + ([""] if bad else [])
    if r.get("ratios"):
        lines += ["## Goals", "", "Where a target is missed, `met` says by what factor the measured figure would have "
                  "to improve to reach it.", "",
                  "| goal | measured | target | met |", "| --- | ---: | ---: | --- |"]
        for name, g in r["ratios"].items():
            v = "n/a" if g["value"] is None else (f"{g['value']:.0f}" if g["value"] >= 100 else f"{g['value']:.2f}")
            if g.get("detail"):
                v += f" ({g['detail']})"
            met = "" if g["met"] is None else ("yes" if g["met"] else "no")
            if g["met"] is False and g["value"]:
                lower = "lower is better" in name
                met += f", missed by {g['value'] / g['goal'] if lower else g['goal'] / g['value']:.2f}x"
            lines.append(f"| {name} | {v} | {'' if g['goal'] is None else g['goal']} | {met} |")
        lines.append("")
    lines += ["## Capacity", "",
              "Correct answers per second from the in-kernel generator (checked against the exact reply bytes for "
              "each request id; median [min–max] of the repetitions). Serving path: the share of gets the cache "
              "answered in XDP or AF_XDP, the rest by memcached. AF_XDP replies not sent: replies the pollers "
              "dropped over the whole configuration (warm-up, capacity and latency runs), for want of a TX slot "
              "(tx_full) or a free frame. Frames per batch: the frames an AF_XDP poller found waiting each time "
              "it looked (its RX batches), over the whole configuration.", "",
              "| configuration | queues | answers/s | wrong | missed | served by XDP / AF_XDP / memcached | "
              "AF_XDP replies not sent (tx_full) | frames per batch |",
              "| --- | ---: | ---: | ---: | ---: | --- | ---: | ---: |"]
    for n in names:
        for q in queues:
            e = c.get(f"{n}/q{q}")
            if not e:
                continue
            k, p = e["xdpgen"]["checked"], (e["xdpgen"].get("server") or {}).get("path")
            path = "-" if not p else f"{p['xdp']:.0%} / {p['afxdp']:.0%} / {p['memcached']:.0%}"
            srv = e["xdpgen"].get("server") or {}
            drops = "-" if "afxdp_tx_dropped" not in srv or n != "afxdp" else \
                f"{srv['afxdp_tx_dropped']:,} ({srv.get('afxdp_tx_full', 0):,})"
            fpb = f"{srv['frames_per_batch']:.1f}" if srv.get("frames_per_batch") else "-"
            lines.append(f"| {NAMES[n]} | {q} | {fmt_rate(e['capacity_rps'])} | {k['wrong']} | {k['missed']} | {path} | "
                         f"{drops} | {fpb} |")
    lines += ["", "![capacity](capacity.png)", "", "## Latency (in-kernel timestamps)", "",
              "Round trip from the generator's timestamp to the client's XDP sink, open loop at 10, 50 and 90 % of "
              "each configuration's capacity (us, upper bound of a 6 %-wide bucket).", "",
              "| configuration | queues | " + " | ".join(f"p50 / p99 / p99.9 at {l}" for l in LOADS) + " |",
              "| --- | ---: | " + " | ".join("---:" for _ in LOADS) + " |"]
    for n in names:
        for q in queues:
            e = c.get(f"{n}/q{q}")
            if not e:
                continue
            cells = []
            for l in LOADS:
                x = e["latency"].get(l)
                cells.append("-" if not x else f"{x['p50'] / 1e3:.1f} / {x['p99'] / 1e3:.1f} / {x['p999'] / 1e3:.1f}")
            lines.append(f"| {NAMES[n]} | {q} | " + " | ".join(cells) + " |")
    lines += ["", "![latency tail](latency_tail.png)", ""]
    sock = [(n, c[f"{n}/q1"]["socket"]) for n in names if f"{n}/q1" in c and c[f"{n}/q1"].get("socket")]
    if sock:
        lines += ["## Second method: socket client (bmc-bench, 1 queue)", "",
                  "A userspace UDP client: closed-loop capacity with 32 requests in flight, then open-loop latency at "
                  "50 % of it. Its own cost is part of every figure.", "",
                  "| configuration | answers/s | p50 (us) | p99 (us) |", "| --- | ---: | ---: | ---: |"]
        for n, s in sock:
            lat = s["latency_at_half"]["latency_ns"]
            lines.append(f"| {NAMES[n]} | {s['capacity_rps']:,.0f} | {lat['p50'] / 1e3:.1f} | {lat['p99'] / 1e3:.1f} |")
        lines.append("")
    if r.get("per_packet_ns"):
        lines += ["## Per-packet cost", "",
                  "ns per run of each program on the server's interface (`run_time_ns / run_cnt`, "
                  "kernel.bpf_stats_enabled), in a pass of its own under the in-kernel generator at capacity. "
                  "`bench_client` is the client's program: its runs are generator runs and reply checks together, "
                  "so its figure is what the instrument costs per packet in each configuration. The floor of a hit "
                  "(bench/bench_ideal.bpf.c, bmc-floor --kind ideal) serves the same workload from a cache filled "
                  "beforehand; runs answered: the share of the program's runs it answered (the rest went to "
                  "memcached), which its ns per run averages with them.", "",
                  "| configuration | program | runs | runs answered | ns per run |", "| --- | --- | ---: | ---: | ---: |"]
        for cfg, progs in r["per_packet_ns"].items():
            for p, v in progs.items():
                share = f"{v['answered_share']:.0%}" if "answered_share" in v else ""
                lines.append(f"| {NAMES.get(cfg, cfg)} | {p} | {v['runs']:,} | {share} | {v['ns_per_run']:.0f} |")
        lines.append("")
    hc = {k: v for k, v in (r.get("hit_cost") or {}).items() if isinstance(v, dict) and "median_ns_per_hit" in v}
    if hc:
        lines += ["bmc_rx per hit by BPF_PROG_TEST_RUN (bmc-hitcost, one run per call, stats enabled): " + ", ".join(
            f"{k} {v['median_ns_per_hit']:.0f} ns" for k, v in hc.items()) + ".", ""]
        off, gone = hc.get("shape: get, 1 key (fast path)"), hc.get("trace compiled out")
        if off and gone:
            lines += [f"The decision trace, off, against the same source built with it compiled out "
                      f"(bpf/bmc_kern_no_trace.bpf.o): {off['median_ns_per_hit']:.0f} against "
                      f"{gone['median_ns_per_hit']:.0f} ns per hit ({off['median_ns_per_hit'] - gone['median_ns_per_hit']:+.0f} ns; "
                      f"rounds {min(off['ns_per_hit_rounds']):.0f}-{max(off['ns_per_hit_rounds']):.0f} and "
                      f"{min(gone['ns_per_hit_rounds']):.0f}-{max(gone['ns_per_hit_rounds']):.0f}).", ""]
    spread = r.get("hit_cost_spread") or {}
    rows = [("the ideal hit (bench/bench_ideal.bpf.c)", "floor: ideal hit"), ("bmc_rx, no checks", "no checks"),
            ("bmc_rx, the fast path with every check", "shape: get, 1 key (fast path)"),
            ("program entered (stage 1)", "stage 1 of 7: program entered"),
            ("the AF_XDP poller's datapath (bmc::Datapath::ingress, C++; its checks are bmc_rx's, before the redirect)",
             "poller: get, 1 key (fast path)"),
            ("the poller's ideal hit (bench/ideal_hit.hpp: the floor's work in C++)", "poller floor: ideal hit")]
    if hc.get("floor: ideal hit") and spread.get("floor: ideal hit"):
        lines += ["### The floor of a hit", "",
                  "The least a program must do to answer `get <key>` from bmc's cache (bench/bench_ideal.bpf.c: the "
                  "frame read in place, the key hashed, bmc_find and the seqlock on bmcd's own maps, the item copied "
                  "into the grown frame, headers turned; no stack-delivery checks, allowlist, counters or other "
                  "shapes), beside bmc_rx, in ns per hit. One key: the same cached get every run (the table in the "
                  "CPU's caches). Spread: the gets cycle through "
                  f"{spread['floor: ideal hit'].get('keys', 0):,} keys in a table of bmcd's default size, so that a "
                  "hit's bucket is no longer in the core's own caches but in the shared last-level cache or memory, as "
                  "under the generator's workload for all but the hottest keys. The poller's row is the same get "
                  "through the core compiled as C++ on the same cache, timed by the clock around each round (a copy "
                  "of the request per run included, no per-run accounting); the poller's ideal hit is the floor's "
                  "work in C++, timed the same way.", "",
                  "| program | one key | spread over the table |", "| --- | ---: | ---: |"]
        for label, key in rows:
            one, wide = hc.get(key), spread.get(key)
            if one and wide:
                lines.append(f"| {label} | {one['median_ns_per_hit']:.0f} | {wide['median_ns_per_hit']:.0f} |")
        lines.append("")
    stages = sorted((k for k in hc if k.startswith("stage ")), key=lambda k: int(k.split()[1]))
    full = hc.get("shape: get, 1 key (fast path)")
    if stages and full:
        lines += ["### bmc_rx by stage", "",
                  "Builds of bmc.bpf.c that answer every get unfinished after one stage of the hit "
                  "(`BMC_BENCH_STAGE`, core/bmc_driver.h), measured in the same interleaved rounds as the full "
                  "program (\"shape: get, 1 key (fast path)\"); a stage costs the difference to the stage before. "
                  "Stage 1 holds what every XDP program pays here: the run itself and the accounting.", "",
                  "| stage | ns per hit, cumulative | the stage's own ns |", "| --- | ---: | ---: |"]
        prev = 0.0
        last = len(stages) + 1
        for k in stages + [f"stage {last} of {last}: reply written into the frame (the full program)"]:
            v = (hc.get(k) or full)["median_ns_per_hit"]
            lines.append(f"| {k.split(': ', 1)[1]} | {v:.0f} | {v - prev:+.0f} |")
            prev = v
        lines.append("")
    for sweep in r.get("sweeps", {}):
        lines += [f"![{sweep}]({sweep}.png)", ""]
    if r.get("observer_cost"):
        o = r["observer_cost"]
        lines += [f"Write observer: memcached TCP SETs/s with / without it = {o['ratio_observer_to_none']:.3f}.", ""]
    if r.get("profile"):
        lines += ["## Where the time goes (perf, cpu-clock, kernel backend under the in-kernel generator)", "",
                  "```", r["profile"], "```", ""]
    if r.get("profile_lines"):
        pl = r["profile_lines"]
        lines += ["### bmc_rx by source line", "",
                  f"The same profile's {pl['samples']:,} samples in bmc_rx's own code (its subprograms included, the "
                  "kernel helpers it calls not), charged to source lines through the JIT's line table "
                  f"(bench/bmc_jitlines.cpp). The largest share of one line is {100 * pl['lines'][0]['share']:.1f} %; "
                  f"the {len(pl['lines'])} largest lines below hold "
                  f"{100 * sum(l['share'] for l in pl['lines']):.0f} % together.", "",
                  "| share | line | source |", "| ---: | --- | --- |"]
        for l in pl["lines"]:
            text = l["text"].replace("|", "\\|")
            lines.append(f"| {100 * l['share']:.1f} % | {l['where']} | `{text}` |")
        lines.append("")
    if r.get("elapsed_s"):
        lines += [f"The run took {r['elapsed_s'] / 60:.1f} minutes.", ""]
    with open(os.path.join(out, "report.md"), "w") as f:
        f.write("\n".join(lines))


if __name__ == "__main__":
    main(sys.argv[1])
