#!/usr/bin/env python3
"""Lab 8, amplification and the allowlist: a cache that answers over UDP answers whoever
the source address claims to be, so it must not be a better reflector than memcached.
Values of growing size behind one short key, bmcd --max-amplification 10, then a client
outside --allow. Draws lab8_amplification.png. --quick: fewer sizes (CI)."""
import os
import sys
import time

import labkit

CAP = 10


def main():
    a = labkit.lab_args(__doc__, __file__)
    sizes = [16, 128, 256, 512] if a.quick else [8, 16, 32, 64, 96, 128, 160, 192, 224, 256, 320, 384, 512, 768]
    ok = True
    rows = []  # (value bytes, reply bytes / request bytes, who answered)
    lab = labkit.Lab("lab8", ["--max-amplification", str(CAP)])
    try:
        lab.start_trace()
        for n in sizes:
            key = f"amplify-key{n:05d}"  # 16 bytes
            lab.set(key, "x" * n)
            time.sleep(0.02)
            lab.get(key)  # the first get fills the cache if the item may be served from it
            time.sleep(0.02)
            reply, _, who = lab.get(key)
            request = 8 + len(f"get {key}\r\n")  # memcached's frame header and the line
            ratio = (8 + len(reply)) / request
            rows.append((n, ratio, who))
            print(f"value {n:4} B: reply/request {ratio:5.1f}, answered by {who}")
        trace = lab.trace_lines()

        def why(n):  # the trace's reason for the last get of that size's key
            gets = [l.split()[-1] for l in trace if " get " in l and f"key=amplify-key{n:05d} " in l]
            return gets[-1] if gets else "?"
        for n, r, w in rows:
            print(f"  value {n:4} B: {why(n)}")
        over = [r for r in rows if r[1] > CAP]
        # On a veth the frame grows by at most its headroom: larger replies pass as
        # pass_no_room, whatever the cap (see the README's limits).
        ok &= labkit.check(all(r[2] == "cache" or why(r[0]) == "pass_no_room" for r in rows if r[1] <= CAP),
                           f"every reply within {CAP}x its request came from the cache (or had no room to grow)")
        ok &= labkit.check(bool(over) and all(r[2] == "memcached" and why(r[0]) == "pass_over_max_amplification"
                                              for r in over),
                           f"every reply over {CAP}x went to memcached, the trace saying pass_over_max_amplification")
    finally:
        lab.close()
    # The allowlist: a cache that answers only the networks it serves.
    lab = labkit.Lab("lab8b", ["--allow", "198.18.0.128/25"])
    try:
        lab.start_trace()
        lab.set("k", "v")
        time.sleep(0.02)
        whos = [lab.get("k")[2] for _ in range(3)]
        trace = lab.trace_lines()
        print(f"client 198.18.0.2, --allow 198.18.0.128/25: answered by {', '.join(whos)}")
        ok &= labkit.check(all(w == "memcached" for w in whos), "a client outside --allow is left to memcached")
        ok &= labkit.check(any("pass_client_not_allowed" in l for l in trace), "the trace says pass_client_not_allowed")
    finally:
        lab.close()
    labkit.gnuplot(a.out, f"set title 'Lab 8: reply bytes per request byte (16-byte key), --max-amplification {CAP}'\n"
                   "set xlabel 'value bytes'\nset ylabel 'reply / request'\nset key top left\n"
                   f"set arrow from graph 0, first {CAP} to graph 1, first {CAP} nohead dt 2\n"
                   "plot '-' using 1:2 with points pt 7 title 'answered by the cache', "
                   "'-' using 1:2 with points pt 5 title 'left to memcached (over the cap, or no room to grow)'\n" +
                   "".join(f"{n} {r:.2f}\n" for n, r, w in rows if w == "cache") + "e\n" +
                   "".join(f"{n} {r:.2f}\n" for n, r, w in rows if w != "cache") + "e\n")
    print(f"figure: {a.out}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
