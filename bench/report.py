#!/usr/bin/env python3
"""Writes report.md and plots (gnuplot, PNG) from a harness run's results.json."""
import json
import os
import subprocess
import sys

NAMES = {"memcached-t1": "memcached -t 1", "memcached-t2": "memcached -t 2", "kernel": "bmc kernel backend",
         "afxdp": "bmc AF_XDP backend", "floor-xdp-echo": "floor: XDP_TX echo",
         "floor-afxdp-echo": "floor: AF_XDP echo"}


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


def main(out):
    with open(os.path.join(out, "results.json")) as f:
        r = json.load(f)
    c = r["configs"]

    # capacity per configuration
    rows = [[f'"{NAMES[n]}"', c[n]["capacity_rps"], c[n]["socket_capacity_rps"]] for n in NAMES]
    d = write_data(out, "capacity", rows)
    gnuplot(out, "capacity", f"""set title 'Capacity per configuration (requests answered per second)'
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8
set logscale y
set ylabel 'answers/s (log)'
set xtics rotate by -20
set key top left
plot '{d}' using 2:xtic(1) title 'in-kernel generator', '' using 3 title 'socket client (closed loop)'
""")

    # latency CDF at 50 % of each configuration's socket capacity
    plots = []
    for n in NAMES:
        h = c[n]["latency_at_half"]["histogram"]
        total = sum(cnt for _, cnt in h) or 1
        acc, rows = 0, []
        for upper, cnt in h:
            acc += cnt
            rows.append([upper / 1000.0, acc / total])
        d = write_data(out, f"cdf-{n}", rows)
        plots.append(f"'{d}' using 1:2 with lines lw 2 title '{NAMES[n]}'")
    gnuplot(out, "latency_cdf", """set title 'Latency CDF at 50% of capacity (socket client, open loop)'
set logscale x
set xlabel 'latency (us, log)'
set ylabel 'fraction of requests'
set key bottom right
set yrange [0:1]
plot """ + ", ".join(plots) + "\n")

    titles = {"value_size": ("Capacity against value size (in-kernel generator)", "value size (bytes)", True),
              "multiget": ("Capacity against multi-get width (in-kernel generator)", "keys per get", False),
              "keys": ("Capacity against key count, Zipf 0.99 (in-kernel generator)", "keys", True)}
    for sweep, series in r["sweeps"].items():
        title, xlabel, logx = titles[sweep]
        plots = []
        for label, rows in series.items():
            d = write_data(out, f"sweep-{sweep}-{label.replace(' ', '_')}", rows)
            plots.append(f"'{d}' using 1:2 with linespoints lw 2 title '{label}'")
        gnuplot(out, sweep, f"""set title '{title}'
{'set logscale x' if logx else ''}
set logscale y
set xlabel '{xlabel}'
set ylabel 'answers/s (log)'
set key top right
plot """ + ", ".join(plots) + "\n")

    lines = ["# bmc benchmark report", "",
             f"{'Quick run (smoke check: 1 s measurements)' if r['quick'] else 'Full run'}. All figures come from "
             "this one run on this machine; ratios are the comparable result, absolute numbers are not "
             "comparable across runs on a shared machine.", "",
             "## Capacity and latency", "",
             "| configuration | in-kernel generator (answers/s) | served at the server (/s) | socket client (answers/s) | p50 at 50% (us) | p99 at 50% (us) | lost at 50% |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for n in NAMES:
        lat = c[n]["latency_at_half"]
        srv = c[n]["xdpgen"].get("server_served_rps")
        lines.append(f"| {NAMES[n]} | {c[n]['capacity_rps']:.0f} | {'-' if srv is None else f'{srv:.0f}'} | "
                     f"{c[n]['socket_capacity_rps']:.0f} | "
                     f"{lat['latency_ns']['p50'] / 1e3:.1f} | {lat['latency_ns']['p99'] / 1e3:.1f} | "
                     f"{lat['timeouts']} |")
    lines += ["", "## Goals", "", "| goal | measured | target | met |", "| --- | ---: | ---: | --- |"]
    for name, g in r["ratios"].items():
        lines.append(f"| {name} | {g['value']:.2f} | {g['goal']} | {'yes' if g['met'] else 'no'} |")
    lines += ["", "![capacity](capacity.png)", "", "![latency](latency_cdf.png)", ""]
    for sweep in r["sweeps"]:
        lines += [f"![{sweep}]({sweep}.png)", ""]
    if r.get("profile"):
        lines += ["## Where the time goes (perf, cpu-clock, kernel backend under the in-kernel generator)", "",
                  "```", r["profile"], "```", ""]
    with open(os.path.join(out, "report.md"), "w") as f:
        f.write("\n".join(lines))


if __name__ == "__main__":
    main(sys.argv[1])
