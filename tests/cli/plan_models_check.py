"""`frugal plan` and `frugal report` size the models people run: mixture-of-experts configs count
every expert (and report the active parameters), sliding-window layers hold at most their window,
tied embeddings follow the model type's default, head_dim sizes q and o, and configs of types
frugal does not model (encoders) or with expert fields it does not read are refused."""
import json
import os
import sys

from report_util import check, finish, fresh_dir, run, run_json

program, work = sys.argv[1], fresh_dir(sys.argv[2])


def config(name, fields):
    path = os.path.join(work, name + "-checkpoint", "config.json")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(fields, f)
    return path


def near(got, published):
    return abs(got - published) <= 0.005 * published


# Published config.json files (the fields that matter).
mixtral = {"architectures": ["MixtralForCausalLM"], "model_type": "mixtral",
           "hidden_size": 4096, "intermediate_size": 14336, "max_position_embeddings": 32768,
           "num_attention_heads": 32, "num_experts_per_tok": 2, "num_hidden_layers": 32,
           "num_key_value_heads": 8, "num_local_experts": 8, "router_aux_loss_coef": 0.02,
           "sliding_window": None, "tie_word_embeddings": False, "vocab_size": 32000}
mistral = {"architectures": ["MistralForCausalLM"], "model_type": "mistral", "hidden_size": 4096,
           "intermediate_size": 14336, "max_position_embeddings": 32768,
           "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 8,
           "sliding_window": 4096, "tie_word_embeddings": False, "vocab_size": 32000}
gemma2 = {"architectures": ["Gemma2ForCausalLM"], "model_type": "gemma2", "head_dim": 256,
          "hidden_size": 3584, "intermediate_size": 14336, "max_position_embeddings": 8192,
          "num_attention_heads": 16, "num_hidden_layers": 42, "num_key_value_heads": 8,
          "sliding_window": 4096, "vocab_size": 256000}
minilm = {"_name_or_path": "nreimers/MiniLM-L6-H384-uncased", "architectures": ["BertModel"],
          "model_type": "bert", "hidden_size": 384, "intermediate_size": 1536,
          "max_position_embeddings": 512, "num_attention_heads": 12, "num_hidden_layers": 6,
          "type_vocab_size": 2, "vocab_size": 30522}

# Mixtral-8x7B: 46.7 B parameters (12.9 B active), ~87 GiB in bf16: does not fit 80 GiB.
m = run_json(program, "plan", "-m", config("mixtral", mixtral), "-w", "bf16,fp8")
check(near(m["model"]["num_parameters"], 46.7e9),
      f"Mixtral-8x7B has 46.7 B parameters (got {m['model']['num_parameters']})")
check(near(m["model"]["active_parameters"], 12.9e9), "Mixtral-8x7B: 12.9 B active per token")
check(m["model"]["num_experts"] == 8 and m["model"]["experts_per_token"] == 2, "8 experts, 2 active")
check(m["model"]["name"] == "mixtral", "no _name_or_path: named by model_type, not the folder")
rows = {p["weights_format"]: p for p in m["plans"]}
check(rows["bf16"]["weight_bytes"] == 2 * m["model"]["num_parameters"], "bf16: 2 bytes each")
check(86 << 30 < rows["bf16"]["weight_bytes"] < 88 << 30, "bf16 weights are about 87 GiB")
check(not rows["bf16"]["fits"] and rows["bf16"]["max_sequences"] == 0, "bf16 does not fit 80 GiB")
check(rows["fp8"]["fits"], "fp8 Mixtral fits 80 GiB")
preset = run_json(program, "plan", "-m", "mixtral-8x7b", "-w", "bf16,fp8")
strip = lambda plans: [{k: v for k, v in p.items() if k != "reason"} for p in plans]
check(strip(preset["plans"]) == strip(m["plans"]), "the config.json plans as the mixtral-8x7b preset")
check("bf16 weights" in rows["bf16"]["reason"] and "fp16" not in rows["bf16"]["reason"],
      f"a bf16 row says bf16 ({rows['bf16']['reason']!r})")
# A quantization format covers every expert's matrices: about 1 byte per parameter.
q = run_json(program, "plan", "-m", "mixtral-8x7b", "-w", "int8_channel")["plans"][0]
check(8.0 <= q["bits_per_weight"] < 8.1, f"int8_channel: every expert at 8 bits ({q['bits_per_weight']})")

# Mistral-7B-v0.1 at 32,768 tokens: each layer holds its 4096-token window plus a page, so a
# sequence costs 32 x (256 + 1) pages of 16 x 4096 bytes, not 32,768 tokens x 128 KiB.
w = run_json(program, "plan", "-m", config("mistral", mistral), "-c", "32768")
p = w["plans"][0]
per_sequence = 32 * 4112 * 2 * 8 * 128 * 2
check(w["model"]["sliding_window"] == 4096 and w["model"]["window_layers"] == 32, "window read")
check(p["kv_bytes_per_token"] == 131072, "128 KiB per token inside the window")
check(p["kv_bytes_per_sequence"] == per_sequence, "a 32k sequence holds 4112 tokens per layer")
check(p["max_sequences"] == p["kv_bytes"] // per_sequence,
      f"sequences = KV bytes / bytes per sequence ({p['max_sequences']})")
