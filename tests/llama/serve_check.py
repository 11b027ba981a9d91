#!/usr/bin/env python3
"""End-to-end checks of llama_serve on stories260K: the JSON it prints, what it measures, the
model-level comparison, and every bad input it must refuse with exit 1 or 2.
Usage: serve_check.py LLAMA_SERVE MODEL PROMPTS SCRATCH_DIR"""
import json
import os
import subprocess
import sys

serve, model, prompts, scratch = sys.argv[1:5]
os.makedirs(scratch, exist_ok=True)
failures = []


def run(*args):
    return subprocess.run([serve, *args], capture_output=True, text=True, timeout=600)


def check(condition, what):
    if not condition:
        failures.append(what)
        print("FAILED:", what)


def write(name, content, mode="w"):
    path = os.path.join(scratch, name)
    with open(path, mode) as f:
        f.write(content)
    return path


# Serving: 64 requests, every one answered, KV far below the static reservation, nothing leaked.
r = run("--model", model, "--prompts", prompts, "--max-new-tokens", "32", "--json")
check(r.returncode == 0, f"serve exits 0 ({r.returncode}: {r.stderr})")
out = json.loads(r.stdout)
requests, summary = out["requests"], out["summary"]
check(len(requests) == 64, "64 requests answered")
check([q["id"] for q in requests] == list(range(1, 65)), "requests in input order")
check(all(0 < len(q["output_tokens"]) <= 32 for q in requests), "1..32 tokens per request")
check(all(q["hit_eos"] == (q["output_tokens"][-1] == 1) for q in requests), "hit_eos means token 1")
for key in ["tokens_per_second", "steps", "peak_kv_bytes", "kv_bytes_static", "peak_workspace_bytes",
            "weight_bytes", "weight_format", "pages_used_peak"]:
    check(key in summary, f"summary has {key}")
check(summary["peak_kv_bytes"] * 4 <= summary["kv_bytes_static"], "peak KV <= 1/4 of static")
check(summary["other_outstanding_bytes"] == 0, "nothing outstanding but weights after the run")
check(summary["weight_format"] == "float32", "float32 by default")

# The same prompts, plain text: one line per request, the same tokens.
r = run("--model", model, "--prompts", prompts, "--max-new-tokens", "32")
lines = r.stdout.splitlines()
check(len(lines) == 64 and [list(map(int, l.split())) for l in lines] ==
      [q["output_tokens"] for q in requests], "text output equals the JSON tokens")

# Quantized weights at load, 8-bit KV, swap preemption, a tight page budget: still served.
r = run("--model", model, "--prompts", prompts, "--max-new-tokens", "16", "--weights", "int8_channel",
        "--kv-dtype", "fp8_e4m3", "--pages", "40", "--preemption", "swap", "--json")
check(r.returncode == 0, f"quantized serve exits 0 ({r.stderr})")
s = json.loads(r.stdout)["summary"]
check(s["weight_format"] == "int8_channel" and s["weight_bytes"] < summary["weight_bytes"] / 2,
      "int8_channel weights are under half the float32 bytes")
check(s["preemptions"] > 0 and s["pages_total"] == 40, "40 pages force preemption")

# Model-level comparison and the choice of format.
r = run("--model", model, "--prompts", prompts, "--max-new-tokens", "16", "--compare",
        "int8_channel,q8_0,q4_0,nvfp4", "--choose", "--max-kl", "0.1", "--json")
check(r.returncode == 0, f"compare exits 0 ({r.stderr})")
c = json.loads(r.stdout)
table = c["compare"]
check(set(table) == {"int8_channel", "q8_0", "q4_0", "nvfp4"}, "one row per format")
for f, row in table.items():
    for key in ["kl_mean", "kl_median", "kl_p99", "kl_max", "top1_agreement", "ppl_ratio", "weight_bytes"]:
        check(key in row, f"{f} has {key}")
    check(0 <= row["top1_agreement"] <= 1, f"{f} top-1 agreement is a fraction")
check(table["int8_channel"]["kl_mean"] * 10 < table["nvfp4"]["kl_mean"], "int8 KL far below nvfp4's")
check(c["chosen"] == "int8_channel", f"the chooser picks int8_channel at 0.1 ({c['chosen']})")
r = run("--model", model, "--prompts", prompts, "--max-new-tokens", "8", "--compare", "q4_0",
        "--choose", "--max-kl", "0.001")
check(r.returncode == 1 and "chosen at mean KL <= 0.001: none" in r.stdout, "no format: exit 1")

# Bad input: a clear message and exit 1 (bad files, bad requests) or 2 (bad usage).
with open(model, "rb") as f:
    weights = f.read()
bad = [
    (["--model", write("truncated.bin", weights[:-64], "wb")], 1, "truncated"),
    (["--model", write("header.bin", b"\x01\x02", "wb")], 1, "header"),
    (["--model", os.path.join(scratch, "nothing.bin")], 1, "cannot open"),
    (["--prompts", write("outside.txt", "1 2 3 600\n")], 1, "outside the vocabulary"),
    (["--prompts", write("word.txt", "1 2 x\n")], 1, "is not a token id"),
    (["--prompts", write("long.txt", " ".join(["5"] * 512) + "\n")], 1, "one must be left"),
    (["--prompts", write("blank.txt", "\n\n")], 1, "holds no request"),
    (["--kv-memory", "1KiB"], 1, "holds no page"),
    (["--pages", "0"], 2, "pages"),
    (["--kv-dtype", "fp4"], 1, "unknown KV dtype"),
    (["--weights", "int3"], 1, "int3"),
    (["--preemption", "never"], 2, "preemption"),
    (["--temperature", "-1"], 2, "temperature"),
]
for args, code, message in bad:
    full = ["--model", model, "--prompts", prompts, "--max-new-tokens", "4"]
    for i in range(0, len(args), 2):
        if args[i] in full:
            full[full.index(args[i]) + 1] = args[i + 1]
        else:
            full += args[i:i + 2]
    r = run(*full)
    check(r.returncode == code and message in (r.stderr + r.stdout),
          f"{args}: exit {code} with '{message}' (got {r.returncode}: {r.stderr.strip()[:200]})")
r = run("--prompts", prompts)
check(r.returncode == 2 and "--model" in r.stderr, "missing --model is bad usage")

print(f"{len(failures)} failed" if failures else "llama_serve: all checks passed")
sys.exit(1 if failures else 0)
