#!/usr/bin/env python3
"""bmc benchmark harness: builds a two-namespace veth testbed, starts memcached, preloads
it, runs every configuration and sweep in one go, writes JSON, CSV and a report with
plots, and removes everything it made.

Configurations, each with 1 queue / 1 generator thread and with 2 queues / 2 threads:
memcached alone (-t 1, -t 2, and Memcached-SR when it can be built), memcached behind the
kernel backend and behind the AF_XDP backend, and the floors (an XDP_TX echo, a bare
AF_XDP echo). The method (see docs/bench/README.md):
- bmc-xdpgen generates in the kernel (BPF_PROG_RUN, live frames) from a program that
  stays attached, so it never waits on the XDP dispatcher; it paces itself in the kernel
  for latency runs (open loop) and checks every reply against the exact bytes expected
  for its request id. Only correct replies count as answers.
- latency is the round trip from the generator's timestamp to the client's XDP sink, at
  10, 50 and 90 % of each configuration's capacity; the socket client (bmc-bench) is kept
  as a second, labelled method.
- every point: a warm-up, then N runs (median, min-max).
- per-packet cost of every BPF program from kernel.bpf_stats_enabled, in its own pass.
- P4 also in interleaved rounds: the AF_XDP backend, its echo and the ideal AF_XDP hit,
  one capacity run each per round, in turn; the median of the rounds' ratios.
Ratios are computed within the run; absolute numbers from different runs are not
comparable on a shared machine.

Network rule: traffic only between the two namespaces this script creates, addresses
from 198.18.0.0/15 assigned only inside them, every load bounded in time. With --remote
no namespace is made: the generator side runs on this host against a server started by
the user (docs/bench/README.md, "Two hosts")."""
import argparse
import bisect
import csv
import datetime
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import time
from contextlib import contextmanager

SERVER_IP, CLIENT_IP, PORT = "198.18.0.1", "198.18.0.2", 11211
SIF, CIF = "bmcs0", "bmcc0"


def log(msg):
    print(f"[bench] {msg}", flush=True)


def sh(cmd):
    r = subprocess.run(cmd, shell=True, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"'{cmd}' failed: {r.stderr.strip()}")
    return r.stdout


class Testbed:
    """The tests' namespace testbed (tests/testbed.hpp), made and removed with bmc-testbed:
    two namespaces joined by a veth with the given queue count, the tests' addresses, an
    XDP_PASS program on the client end and a cgroup of its own for memcached. The server
    end's processes can be confined to a CPU set (1-queue runs give the generator CPU 0
    and the server's processes the other CPUs)."""

    def __init__(self, build, queues):
        self.build = build
        self.queues = queues
        self.procs = []
        self.tool = f"{build}/tests/bmc-testbed"
        if not os.access(self.tool, os.X_OK):
            raise RuntimeError(f"{self.tool} is missing: build with the tests (cmake --build {build})")
        subprocess.run([self.tool, "clean"], capture_output=True)
        r = subprocess.run([self.tool, "up", "--tag", f"bench{queues}", "--queues", str(queues),
                            "--owner", str(os.getpid())], capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"bmc-testbed up: {r.stderr.strip()}")
        t = json.loads(r.stdout)
        self.srv, self.cli, self.cgroup, self.server_mac = t["server_ns"], t["client_ns"], t["cgroup"], t["server_mac"]
        self.xdp_pass = f"{build}/bpf/xdp_pass.bpf.o"
        ncpu = os.cpu_count() or 1
        self.server_cpus = ",".join(str(c) for c in range(1, ncpu)) if queues == 1 and ncpu > 1 else None

    def spawn(self, ns, argv, logfile, in_cgroup=False, server_cpus=False):
        def setup():
            os.setsid()
            if in_cgroup:
                with open(f"{self.cgroup}/cgroup.procs", "w") as f:
                    f.write(str(os.getpid()))
        if server_cpus and self.server_cpus:
            argv = ["taskset", "-c", self.server_cpus] + argv
        p = subprocess.Popen(["ip", "netns", "exec", ns] + argv, stdout=logfile, stderr=subprocess.STDOUT,
                             preexec_fn=setup)
        self.procs.append(p)
        return p

    @staticmethod
    def stop(p, timeout=10):
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        return p.returncode

    def run(self, ns, argv, timeout):
        return subprocess.run(["ip", "netns", "exec", ns] + argv, capture_output=True, text=True, timeout=timeout)

    def xdp(self, ns, dev, attach):
        sh(f"ip -n {ns} link set dev {dev} xdp off")
        if attach:  # frames sent with XDP_TX into a veth need an XDP program on the peer
            sh(f"ip -n {ns} link set dev {dev} xdp obj {self.xdp_pass} sec xdp")

    def close(self):
        for p in self.procs:
            self.stop(p, 5)
        subprocess.run([self.tool, "down", "--server-ns", self.srv, "--client-ns", self.cli, "--cgroup", self.cgroup],
                       capture_output=True)


def summary(values):
    """median and min-max of repeated measurements"""
    v = [x for x in values if x is not None]
    if not v:
        return {"median": 0, "min": 0, "max": 0, "n": 0}
    return {"median": statistics.median(v), "min": min(v), "max": max(v), "n": len(v)}


def prog_stats(ns, dev):
    """run_time_ns and run_cnt of the XDP and TC programs attached to dev in ns, by name"""
    r = subprocess.run(["ip", "netns", "exec", ns, "bpftool", "-j", "net", "show", "dev", dev],
                       capture_output=True, text=True)
    ids = []
    try:
        for entry in json.loads(r.stdout or "[]"):
            for kind in ("xdp", "tc"):
                for a in entry.get(kind, []):
                    if "id" in a:
                        ids.append(a["id"])
    except json.JSONDecodeError:
        pass
    out = {}
    for i in ids:
        p = subprocess.run(["bpftool", "-j", "prog", "show", "id", str(i)], capture_output=True, text=True)
        try:
            j = json.loads(p.stdout)
        except json.JSONDecodeError:
            continue
        out[j.get("name", str(i))] = {"run_time_ns": j.get("run_time_ns", 0), "run_cnt": j.get("run_cnt", 0)}
    return out


