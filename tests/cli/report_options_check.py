"""`frugal report` with options on a small scenario: a model from a config.json, another GPU and
workload, a safetensors checkpoint (--weights); and the text output without --json."""
import json
import os
import struct
import sys

from report_util import check, finish, fresh_dir, run, run_json

program, work = sys.argv[1], fresh_dir(sys.argv[2])
small = ["--requests", "150", "--trace-steps", "80", "--leak-steps", "10", "--sample-rows", "4"]

# Mistral-7B's published config.json (the fields frugal reads).
config = os.path.join(work, "mistral-checkpoint", "config.json")
os.makedirs(os.path.dirname(config), exist_ok=True)
with open(config, "w") as f:
    json.dump({"architectures": ["MistralForCausalLM"], "model_type": "mistral",
               "hidden_size": 4096, "intermediate_size": 14336, "num_attention_heads": 32,
               "num_hidden_layers": 32, "num_key_value_heads": 8, "vocab_size": 32000,
               "max_position_embeddings": 32768, "tie_word_embeddings": False,
               "torch_dtype": "bfloat16"}, f)

r = run_json(program, "report", "--model", config, "--gpu-memory", "40GiB", "--workload",
             "alpaca", *small)
s = r["scenario"]
check(s["model"] == "mistral", "no _name_or_path: named by its model_type, not its folder")
check(s["parameters"] == 7241732096, "config.json gives Mistral-7B's parameter count")
check(s["gpu_memory"] == 40 << 30, "--gpu-memory 40GiB")
check(s["workload"] == "alpaca" and s["requests"] == 150, "--workload, --requests")
check(r["fragmentation"]["steps"] == 80 and r["leaks"]["steps"] == 10, "--trace-steps, --leak-steps")
check(r["kv"]["paged"]["max_concurrent"] >= r["kv"]["static"]["max_concurrent"], "paged >= static")
check(r["weights"]["bytes_after"] < r["weights"]["bytes_before"], "weights shrink")

# A small checkpoint: two F32 matrices (Gaussian-ish, deterministic) and a 1-D norm.
def tensor_bytes(rows, cols, seed):
    values, x = [], seed
    for _ in range(rows * cols):
        x = (x * 1103515245 + 12345) % 2**31
        values.append((x / 2**31 - 0.5) * 0.1)
    return struct.pack(f"<{len(values)}f", *values)

tensors = [("model.layers.0.mlp.down_proj.weight", [64, 256], tensor_bytes(64, 256, 1)),
           ("model.layers.0.self_attn.q_proj.weight", [32, 128], tensor_bytes(32, 128, 2)),
           ("model.norm.weight", [128], struct.pack("<128f", *([1.0] * 128)))]
# An integer tensor is not a weight: kept as stored, never shown in a 4-bit format.
position_ids = ("position_ids", [1, 64], struct.pack("<64q", *range(64)))
header, offset, data = {}, 0, b""
for name, shape, raw in tensors + [position_ids]:
    dtype = "I64" if name == "position_ids" else "F32"
    header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(raw)]}
    offset += len(raw)
    data += raw
text = json.dumps(header).encode()
checkpoint = os.path.join(work, "tiny.safetensors")
with open(checkpoint, "wb") as f:
    f.write(struct.pack("<Q", len(text)) + text + data)

r = run_json(program, "report", "--weights", checkpoint, *small)
w = r["weights"]
check(w["synthetic"] is False and w["source"] == checkpoint, "--weights reads the checkpoint")
# One rule with frugal quant: every F32/F16/BF16 tensor is planned (the 1-D norm as one row of
# 128), other types are kept as stored.
check(sorted(t["name"] for t in w["tensors"]) == sorted(n for n, _, _ in tensors),
      "the checkpoint's float tensors are planned, the 1-D norm as frugal quant plans it")
check(w["kept_tensors"] == [{"name": "position_ids", "dtype": "I64", "kept": "dtype I64",
                             "bytes": 512}], f"the I64 tensor is kept: {w['kept_tensors']}")
check(w["kept_bytes"] == 512, "its 512 bytes are kept")
check(w["bytes_before"] == 2 * (64 * 256 + 32 * 128 + 128) + 512,
      "FP16 bytes of the float tensors, stored bytes of the rest")
check(w["min_sqnr_db"] == 30.0, "the default bound is frugal quant's: 30 dB")
q = run_json(program, "quant", checkpoint)
by_name = {t["name"]: t for t in q["tensors"]}
check(by_name["position_ids"]["kept"] == "dtype I64", "quant keeps it for the same reason")
check(by_name["model.norm.weight"]["kept"] is None or
      by_name["model.norm.weight"]["kept"] != "dtype F32", "quant evaluates the 1-D norm too")
check(q["bound"]["min_sqnr_db"] == w["min_sqnr_db"], "report and quant share the default bound")
check(w["bytes_after"] <= w["bytes_before"], "planned checkpoint no larger")

# Text output: every section and the totals, nothing on stderr when not a terminal.
code, out, err = run(program, "report", *small)
check(code == 0, f"text report exits 0 (got {code}: {err.strip()})")
for heading in ("1. Weights", "2. Fragmentation", "3. KV cache", "4. Batching", "5. Leaks",
                "Total:", "Concurrency:"):
    check(heading in out, f"text report has '{heading}'")
check(err == "", "no progress text when stderr is not a terminal")

# Bounds: '', nan, inf and negative numbers are bad usage in every command that takes one.
for command, option in (("report", "--min-sqnr"), ("quant", "--bound")):
    for value in ("", "nan", "-5", "inf"):
        args = [command, option, value] + ([checkpoint] if command == "quant" else [])
        code, out, err = run(program, *args)
        check(code == 2 and option in err, f"{command} {option} {value!r}: bad usage (exit {code}, {err.strip()!r})")

finish("report options")
