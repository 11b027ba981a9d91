#!/usr/bin/env python3
"""Turns mr_bench's, kv_bench's, batch_bench's and quant_bench's Google Benchmark JSON into the Markdown tables
of docs/benchmarks.md.

Usage: bench/report.py RESULTS.json  (prints Markdown on stdout; the tables follow the
benchmarks the file holds, so it takes either program's output)
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


def stream_pool(rows):
    by_size = defaultdict(dict)
    for r in rows:
        if r["bench"] == "BM_stream_pool":
            by_size[r["arg"]][r["peer"]] = r
    out = ["| max size | peer | ns / op | ns / plain pool ns | peak reserved / peak in use |",
           "|---|---|---:|---:|---:|"]
    for arg in sorted(by_size, key=lambda a: int(a.split(":")[1])):
        peers = by_size[arg]
        base = peers["frugal_pool"]["time_per_op"]
        for peer, r in peers.items():
            out.append(f"| {size_label(arg)} | {peer} | {ns(r['time_per_op'])} | "
                       f"{r['time_per_op'] / base:.2f} | {r['reserved_over_in_use']:.3f} |")
    return "\n".join(out)


def replay(rows):
    traces = defaultdict(dict)
    for r in rows:
        if r["bench"] == "BM_replay":
            traces[r["label"]][r["peer"]] = r
    out = ["| trace | allocator | peak reserved / peak in use | / first-fit's | ns / event |",
           "|---|---|---:|---:|---:|"]
    for label, peers in traces.items():
        for peer, r in peers.items():
            out.append(f"| {label} | {peer} | {r['reserved_over_in_use']:.3f} | "
                       f"{r['over_first_fit']:.3f} | {r['ns_per_event']:.1f} |")
    return "\n".join(out)


def simple(rows, bench, counter, frugal):
    peers = {r["peer"]: r for r in rows if r["bench"] == bench}
    base = peers[frugal][counter]
    out = [f"| peer | ns | peer ns / frugal ns |", "|---|---:|---:|"]
    for peer, r in peers.items():
        out.append(f"| {peer} | {ns(r[counter])} | {r[counter] / base:.2f} |")
    return "\n".join(out)


def us(value):
    return f"{value * 1e6:.2f}"


def by_peer(rows, bench):
    return {r["peer"]: r for r in rows if r["bench"] == bench}


def kv_page_allocate_free(rows):
    peers = by_peer(rows, "BM_page_allocate_free")
    base = peers["frugal_page_pool"]["time_per_pair"]
    out = ["| peer | ns / pair | peer ns / frugal_page_pool ns |", "|---|---:|---:|"]
    for peer, r in peers.items():
        out.append(f"| {peer} | {ns(r['time_per_pair'])} | {r['time_per_pair'] / base:.2f} |")
    return "\n".join(out)


def kv_new_sequence(rows):
    out = ["| case | us / sequence | prompt tokens served from the prefix cache |",
           "|---|---:|---:|"]
    for peer, r in by_peer(rows, "BM_new_sequence").items():
        out.append(f"| {peer} | {us(r['time_per_sequence'])} | {r['cached_tokens']:.0f} |")
    return "\n".join(out)


def kv_export(rows):
    peers = by_peer(rows, "BM_export")
    naive = peers["naive_vector_of_vectors"]["time_per_export"]
    out = ["| export | us / export (65,536 pages) | naive us / this us |", "|---|---:|---:|"]
    for peer, r in peers.items():
        out.append(f"| {peer} | {us(r['time_per_export'])} | {naive / r['time_per_export']:.2f} |")
    return "\n".join(out)


def kv_metadata(rows):
    out = ["| cache state | pages | sequences | host bytes / page |", "|---|---:|---:|---:|"]
    for r in rows:
        if r["bench"] == "BM_metadata":
            pages = int(r["arg"].split(":")[1])
            out.append(f"| {r['peer'].replace('_', ' ')} | {pages:,} | {int(r['sequences']):,} | "
                       f"{r['metadata_bytes_per_page']:.3f} |")
    return "\n".join(out)


def kv_efficiency(rows):
    peers = by_peer(rows, "BM_memory_efficiency")
    base = peers["static_reservation"]
    out = ["| policy | waste (time-averaged) | budget holding tokens | max concurrent | "
           "mean concurrent (saturated) | mean / baseline's | decode steps | preemptions |",
           "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for peer, r in peers.items():
        out.append(f"| {peer} | {100 * r['waste']:.2f}% | {100 * r['utilization']:.1f}% | "
                   f"{r['max_concurrent']:.0f} | "
                   f"{r['mean_concurrent']:.1f} | "
                   f"{r['mean_concurrent'] / base['mean_concurrent']:.2f}x | "
                   f"{r['decode_steps']:.0f} | {r['preemptions']:.0f} |")
    r = base
    out.append(f"\n{r['requests']:.0f} requests, mean prompt {r['mean_prompt']:.1f} tokens, "
               f"mean output {r['mean_output']:.1f} tokens, budget {r['budget_pages']:.0f} pages "
               f"of 16 tokens.")
    return "\n".join(out)


def kv_targets(rows):
    def met(ok):
        return "yes" if ok else "**no**"
    pool = by_peer(rows, "BM_page_allocate_free")["frugal_page_pool"]["time_per_pair"]
    seqs = by_peer(rows, "BM_new_sequence")
    exports = by_peer(rows, "BM_export")
    meta = max(r["metadata_bytes_per_page"] for r in rows if r["bench"] == "BM_metadata")
    sim = by_peer(rows, "BM_memory_efficiency")
    frugal, static = sim["frugal_cache"], sim["static_reservation"]
    worst_seq = max(seqs[c]["time_per_sequence"] for c in ("cold_miss", "full_hit_cached"))
    worst_export = max(r["time_per_export"] for p, r in exports.items() if not p.startswith("naive"))
    ratio_mean = frugal["mean_concurrent"] / static["mean_concurrent"]
    ratio_max = frugal["max_concurrent"] / static["max_concurrent"]
    out = ["| target | measured | met |", "|---|---|---|",
           f"| page allocate + free under 20 ns | {ns(pool)} ns | {met(pool < 20e-9)} |",
           f"| new 2,048-token sequence with prefix lookup under 20 us | "
           f"{us(seqs['cold_miss']['time_per_sequence'])} us cold miss, "
           f"{us(seqs['full_hit_cached']['time_per_sequence'])} us full hit | "
           f"{met(worst_seq < 20e-6)} |",
           f"| export 256 x 256 pages under 50 us | at most {us(worst_export)} us "
           f"(all four exports) | {met(worst_export < 50e-6)} |",
           f"| host metadata at or under 64 bytes per page | {meta:.3f} bytes at worst "
           f"(every case in the table above) | {met(meta <= 64)} |",
           f"| waste under 4% | {100 * frugal['waste']:.2f}% "
           f"(static reservation: {100 * static['waste']:.1f}%) | {met(frugal['waste'] < 0.04)} |",
           f"| concurrency at least 3x the static baseline's | {ratio_mean:.1f}x mean, "
           f"{ratio_max:.1f}x max | {met(min(ratio_mean, ratio_max) >= 3)} |"]
    return "\n".join(out)


def batch_plan_step(rows):
    out = ["| running sequences (all decoding) | us / plan_step | us / complete_step | "
           "tokens / step | mean context (tokens) |", "|---|---:|---:|---:|---:|"]
    for r in rows:
        if r["bench"] == "BM_plan_step":
            out.append(f"| {r['sequences']:.0f} | {us(r['plan_step_time'])} | "
                       f"{us(r['complete_step_time'])} | {r['tokens_per_step']:.0f} | "
                       f"{r['mean_context']:.0f} |")
    return "\n".join(out)


def batch_simulation(rows):
    peers = by_peer(rows, "BM_simulation")
    static, dynamic = peers["static_batching"], peers["frugal_dynamic"]
    out = ["| policy | max concurrent | mean concurrent (saturated) | tokens / step | "
           "output tokens / step | KV held at peak | KV waste (time-averaged) | "
           "peak workspace | mean workspace | preemptions | steps |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for peer, r in peers.items():
        out.append(f"| {peer} | {r['max_concurrent']:.0f} | {r['mean_concurrent_saturated']:.1f} | "
                   f"{r['tokens_per_step']:.1f} | {r['output_tokens_per_step']:.1f} | "
                   f"{r['peak_kv_gib']:.2f} GiB | {100 * r['waste']:.2f}% | "
                   f"{r['peak_workspace_mib']:.0f} MiB | {r['mean_workspace_mib']:.0f} MiB | "
                   f"{r['preemptions']:.0f} | {r['steps']:.0f} |")
    r = dynamic
    out.append(f"\n{r['requests']:.0f} requests (mean prompt {r['mean_prompt']:.1f}, mean output "
               f"{r['mean_output']:.1f} tokens), all finished by both policies "
               f"({static['finished']:.0f} and {dynamic['finished']:.0f}; rejected "
               f"{static['rejected']:.0f} and {dynamic['rejected']:.0f}). Budget: weights "
               f"{r['weights_gib']:.2f} GiB, workspace set aside {r['workspace_budget_mib']:.0f} MiB, "
               f"KV {r['kv_budget_gib']:.2f} GiB ({r['kv_pages']:.0f} pages of 16 tokens for "
               f"frugal; {static['max_batch']:.0f} sequences x 4,096 tokens = "
               f"{static['kv_budget_gib']:.2f} GiB reserved per static batch).")
    return "\n".join(out)


def batch_targets(rows):
    def met(ok):
        return "yes" if ok else "**no**"
    plan = next(r for r in rows if r["bench"] == "BM_plan_step" and r["sequences"] == 256)
    sim = by_peer(rows, "BM_simulation")
    static, dynamic = sim["static_batching"], sim["frugal_dynamic"]
    max_ratio = dynamic["max_concurrent"] / static["max_concurrent"]
    mean_ratio = dynamic["mean_concurrent_saturated"] / static["mean_concurrent_saturated"]
    token_ratio = dynamic["tokens_per_step"] / static["tokens_per_step"]
    output_ratio = dynamic["output_tokens_per_step"] / static["output_tokens_per_step"]
    out = ["| target | measured | met |", "|---|---|---|",
           f"| plan_step with 256 running sequences under 20 us | {us(plan['plan_step_time'])} us "
           f"| {met(plan['plan_step_time'] < 20e-6)} |",
           f"| at least 3x the concurrent sequences of static batching | {max_ratio:.1f}x max, "
           f"{mean_ratio:.1f}x mean (saturated) | {met(min(max_ratio, mean_ratio) >= 3)} |",
           f"| at least 2x the tokens per step | {token_ratio:.1f}x computed, {output_ratio:.1f}x "
           f"sampled | {met(min(token_ratio, output_ratio) >= 2)} |"]
    return "\n".join(out)


def batch_report(rows):
    print("### plan_step, decode-only steps\n")
    print(batch_plan_step(rows))
    print("\n### Serving simulation: Llama-3-8B, 80 GiB, fp16, ShareGPT-like, max length 4,096\n")
    print(batch_simulation(rows))
    print("\n### Against the targets\n")
    print(batch_targets(rows))


def mr_report(rows):
    print("### Random allocations (time per allocate or free)\n")
    print(random_allocations(rows))
    if any(r["bench"] == "BM_stream_pool" for r in rows):
        print("\n### Stream-ordered pool: host overhead (time per allocate or free)\n")
        print(stream_pool(rows))
    if any(r["bench"] == "BM_arena_allocate" for r in rows):
        print("\n### Arena (time per allocation)\n")
        print(simple(rows, "BM_arena_allocate", "time_per_allocation", "frugal_arena"))
    if any(r["bench"] == "BM_block_allocate_free" for r in rows):
        print("\n### Fixed-size blocks (time per allocate + free pair)\n")
        print(simple(rows, "BM_block_allocate_free", "time_per_pair", "frugal_block"))


def kv_report(rows):
    print("### Page allocate + free (time per free + allocate pair)\n")
    print(kv_page_allocate_free(rows))
    print("\n### New sequence of 2,048 prompt tokens, added and released\n")
    print(kv_new_sequence(rows))
    print("\n### Exports for 256 sequences of 256 pages\n")
    print(kv_export(rows))
    print("\n### Host metadata per page\n")
    print(kv_metadata(rows))
    print("\n### Memory efficiency on ShareGPT-like lengths\n")
    print(kv_efficiency(rows))
    print("\n### Against the targets\n")
    print(kv_targets(rows))


def quant_report(rows):
    """quant_bench: GB/s of float32 input per format, against memcpy of the same bytes."""
    def gbs(r):
        return r["bytes_per_second"] / 1e9
    memcpy = gbs(next(r for r in rows if r["bench"] == "BM_memcpy"))
    quant = by_peer(rows, "BM_quantize")
    dequant = by_peer(rows, "BM_dequantize")
    print("### CPU quantize and dequantize, 4,096 x 1,024 float32 (16 MiB), one core\n")
    print(f"memcpy of the same 16 MiB in the same run: {memcpy:.2f} GB/s.\n")
    print("| format | quantize GB/s | / memcpy | dequantize GB/s | / memcpy |")
    print("|---|---:|---:|---:|---:|")
    for f, r in quant.items():
        d = dequant[f]
        print(f"| {f} | {gbs(r):.2f} | {gbs(r) / memcpy:.3f} | {gbs(d):.2f} | "
              f"{gbs(d) / memcpy:.3f} |")
    print("\n### CPU quantization against the targets\n")
    print("| target | measured | met |")
    print("|---|---|---|")
    for f in ("int8", "fp8_e4m3"):
        for op, table in (("quantize", quant), ("dequantize", dequant)):
            ratio = gbs(table[f]) / memcpy
            met = "yes" if ratio >= 0.25 else "**no**"
            print(f"| {f} {op} at least 25% of memcpy on one core | {gbs(table[f]):.2f} GB/s = "
                  f"{100 * ratio:.1f}% | {met} |")


def main():
    context, rows = load(sys.argv[1])
    print(f"Machine: {context.get('num_cpus')} CPUs at {context.get('mhz_per_cpu')} MHz, "
          f"run {context.get('date')}.\n")
    benches = {r["bench"] for r in rows}
    if "BM_random_allocations" in benches or "BM_stream_pool" in benches:
        mr_report(rows)
    if "BM_replay" in benches:
        print("### Serving traces replayed\n")
        print(replay(rows))
    if "BM_page_allocate_free" in benches:
        kv_report(rows)
    if "BM_plan_step" in benches:
        batch_report(rows)
    if "BM_quantize" in benches:
        quant_report(rows)


if __name__ == "__main__":
    main()
