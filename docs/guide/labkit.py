#!/usr/bin/env python3
"""What every lab of the guide shares: a namespace testbed with a real memcached and bmcd
(bench/harness.py's Testbed: two namespaces, a veth, addresses from 198.18.0.0/15 only
inside them, a cgroup of their own), a client inside the client namespace, bmcctl, and
gnuplot for the figure. Run as root from the repository; each lab removes what it made.

The client runs as a child in the client namespace (`labkit.py --client`) and takes one
JSON command per line: {"op": "set"|"get"|"stat", ...}."""
import json
import os
import shutil
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "bench"))
sys.path.insert(0, os.path.join(ROOT, "apps"))


def client_main():
    """The client side: TCP for writes and stats, UDP gets with memcached's frame header."""
    import socket
    import mc
    server = ("198.18.0.1", 11211)
    tcp = socket.create_connection(server, timeout=5)
    held = None
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.connect(server)
    udp.settimeout(1.0)
    req_id = 0

    def tcp_call(cmd):
        return mc.tcp_call(tcp, cmd)

    for line in sys.stdin:
        c = json.loads(line)
        if c["op"] == "set":
            v = c["value"].encode()
            out = {"reply": tcp_call(b"set %s 0 %d %d\r\n%s\r\n" % (c["key"].encode(), c.get("exptime", 0), len(v), v))
                   .decode()}
        elif c["op"] == "get":
            req_id = (req_id + 1) & 0xffff
            t0 = time.perf_counter()
            text = mc.udp_get(udp, req_id, c["key"].encode(), timeout=1.0)
            out = {"reply": "(timeout)" if text is None else text.decode(errors="replace"),
                   "us": (time.perf_counter() - t0) * 1e6}
        elif c["op"] == "hold":
            # A write memcached receives but cannot apply yet: it follows a pipeline of
            # gets whose replies (count x the value's size) nobody reads, so memcached
            # waits on this connection's send buffer, while the write itself already sits
            # in its receive buffer, where bmc's observer has read it.
            held = socket.create_connection(server, timeout=30)
            held.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            v = c["value"].encode()
            held.sendall(b"get %s\r\n" % c["big"].encode() * c["count"] +
                         b"set %s 0 0 %d\r\n%s\r\n" % (c["key"].encode(), len(v), v))
            out = {"held": True}
        elif c["op"] == "release":
            buf = b""
            while not buf.endswith(b"STORED\r\n"):
                chunk = held.recv(1 << 20)
                if not chunk:
                    break
                buf += chunk
            held.close()
            out = {"released": len(buf)}
        elif c["op"] == "stat":
            out = {"value": mc.stat(tcp, c["name"])}
        print(json.dumps(out), flush=True)


