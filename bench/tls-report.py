#!/usr/bin/python3
"""Render a scripts/bench-tls results.jsonl as markdown tables.

Usage: tls-report.py RESULTS.jsonl [--base NAME]

Each line of the file is {"server":, "kind": "load"|"hold", "rep":, "try":,
"noisy":, "result": <tls-load JSON>}.  Per cell and server the median over the
repeats is shown (a retried noisy run counts only through its last try).
"""
import json
import statistics
import sys
from collections import defaultdict


def main():
    args = sys.argv[1:]
    if not args:
        sys.exit(__doc__)
    path, base = args[0], "luaecho"
    if "--base" in args:
        base = args[args.index("--base") + 1]
    rows = [json.loads(l) for l in open(path) if l.strip()]
    servers = []
    for r in rows:
        if r["server"] not in servers:
            servers.append(r["server"])
    if base in servers:  # the base first
        servers.remove(base)
        servers.insert(0, base)

    # the last try of each (server, size, conns, rep)
    last = {}
    for r in rows:
        if r["kind"] != "load":
            continue
        res = r["result"]
        key = (r["server"], r["size"], r["conns"], r["rep"])
        if key not in last or r["try"] >= last[key][0]:
            last[key] = (r["try"], res, r.get("noisy", False))
    cells = sorted({(k[1], k[2]) for k in last})
    cpu, rts, p99, flags = defaultdict(list), defaultdict(list), defaultdict(list), defaultdict(set)
    for (srv, size, conns, _), (_, res, noisy) in last.items():
        key = (srv, size, conns)
        if not res.get("ok"):
            flags[key].add("!")
            continue
        if noisy:
            flags[key].add("n")
        if res.get("client_cpu_pct", 0) >= 90:
            flags[key].add("c")
        cpu[key].append(res["server_cpu_us_per_rt"])
        rts[key].append(res["rt_per_s"])
        p99[key].append(res["lat_us"]["p99"])

    def size_name(n):
        return f"{n // 1024} KiB" if n % 1024 == 0 else f"{n} B"

    def med(v):
        return statistics.median(v) if v else None

    out = []
    if cells:
        out.append("Server CPU time per round trip (µs, median of the runs; ratio to %s):\n" % base)
        out.append("| size × conns | " + " | ".join(f"**{s}**" if s == base else s for s in servers) + " |")
        out.append("|---:|" + "---|" * len(servers))
        wins = defaultdict(int)
        for size, conns in cells:
            b = med(cpu[(base, size, conns)])
            cols = []
            for s in servers:
                v = med(cpu[(s, size, conns)])
                f = "".join(sorted(flags[(s, size, conns)]))
                if v is None:
                    cols.append("failed" + (f" {f}" if f else ""))
                    continue
                txt = f"{v:.1f}"
                if s != base and b:
                    txt += f" (×{v / b:.2f})"
                    if v > b:
                        wins[s] += 1
                if f:
                    txt += f" {f}"
                cols.append(f"**{txt}**" if s == base else txt)
            out.append(f"| {size_name(size)} × {conns} | " + " | ".join(cols) + " |")
        out.append("")
        out.append("Round trips per second (median) and p99 latency:\n")
        out.append("| size × conns | " + " | ".join(servers) + " |")
        out.append("|---:|" + "---|" * len(servers))
        for size, conns in cells:
            cols = []
            for s in servers:
                v = med(rts[(s, size, conns)])
                cols.append("failed" if v is None else f"{v:,.0f} (p99 {med(p99[(s, size, conns)]):,.0f} µs)")
            out.append(f"| {size_name(size)} × {conns} | " + " | ".join(cols) + " |")
        out.append("")
        if base in servers:
            others = [s for s in servers if s != base]
            out.append(f"Cells where {base} used less CPU per round trip than the other server: " +
                       ", ".join(f"{s} {wins[s]}/{len(cells)}" for s in others) + ".")
            out.append("")
        out.append("Flags: `!` a run failed (errors), `c` the load generator's core was ≥ 90% busy "
                   "(the server may be faster than its rt/s shows), `n` other processes used the machine "
                   "during the run even after retries.")
        out.append("")

    holds = [r for r in rows if r["kind"] == "hold"]
    if holds:
        out.append("Memory per idle TLS connection (RSS growth from %d to %d held connections, after the "
                   "handshake and one echo each):\n" % (holds[0]["result"].get("baseline", 0),
                                                        holds[0]["result"].get("requested", 0)))
        out.append("| server | bytes per idle connection | RSS at baseline → held | |")
        out.append("|---|---:|---|---|")
        for s in servers:
            for r in holds:
                if r["server"] != s:
                    continue
                res = r["result"]
                if not res.get("ok") or res.get("bytes_per_conn", -1) < 0:
                    out.append(f"| {s} | failed | | {res.get('first_error', '')} |")
                    continue
                kib = res["bytes_per_conn"] / 1024
                out.append(f"| {'**%s**' % s if s == base else s} | {res['bytes_per_conn']:,.0f} ({kib:.1f} KiB) | "
                           f"{res['rss_baseline_kib'] / 1024:.1f} → {res['rss_hold_kib'] / 1024:.1f} MiB | "
                           f"{res['established']} held, {res['verified_after']} echoed after the hold |")
        out.append("")
    print("\n".join(out))


if __name__ == "__main__":
    main()
