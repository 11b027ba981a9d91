#!/usr/bin/env python3
"""Turns the results of scripts/gpu-check into gpu-check.md and gpu-check.json.

Inputs: ctest's JUnit file for the device tests (one <testcase> per Catch2 case), the Google
Benchmark JSON of gpu_bench (one file per benchmark group; --bench may be repeated and the files
are merged), the seed of the test inputs, and how long each phase of the run took against its
budget. Output: one table with the columns check, result, figure, peer figure, ratio; the
targets of the GPU work are rows whose result is "met" or "not met", the phases rows whose
result is "within budget" or "over budget".

  gpu_check_report.py --tests test_gpu.xml --bench a.json [--bench b.json ...] --out-dir OUT
                      [--seed N] [--phase NAME=SECONDS/BUDGET[/timeout] ...] [--expect-device]

Exit status: 0 when every check passed, 1 when a test failed (or, with --expect-device, was
skipped), a benchmark reported an error, an input could not be read, a target was not met or
its figures are missing, or a phase ran out of its budget. The table is printed last.
"""

import argparse
import json
import os
import sys
import xml.etree.ElementTree as ET

# The targets: (format, operation) at or above this share of device-to-device copy bandwidth.
QUANT_TARGET_SHARE = 0.80
QUANT_TARGET_FORMATS = ["int8", "fp8_e4m3", "nvfp4", "mxfp4"]
# The pool against its peers on the random workload: at least this many times faster.
ALLOC_TARGETS = [("cuda_malloc", 100.0, "cudaMalloc+cudaFree"),
                 ("cuda_malloc_async", 2.0, "cudaMallocAsync+cudaFreeAsync")]

FAILING = {"fail", "error", "not met", "missing", "over budget"}


def parse_tests(path, expect_device):
    """One row per test case: pass, fail or skipped (skipped fails with expect_device)."""
    rows = []
    root = ET.parse(path).getroot()
    for case in root.iter("testcase"):
        name = case.get("name", "?")
        if case.find("failure") is not None or case.find("error") is not None:
            result = "fail"
        elif case.find("skipped") is not None or case.get("status") in ("notrun", "disabled"):
            result = "fail" if expect_device else "skipped"
        elif case.get("status") in (None, "run", "passed"):
            result = "pass"
        else:
            result = "fail"
        time = case.get("time")
        rows.append({"check": name, "kind": "test", "result": result,
                     "figure": f"{float(time):.2f} s" if time else "", "peer": "", "ratio": ""})
    return rows


# Parts Google Benchmark adds to a run's name for its settings, not for the case.
SETTING_PREFIXES = ("iterations:", "repeats:", "min_time:", "min_warmup_time:", "threads:")
SETTING_NAMES = ("manual_time", "real_time", "process_time")


def canonical_name(name):
    """'BM_x/a/arg:1/iterations:20/repeats:9/manual_time' -> 'BM_x/a/arg:1'."""
    parts = [p for p in name.split("/")
             if not p.startswith(SETTING_PREFIXES) and p not in SETTING_NAMES]
    return "/".join(parts)


def load_benchmarks(path):
    """Median (or single-run) entries by run name: {name: entry}; errors by name."""
    with open(path) as f:
        data = json.load(f)
    medians, singles, errors = {}, {}, {}
    for entry in data.get("benchmarks", []):
        name = canonical_name(entry.get("run_name") or entry.get("name", ""))
        if entry.get("error_occurred"):
            errors[name] = entry.get("error_message", "error")
            continue
        if entry.get("run_type") == "aggregate":
            if entry.get("aggregate_name") == "median":
                medians[name] = entry
        else:
            singles.setdefault(name, entry)
    for name, entry in singles.items():
        medians.setdefault(name, entry)
    return data.get("context", {}), medians, errors


def merge_benchmarks(paths):
    """load_benchmarks over several files: (context of the first, medians, errors, error rows)."""
    context, medians, errors, bad = {}, {}, {}, []
    for path in paths:
        try:
            ctx, m, e = load_benchmarks(path)
        except (OSError, ValueError) as err:
            bad.append(row(f"gpu_bench ({os.path.basename(path)})", "bench", "error",
                           ratio_text=f"unreadable: {err}"))
            continue
        context = context or ctx
        medians.update(m)
        errors.update(e)
    return context, medians, errors, bad


def parse_phase(text):
    """'build=57/200' or 'tests=100/100/timeout' -> {name, seconds, budget_seconds, timed_out}."""
    name, _, rest = text.partition("=")
    parts = rest.split("/")
    if not name or len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] != "timeout"):
        raise ValueError(f"--phase {text!r}: expected NAME=SECONDS/BUDGET[/timeout]")
    return {"name": name, "seconds": float(parts[0]), "budget_seconds": float(parts[1]),
            "timed_out": len(parts) == 3}


