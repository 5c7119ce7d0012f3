#!/usr/bin/env python3
"""bmc benchmark harness: builds a two-namespace veth testbed, starts memcached, preloads
it, runs every configuration and sweep in one go, writes JSON and a report with plots,
and removes everything it made.

Configurations: memcached alone (-t 1, -t 2), memcached behind the kernel backend and
behind the AF_XDP backend, and the floors (an XDP_TX echo, a bare AF_XDP echo). Each is
measured with socket clients (bmc-bench: closed-loop capacity, then open-loop latency at
50 % of it) and with the in-kernel generator (bmc-xdpgen). Ratios are computed within
the run; absolute numbers from different runs are not comparable on a shared machine.

Network rule: traffic only between the two namespaces this script creates, addresses
from 198.18.0.0/15 assigned only inside them, every load bounded in time."""
import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from contextlib import contextmanager

SERVER_IP, CLIENT_IP, PORT = "198.18.0.1", "198.18.0.2", 11211
SIF, CIF = "bmcs0", "bmcc0"
CGROUP_MOUNT = "/tmp/bmct-cgroup2"  # the tests' testbed mounts the same


def log(msg):
    print(f"[bench] {msg}", flush=True)


class Testbed:
    def __init__(self, build):
        self.build = build
        self.srv = f"bmcb-{os.getpid()}-s"
        self.cli = f"bmcb-{os.getpid()}-c"
        self.procs = []
        self.remove_stale()
        for ns in (self.srv, self.cli):
            self.sh(f"ip netns add {ns}")
        self.sh(f"ip link add {SIF} netns {self.srv} type veth peer name {CIF} netns {self.cli}")
        self.sh(f"ip -n {self.srv} addr add {SERVER_IP}/30 dev {SIF}")
        self.sh(f"ip -n {self.cli} addr add {CLIENT_IP}/30 dev {CIF}")
        for ns, dev in ((self.srv, SIF), (self.cli, CIF)):
            self.sh(f"ip -n {ns} link set lo up")
            self.sh(f"ip -n {ns} link set {dev} up")
        self.server_mac = self.sh(f"ip -n {self.srv} -br link show {SIF}").split()[2]
        self.xdp_pass = f"{build}/bpf/xdp_pass.bpf.o"
        # memcached runs in a cgroup of this testbed's own, which bmcd's write observer
        # watches; the cgroup2 hierarchy is mounted where `ip netns exec` still sees it.
        if not self.is_cgroup2(CGROUP_MOUNT):
            os.makedirs(CGROUP_MOUNT, exist_ok=True)
            self.sh(f"mount -t cgroup2 none {CGROUP_MOUNT}")
        self.cgroup = f"{CGROUP_MOUNT}/bmcb-{os.getpid()}"
        os.makedirs(self.cgroup, exist_ok=True)

    @staticmethod
    def is_cgroup2(path):
        with open("/proc/self/mounts") as f:
            return any(l.split()[1] == path and l.split()[2] == "cgroup2" for l in f)

    @staticmethod
    def remove_stale():
        for line in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.splitlines():
            name = line.split()[0]
            if name.startswith("bmcb-"):
                pid = int(name.split("-")[1])
                if not os.path.exists(f"/proc/{pid}"):
                    subprocess.run(["ip", "netns", "del", name], capture_output=True)
        if os.path.isdir(CGROUP_MOUNT):
            for name in os.listdir(CGROUP_MOUNT):
                if name.startswith("bmcb-") and not os.path.exists(f"/proc/{name.split('-')[1]}"):
                    try:
                        os.rmdir(f"{CGROUP_MOUNT}/{name}")
                    except OSError:
                        pass

    @staticmethod
    def sh(cmd):
        r = subprocess.run(cmd, shell=True, capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"'{cmd}' failed: {r.stderr.strip()}")
        return r.stdout

    def spawn(self, ns, argv, logfile, in_cgroup=False):
        def setup():
            os.setsid()
            if in_cgroup:
                with open(f"{self.cgroup}/cgroup.procs", "w") as f:
                    f.write(str(os.getpid()))
        p = subprocess.Popen(["ip", "netns", "exec", ns] + argv, stdout=logfile, stderr=subprocess.STDOUT,
                             preexec_fn=setup)
        self.procs.append(p)
        return p

    def stop(self, p, timeout=10):
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

    def client_xdp(self, attach):
        self.sh(f"ip -n {self.cli} link set dev {CIF} xdp off")
        if attach:  # replies sent with XDP_TX on a veth need an XDP program on the peer
            self.sh(f"ip -n {self.cli} link set dev {CIF} xdp obj {self.xdp_pass} sec xdp")

    def server_xdp_pass(self, attach):
        self.sh(f"ip -n {self.srv} link set dev {SIF} xdp off")
        if attach:  # frames an XDP program sends into a veth need an XDP program on the peer
            self.sh(f"ip -n {self.srv} link set dev {SIF} xdp obj {self.xdp_pass} sec xdp")

    def close(self):
        for p in self.procs:
            self.stop(p, 5)
        for ns in (self.srv, self.cli):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        for _ in range(100):
            try:
                os.rmdir(self.cgroup)
                break
            except FileNotFoundError:
                break
            except OSError:
                time.sleep(0.05)