class Bench:
    def __init__(self, args):
        self.args = args
        self.build = os.path.abspath(args.build)
        self.out = os.path.abspath(args.out)
        os.makedirs(self.out, exist_ok=True)
        q = args.quick
        self.d = args.duration or (0.3 if q else 2.0)
        self.warmup = 0.1 if q else 0.5
        self.reps = args.repetitions or (1 if q else 5)
        self.keys = args.keys or (10000 if q else 100000)
        self.tbs = {}
        self.results = {"quick": q, "meta": self.metadata(), "configs": {}, "sweeps": {}}
        self.logs = open(os.path.join(self.out, "processes.log"), "w")
        self.sr = None

    def testbed(self, queues):
        if queues not in self.tbs:
            self.tbs[queues] = Testbed(self.build, queues)
        return self.tbs[queues]

    def close(self):
        for tb in self.tbs.values():
            tb.close()

    def tool(self, name):
        return {"bmcd": f"{self.build}/apps/bmcd", "bmc-check": f"{self.build}/tests/bmc-check"}.get(
            name, f"{self.build}/bench/{name}")

    def metadata(self):
        def cmd(argv):
            try:
                return subprocess.run(argv, capture_output=True, text=True, timeout=10).stdout.strip()
            except (OSError, subprocess.TimeoutExpired):
                return None
        cpu = None
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
        clangs = {}
        for c in ("clang-14", "clang-16", "clang-19"):
            v = cmd([c, "--version"])
            if v:
                clangs[c] = v.splitlines()[0]
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        return {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                "kernel": platform.release(), "cpu_model": cpu, "cpus": os.cpu_count(), "clang": clangs,
                "commit": cmd(["git", "-C", root, "rev-parse", "--short", "HEAD"]),
                "memcached": cmd(["memcached", "-V"]), "keys": self.keys}

    # ---- memcached and the server side -------------------------------------------------
    @contextmanager
    def memcached(self, tb, threads, keys, value_size, binary="memcached"):
        p = tb.spawn(tb.srv, [binary, "-u", "root", "-U", str(PORT), "-p", str(PORT), "-l", SERVER_IP + ",127.0.0.1",
                              "-t", str(threads), "-m", "2048", "-c", "4096"], self.logs, in_cgroup=True,
                     server_cpus=True)
        try:
            self.preload(tb, keys, value_size)
            yield p
        finally:
            tb.stop(p)

    def preload(self, tb, keys, value_size):
        tb.xdp(tb.cli, CIF, True)
        deadline = time.time() + 10
        while True:
            r = tb.run(tb.cli, [self.tool("bmc-bench"), "-s", SERVER_IP, "--preload", "-k", str(keys), "--value-size",
                                str(value_size), "-d", "0.1", "-n", "1"], timeout=900)
            if r.returncode == 0:
                return
            if time.time() > deadline:
                raise RuntimeError(f"preload failed: {r.stderr.strip()}")
            time.sleep(0.2)

    @contextmanager
    def server(self, tb, kind, extra=()):
        """Starts what sits in front of memcached: none, kernel, afxdp, echo-xdp, echo-afxdp,
        floor-ideal, ideal-afxdp (extra: more bmcd arguments)."""
        stats = os.path.join(self.out, f"server-stats-q{tb.queues}.json")
        if os.path.exists(stats):
            os.remove(stats)
        if kind == "none":
            tb.xdp(tb.srv, SIF, True)  # the generator's frames arrive by XDP_TX
            try:
                yield None
            finally:
                tb.xdp(tb.srv, SIF, False)
            return
        if kind in ("kernel", "afxdp", "afxdp-busypoll"):
            # Values up to 1 KB answer 30-byte requests: lift the amplification limit (default 10)
            # so that the value-size sweep measures the cache rather than the limit.
            argv = [self.tool("bmcd"), "-i", SIF, "--backend", kind.split("-")[0], "--interval", "0",
                    "--stats-file", stats, "--max-amplification", "100", "--cgroup", tb.cgroup,
                    "--max-connections", "4096", "--name", os.path.basename(tb.srv)] + list(extra)
            if kind == "afxdp-busypoll":
                argv.append("--busy-poll")
        else:
            floor = {"echo-xdp": "xdp", "echo-afxdp": "afxdp", "floor-ideal": "ideal", "ideal-afxdp": "afxdp-ideal"}
            argv = [self.tool("bmc-floor"), "-i", SIF, "--kind", floor[kind], "--stats-file", stats] + \
                getattr(self, "floor_args", [])
            if kind in ("floor-ideal", "ideal-afxdp"):  # the workload's items in its cache
                argv += ["--keys", str(self.keys), "--value-size", "32"]
        p = tb.spawn(tb.srv, argv, self.logs, server_cpus=True)
        for _ in range(500):
            if os.path.exists(stats) or p.poll() is not None:
                break
            time.sleep(0.02)
        if p.poll() is not None:
            raise RuntimeError(f"{kind} did not start; see {self.out}/processes.log")
        if kind in ("kernel", "afxdp", "afxdp-busypoll") and "bmcd" not in self.results["meta"]:
            with open(stats) as f:
                cfg = json.load(f).get("config", {})
            self.results["meta"]["bmcd"] = {k: cfg.get(k) for k in (
                "version", "small_buckets", "large_buckets", "max_age_ns", "fill_guard_ns", "max_amplification",
                "xdp_mode", "tc_mode")}
        try:
            yield stats
        finally:
            tb.stop(p)

    @staticmethod
    def served(stats):
        """What the server side says it did: cache hits by path, gets seen, or echoes."""
        if not stats or not os.path.exists(stats):
            return None
        with open(stats) as f:
            j = json.load(f)
        if "echoed" in j:  # the floors; the AF_XDP ones also count their pollers' batches
            return {k: j[k] for k in ("echoed", "rx_frames", "rx_batches") if k in j}
        c, a = j["counters"], j.get("afxdp", {}).get("counters", {})
        x = j.get("afxdp", {})
        return {"xdp": c["hit_requests"], "afxdp": a.get("hit_requests", 0),
                "gets": c.get("get_requests", 0) + a.get("get_requests", 0),
                # AF_XDP replies the pollers could not send: no TX slot (tx_full) or no frame
                "afxdp_tx_full": x.get("tx_full", 0), "afxdp_tx_dropped": x.get("tx_dropped", 0),
                "rx_frames": x.get("rx_frames", 0), "rx_batches": x.get("rx_batches", 0)}

    # ---- measurements ------------------------------------------------------------------
    def xdpgen(self, tb, name, keys, kind, width=1, value_size=32, latency=True, stats=None, duration=None,
               reps=None):
        reps = reps or self.reps
        before = self.served(stats)
        tb.xdp(tb.cli, CIF, False)
        path = os.path.join(self.out, f"{name}-q{tb.queues}-xdpgen.json")
        argv = [self.tool("bmc-xdpgen"), "-i", CIF, "--server-ip", SERVER_IP, "--server-mac", tb.server_mac,
                "-k", str(keys), "-w", str(width), "--value-size", str(value_size), "-d", str(duration or self.d),
                "--warmup", str(self.warmup), "--runs", str(reps), "-t", str(tb.queues),
                "--expect", "echo" if kind.startswith("echo") else "memcached", "--json", path]
        if latency:
            argv += ["--latency-at", "0.1,0.5,0.9"]
        budget = (reps + (3 if latency else 0)) * ((duration or self.d) + self.warmup) * 3 + 60
        try:
            r = tb.run(tb.cli, argv, timeout=budget)
        finally:
            tb.xdp(tb.cli, CIF, True)
        if r.returncode != 0:
            raise RuntimeError(f"bmc-xdpgen ({name}): {r.stderr.strip()[-2000:]}")
        with open(path) as f:
            res = json.load(f)
        caps = [c["answer_rps"] for c in res["capacity"]]
        res["capacity_rps"] = summary(caps)
        res["checked"] = {k: sum(c[k] for c in res["capacity"] + res["latency"])
                          for k in ("answered", "wrong", "missed", "incomplete", "unexpected", "bad_header")}
        if before:
            time.sleep(0.3)  # the server rewrites its counters every 200 ms
            after = self.served(stats)
            d = {k: after[k] - before[k] for k in after}
            if d.get("rx_batches"):  # AF_XDP: frames a poller found waiting per batch
                d["frames_per_batch"] = d["rx_frames"] / d["rx_batches"]
            if "gets" in d and d["gets"]:
                hits = d["xdp"] + d["afxdp"]
                d["hit_ratio"] = hits / d["gets"]
                d["path"] = {"xdp": d["xdp"] / d["gets"], "afxdp": d["afxdp"] / d["gets"],
                             "memcached": 1 - hits / d["gets"]}
            res["server"] = d
        elif kind == "none":
            res["server"] = {"path": {"xdp": 0, "afxdp": 0, "memcached": 1}}
        return res

    def socket_run(self, tb, extra, name):
        tb.xdp(tb.cli, CIF, True)
        path = os.path.join(self.out, f"{name}.json")
        argv = [self.tool("bmc-bench"), "-s", SERVER_IP, "--json", path] + extra
        r = tb.run(tb.cli, argv, timeout=self.d * 4 + 60)
        if r.returncode != 0 or not os.path.exists(path):
            raise RuntimeError(f"bmc-bench {' '.join(extra)}: {r.stderr.strip()}")
        with open(path) as f:
            return json.load(f)

    def socket_method(self, tb, name, keys, echo):
        common = ["-t", "1", "-d", str(self.d), "-k", str(keys), "--value-size", "32"] + (["--echo"] if echo else [])
        cap = self.socket_run(tb, ["--mode", "closed", "--outstanding", "32"] + common, name + "-socket-capacity")
        lat = self.socket_run(tb, ["--mode", "open", "--rate", str(max(0.5 * cap["throughput_rps"], 100))] + common,
                              name + "-socket-latency")
        return {"capacity_rps": cap["throughput_rps"], "capacity": cap, "latency_at_half": lat}

    def configurations(self):
        plan = [("memcached-t1", 1, "none"), ("memcached-t2", 2, "none")]
        if self.sr:
            plan.append(("memcached-sr", 2, "none"))
        plan += [("kernel", 1, "kernel"), ("afxdp", 1, "afxdp"), ("floor-xdp-echo", 1, "echo-xdp"),
                 ("floor-afxdp-echo", 1, "echo-afxdp"), ("floor-afxdp-ideal", 1, "ideal-afxdp")]
        return plan

    def measure_config(self, name, mc_threads, kind, queues):
        tb = self.testbed(queues)
        log(f"configuration {name}, {queues} queue{'s' if queues > 1 else ''}")
        binary = self.sr if name == "memcached-sr" else "memcached"
        with self.memcached(tb, mc_threads, self.keys, 32, binary), self.server(tb, kind) as stats:
            gen = self.xdpgen(tb, f"{name}", self.keys, kind, stats=stats)
            # The ideal floor drops its misses, which a socket client would wait out.
            sock = self.socket_method(tb, f"{name}-q{queues}", self.keys, kind.startswith("echo")) \
                if queues == 1 and kind != "ideal-afxdp" else None
        res = {"queues": queues, "xdpgen": gen, "capacity_rps": gen["capacity_rps"], "socket": sock,
               "latency": {f'{int(round(l["fraction"] * 100))}%': l["latency_ns"] | {"answer_rps": l["answer_rps"],
                                                                              "target_rps": l["target_rps"]}
                           for l in gen["latency"]}}
        self.results["configs"][f"{name}/q{queues}"] = res
        c, k = gen["capacity_rps"], gen["checked"]
        lat = res["latency"].get("50%", {})
        log(f"  {c['median']:.0f} answers/s [{c['min']:.0f}-{c['max']:.0f}], wrong {k['wrong']}, missed {k['missed']}, "
            f"p50/p99 at 50%: {lat.get('p50', 0) / 1e3:.1f}/{lat.get('p99', 0) / 1e3:.1f} us (in-kernel)"
            + (f"; socket client {sock['capacity_rps']:.0f}/s" if sock else ""))

    def sweep(self, title, points, make):
        self.results["sweeps"][title] = {}
        for kind, label in (("kernel", "kernel backend"), ("afxdp", "AF_XDP backend"), ("none", "memcached -t 1")):
            rows = []
            for x in points:
                s = make(kind, x)
                rows.append({"x": x, "answer_rps": s["capacity_rps"], "checked": s["checked"],
                             "path": s.get("server", {}).get("path")})
                log(f"  {title} {label} {x}: {s['capacity_rps']['median']:.0f} answers/s")
            self.results["sweeps"][title][label] = rows

    def run_sweeps(self):
        q = self.args.quick
        tb = self.testbed(1)
        keys = 10000

        def value(kind, v):
            with self.memcached(tb, 1, keys, v), self.server(tb, kind) as st:
                return self.xdpgen(tb, f"sweep-value-{kind}-{v}", keys, kind, value_size=v, latency=False, stats=st, duration=self.d / 2)

        def width(kind, w):
            with self.memcached(tb, 1, keys, 32), self.server(tb, kind) as st:
                return self.xdpgen(tb, f"sweep-width-{kind}-{w}", keys, kind, width=w, latency=False, stats=st, duration=self.d / 2)

        def keycount(kind, k):
            with self.memcached(tb, 1, k, 32), self.server(tb, kind) as st:
                return self.xdpgen(tb, f"sweep-keys-{kind}-{k}", k, kind, latency=False, stats=st, duration=self.d / 2)

        log("sweep: value size")
        self.sweep("value_size", [32, 1024] if q else [32, 128, 256, 512, 768, 1024], value)
        # A 16-byte key with a 32-byte value makes a 63-byte item: the cache's reply (1,400
        # bytes with the 8-byte frame header, END included) holds 22 of them, so answers
        # move from XDP to memcached past width 22.
        log("sweep: multi-get width")
        self.sweep("multiget", [1, 30] if q else [1, 4, 8, 16, 20, 21, 22, 23, 24, 26, 28, 30], width)
        log("sweep: key count (Zipf 0.99)")
        self.sweep("keys", [10000] if q else [10000, 100000, 1000000], keycount)

    def afxdp_rounds(self):
        """P4 in interleaved rounds (1 queue): the AF_XDP backend, its echo and the ideal
        AF_XDP hit, one capacity run each per round, in turn, on one memcached. Each
        round's ratios compare runs seconds apart, so their median is less at the mercy of
        one configuration's bad minute than the ratio of two configurations' medians."""
        tb = self.testbed(1)
        rounds = 1 if self.args.quick else 7
        kinds = [("afxdp", "afxdp"), ("floor-afxdp-echo", "echo-afxdp"), ("floor-afxdp-ideal", "ideal-afxdp")]
        rows = []
        with self.memcached(tb, 1, self.keys, 32):
            for r in range(rounds):
                row = {}
                for name, kind in kinds:
                    with self.server(tb, kind) as st:
                        gen = self.xdpgen(tb, f"rounds-{name}-{r}", self.keys, kind, latency=False, stats=st, reps=1)
                    if gen["checked"]["wrong"] or gen["checked"]["bad_header"]:
                        raise RuntimeError(f"afxdp rounds: wrong answers from {name}")
                    row[name] = gen["capacity_rps"]["median"]
                log(f"  round {r + 1}: " + ", ".join(f"{n} {v:,.0f}/s" for n, v in row.items()))
                rows.append(row)

        def ratio(a, b):
            return summary([row[a] / row[b] for row in rows if row[b]])
        res = {"rounds": rows, "afxdp/echo": ratio("afxdp", "floor-afxdp-echo"),
               "ideal/echo": ratio("floor-afxdp-ideal", "floor-afxdp-echo"),
               "afxdp/ideal": ratio("afxdp", "floor-afxdp-ideal")}
        self.results["afxdp_rounds"] = res
        return res

    def per_packet_cost(self):
        """ns per run of every BPF program on the path (kernel.bpf_stats_enabled), in a pass
        of its own because the accounting itself costs about 70 ns per run."""
        tb = self.testbed(1)
        res = {}
        with open("/proc/sys/kernel/bpf_stats_enabled") as f:
            old = f.read().strip()
        try:
            with open("/proc/sys/kernel/bpf_stats_enabled", "w") as f:
                f.write("1")
            # The default table (16,384 small and 1,024 large buckets, 12.6 MB) fits this
            # machine's last-level cache (32 MB); the large one (about 200 MB) does not.
            # The floor of a hit (bench/bench_ideal.bpf.c) on the same workload: the least
            # cache work, measured as bmc_rx is.
            passes = [("kernel", "kernel", ()), ("floor-xdp-echo", "echo-xdp", ()), ("floor-ideal-hit", "floor-ideal", ())]
            if not self.args.quick:
                passes.append(("kernel-large-table", "kernel", LARGE_TABLE))
            for name, kind, extra in passes:
                with self.memcached(tb, 1, self.keys, 32), self.server(tb, kind, extra) as st:
                    tb.xdp(tb.cli, CIF, False)
                    before = prog_stats(tb.srv, SIF)
                    gen = self.xdpgen(tb, f"cost-{name}", self.keys, kind, latency=False, stats=st)
                    after = prog_stats(tb.srv, SIF)
                progs = {}
                for p, a in after.items():
                    b = before.get(p, {"run_time_ns": 0, "run_cnt": 0})
                    n = a["run_cnt"] - b["run_cnt"]
                    if n > 0:
                        progs[p] = {"runs": n, "ns_per_run": (a["run_time_ns"] - b["run_time_ns"]) / n}
                # The share of the program's runs that answered (the rest passed to memcached):
                # its ns per run averages both.
                answered = (gen.get("server") or {}).get("xdp", (gen.get("server") or {}).get("echoed"))
                for p in ("bmc_rx", "bench_ideal_hit"):
                    if p in progs and answered is not None:
                        progs[p]["answered_share"] = answered / progs[p]["runs"]
                client = [c["client_prog"] for c in gen["capacity"] if c.get("client_prog")]
                if client:  # the client's program: generator runs and reply checks together
                    runs = sum(c["runs"] for c in client)
                    progs["bench_client"] = {"runs": runs,
                                             "ns_per_run": sum(c["ns_per_run"] * c["runs"] for c in client) / runs}
                res[name] = progs
                log(f"  per-packet cost {name}: " + ", ".join(
                    f"{p} {v['ns_per_run']:.0f} ns" + (f" ({v['answered_share']:.0%} answered)" if "answered_share" in v else "")
                    for p, v in progs.items()))
        finally:
            with open("/proc/sys/kernel/bpf_stats_enabled", "w") as f:
                f.write(old)
        self.results["per_packet_ns"] = res
        return res

    def profile(self):
        """cpu-clock profile of the kernel backend under the in-kernel generator."""
        if self.args.quick or not shutil.which("perf"):
            return None
        tb = self.testbed(1)
        keys = 10000
        data = os.path.join(self.out, "perf.data")
        with self.memcached(tb, 1, keys, 32), self.server(tb, "kernel"):
            tb.xdp(tb.cli, CIF, False)
            gen = subprocess.Popen(["ip", "netns", "exec", tb.cli, self.tool("bmc-xdpgen"), "-i", CIF, "--server-ip",
                                    SERVER_IP, "--server-mac", tb.server_mac, "-k", str(keys), "-d", "4", "--warmup",
                                    "0"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(1)
            subprocess.run(["perf", "record", "-e", "cpu-clock", "-a", "-o", data, "--", "sleep", "2"],
                           capture_output=True)
            # While bmc_rx is loaded: where its source lines lie in its JIT image.
            jl = subprocess.run([self.tool("bmc-jitlines"), "bmc_rx"], capture_output=True, text=True)
            gen.wait()
            tb.xdp(tb.cli, CIF, True)
        rep = subprocess.run(["perf", "report", "--stdio", "-i", data, "--sort", "sym", "--percent-limit", "1.5"],
                             capture_output=True, text=True)
        self.results["profile_lines"] = line_profile(data, jl.stdout) if jl.returncode == 0 else None
        return "\n".join(l for l in rep.stdout.splitlines() if l and not l.startswith("#"))[:4000]

    def observer_cost(self, rounds=3):
        """memcached's own TCP SET throughput with bmc's write observer attached (alone: no
        XDP, no TC), against none, interleaved in one run; synchronous SETs from 2 threads."""
        tb = self.testbed(1)
        d = 1.0 if self.args.quick else 3.0
        runs = {"none": [], "observer": []}
        with self.memcached(tb, 1, 1000, 32):
            for r in range(rounds):
                for kind in ("none", "observer"):
                    p = None
                    if kind == "observer":
                        p = tb.spawn(tb.srv, [self.tool("bmc-observe"), "--cgroup", tb.cgroup], self.logs)
                        time.sleep(0.5)
                        if p.poll() is not None:
                            raise RuntimeError("bmc-observe did not start; see processes.log")
                    try:
                        j = self.socket_run(tb, ["--set-ratio", "1", "-t", "2", "-d", str(d), "-k", "1000",
                                                 "--value-size", "32", "--no-verify"], f"observer-cost-{kind}-{r}")
                    finally:
                        if p:
                            tb.stop(p)
                    runs[kind].append(j["sets"] / j["duration_s"] if "duration_s" in j else j["sets"] / d)
                    log(f"  observer cost round {r} {kind}: {runs[kind][-1]:.0f} sets/s")
        med = {k: statistics.median(v) for k, v in runs.items()}
        res = {"sets_per_s": runs, "median": med, "ratio_observer_to_none": med["observer"] / max(med["none"], 1)}
        self.results["observer_cost"] = res
        return res

    def hit_cost(self):
        """bmc-hitcost in the server namespace: bmc_rx per hit with and without the
        stack-delivery checks and the socket lookup, for each request shape, and by
        stage (the BMC_BENCH_STAGE builds), beside the ideal-hit floor and the AF_XDP
        poller's datapath (the core as C++), interleaved in one run."""
        tb = self.testbed(1)
        quick = self.args.quick

        def measure(name, args):
            path = os.path.join(self.out, f"{name.replace('_', '-')}.json")
            r = tb.run(tb.srv, [self.tool("bmc-hitcost"), "-i", SIF, "--json", path,
                                "--runs", "10000" if quick else "20000"] + args, timeout=900)
            if r.returncode != 0:
                raise RuntimeError(f"bmc-hitcost {' '.join(args)}: {r.stderr.strip()}")
            log(r.stdout.strip())
            with open(path) as f:
                self.results[name] = json.load(f)

        # Many short rounds: the stage rows are differences of medians, and a burst of
        # another tenant's load on this shared machine, which five rounds of 100,000
        # runs left on a few configurations (stages out of order), now falls on all.
        measure("hit_cost", ["--rounds", "5" if quick else "45"])
        # The floor, bmc_rx and the poller again with the gets spread over many keys of a
        # table of bmcd's default size: a hit's bucket is then in the last-level cache or
        # memory rather than the core's own caches.
        measure("hit_cost_spread", ["--spread", "3000" if quick else "30000", "--small-buckets", "16384",
                                    "--large-buckets", "1024", "--rounds", "3" if quick else "25",
                                    "--only", "floor|fast path|no checks|stage 1 |poller: get, 1 key"])
        return self.results["hit_cost"]

    def consistency(self, ops, seconds=None, lossy=False):
        """bmc-check against both backends: longer runs than CI's 50,000 operations; with
        lossy, over a link that drops 2 % of the TCP segments to memcached."""
        tb = self.testbed(1)
        bad = []
        seconds = seconds or max(60, ops / 2000)
        for kind in ("kernel", "afxdp"):
            with self.memcached(tb, 1, 10, 32), self.server(tb, kind):
                if lossy:
                    sh(f"ip netns exec {tb.srv} tc qdisc add dev {SIF} clsact")
                    sh(f"ip netns exec {tb.srv} tc filter add dev {SIF} ingress bpf da obj "
                       f"{self.build}/tests/lossy.bpf.o sec tc")
                try:
                    r = tb.run(tb.cli, [self.tool("bmc-check"), "--ops", str(ops), "--keys", "16",
                                        "--write-pause-us", "3000", "--max-seconds", str(seconds),
                                        "--pipeline", "8", "--split", "--loopback-netns", f"/var/run/netns/{tb.srv}"],
                               timeout=seconds + 120)
                finally:
                    if lossy:
                        subprocess.run(["ip", "netns", "exec", tb.srv, "tc", "qdisc", "del", "dev", SIF, "clsact"],
                                       capture_output=True)
            log(f"consistency {kind}: {r.stdout.strip()[:2000]} {r.stderr.strip()[:500]}")
            with open(os.path.join(self.out, f"consistency-{kind}.json"), "w") as f:
                f.write(r.stdout)
            if r.returncode != 0:
                bad.append(kind)
        return bad

    def build_sr(self):
        if self.args.quick or self.args.no_sr:
            self.results["memcached_sr"] = "not measured (--quick or --no-sr)"
            return
        log("building Memcached-SR from Debian's memcached source package")
        r = subprocess.run(["bash", os.path.join(os.path.dirname(os.path.abspath(__file__)), "memcached-sr.sh"),
                            os.path.join(self.build, "memcached-sr")], capture_output=True, text=True, timeout=900)
        if r.returncode == 0 and os.access(r.stdout.strip(), os.X_OK):
            self.sr = r.stdout.strip()
            self.results["memcached_sr"] = "built from Debian's source package with bench/memcached-sr.patch"
        else:
            self.results["memcached_sr"] = f"not measured: the source could not be built ({r.stderr.strip()[-300:]})"
            log(self.results["memcached_sr"])

    def run(self):
        start = time.time()
        self.build_sr()
        for queues in (1, 2):
            for name, t, kind in self.configurations():
                self.measure_config(name, t, kind, queues)
        self.run_sweeps()
        log("P4 in interleaved rounds: AF_XDP backend, AF_XDP echo, ideal AF_XDP hit")
        self.afxdp_rounds()
        log("per-packet cost of every program (kernel.bpf_stats_enabled)")
        self.per_packet_cost()
        log("hit cost: the stack-delivery checks")
        self.hit_cost()
        if not self.args.quick:
            log("observer cost: memcached TCP SETs with and without the write observer")
            self.observer_cost()
            self.results["profile"] = self.profile()
        self.results["ratios"] = ratios(self.results)
        self.results["elapsed_s"] = time.time() - start
        self.write()
        return failures(self.results)

    def write(self):
        with open(os.path.join(self.out, "results.json"), "w") as f:
            json.dump(self.results, f, indent=1)
        with open(os.path.join(self.out, "results.csv"), "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["series", "queues", "x", "metric", "median", "min", "max", "n", "wrong", "missed", "path_xdp",
                        "path_afxdp", "path_memcached"])
            for name, c in self.results["configs"].items():
                k, path = c["xdpgen"]["checked"], c["xdpgen"].get("server", {}).get("path") or {}
                cap = c["capacity_rps"]
                w.writerow([name.split("/")[0], c["queues"], "", "answers_per_s", cap["median"], cap["min"], cap["max"],
                            cap["n"], k["wrong"], k["missed"], path.get("xdp"), path.get("afxdp"),
                            path.get("memcached")])
                for load, l in c["latency"].items():
                    for q in ("p50", "p99", "p999"):
                        w.writerow([name.split("/")[0], c["queues"], load, f"latency_{q}_ns", l[q], "", "", 1, "", "",
                                    "", "", ""])
            for sweep, series in self.results["sweeps"].items():
                for label, rows in series.items():
                    for row in rows:
                        a, path = row["answer_rps"], row.get("path") or {}
                        w.writerow([f"{sweep}:{label}", 1, row["x"], "answers_per_s", a["median"], a["min"], a["max"],
                                    a["n"], row["checked"]["wrong"], row["checked"]["missed"], path.get("xdp"),
                                    path.get("afxdp"), path.get("memcached")])
            for cfg, progs in self.results.get("per_packet_ns", {}).items():
                for prog, v in progs.items():
                    w.writerow([f"{cfg}:{prog}", 1, "", "ns_per_run", v["ns_per_run"], "", "", v["runs"], "", "", "",
                                "", ""])


def publish(out, results):
    """docs/bench/: the report, its plots, the CSV and a small JSON summary of one run."""
    docs = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs", "bench")
    os.makedirs(docs, exist_ok=True)
    for f in os.listdir(docs):
        if f.endswith((".png", ".md", ".csv", ".json")) and f != "README.md":
            os.remove(os.path.join(docs, f))
    for f in os.listdir(out):
        if f.endswith(".png") or f in ("report.md", "results.csv"):
            shutil.copy(os.path.join(out, f), docs)
    c = results["configs"]
    summary_ = {"meta": results["meta"], "quick": results["quick"], "ratios": results.get("ratios"),
                "memcached_sr": results.get("memcached_sr"), "per_packet_ns": results.get("per_packet_ns"),
                "capacity_rps": {n: v["capacity_rps"] for n, v in c.items()},
                "latency_ns": {n: {l: {q: x[q] for q in ("p50", "p99", "p999")} for l, x in v["latency"].items()}
                               for n, v in c.items()},
                "elapsed_s": results.get("elapsed_s")}
    with open(os.path.join(docs, "summary.json"), "w") as f:
        json.dump(summary_, f, indent=1)
    log(f"published to {docs}")


def failures(results):
    """Configurations that produced a wrong answer or no answer at all."""
    bad = []
    for name, c in results["configs"].items():
        k = c["xdpgen"]["checked"]
        if k["wrong"] or k["bad_header"] or k["answered"] == 0:
            bad.append(f"{name} (answered {k['answered']}, wrong {k['wrong']}, bad {k['bad_header']})")
    for sweep, series in results["sweeps"].items():
        for label, rows in series.items():
            for row in rows:
                k = row["checked"]
                if k["wrong"] or k["bad_header"] or k["answered"] == 0:
                    bad.append(f"{sweep} {label} {row['x']} (answered {k['answered']}, wrong {k['wrong']})")
    return bad


def ratios(r):
    c = r["configs"]

    def cap(name, q=1):
        e = c.get(f"{name}/q{q}")
        return e["capacity_rps"]["median"] if e else None

    def lat(name, load, q="p50"):
        e = c.get(f"{name}/q1")
        return e["latency"].get(load, {}).get(q) if e else None

    def div(a, b):
        return a / b if a is not None and b else None

    stock = max(x for x in (cap("memcached-t1"), cap("memcached-t2"), cap("memcached-t1", 2), cap("memcached-t2", 2))
                if x is not None)
    cost = r.get("per_packet_ns", {})
    rounds = r.get("afxdp_rounds") or {}

    def span(x):
        return f"{x['n']} rounds, {x['min']:.2f} to {x['max']:.2f}" if x else None
    hit_ns = cost.get("kernel", {}).get("bmc_rx", {}).get("ns_per_run")
    large_ns = cost.get("kernel-large-table", {}).get("bmc_rx", {}).get("ns_per_run")
    echo_ns = cost.get("floor-xdp-echo", {}).get("bench_echo", {}).get("ns_per_run")
    ideal_ns = cost.get("floor-ideal-hit", {}).get("bench_ideal_hit", {}).get("ns_per_run")
    rows = [
        ("P0 bmc_rx ns per hit (lower is better)", hit_ns, 150,
         f"XDP_TX echo {echo_ns:.0f} ns per packet in the same run" if echo_ns else None),
        ("P0 bmc_rx ns per hit / XDP_TX echo ns per packet", div(hit_ns, echo_ns), None,
         f"{hit_ns:.0f} ns / {echo_ns:.0f} ns" if hit_ns and echo_ns else None),
        ("P0 bmc_rx ns per hit, table larger than the LLC (about 200 MB)", large_ns, None, None),
        ("P0 floor: the ideal hit's ns per packet (bench/bench_ideal.bpf.c, no checks)", ideal_ns, None, None),
        ("P1 kernel / XDP_TX echo (1 queue)", div(cap("kernel"), cap("floor-xdp-echo")), 0.8, None),
        ("P2 kernel, 2 queues / memcached -t 1", div(cap("kernel", 2), cap("memcached-t1")), 18.0, None),
        ("P2 kernel, 2 queues / best stock memcached", div(cap("kernel", 2), stock), None, None),
        ("P2 kernel, 2 queues / Memcached-SR, 2 queues", div(cap("kernel", 2), cap("memcached-sr", 2)), None, None),
        ("P4 AF_XDP backend / AF_XDP echo (1 queue)", div(cap("afxdp"), cap("floor-afxdp-echo")), 0.9, None),
        ("P4 floor: ideal AF_XDP hit / AF_XDP echo (1 queue; bench/ideal_hit.hpp, misses dropped)",
         div(cap("floor-afxdp-ideal"), cap("floor-afxdp-echo")), None, None),
        ("P4 AF_XDP backend / ideal AF_XDP hit (1 queue)", div(cap("afxdp"), cap("floor-afxdp-ideal")), None, None),
        ("P4 in interleaved rounds: median of each round's AF_XDP backend / AF_XDP echo",
         rounds.get("afxdp/echo", {}).get("median"), 0.9, span(rounds.get("afxdp/echo"))),
        ("P4 in interleaved rounds: median of each round's ideal AF_XDP hit / AF_XDP echo",
         rounds.get("ideal/echo", {}).get("median"), None, span(rounds.get("ideal/echo"))),
        ("P4 in interleaved rounds: median of each round's AF_XDP backend / ideal AF_XDP hit",
         rounds.get("afxdp/ideal", {}).get("median"), None, span(rounds.get("afxdp/ideal"))),
        ("P5 p50 kernel / memcached -t 1 at 50% load (lower is better)",
         div(lat("kernel", "50%"), lat("memcached-t1", "50%")), 0.2, None),
        ("P5 p99 kernel / memcached -t 1 at 50% load (lower is better)",
         div(lat("kernel", "50%", "p99"), lat("memcached-t1", "50%", "p99")), 0.2, None),
    ]
    for name in ("memcached-t1", "memcached-t2", "memcached-sr", "kernel", "afxdp", "floor-xdp-echo",
                 "floor-afxdp-echo", "floor-afxdp-ideal"):
        if cap(name, 2) is not None:
            rows.append((f"scaling {name}: 2 queues / 1 queue", div(cap(name, 2), cap(name)), None, None))
    out = {}
    for name, value, goal, detail in rows:
        met = None
        if value is not None and goal is not None:
            met = value <= goal if "lower is better" in name else value >= goal
        out[name] = {"value": value, "goal": goal, "met": met, "detail": detail}
    return out


def core_line(path, line):
    """A line of a core/ header the BPF object was generated from: the generator's #line
    markers name it relative to the build, where BTF finds no text for it."""
    if "/core/" not in path:
        return ""
    src = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "core", os.path.basename(path))
    try:
        with open(src) as f:
            return f.read().splitlines()[line - 1].strip()
    except (OSError, IndexError):
        return ""


