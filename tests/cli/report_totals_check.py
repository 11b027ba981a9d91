"""`frugal report`'s headline figures are honest: the total freed compares one GPU before and
after and cannot exceed it (fragmentation and the leak, measured on scenarios of their own, are
shown beside it, not added), the concurrency headline names the limit that bound it, and the
fragmentation section reports a loss as a loss."""
import sys

from report_util import check, finish, fresh_dir, run, run_json

program, work = sys.argv[1], fresh_dir(sys.argv[2])
small = ["--trace-steps", "120", "--leak-steps", "10", "--sample-rows", "4"]

# One request: the old total (81.43 GiB on 80 GiB) added fragmentation and the leak on top.
r = run_json(program, "report", "--requests", "1", *small)
t = r["total"]
gpu = r["scenario"]["gpu_memory"]
check(t["bytes_freed"] <= gpu, f"--requests 1: {t['bytes_freed']} freed <= the GPU's {gpu}")
check(t["bytes_freed"] == t["freed"]["weights"] + t["freed"]["kv"] + t["freed"]["workspace"],
      "the total is weights + KV + workspace")
check("fragmentation" not in t["freed"] and "leak" not in t["freed"], "not counted twice")
check(t["not_added"]["fragmentation"] == r["fragmentation"]["bytes_freed"]
      and t["not_added"]["leak"] == r["leaks"]["bytes_freed"], "shown beside the total")
check("before - after" in t["how"], f"one line says how the total is computed ({t['how']!r})")
# The before-GPU's parts are disjoint: FP16 weights, workspace and static KV fit the GPU.
w, st = r["weights"], r["batching"]["static"]
check(w["bytes_before"] + st["workspace_budget_bytes"] + r["kv"]["static"]["reserved_bytes"] <= gpu,
      "before: weights + workspace + static KV <= GPU")
check(t["concurrency_before"] == 1 and t["concurrency_after"] == 1, "one request: one at a time")
check("number of requests" in t["concurrency_before_limit"]
      and "number of requests" in t["concurrency_after_limit"],
      f"bound by the requests sent ({t['concurrency_before_limit']!r}, {t['concurrency_after_limit']!r})")

# 200 requests: frugal runs all 200 at once because only 200 were sent, and says so.
r = run_json(program, "report", "--requests", "200", *small)
t = r["total"]
check(t["concurrency_after"] == 200, f"200 at once after ({t['concurrency_after']})")
check("number of requests (200)" in t["concurrency_after_limit"], t["concurrency_after_limit"])
check("memory" in t["concurrency_before_limit"], f"static: {t['concurrency_before_limit']!r}")
code, out, err = run(program, "report", "--requests", "200", *small)
check(code == 0 and "bound by the number of requests (200)" in out, "text names the limit")
check("before - after" in out and "Not added" in out, "text says how the total is computed")

# --max-num-seqs binds the dynamic run.
r = run_json(program, "report", "--requests", "200", "--max-num-seqs", "16", *small)
t = r["total"]
check(t["concurrency_after"] == 16 and "--max-num-seqs (16)" in t["concurrency_after_limit"],
      f"--max-num-seqs 16 binds ({t['concurrency_after']}, {t['concurrency_after_limit']!r})")
code, _, err = run(program, "report", "--max-num-seqs", "0")
check(code == 2 and "--max-num-seqs" in err, "--max-num-seqs 0 is bad usage")

# Fragmentation: the sign is kept; a pool that needed more says so.
for workload in ("alpaca", "sharegpt"):
    r = run_json(program, "report", "--workload", workload, "--requests", "50", "--trace-steps",
                 "600", "--leak-steps", "10", "--sample-rows", "4")
    f = r["fragmentation"]
    diff = f["first_fit"]["uncapped_peak_bytes_reserved"] - f["pool"]["uncapped_peak_bytes_reserved"]
    check(f["bytes_freed"] == diff, f"{workload}: the difference is kept with its sign ({diff})")
    code, out, _ = run(program, "report", "--workload", workload, "--requests", "50",
                       "--trace-steps", "600", "--leak-steps", "10", "--sample-rows", "4")
    said = "MORE than first-fit" if diff < 0 else "less than first-fit"
    check(said in out, f"{workload}: the text says the pool needs {said}")
    check("needs 0 B less" not in out or diff == 0, f"{workload}: no loss clamped to 0 B")

# A model whose FP16 weights do not fit (Llama-3-70B on 80 GiB) is reported, not refused: the
# weight plan makes it fit and the serving sections run with it.
import json, os
path = os.path.join(work, "llama-3-70b", "config.json")
os.makedirs(os.path.dirname(path), exist_ok=True)
with open(path, "w") as f:
    json.dump({"_name_or_path": "meta-llama/Meta-Llama-3-70B", "model_type": "llama",
               "hidden_size": 8192, "intermediate_size": 28672, "num_attention_heads": 64,
               "num_hidden_layers": 80, "num_key_value_heads": 8, "vocab_size": 128256,
               "max_position_embeddings": 8192, "tie_word_embeddings": False}, f)
r = run_json(program, "report", "-m", path, "--requests", "100", *small)
s, w, t = r["scenario"], r["weights"], r["total"]
check(s["fp16_fits"] is False and "does not hold" in s["fp16_problem"], "FP16 does not fit, said why")
check(w["bytes_before"] > s["gpu_memory"] > w["bytes_after"], "the plan makes the weights fit")
check(r["batching"]["weights"] == "planned", "sections 3 and 4 run the planned weights")
check(r["batching"]["static"]["weight_bytes"] == w["bytes_after"], "static runs them too")
check(t["freed"]["weights"] == 0 and t["bytes_freed"] <= s["gpu_memory"],
      "weights that did not fit free nothing on this GPU")
check(t["concurrency_before"] == 0 and "do not fit" in t["concurrency_before_limit"],
      "before: nothing runs at FP16")
code, out, _ = run(program, "report", "-m", path, "--requests", "100", *small)
check(code == 0 and "FP16 weights do not fit" in out and "makes the model fit" in out,
      "the text says FP16 does not fit and the plan makes it fit")
code, out, err = run(program, "report", "-m", path, "--gpu-memory", "40GiB", *small)
check(code == 2 and "nor does the weight plan" in err, f"40 GiB: even the plan does not fit ({err.strip()!r})")

# --leak-steps beyond what a quarter of the GPU holds is capped, and the report says so.
code, out, _ = run(program, "report", "--gpu-memory", "24GiB", "--requests", "20",
                   "--trace-steps", "40", "--sample-rows", "2", "--leak-steps", "100000")
check(code == 0 and "--leak-steps 100000 capped to" in out, "the leak loop's cap is stated")
r = run_json(program, "report", "--gpu-memory", "24GiB", "--requests", "20", "--trace-steps",
             "40", "--sample-rows", "2", "--leak-steps", "100000")
check(r["leaks"]["steps_requested"] == 100000 and r["leaks"]["steps"] < 100000, "JSON: both counts")

# -V and --version print the version.
for flag in ("-V", "--version"):
    code, out, err = run(program, flag)
    check(code == 0 and out.strip().count(".") == 2 and err == "", f"{flag} prints the version ({out!r}, {err!r})")

finish("report totals")
