"""`frugal plan`: the budget parts add up to the GPU, more bits leave fewer pages, the sequence
count follows from the pages, a config.json plans like its preset, and a budget that is too
small is reported per format."""
import json
import math
import os
import sys

from report_util import check, finish, fresh_dir, run, run_json

program, work = sys.argv[1], fresh_dir(sys.argv[2])

r = run_json(program, "plan", "--model", "llama-3-8b", "--gpu-memory", "80GiB",
             "-w", "fp16,int8", "--weights-format", "int4", "-w", "nvfp4, int4_g128",
             "--kv-dtype", "fp16,fp8", "--context", "4096")
check(r["gpu_memory"] == 80 << 30 and r["context"] == 4096, "gpu memory and context echoed")
plans = r["plans"]
check(len(plans) == 10, "5 weight formats x 2 KV types")
for p in plans:
    label = f"{p['weights_format']}/{p['kv_dtype']}"
    check(p["fits"], f"{label} fits 80 GiB")
    parts = p["weights_held_bytes"] + p["workspace_bytes"] + p["kv_bytes"] + p["headroom_bytes"]
    check(parts == r["gpu_memory"], f"{label}: weights + workspace + KV + headroom = GPU memory")
    check(p["kv_bytes"] == p["kv_pages"] * p["page_bytes"], f"{label}: KV bytes = pages x page")
    check(p["max_sequences"] == p["kv_pages"] // math.ceil(4096 / r["page_size"]),
          f"{label}: sequences = pages / pages per sequence")
    check(p["weight_bytes"] <= p["weights_held_bytes"] < p["weight_bytes"] + (2 << 20),
          f"{label}: weights rounded to the 2 MiB granule")
    check(r["headroom_reserved"] <= p["headroom_bytes"]
          < r["headroom_reserved"] + p["page_bytes"] + (4 << 20),
          f"{label}: headroom is --headroom plus the remainder")
for kv in ("fp16", "fp8_e4m3"):
    rows = sorted((p for p in plans if p["kv_dtype"] == kv), key=lambda p: -p["bits_per_weight"])
    for more, fewer in zip(rows, rows[1:]):
        check(more["kv_pages"] <= fewer["kv_pages"],
              f"{kv}: {more['weights_format']} ({more['bits_per_weight']:.2f} bits) leaves no "
              f"more pages than {fewer['weights_format']} ({fewer['bits_per_weight']:.2f})")
by = {(p["weights_format"], p["kv_dtype"]): p for p in plans}
check(by[("fp16", "fp16")]["bits_per_weight"] == 16 and by[("int4", "fp16")]["bits_per_weight"] == 4,
      "simulator formats cost their bits")
check(4 < by[("nvfp4", "fp16")]["bits_per_weight"] < 5, "nvfp4 costs 4.5 bits with its scales")
check(by[("fp16", "fp8_e4m3")]["kv_pages"] >= 2 * by[("fp16", "fp16")]["kv_pages"] - 1,
      "fp8 KV holds twice the pages")
check(by[("fp16", "fp16")]["kv_bytes_per_token"] == 131072, "128 KiB of KV per token")

# A config.json with Llama-3-8B's shape plans exactly as the preset.
config = os.path.join(work, "config.json")
with open(config, "w") as f:
    json.dump({"model_type": "llama", "hidden_size": 4096, "intermediate_size": 14336,
               "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 8,
               "vocab_size": 128256, "max_position_embeddings": 8192, "rms_norm_eps": 1e-5,
               "tie_word_embeddings": False, "_name_or_path": "meta-llama/Meta-Llama-3-8B"}, f)
c = run_json(program, "plan", "--model", config, "-w", "fp16,int4")
p = run_json(program, "plan", "--model", "llama-3-8b", "-w", "fp16,int4")
check(c["model"]["name"] == "meta-llama/Meta-Llama-3-8B", "name from _name_or_path")
check(c["model"]["num_parameters"] == 8030261248, "config.json gives 8,030,261,248 parameters")
check(c["plans"] == p["plans"], "config.json plans as the preset")
check(p["context"] == 4096 and p["gpu_memory"] == 80 << 30, "defaults: 4096 tokens, 80 GiB")
check(p["headroom_reserved"] == 1 << 30, "default --headroom: 1 GiB")
zero = run_json(program, "plan", "--model", "llama-3-8b", "-w", "fp16,int4", "--headroom", "0")
check(zero["headroom_reserved"] == 0, "--headroom 0 reserves nothing")
for z, d in zip(zero["plans"], p["plans"]):
    check(z["kv_bytes"] - d["kv_bytes"] >= (1 << 30) - z["page_bytes"],
          f"{z['weights_format']}: the default 1 GiB headroom costs its pages")
    check(d["headroom_bytes"] >= 1 << 30, f"{d['weights_format']}: default headroom counted")

# Too small: reported per format, not an error; units in the size.
small = run_json(program, "plan", "-g", "16GB", "-w", "fp16,int4")
fits = {q["weights_format"]: q["fits"] for q in small["plans"]}
check(small["gpu_memory"] == 16 * 10**9, "16GB is decimal")
check(fits == {"fp16": False, "int4": True}, "fp16 Llama-3-8B does not fit 16 GB, int4 does")
check("does not hold" in [q for q in small["plans"] if not q["fits"]][0]["reason"],
      "the reason says what does not fit")

# --headroom is kept out of the pages and counted in the headroom.
h = run_json(program, "plan", "--headroom", "2GiB", "-w", "fp16")["plans"][0]
base = p["plans"][0]
check(h["headroom_bytes"] >= 2 << 30, "--headroom 2GiB counted in the headroom")
check(h["kv_pages"] < base["kv_pages"], "--headroom leaves fewer pages")
check(h["weights_held_bytes"] + h["workspace_bytes"] + h["kv_bytes"] + h["headroom_bytes"]
      == 80 << 30, "parts still add up with --headroom")

# Text output.
code, out, err = run(program, "plan", "-w", "fp16,int4", "-k", "fp8")
check(code == 0 and "sequences" in out and "int4" in out, "text plan prints the table")
check(err == "", "nothing on stderr")

finish("plan")
