#!/usr/bin/env python3
"""embed_serve end to end on the real model: one unit-length embedding per input line (text and
--json), the summary (dynamic batches, a workspace far below the padded reservation), and the
--compare JSON for one format.
Usage: check_serve.py EMBED_SERVE MODEL_DIR SENTENCES
"""
import json
import math
import subprocess
import sys

embed_serve, model_dir, sentences = sys.argv[1:4]
lines = open(sentences, encoding="utf-8").read().splitlines()
failures = []


def check(cond, what):
    if not cond:
        failures.append(what)


def run(*args):
    r = subprocess.run([embed_serve, "--model", model_dir, "--input", sentences, *args],
                       capture_output=True, text=True, check=False)
    if r.returncode != 0:
        sys.exit(f"embed_serve {' '.join(args)} failed ({r.returncode}): {r.stderr}")
    return r


out = json.loads(run("--json", "--max-batch-tokens", "300").stdout)
emb, summary = out["embeddings"], out["summary"]
check(len(emb) == len(lines), f"{len(emb)} embeddings for {len(lines)} lines")
check(all(len(e) == 384 for e in emb), "an embedding is not 384 floats")
check(all(abs(math.sqrt(sum(x * x for x in e)) - 1) < 1e-5 for e in emb), "not L2-normalised")
check(summary["sentences"] == len(lines) and summary["batching"] == "dynamic",
      f"summary: {summary}")
check(summary["batches"] >= summary["tokens"] / 300, f"batches over the token budget: {summary}")
check(summary["computed_tokens"] == summary["tokens"], "dynamic batches computed padding")
check(0 < summary["peak_workspace_bytes"] < summary["padded_workspace_bytes"] / 10,
      f"workspace: {summary}")
similar = sum(a * b for a, b in zip(emb[0], emb[1]))   # two sentences about a guitar
unrelated = sum(a * b for a, b in zip(emb[0], emb[2]))  # guitar versus tomatoes
check(similar > 0.5 > unrelated, f"similarities {similar:.3f} (related) {unrelated:.3f} (not)")

text = run().stdout.splitlines()
check(len(text) == len(lines), f"{len(text)} text lines for {len(lines)} inputs")
check(all(abs(float(a) - b) < 1e-5 for a, b in zip(text[0].split(), emb[0])),
      "text and --json embeddings differ")

cmp = json.loads(run("--compare", "int8_channel", "--json").stdout)["compare"]["int8_channel"]
check(set(cmp) == {"mean_cosine", "min_cosine", "spearman", "nn_agreement", "weight_bytes",
                   "bits_per_weight"}, f"compare keys: {sorted(cmp)}")
check(0.99 < cmp["min_cosine"] <= cmp["mean_cosine"] <= 1.0, f"compare: {cmp}")
check(8.0 < cmp["bits_per_weight"] < 8.1 and cmp["weight_bytes"] < summary["weight_bytes"],
      f"compare: {cmp}")

for f in failures:
    print("FAIL:", f)
print(f"{len(lines)} sentences embedded; {len(failures)} failures")
sys.exit(1 if failures else 0)
