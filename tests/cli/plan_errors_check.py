"""Bad usage exits 2 and bad files exit 1, each with exactly one line on stderr that says what
is wrong and where; nothing on stdout. Malformed config.json files never crash the program."""
import json
import os
import sys

from report_util import check, finish, fresh_dir, run

program, work = sys.argv[1], fresh_dir(sys.argv[2])


def expect(code, args, *needles):
    got, out, err = run(program, *args, timeout=60)
    label = " ".join(args) or "(no arguments)"
    check(got == code, f"'{label}' exits {code} (got {got}; stderr {err.strip()!r})")
    lines = err.strip().splitlines()
    check(len(lines) == 1, f"'{label}': one line on stderr (got {len(lines)}: {err!r})")
    check(out == "", f"'{label}': nothing on stdout")
    for needle in needles:
        check(needle in err, f"'{label}': stderr names {needle!r} ({err.strip()!r})")


# Bad usage: 2.
expect(2, [])
expect(2, ["frobnicate"], "frobnicate", "report")
expect(2, ["plan", "--no-such-option"], "--no-such-option")
expect(2, ["plan", "--gpu-memory", "80XB"], "80XB")
expect(2, ["plan", "--gpu-memory", "lots"], "lots")
expect(2, ["plan", "--model", "gpt-9"], "gpt-9", "llama-3-8b")
expect(2, ["plan", "--weights-format", "fp3"], "fp3", "int4_g64")
# The known names are listed once each, though int8 is both a simulator and a quantization format.
_, _, err = run(program, "plan", "--weights-format", "fp3", timeout=60)
known = [name.strip() for name in err.split("known:", 1)[-1].split(",")]
check(len(known) > 10 and len(known) == len(set(known)), f"known formats listed once: {known}")
expect(2, ["plan", "--kv-dtype", "fp4"], "fp4")
expect(2, ["plan", "--headroom", "90GiB"], "--headroom")
expect(2, ["plan", "--context", "100000"], "100000")
expect(2, ["plan", "--context", "many"], "many")
expect(2, ["plan", "--context", "0"], "--context")
expect(2, ["plan", "--max-num-seqs", "0"], "--max-num-seqs")
expect(2, ["plan", "--max-batched-tokens", "0"], "--max-batched-tokens")
expect(2, ["plan", "--page-size", "0"], "--page-size")
expect(2, ["report", "--workload", "chat"], "chat", "sharegpt")
expect(2, ["report", "--gpu-memory", "4GiB"], "does not hold")
# Library messages read as sentences about the input: no source path, no "frugal::sim:".
_, _, err = run(program, "report", "--gpu-memory", "4GiB", timeout=60)
check(".cpp" not in err and "frugal::" not in err, f"no source location or namespace: {err!r}")
expect(2, ["report", "--max-len", "9000"], "9000")

# Bad files: 1, naming the file and the problem.
def config(name, text):
    path = os.path.join(work, name)
    with open(path, "w") as f:
        f.write(text)
    return path


good = ('"model_type": "llama", "hidden_size": 4096, "intermediate_size": 14336, "num_attention_heads": 32, '
        '"num_hidden_layers": 32, "vocab_size": 32000, "max_position_embeddings": 4096')
cases = [
    ("bad_json.json", "{" + good + ",\n", ["bad_json.json", "malformed JSON", "line"]),
    ("missing.json", "{" + good.replace('"vocab_size": 32000, ', "") + "}",
     ["missing.json", "missing field", "vocab_size"]),
    ("wrong_type.json", "{" + good.replace("4096,", '"4096",', 1) + "}",
     ["wrong_type.json", "hidden_size", "integer"]),
    ("negative.json", "{" + good.replace('"num_hidden_layers": 32', '"num_hidden_layers": -3') + "}",
     ["negative.json", "num_hidden_layers", "positive"]),
    ("float.json", "{" + good.replace('"vocab_size": 32000', '"vocab_size": 3.5') + "}",
     ["float.json", "vocab_size"]),
    ("array.json", "[1, 2, 3]", ["array.json", "object"]),
    ("empty.json", "", ["empty.json", "malformed JSON"]),
    ("heads.json", "{" + good + ', "num_key_value_heads": 5}', ["heads.json", "num_key_value_heads"]),
]
for name, text, needles in cases:
    path = config(name, text)
    expect(1, ["plan", "--model", path], *needles)
    expect(1, ["report", "--model", path], *needles)
expect(1, ["plan", "--model", os.path.join(work, "absent", "config.json")], "absent", "no such file")
expect(1, ["plan", "--model", work], "folder")
expect(1, ["report", "--weights", os.path.join(work, "absent.safetensors")], "absent.safetensors")
garbage = config("garbage.safetensors", "not a safetensors file at all")
expect(1, ["report", "--weights", garbage], "garbage.safetensors")

# The pool's 1 TiB block limit is named, not blamed on the upstream: a preallocated 2 TiB cap is
# one chunk beyond it (a growing pool takes the cap in pieces).
expect(2, ["replay", "--synthetic", "80GiB", "--cap", "2TiB", "--preallocate"], "--cap 2TiB", "1 TiB",
       "largest chunk")
expect(2, ["replay", "--synthetic", "80GiB", "--preallocate"], "--preallocate", "--cap")

# Sizes: binary (80GiB, 80Gi, 80G), decimal (80GB), fractions and exponents; other units are
# refused with the list of units.
for text, size in (("80Gi", 80 << 30), ("80G", 80 << 30), ("80GiB", 80 << 30), ("81920Mi", 80 << 30),
                   ("0.5TiB", 1 << 39), ("8e10", 8 * 10**10), ("80GB", 80 * 10**9)):
    code, out, err = run(program, "plan", "--gpu-memory", text, "--json", timeout=60)
    check(code == 0 and json.loads(out)["gpu_memory"] == size, f"--gpu-memory {text} is {size} bytes")
expect(2, ["plan", "--gpu-memory", "80 furlongs"], "furlongs", "GiB/Gi/G", "GB")
expect(2, ["plan", "--gpu-memory", "1e"], "1e", "exponent")

# A format whose blocks do not divide a matrix marks its rows "does not fit", the rest is planned.
odd = config("odd.json", '{"model_type": "llama", "hidden_size": 96, "intermediate_size": 256, '
             '"num_attention_heads": 4, "num_hidden_layers": 2, "vocab_size": 1000, '
             '"max_position_embeddings": 4096}')
code, out, err = run(program, "plan", "--model", odd, "-w", "fp16,int4_g64", "--json", timeout=60)
check(code == 0, f"an undividable format does not abort the plan (exit {code}, {err.strip()!r})")
if code == 0:
    rows = {p["weights_format"]: p for p in json.loads(out)["plans"]}
    check(rows["fp16"]["fits"], "fp16 is still planned")
    check(not rows["int4_g64"]["fits"] and "64" in rows["int4_g64"]["reason"],
          f"int4_g64 does not fit, with the reason ({rows['int4_g64'].get('reason')!r})")

finish("errors")
