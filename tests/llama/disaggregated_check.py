#!/usr/bin/env python3
"""llama_serve --disaggregated on stories260K: prefill and decode in two processes, KV pages over
UCX. Greedy outputs equal the single-process outputs token for token for 32 requests over tcp and
shared memory (and sampled ones too); killing the decode process mid-run leaves the prefill
process with every page free; bad options are refused.
Usage: disaggregated_check.py LLAMA_SERVE MODEL PROMPTS SCRATCH_DIR"""
import os
import re
import subprocess
import sys

serve, model, prompts, scratch = sys.argv[1:5]
os.makedirs(scratch, exist_ok=True)
failures = []


def run(*args):
    return subprocess.run([serve, "--model", model, *args], capture_output=True, text=True,
                          timeout=300)


def check(condition, what):
    if not condition:
        failures.append(what)
        print("FAILED:", what)


with open(prompts) as f:
    lines = [l for l in f if l.strip()][:32]
first32 = os.path.join(scratch, "prompts32.txt")
with open(first32, "w") as f:
    f.writelines(lines)

single = run("--prompts", first32, "--max-new-tokens", "64")
check(single.returncode == 0, f"single process exits 0 ({single.stderr})")
reference = single.stdout.splitlines()
check(len(reference) == 32, "32 requests answered by one process")
sampling = ["--temperature", "0.8", "--top-p", "0.9", "--seed", "5"]
sampled = run("--prompts", first32, "--max-new-tokens", "64", *sampling)

for transport in ["tcp", "shm"]:
    r = run("--prompts", first32, "--max-new-tokens", "64", "--disaggregated", "--transport", transport)
    check(r.returncode == 0, f"{transport}: exits 0 ({r.returncode}: {r.stderr[-2000:]})")
    out = r.stdout.splitlines()
    check(len(out) == 32, f"{transport}: 32 requests answered")
    same = sum(a == b for a, b in zip(out, reference))
    check(out == reference, f"{transport}: greedy outputs equal one process's ({same} of 32 equal)")
    r = run("--prompts", first32, "--max-new-tokens", "64", "--disaggregated", "--transport", transport,
            *sampling)
    check(r.returncode == 0 and r.stdout == sampled.stdout,
          f"{transport}: sampled outputs equal one process's")

    # The decode process dies after receiving 5 sequences: the prefill process reports it, with
    # every one of its pages free and its cache valid.
    r = run("--prompts", first32, "--disaggregated", "--transport", transport, "--kill-decode-after", "5")
    check(r.returncode == 1, f"{transport}: a dead decode process exits 1 ({r.returncode})")
    m = re.search(r"the decode process \(pid \d+, killed by signal 9\) failed: .*; prefill process: "
                  r"(\d+) of (\d+) pages free, cache valid", r.stderr)
    check(m is not None, f"{transport}: the failure is reported ({r.stderr[-2000:]})")
    check(m is not None and m.group(1) == m.group(2), f"{transport}: every prefill page is free")

r = run("--prompts", first32, "--disaggregated", "--transport", "rdma")
check(r.returncode == 2, "an unknown transport is refused with exit 2")
r = run("--prompts", first32, "--disaggregated", "--kv-dtype", "int8")
check(r.returncode == 1 and "16- and 32-bit KV only" in r.stderr, "8-bit KV is refused")
r = run("--prompts", first32, "--disaggregated", "--static")
check(r.returncode == 1 and "cannot be combined" in r.stderr, "--static is refused")

if failures:
    print(f"{len(failures)} checks failed")
    sys.exit(1)
print("all disaggregated checks passed")
