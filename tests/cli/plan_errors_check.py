"""Bad usage exits 2 and bad files exit 1, each with exactly one line on stderr that says what
is wrong and where; nothing on stdout. Malformed config.json files never crash the program."""
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
expect(2, ["report", "--workload", "chat"], "chat", "sharegpt")
expect(2, ["report", "--gpu-memory", "4GiB"], "does not hold")
expect(2, ["report", "--max-len", "9000"], "9000")

# Bad files: 1, naming the file and the problem.
def config(name, text):
    path = os.path.join(work, name)
    with open(path, "w") as f:
        f.write(text)
    return path


good = ('"hidden_size": 4096, "intermediate_size": 14336, "num_attention_heads": 32, '
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

finish("errors")