check(p["max_sequences"] > 100, "more than 100 32k-token sequences fit, not 16")
short = run_json(program, "plan", "-m", "mistral-7b", "-c", "4096")["plans"][0]
check(short["max_sequences"] == short["kv_pages"] // 256, "below the window: every layer, every token")

# Gemma-2-9B: 9.24 B parameters (embeddings tied by Gemma2Config's default), 21 global and 21
# windowed layers; head_dim 256 sizes q (16 x 256 = 4096 > hidden 3584).
g = run_json(program, "plan", "-m", config("gemma2", gemma2), "-c", "8192")
check(near(g["model"]["num_parameters"], 9.24e9),
      f"Gemma-2-9B has 9.24 B parameters (got {g['model']['num_parameters']})")
check(g["model"]["tied_embeddings"] is True, "gemma2 ties its embeddings by default")
check(g["model"]["head_dim"] == 256 and g["model"]["window_layers"] == 21, "head_dim, 21 windowed")
check(g["plans"][0]["kv_bytes_per_sequence"] == (21 * 8192 + 21 * 4112) * 8192,
      "Gemma-2 at 8192: global layers hold 8192 tokens, windowed ones 4112")
untied = dict(gemma2, tie_word_embeddings=False)
u = run_json(program, "plan", "-m", config("gemma2_untied", untied))
check(u["model"]["num_parameters"] == g["model"]["num_parameters"] + 256000 * 3584,
      "an explicit tie_word_embeddings: false is honoured")

# Presets against published counts.
for name, published in (("mixtral-8x7b", 46.7e9), ("qwen2.5-72b", 72.7e9), ("gemma-2-9b", 9.24e9),
                        ("mistral-7b", 7.24e9), ("deepseek-v2-lite", 15.7e9)):
    got = run_json(program, "plan", "-m", name, "-g", "1TiB")["model"]["num_parameters"]
    check(near(got, published), f"{name}: {got} within 0.5% of {published:.3g}")
ds = run_json(program, "plan", "-m", "deepseek-v2-lite")["plans"][0]
check(ds["kv_bytes_per_token"] == 27 * (512 + 64) * 2, "DeepSeek-V2-Lite caches the MLA latent")

# Refused: an encoder, a config with experts its type does not define.
def refused(path, *needles):
    code, out, err = run(program, "plan", "-m", path)
    check(code == 1 and out == "", f"{path}: refused with exit 1 (got {code})")
    for needle in needles:
        check(needle in err, f"{path}: the error names {needle!r} ({err.strip()!r})")

refused(config("minilm", minilm), "bert", "llama", "mixtral", "not a decoder")
refused(config("llama_moe", dict(mistral, model_type="llama", num_local_experts=8,
                                 num_experts_per_tok=2)),
        "num_local_experts", "num_experts_per_tok", "dense")
refused(config("untyped", {k: v for k, v in mistral.items() if k != "model_type"}), "model_type")

# The report's KV section is per layer too: static batching reserves Mistral's window, not
# max_len tokens in every layer.
r = run_json(program, "report", "-m", "mistral-7b", "--max-len", "8192", "--requests", "50",
             "--trace-steps", "40", "--leak-steps", "5", "--sample-rows", "2")
m = run_json(program, "report", "-m", "mixtral-8x7b", "--gpu-memory", "141GiB", "--requests", "20",
             "--trace-steps", "40", "--leak-steps", "5", "--sample-rows", "2")
check(m["scenario"]["parameters"] == 46702792704 and
      near(m["scenario"]["active_parameters"], 12.9e9), "report: Mixtral's total and active counts")
check(m["weights"]["bytes_before"] > 86 << 30, "report: every expert's weights are planned")
kv = r["kv"]
check(kv["kv_bytes_per_sequence"] == 32 * 4097 * 131072 // 32, "static: 4097 tokens per layer")
check(kv["static"]["reserved_bytes"] == kv["static"]["sequences"] * kv["kv_bytes_per_sequence"],
      "the static reservation is sequences x per-layer bytes per sequence")
check(kv["paged_upper_bound"] is True, "beyond the window the paged figures are flagged as an upper bound")
code, out, _ = run(program, "report", "-m", "mistral-7b", "--max-len", "8192", "--requests", "50",
                   "--trace-steps", "40", "--leak-steps", "5", "--sample-rows", "2")
check(code == 0 and "attend to a window of 4096 tokens" in out and "upper bound" in out,
      "the text says which layers have a window and what the paged figures assume")

finish("plan_models")