def line_profile(data, jitlines, top=30):
    """The samples of perf.data that fell into bmc_rx's JIT image (and its subprograms),
    charged to source lines by bmc-jitlines' address map: [{"share", "where", "text"}],
    largest first, share of all samples in the program's code (helpers it calls are
    separate kernel symbols, in the symbol profile)."""
    lines = sorted((json.loads(l) for l in jitlines.splitlines() if l.strip()), key=lambda x: x["addr"])
    if not lines:
        return None
    addrs = [l["addr"] for l in lines]
    out = subprocess.run(["perf", "script", "-i", data, "-F", "ip,sym"], capture_output=True, text=True).stdout
    per, total = {}, 0
    for row in out.splitlines():
        parts = row.split()
        if len(parts) < 2 or not parts[1].startswith("bpf_prog_"):
            continue
        ip = int(parts[0], 16)
        i = bisect.bisect_right(addrs, ip) - 1
        if i < 0 or ip - addrs[i] > 4096:
            continue
        l = lines[i]
        where = f"{os.path.basename(l['file'])}:{l['line']}"
        per[where] = per.get(where, (0, l["text"].strip() or core_line(l["file"], l["line"])))
        per[where] = (per[where][0] + 1, per[where][1])
        total += 1
    if not total:
        return None
    rows = sorted(per.items(), key=lambda kv: -kv[1][0])[:top]
    return {"samples": total,
            "lines": [{"share": n / total, "where": w, "text": t[:90]} for w, (n, t) in rows]}