class Bench:
    def __init__(self, args):
        self.args = args
        self.build = os.path.abspath(args.build)
        self.out = os.path.abspath(args.out)
        os.makedirs(self.out, exist_ok=True)
        self.tb = Testbed(self.build)
        self.d = 1.0 if args.quick else args.duration
        self.results = {"quick": args.quick, "configs": {}, "sweeps": {}}
        self.logs = open(os.path.join(self.out, "processes.log"), "w")

    def tool(self, name):
        return f"{self.build}/bench/{name}" if name != "bmcd" else f"{self.build}/apps/bmcd"

    # ---- memcached and the server side -------------------------------------------------
    @contextmanager
    def memcached(self, threads, keys, value_size):
        p = self.tb.spawn(self.tb.srv, ["memcached", "-u", "root", "-U", str(PORT), "-p", str(PORT), "-l",
                                        SERVER_IP + ",127.0.0.1", "-t", str(threads), "-m", "2048", "-c", "4096"], self.logs,
                          in_cgroup=True)
        try:
            self.preload(keys, value_size)
            yield p
        finally:
            self.tb.stop(p)

    def preload(self, keys, value_size):
        self.tb.client_xdp(True)
        deadline = time.time() + 10
        while True:
            r = self.tb.run(self.tb.cli, [self.tool("bmc-bench"), "--preload", "-k", str(keys), "--value-size",
                                          str(value_size), "-d", "0.1", "-n", "1"], timeout=900)
            if r.returncode == 0:
                return
            if time.time() > deadline:
                raise RuntimeError(f"preload failed: {r.stderr.strip()}")
            time.sleep(0.2)

    @contextmanager
    def server(self, kind):
        """Starts what sits in front of memcached: none, kernel, afxdp, echo-xdp, echo-afxdp."""
        stats = os.path.join(self.out, "server-stats.json")
        if os.path.exists(stats):
            os.remove(stats)
        if kind == "none":
            yield None
            return
        if kind in ("kernel", "afxdp"):
            # Values up to 1 KB answer 30-byte requests: lift the amplification limit (default 10)
            # so that the value-size sweep measures the cache rather than the limit.
            argv = [self.tool("bmcd"), "-i", SIF, "--backend", kind, "--interval", "0", "--stats-file", stats,
                    "--max-amplification", "100", "--cgroup", self.tb.cgroup, "--max-connections", "4096"]
        else:
            argv = [self.tool("bmc-floor"), "-i", SIF, "--kind", kind.split("-")[1], "--stats-file", stats]
        p = self.tb.spawn(self.tb.srv, argv, self.logs)
        for _ in range(300):
            if os.path.exists(stats) or p.poll() is not None:
                break
            time.sleep(0.02)
        if p.poll() is not None:
            raise RuntimeError(f"{kind} did not start; see {self.out}/processes.log")
        time.sleep(0.3)
        try:
            yield stats
        finally:
            self.tb.stop(p)

    # ---- measurements ------------------------------------------------------------------
    def socket_run(self, extra, name):
        self.tb.client_xdp(True)
        path = os.path.join(self.out, f"{name}.json")
        argv = [self.tool("bmc-bench"), "-s", SERVER_IP, "--json", path] + extra
        r = self.tb.run(self.tb.cli, argv, timeout=self.d * 4 + 60)
        if r.returncode != 0 or not os.path.exists(path):
            raise RuntimeError(f"bmc-bench {' '.join(extra)}: {r.stderr.strip()}")
        with open(path) as f:
            return json.load(f)

    def socket_capacity(self, name, keys, echo):
        return self.socket_run(["--mode", "closed", "-t", "1", "--outstanding", "32", "-d", str(self.d), "-k",
                                str(keys), "--value-size", "32"] + (["--echo"] if echo else []), name + "-capacity")

    def socket_latency(self, name, keys, rate, echo):
        return self.socket_run(["--mode", "open", "-t", "1", "--rate", str(max(rate, 100)), "-d", str(self.d), "-k",
                                str(keys), "--value-size", "32"] + (["--echo"] if echo else []), name + "-latency")

    @staticmethod
    def served(stats):
        """Requests the server side says it answered itself (cache hits or echoes)."""
        if not stats or not os.path.exists(stats):
            return None
        with open(stats) as f:
            j = json.load(f)
        if "echoed" in j:
            return j["echoed"]
        return j["counters"]["hit_requests"] + j.get("afxdp", {}).get("counters", {}).get("hit_requests", 0)

    def xdpgen(self, name, keys, width=1, server_pass=False, stats=None):
        before = self.served(stats)
        self.tb.client_xdp(False)
        if server_pass:
            self.tb.server_xdp_pass(True)
        path = os.path.join(self.out, f"{name}-xdpgen.json")
        try:
            r = self.tb.run(self.tb.cli, [self.tool("bmc-xdpgen"), "-i", CIF, "--dst-mac", self.tb.server_mac, "-k",
                                          str(keys), "-w", str(width), "-d", str(self.d), "--json", path],
                            timeout=self.d * 4 + 60)
        finally:
            if server_pass:
                self.tb.server_xdp_pass(False)
            self.tb.client_xdp(True)
        if r.returncode != 0:
            raise RuntimeError(f"bmc-xdpgen: {r.stderr.strip()}")
        with open(path) as f:
            res = json.load(f)
        if before is not None:
            time.sleep(0.5)  # the server rewrites its counters every 200 ms
            res["server_served"] = self.served(stats) - before
            res["server_served_rps"] = res["server_served"] / res["elapsed_s"]
        return res

    def measure_config(self, name, mc_threads, kind, keys):
        log(f"configuration {name}")
        echo = kind.startswith("echo")
        with self.memcached(mc_threads, keys, 32), self.server(kind) as stats:
            cap = self.socket_capacity(name, keys, echo)
            lat = self.socket_latency(name, keys, 0.5 * cap["throughput_rps"], echo)
            gen = self.xdpgen(name, keys, server_pass=(kind == "none"), stats=stats)
        # An echo answers with one datagram that is not a memcached reply; everything
        # else is counted by complete answers (a multi-get is one answer).
        res = {"socket_capacity_rps": cap["throughput_rps"], "socket": cap, "latency_at_half": lat,
               "xdpgen": gen, "capacity_rps": gen["reply_rps"] if echo else gen["answer_rps"]}
        self.results["configs"][name] = res
        log(f"  sockets {cap['throughput_rps']:.0f} req/s, in-kernel generator {gen['reply_rps']:.0f} replies/s, "
            f"p50/p99 at 50% load {lat['latency_ns']['p50'] / 1e3:.1f}/{lat['latency_ns']['p99'] / 1e3:.1f} us")

    def sweep(self, title, points, make):
        self.results["sweeps"][title] = {}
        for kind, label in (("kernel", "kernel backend"), ("none", "memcached -t 1")):
            rows = []
            for x in points:
                rows.append([x, make(kind, x)])
                log(f"  {title} {label} {x}: {rows[-1][1]:.0f} answers/s")
            self.results["sweeps"][title][label] = rows

    def run_sweeps(self):
        q = self.args.quick
        keys = 10000

        def value(kind, v):
            with self.memcached(1, keys, v), self.server(kind):
                return self.xdpgen(f"sweep-value-{kind}-{v}", keys, server_pass=(kind == "none"))["answer_rps"]

        def width(kind, w):
            with self.memcached(1, keys, 32), self.server(kind):
                return self.xdpgen(f"sweep-width-{kind}-{w}", keys, w, server_pass=(kind == "none"))["answer_rps"]

        def keycount(kind, k):
            with self.memcached(1, k, 32), self.server(kind):
                return self.xdpgen(f"sweep-keys-{kind}-{k}", k, server_pass=(kind == "none"))["answer_rps"]

        log("sweep: value size")
        self.sweep("value_size", [32, 1024] if q else [32, 64, 128, 256, 512, 1024], value)
        log("sweep: multi-get width")
        self.sweep("multiget", [1, 10] if q else [1, 2, 5, 10, 20, 30], width)
        log("sweep: key count (Zipf 0.99)")
        self.sweep("keys", [10000, 100000] if q else [10000, 100000, 1000000, 10000000], keycount)

    def profile(self):
        """cpu-clock profile of the kernel backend under the in-kernel generator."""
        if self.args.quick or not shutil.which("perf"):
            return None
        keys = 10000
        with self.memcached(1, keys, 32), self.server("kernel"):
            self.tb.client_xdp(False)
            gen = subprocess.Popen(["ip", "netns", "exec", self.tb.cli, self.tool("bmc-xdpgen"), "-i", CIF,
                                    "--dst-mac", self.tb.server_mac, "-k", str(keys), "-d", "4"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(0.5)
            data = os.path.join(self.out, "perf.data")
            subprocess.run(["perf", "record", "-e", "cpu-clock", "-a", "-o", data, "--", "sleep", "2"],
                           capture_output=True)
            gen.wait()
            self.tb.client_xdp(True)
            rep = subprocess.run(["perf", "report", "--stdio", "-i", data, "--sort", "sym", "--percent-limit", "1.5"],
                                 capture_output=True, text=True)
        return "\n".join(l for l in rep.stdout.splitlines() if l and not l.startswith("#"))[:4000]

    def observer_cost(self, rounds=3):
        """memcached's own TCP SET throughput with bmc's write observer attached (alone: no
        XDP, no TC), against none, interleaved in one run; synchronous SETs from 2 threads."""
        d = 1.0 if self.args.quick else 3.0
        runs = {"none": [], "observer": []}
        with self.memcached(1, 1000, 32):
            for r in range(rounds):
                for kind in ("none", "observer"):
                    p = None
                    if kind == "observer":
                        p = self.tb.spawn(self.tb.srv, [self.tool("bmc-observe"), "--cgroup", self.tb.cgroup],
                                          self.logs)
                        time.sleep(0.5)
                        if p.poll() is not None:
                            raise RuntimeError("bmc-observe did not start; see processes.log")
                    try:
                        j = self.socket_run(["--set-ratio", "1", "-t", "2", "-d", str(d), "-k", "1000",
                                             "--value-size", "32", "--no-verify"], f"observer-cost-{kind}-{r}")
                    finally:
                        if p:
                            self.tb.stop(p)
                    runs[kind].append(j["sets"] / j["duration_s"] if "duration_s" in j else j["sets"] / d)
                    log(f"  observer cost round {r} {kind}: {runs[kind][-1]:.0f} sets/s")
        med = {k: sorted(v)[len(v) // 2] for k, v in runs.items()}
        res = {"sets_per_s": runs, "median": med, "ratio_observer_to_none": med["observer"] / max(med["none"], 1)}
        self.results["observer_cost"] = res
        return res

    def hit_cost(self):
        """bmc-hitcost in the server namespace: bmc_rx per hit with and without the
        stack-delivery checks and the socket lookup, interleaved in one run."""
        path = os.path.join(self.out, "hit-cost.json")
        r = self.tb.run(self.tb.srv, [self.tool("bmc-hitcost"), "-i", SIF, "--json", path, "--runs",
                                      "20000" if self.args.quick else "100000"], timeout=600)
        if r.returncode != 0:
            raise RuntimeError(f"bmc-hitcost: {r.stderr.strip()}")
        log(r.stdout.strip())
        with open(path) as f:
            self.results["hit_cost"] = json.load(f)
        return self.results["hit_cost"]

    def consistency(self, ops, seconds=None, lossy=False):
        """bmc-check against both backends: longer runs than CI's 50,000 operations; with
        lossy, over a link that drops 2 % of the TCP segments to memcached."""
        bad = []
        seconds = seconds or max(60, ops / 2000)
        for kind in ("kernel", "afxdp"):
            with self.memcached(1, 10, 32), self.server(kind):
                if lossy:
                    self.tb.sh(f"ip netns exec {self.tb.srv} tc qdisc add dev {SIF} clsact")
                    self.tb.sh(f"ip netns exec {self.tb.srv} tc filter add dev {SIF} ingress bpf da obj "
                               f"{self.build}/tests/lossy.bpf.o sec tc")
                try:
                    r = self.tb.run(self.tb.cli, [self.tool("bmc-check"), "--ops", str(ops), "--keys", "16",
                                                  "--write-pause-us", "3000", "--max-seconds", str(seconds),
                                                  "--pipeline", "8", "--split",
                                                  "--loopback-netns", f"/var/run/netns/{self.tb.srv}"],
                                    timeout=seconds + 120)
                finally:
                    if lossy:
                        subprocess.run(["ip", "netns", "exec", self.tb.srv, "tc", "qdisc", "del", "dev", SIF, "clsact"],
                                       capture_output=True)
            log(f"consistency {kind}: {r.stdout.strip()[:2000]} {r.stderr.strip()[:500]}")
            with open(os.path.join(self.out, f"consistency-{kind}.json"), "w") as f:
                f.write(r.stdout)
            if r.returncode != 0:
                bad.append(kind)
        return bad

    def run(self):
        keys = 10000 if self.args.quick else 100000
        plan = [("memcached-t1", 1, "none"), ("memcached-t2", 2, "none"), ("kernel", 1, "kernel"),
                ("afxdp", 1, "afxdp"), ("floor-xdp-echo", 1, "echo-xdp"), ("floor-afxdp-echo", 1, "echo-afxdp")]
        for name, t, kind in plan:
            self.measure_config(name, t, kind, keys)
        self.run_sweeps()
        log("observer cost: memcached TCP SETs with and without the write observer")
        self.observer_cost()
        log("hit cost: the stack-delivery checks")
        self.hit_cost()
        self.results["profile"] = self.profile()
        self.results["ratios"] = ratios(self.results["configs"])
        with open(os.path.join(self.out, "results.json"), "w") as f:
            json.dump(self.results, f, indent=1)
        empty = [n for n, c in self.results["configs"].items()
                 if c["socket"]["answered"] == 0 or c["capacity_rps"] == 0]
        return empty


def ratios(c):
    mc = max(c["memcached-t1"]["capacity_rps"], c["memcached-t2"]["capacity_rps"], 1)
    k, a = c["kernel"], c["afxdp"]
    lat_k, lat_m = k["latency_at_half"]["latency_ns"], c["memcached-t1"]["latency_at_half"]["latency_ns"]
    r = {
        "P1 kernel / XDP_TX echo (in-kernel generator)": [k["capacity_rps"] / max(c["floor-xdp-echo"]["capacity_rps"], 1), 0.8],
        "P2 kernel / memcached alone (in-kernel generator)": [k["capacity_rps"] / mc, 18.0],
        "P3 kernel / XDP_TX echo (socket clients)": [k["socket_capacity_rps"] / max(c["floor-xdp-echo"]["socket_capacity_rps"], 1), 0.9],
        "P4 afxdp / AF_XDP echo (in-kernel generator)": [a["capacity_rps"] / max(c["floor-afxdp-echo"]["capacity_rps"], 1), 0.9],
        "P5 p50 kernel / memcached at 50% load (lower is better)": [lat_k["p50"] / max(lat_m["p50"], 1), 0.2],
        "P5 p99 kernel / memcached at 50% load (lower is better)": [lat_k["p99"] / max(lat_m["p99"], 1), 0.2],
    }
    out = {}
    for name, (value, goal) in r.items():
        met = value <= goal if "lower is better" in name else value >= goal
        out[name] = {"value": value, "goal": goal, "met": met}
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default="build")
    ap.add_argument("--out", default=None)
    ap.add_argument("--quick", action="store_true", help="short runs and sweeps (under 2 minutes)")
    ap.add_argument("--duration", type=float, default=5.0, help="seconds per measurement")
    ap.add_argument("--check", type=int, metavar="OPS", help="run only the consistency checker, OPS operations per backend")
    ap.add_argument("--check-seconds", type=float, help="with --check: stop each backend's run after this long")
    ap.add_argument("--lossy", action="store_true", help="with --check: drop 2 %% of the TCP segments to memcached")
    ap.add_argument("--observer-cost", action="store_true",
                    help="run only the write observer's cost on memcached's TCP throughput")
    ap.add_argument("--hit-cost", action="store_true", help="run only the stack-delivery checks' cost per hit")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench: run as root (namespaces, BPF)")
    args.out = args.out or os.path.join("bench", "results", time.strftime("%Y%m%d-%H%M%S"))
    start = time.time()
    b = Bench(args)
    if args.hit_cost:
        try:
            b.hit_cost()
        finally:
            b.tb.close()
        return
    if args.observer_cost:
        try:
            res = b.observer_cost(5)
            with open(os.path.join(b.out, "observer-cost.json"), "w") as f:
                json.dump(res, f, indent=1)
        finally:
            b.tb.close()
        log(f"observer cost: {json.dumps(res['median'])}, ratio {res['ratio_observer_to_none']:.3f}")
        return
    if args.check:
        try:
            bad = b.consistency(args.check, args.check_seconds, args.lossy)
        finally:
            b.tb.close()
        sys.exit(f"bench: consistency violations with {', '.join(bad)}" if bad else 0)
    try:
        empty = b.run()
    finally:
        b.tb.close()
    subprocess.run([sys.executable, os.path.join(os.path.dirname(__file__), "report.py"), b.out], check=True)
    log(f"done in {time.time() - start:.0f} s; report: {b.out}/report.md")
    if empty:
        sys.exit(f"bench: configurations without replies: {', '.join(empty)}")


if __name__ == "__main__":
    main()