def phase_rows(phases):
    rows = []
    for p in phases:
        over = p["timed_out"] or p["seconds"] > p["budget_seconds"]
        r = row(f"phase: {p['name']}", "phase", "over budget" if over else "within budget",
                p["seconds"], p["budget_seconds"], p["seconds"] / p["budget_seconds"]
                if p["budget_seconds"] else None, "s",
                "stopped at its budget" if p["timed_out"] else None)
        r["figure"], r["peer"] = f"{p['seconds']:.0f} s", f"budget {p['budget_seconds']:.0f} s"
        rows.append(r)
    return rows


def human_bytes(text):
    """'1048576' -> '1 MiB' (exact powers of 1024 only; anything else stays in bytes)."""
    n = int(text)
    for unit in ("GiB", "MiB", "KiB"):
        scale = {"GiB": 1 << 30, "MiB": 1 << 20, "KiB": 1 << 10}[unit]
        if n >= scale and n % scale == 0:
            return f"{n // scale} {unit}"
    return f"{n} B"


def fmt(value, unit):
    if value is None:
        return ""
    if unit == "GB/s":
        return f"{value:,.0f} GB/s" if value >= 100 else f"{value:.1f} GB/s"
    if unit == "ns/op":
        return f"{value:,.0f} ns/op" if value >= 100 else f"{value:.1f} ns/op"
    return f"{value:g} {unit}"


def row(check, kind, result, figure=None, peer=None, ratio=None, unit="", ratio_text=None):
    return {"check": check, "kind": kind, "result": result,
            "figure": fmt(figure, unit), "peer": fmt(peer, unit),
            "ratio": ratio_text if ratio_text is not None else
            ("" if ratio is None else f"{ratio:.2f}"),
            "value": figure, "peer_value": peer, "ratio_value": ratio, "unit": unit}


def bench_rows(medians, errors):
    rows = []
    for name, message in sorted(errors.items()):
        rows.append(row(name, "bench", "error", ratio_text=message))

    def counter(name, key):
        entry = medians.get(name)
        return None if entry is None or key not in entry else float(entry[key])

    # Device-to-device copy: the bandwidth roofline of the kernels.
    copy_names = [n for n in medians if n.startswith("BM_memcpy_d2d/")]
    copy = counter(copy_names[0], "GB_per_s") if copy_names else None
    if copy is not None:
        rows.append(row("memcpy d2d " + human_bytes(copy_names[0].split(":")[-1]), "bench",
                        "measured", copy, unit="GB/s"))

    # Allocation: every peer against the pool, per workload.
    workloads = sorted({n.split("/")[-1] for n in medians if n.startswith("BM_alloc_random/")})
    for workload in workloads:
        ours = counter(f"BM_alloc_random/frugal_pool/{workload}", "ns_per_op")
        label = "max " + human_bytes(workload.split(":")[-1])
        if ours is not None:
            rows.append(row(f"alloc random ({label}): frugal_pool", "bench", "measured", ours,
                            unit="ns/op"))
        for peer in ("cuda_malloc", "cuda_malloc_async", "cub_caching"):
            theirs = counter(f"BM_alloc_random/{peer}/{workload}", "ns_per_op")
            if theirs is None or ours is None:
                continue
            rows.append(row(f"alloc random ({label}): frugal_pool vs {peer}", "bench",
                            "measured", ours, theirs, theirs / ours, "ns/op",
                            f"{theirs / ours:,.1f}x faster"))
        for peer, factor, words in ALLOC_TARGETS:
            theirs = counter(f"BM_alloc_random/{peer}/{workload}", "ns_per_op")
            check = f"target: pool >= {factor:g}x faster than {words} ({label})"
            if theirs is None or ours is None:
                rows.append(row(check, "target", "missing"))
                continue
            rows.append(row(check, "target", "met" if theirs / ours >= factor else "not met",
                            ours, theirs, theirs / ours, "ns/op", f"{theirs / ours:,.1f}x"))

    # Quantization kernels against the copy.
    for name in sorted(n for n in medians if n.startswith(("BM_quantize/", "BM_dequantize/"))):
        parts = name.split("/")
        op = parts[0][3:]
        check = f"{op} {parts[1]}" + (f" ({parts[2]})" if len(parts) > 2 else "")
        gbs = counter(name, "GB_per_s")
        share = gbs / copy if gbs is not None and copy else None
        rows.append(row(check, "bench", "measured", gbs, copy, share, "GB/s",
                        "" if share is None else f"{100 * share:.0f}% of copy"))
    for fmt_name in QUANT_TARGET_FORMATS:
        for op, name in (("quantize", f"BM_quantize/{fmt_name}/float32"),
                         ("dequantize", f"BM_dequantize/{fmt_name}")):
            check = f"target: {op} {fmt_name} >= {QUANT_TARGET_SHARE:.0%} of d2d copy bandwidth"
            gbs = counter(name, "GB_per_s")
            if gbs is None or copy is None:
                rows.append(row(check, "target", "missing"))
                continue
            share = gbs / copy
            rows.append(row(check, "target", "met" if share >= QUANT_TARGET_SHARE else "not met",
                            gbs, copy, share, "GB/s", f"{100 * share:.0f}%"))

    # KV page copy: the kernel against one cudaMemcpyAsync per page.
    kv_names = [n for n in medians if n.startswith("BM_kv_copy/frugal_kernel/")]
    for name in sorted(kv_names, key=lambda n: int(n.split(":")[-1])):
        page = name.split("/")[-1]
        ours = counter(name, "GB_per_s")
        theirs = counter(f"BM_kv_copy/memcpy_per_page/{page}", "GB_per_s")
        ratio = ours / theirs if ours is not None and theirs else None
        rows.append(row(f"kv copy pages ({human_bytes(page.split(':')[-1])} pages) vs "
                        "cudaMemcpyAsync per page", "bench", "measured", ours, theirs, ratio,
                        "GB/s", "" if ratio is None else f"{ratio:.2f}x"))
    return rows