# The large-table pass: 2^18 small and 2^14 large buckets (151 + 50 MB, with headers).
LARGE_TABLE = ("--small-buckets", "262144", "--large-buckets", "16384")


class Remote:
    """The generator side only, against a server started by the user (bmcd and memcached on
    another host, or in another namespace): no namespace, no server processes."""

    def __init__(self, args):
        self.args, self.build = args, os.path.abspath(args.build)
        self.out = os.path.abspath(args.out)
        os.makedirs(self.out, exist_ok=True)

    def tool(self, name):
        return f"{self.build}/bench/{name}"

    def run(self):
        a = self.args
        q = a.quick
        d, warmup, reps = a.duration or (0.3 if q else 2.0), 0.1 if q else 0.5, a.repetitions or (1 if q else 5)
        keys = a.keys or (10000 if q else 100000)
        log(f"preloading {keys} keys into {a.server_ip}:{PORT} over TCP")
        r = subprocess.run([self.tool("bmc-bench"), "-s", a.server_ip, "--preload", "-k", str(keys), "--value-size",
                            "32", "-d", "0.1", "-n", "1"], capture_output=True, text=True, timeout=900)
        if r.returncode != 0:
            raise RuntimeError(f"preload failed: {r.stderr.strip()}")
        path = os.path.join(self.out, "remote-xdpgen.json")
        argv = [self.tool("bmc-xdpgen"), "-i", a.iface, "--server-ip", a.server_ip, "--server-mac", a.server_mac,
                "-k", str(keys), "-d", str(d), "--warmup", str(warmup), "--runs", str(reps), "-t", str(a.threads),
                "--latency-at", "0.1,0.5,0.9", "--json", path]
        if a.client_ip:
            argv += ["--client-ip", a.client_ip]
        r = subprocess.run(argv, capture_output=True, text=True, timeout=(reps + 3) * (d + warmup) * 3 + 60)
        if r.returncode != 0:
            raise RuntimeError(f"bmc-xdpgen: {r.stderr.strip()[-2000:]}")
        log(r.stderr.strip())
        with open(path) as f:
            gen = json.load(f)
        gen["capacity_rps"] = summary([c["answer_rps"] for c in gen["capacity"]])
        gen["checked"] = {k: sum(c[k] for c in gen["capacity"] + gen["latency"])
                          for k in ("answered", "wrong", "missed", "incomplete", "unexpected", "bad_header")}
        res = {"remote": {"iface": a.iface, "server_ip": a.server_ip, "server_mac": a.server_mac}, "quick": q,
               "meta": {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                        "kernel": platform.release(), "keys": keys, "threads": a.threads},
               "configs": {f"remote/q{a.threads}": {"queues": a.threads, "xdpgen": gen,
                                                    "capacity_rps": gen["capacity_rps"],
                                                    "latency": {f'{int(round(l["fraction"] * 100))}%': l["latency_ns"]
                                                                for l in gen["latency"]}}},
               "sweeps": {}}
        with open(os.path.join(self.out, "results.json"), "w") as f:
            json.dump(res, f, indent=1)
        c = gen["capacity_rps"]
        log(f"remote: {c['median']:.0f} answers/s [{c['min']:.0f}-{c['max']:.0f}], checked {gen['checked']}")
        return failures(res)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default="build", help="the CMake build directory")
    ap.add_argument("--out", default=None, help="results directory (default bench/results/DATE)")
    ap.add_argument("--quick", action="store_true", help="short runs, one repetition, few sweep points (under 2 minutes)")
    ap.add_argument("--duration", type=float, help="seconds per run (default 2, --quick 0.3)")
    ap.add_argument("--repetitions", type=int, help="runs per point (default 5, --quick 1)")
    ap.add_argument("--keys", type=int, help="key count of the main configurations (default 100,000, --quick 10,000)")
    ap.add_argument("--no-sr", action="store_true", help="do not build and measure Memcached-SR")
    ap.add_argument("--docs", action="store_true",
                    help="after a full run, publish its report, plots, CSV and a summary into docs/bench/")
    ap.add_argument("--check", type=int, metavar="OPS", help="run only the consistency checker, OPS operations per backend")
    ap.add_argument("--check-seconds", type=float, help="with --check: stop each backend's run after this long")
    ap.add_argument("--lossy", action="store_true", help="with --check: drop 2 %% of the TCP segments to memcached")
    ap.add_argument("--observer-cost", action="store_true",
                    help="run only the write observer's cost on memcached's TCP throughput")
    ap.add_argument("--hit-cost", action="store_true", help="run only the stack-delivery checks' cost per hit")
    ap.add_argument("--afxdp-rounds", action="store_true",
                    help="run only P4 in interleaved rounds: the AF_XDP backend, its echo and the ideal AF_XDP hit, "
                         "one capacity run each per round (7 rounds, --quick 1)")
    ap.add_argument("--per-packet", action="store_true",
                    help="run only the pass that measures every BPF program's ns per packet under the generator's "
                         "load (P0: bmc_rx per hit, default and large table, beside the XDP_TX echo)")
    ap.add_argument("--only", metavar="NAMES",
                    help="run only these capacity configurations (comma-separated, e.g. afxdp,floor-afxdp-echo), "
                         "on one queue, and print their answers/s (no report)")
    g = ap.add_argument_group("two hosts (--remote): the generator side only, against a server you started")
    g.add_argument("--remote", action="store_true", help="no namespaces: generate from --iface on this host")
    g.add_argument("--iface", help="the client's interface towards the server")
    g.add_argument("--server-ip", help="memcached's IPv4 address (UDP and TCP port 11211)")
    g.add_argument("--server-mac", help="the server's MAC address, or the next hop's")
    g.add_argument("--client-ip", help="source address (default: --iface's address)")
    g.add_argument("--threads", type=int, default=1, help="generator threads (one per queue), default 1")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench: run as root (namespaces, BPF)")
    if args.remote and not (args.iface and args.server_ip and args.server_mac):
        sys.exit("bench: --remote needs --iface, --server-ip and --server-mac")
    if not args.remote and (args.iface or args.server_ip or args.server_mac):
        sys.exit("bench: --iface, --server-ip and --server-mac go with --remote")
    args.out = args.out or os.path.join("bench", "results", time.strftime("%Y%m%d-%H%M%S"))
    # SIGTERM and SIGHUP unwind like ^C, so that the testbed and its processes go.
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.default_int_handler)
    start = time.time()
    if args.remote:
        bad = Remote(args).run()
        sys.exit(f"bench: wrong or no answers: {'; '.join(bad)}" if bad else 0)
    b = Bench(args)
    try:
        if args.hit_cost:
            b.hit_cost()
            return
        if args.per_packet:
            b.per_packet_cost()
            b.write()
            return
        if args.afxdp_rounds:
            res = b.afxdp_rounds()
            b.write()
            for k in ("afxdp/echo", "ideal/echo", "afxdp/ideal"):
                x = res[k]
                log(f"{k}: median {x['median']:.2f} [{x['min']:.2f}-{x['max']:.2f}] over {x['n']} rounds")
            return
        if args.only:
            names = args.only.split(",")
            # Busy polling is measured on request only: its poller spins on a whole CPU.
            known = b.configurations() + [("afxdp-busypoll", 1, "afxdp-busypoll")]
            plan = [c for c in known if c[0] in names]
            if len(plan) != len(names):
                sys.exit(f"bench: --only takes names from {', '.join(c[0] for c in known)}")
            for name, t, kind in plan:
                b.measure_config(name, t, kind, 1)
            b.write()
            for name, c in b.results["configs"].items():
                cap = c["capacity_rps"]
                log(f"{name}: {cap['median']:,.0f} answers/s [{cap['min']:,.0f}-{cap['max']:,.0f}]")
            sys.exit(f"bench: wrong or no answers: {'; '.join(failures(b.results))}" if failures(b.results) else 0)
        if args.observer_cost:
            res = b.observer_cost(5)
            with open(os.path.join(b.out, "observer-cost.json"), "w") as f:
                json.dump(res, f, indent=1)
            log(f"observer cost: {json.dumps(res['median'])}, ratio {res['ratio_observer_to_none']:.3f}")
            return
        if args.check:
            bad = b.consistency(args.check, args.check_seconds, args.lossy)
            sys.exit(f"bench: consistency violations with {', '.join(bad)}" if bad else 0)
        bad = b.run()
    finally:
        b.close()
    subprocess.run([sys.executable, os.path.join(os.path.dirname(os.path.abspath(__file__)), "report.py"), b.out],
                   check=True)
    log(f"done in {time.time() - start:.0f} s; report: {b.out}/report.md")
    if args.docs:
        publish(b.out, b.results)
    if bad:
        sys.exit(f"bench: wrong or no answers: {'; '.join(bad)}")


if __name__ == "__main__":
    main()
