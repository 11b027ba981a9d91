#!/usr/bin/env python3
"""Turns mr_bench's Google Benchmark JSON into the Markdown tables of docs/benchmarks.md.

Usage: bench/report.py RESULTS.json  (prints Markdown on stdout)
Each table compares frugal with its peers from the same run; ratios are peer time / frugal time,
so a ratio above 1 means frugal is faster.
"""
import json
import sys
from collections import defaultdict


def load(path):
    with open(path) as f:
        data = json.load(f)
    rows = []
    for b in data["benchmarks"]:
        if b.get("run_type") == "aggregate" and b.get("aggregate_name") != "median":
            continue
        name = b.get("run_name", b["name"])
        parts = name.split("/")
        rows.append({"bench": parts[0], "peer": parts[1],
                     "arg": parts[2] if len(parts) > 2 else "", **b})
    return data["context"], rows


def ns(value):
    return f"{value * 1e9:.1f}"


def size_label(arg):
    n = int(arg.split(":")[1])
    return f"{n >> 20} MiB" if n >= 1 << 20 else f"{n >> 10} KiB"


def random_allocations(rows):
    by_size = defaultdict(dict)
    for r in rows:
        if r["bench"] == "BM_random_allocations":
            by_size[r["arg"]][r["peer"]] = r
    out = ["| max size | peer | ns / op | peer ns / frugal ns | peak reserved / peak in use |",
           "|---|---|---:|---:|---:|"]
    for arg in sorted(by_size, key=lambda a: int(a.split(":")[1])):
        peers = by_size[arg]
        base = peers["frugal_pool"]["time_per_op"]
        for peer, r in peers.items():
            ratio = r["reserved_over_in_use"] if "reserved_over_in_use" in r else None
            out.append(f"| {size_label(arg)} | {peer} | {ns(r['time_per_op'])} | "
                       f"{r['time_per_op'] / base:.2f} | "
                       f"{'' if ratio is None else f'{ratio:.3f}'} |")
    return "\n".join(out)


def simple(rows, bench, counter, frugal):
    peers = {r["peer"]: r for r in rows if r["bench"] == bench}
    base = peers[frugal][counter]
    out = [f"| peer | ns | peer ns / frugal ns |", "|---|---:|---:|"]
    for peer, r in peers.items():
        out.append(f"| {peer} | {ns(r[counter])} | {r[counter] / base:.2f} |")
    return "\n".join(out)


def main():
    context, rows = load(sys.argv[1])
    print(f"Machine: {context.get('num_cpus')} CPUs at {context.get('mhz_per_cpu')} MHz, "
          f"run {context.get('date')}.\n")
    print("### Random allocations (time per allocate or free)\n")
    print(random_allocations(rows))
    print("\n### Arena (time per allocation)\n")
    print(simple(rows, "BM_arena_allocate", "time_per_allocation", "frugal_arena"))
    print("\n### Fixed-size blocks (time per allocate + free pair)\n")
    print(simple(rows, "BM_block_allocate_free", "time_per_pair", "frugal_block"))


if __name__ == "__main__":
    main()