def markdown(rows, device, passed, seed, phases):
    lines = ["# gpu-check", "", f"Device: {device}", "",
             f"Result: {'all checks passed' if passed else 'some checks failed'}", ""]
    if seed is not None:
        lines += [f"Test inputs seed: {seed} (FRUGAL_TEST_SEED={seed} repeats them)", ""]
    if phases:
        total = sum(p["seconds"] for p in phases)
        lines += ["Seconds per phase: " + ", ".join(
            f"{p['name']} {p['seconds']:.0f} s (budget {p['budget_seconds']:.0f} s)"
            for p in phases) + f"; {total:.0f} s in all", ""]
    lines += [
             "| check | result | figure | peer figure | ratio |",
             "|---|---|---|---|---|"]
    for r in rows:
        cells = [r["check"], r["result"], r["figure"], r["peer"], r["ratio"]]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tests", help="ctest JUnit XML of the device tests")
    parser.add_argument("--bench", action="append", default=[],
                        help="Google Benchmark JSON of gpu_bench (repeat for several groups)")
    parser.add_argument("--seed", help="the seed of the device tests' inputs (FRUGAL_TEST_SEED)")
    parser.add_argument("--phase", action="append", default=[],
                        help="NAME=SECONDS/BUDGET[/timeout]: how long a phase took")
    parser.add_argument("--out-dir", required=True)
    parser.add_argument("--device", default="unknown")
    parser.add_argument("--expect-device", action="store_true",
                        help="a skipped test is a failure (a device was expected)")
    args = parser.parse_args(argv)

    rows = []
    context = {}
    if args.tests:
        try:
            rows += parse_tests(args.tests, args.expect_device)
        except (OSError, ET.ParseError) as e:
            rows.append(row("device tests", "test", "error", ratio_text=f"unreadable: {e}"))
    else:
        rows.append(row("device tests", "test", "missing"))
    if args.bench:
        context, medians, errors, bad = merge_benchmarks(args.bench)
        rows += bad + bench_rows(medians, errors)
    else:
        rows.append(row("gpu_bench", "bench", "missing"))
        rows += bench_rows({}, {})
    try:
        phases = [parse_phase(p) for p in args.phase]
    except ValueError as e:
        parser.error(str(e))
    rows += phase_rows(phases)

    # Targets first, then the tests, then the figures behind them, then the phases.
    order = {"target": 0, "test": 1, "bench": 2, "phase": 3}
    rows.sort(key=lambda r: order[r["kind"]])
    failures = [r for r in rows if r["result"] in FAILING]
    passed = not failures
    os.makedirs(args.out_dir, exist_ok=True)
    table = markdown(rows, args.device, passed, args.seed, phases)
    with open(os.path.join(args.out_dir, "gpu-check.md"), "w") as f:
        f.write(table)
    summary = {"device": args.device, "passed": passed, "failures": len(failures),
               "seed": int(args.seed) if args.seed is not None and args.seed.isdigit()
               else args.seed,
               "phases": phases, "total_seconds": sum(p["seconds"] for p in phases),
               "benchmark_context": context, "rows": rows}
    with open(os.path.join(args.out_dir, "gpu-check.json"), "w") as f:
        json.dump(summary, f, indent=1)
    for r in failures:
        print(f"gpu-check: {r['result']}: {r['check']}", file=sys.stderr)
    print(table, end="")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