class Lab:
    """A testbed with memcached and bmcd (bmcd_args added), a client and bmcctl."""

    def __init__(self, name, bmcd_args=(), build=None):
        from harness import Testbed, SIF
        if os.geteuid() != 0:
            sys.exit(f"{name}: run as root (namespaces, BPF)")
        self.build = os.path.abspath(build or os.environ.get("BMC_BUILD_DIR", os.path.join(ROOT, "build")))
        for tool in ("apps/bmcd", "apps/bmcctl"):
            if not os.access(os.path.join(self.build, tool), os.X_OK):
                sys.exit(f"{name}: build first (bash tests/run.sh, or cmake --build {self.build})")
        self.name = f"bmclab-{name}-{os.getpid()}"
        self.tb = Testbed(self.build, 1)
        self.tmp = f"/tmp/{self.name}"
        os.makedirs(self.tmp, exist_ok=True)
        self.log = open(f"{self.tmp}/processes.log", "w")
        self.tb.xdp(self.tb.cli, "bmcc0", True)  # XDP_TX into a veth needs a program on the peer
        self.tb.spawn(self.tb.srv, ["memcached", "-u", "root", "-U", "11211", "-p", "11211", "-l", "198.18.0.1",
                                    "-t", "1", "-m", "64"], self.log, in_cgroup=True)
        self.stats = f"{self.tmp}/bmcd.json"
        self.bmcd = self.tb.spawn(self.tb.srv, [f"{self.build}/apps/bmcd", "-i", SIF, "--interval", "0",
                                                "--stats-file", self.stats, "--cgroup", self.tb.cgroup,
                                                "--name", self.name] + list(bmcd_args), self.log)
        for _ in range(500):
            if os.path.exists(self.stats) or self.bmcd.poll() is not None:
                break
            time.sleep(0.02)
        if not os.path.exists(self.stats):
            self.close()
            sys.exit(f"{name}: bmcd did not start; see {self.tmp}/processes.log")
        self.client = subprocess.Popen(["ip", "netns", "exec", self.tb.cli, sys.executable, os.path.abspath(__file__),
                                        "--client"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.tracer = None

    def _ask(self, **c):
        self.client.stdin.write(json.dumps(c) + "\n")
        self.client.stdin.flush()
        return json.loads(self.client.stdout.readline())

    def set(self, key, value, exptime=0):
        return self._ask(op="set", key=key, value=value, exptime=exptime)["reply"]

    def get(self, key):
        """The reply's text, its round trip in us, and who answered: 'cache' if memcached
        saw no get for it, else 'memcached'."""
        before = self.mc_stat("cmd_get")
        r = self._ask(op="get", key=key)
        return r["reply"], r["us"], "cache" if self.mc_stat("cmd_get") == before else "memcached"

    def get_only(self, key):
        """The reply's text and round trip, asking memcached nothing else."""
        r = self._ask(op="get", key=key)
        return r["reply"], r["us"]

    def hold_write(self, key, value, big, count):
        """Sends `set key value` behind count gets of the big key on a connection that does
        not read its replies: memcached has received the write but cannot apply it until
        release_write()."""
        return self._ask(op="hold", key=key, value=value, big=big, count=count)

    def release_write(self):
        return self._ask(op="release")

    def mc_stat(self, name):
        return self._ask(op="stat", name=name)["value"]

    def bmcctl(self, *args):
        return subprocess.run([f"{self.build}/apps/bmcctl", "--name", self.name] + list(args), capture_output=True,
                              text=True, timeout=10).stdout

    def start_trace(self):
        """bmcctl trace into a file; trace_lines() reads what it has printed."""
        self.trace_path = f"{self.tmp}/trace.log"
        self.tracer = subprocess.Popen([f"{self.build}/apps/bmcctl", "--name", self.name, "trace", "--seconds", "120"],
                                       stdout=open(self.trace_path, "w"), stderr=subprocess.STDOUT)
        for _ in range(100):
            if json.loads(self.bmcctl("--json", "status")).get("trace_every"):
                return
            time.sleep(0.02)
        raise RuntimeError("bmcctl trace did not start")

    def stop_trace(self):
        """Ends bmcctl trace; with no listener left, bmcd turns tracing off."""
        if self.tracer:
            self.tracer.terminate()
            self.tracer.wait()
            self.tracer = None
            for _ in range(100):
                if not json.loads(self.bmcctl("--json", "status")).get("trace_every"):
                    return
                time.sleep(0.02)

    def trace_lines(self, settle=0.2, want=()):
        """What bmcctl trace has printed: after `settle` seconds (bmcd drains the ring
        every 50 ms), or, given `want`, as soon as a line holds each of those strings
        (3 s at most)."""
        deadline = time.monotonic() + (3.0 if want else settle)
        while True:
            with open(self.trace_path) as f:
                lines = [l.rstrip("\n") for l in f]
            if (want and all(any(w in l for l in lines) for w in want)) or time.monotonic() >= deadline:
                return lines
            time.sleep(0.02)

    def close(self):
        if self.tracer:
            self.tracer.terminate()
            self.tracer.wait()
        if getattr(self, "client", None):
            self.client.stdin.close()
            self.client.wait(5)
        self.tb.close()
        self.log.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


def cpu_seconds(pid):
    """CPU time of every thread of a process, to the nanosecond (schedstat's time on CPU)."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            pass  # a thread that just ended
    return total / 1e9


def lab_args(doc, script):
    """A lab's command line: --quick (CI) and --out (its figure, by default beside its page)."""
    import argparse
    ap = argparse.ArgumentParser(description=doc)
    ap.add_argument("--quick", action="store_true", help="a shorter run, for CI")
    ap.add_argument("--out", default=os.path.splitext(os.path.abspath(script))[0] + ".png", help="the figure")
    return ap.parse_args()


def bpf_stats_on():
    """Turns kernel.bpf_stats_enabled on (the programs' run_time_ns and run_cnt); returns
    what it was, for bpf_stats_restore."""
    with open("/proc/sys/kernel/bpf_stats_enabled") as f:
        before = f.read().strip()
    with open("/proc/sys/kernel/bpf_stats_enabled", "w") as f:
        f.write("1")
    return before


def bpf_stats_restore(before):
    with open("/proc/sys/kernel/bpf_stats_enabled", "w") as f:
        f.write(before)


def gnuplot(png, script):
    """Draws a figure with gnuplot (data inline in the script)."""
    subprocess.run(["gnuplot"], input=f"set terminal pngcairo size 900,420 noenhanced\nset output '{png}'\n{script}", text=True,
                   check=True)


def check(ok, what):
    """A lab's claim: printed, and the lab fails if its experiment did not show it."""
    print(("  ok    " if ok else "  FAIL  ") + what, flush=True)
    return ok


if __name__ == "__main__" and "--client" in sys.argv:
    client_main()
