#!/usr/bin/env python3
"""embed_serve refuses bad input with a clear message and exit status 1: invalid UTF-8, a
missing or malformed tokenizer.json or config.json, a config that is not BERT, a missing
model.safetensors, an unknown format. Needs no real model: the folders are written here.
Usage: check_errors.py EMBED_SERVE
"""
import json
import pathlib
import subprocess
import sys
import tempfile

embed_serve = sys.argv[1]

TOKENIZER = {
    "added_tokens": [{"id": i, "content": t, "special": True, "normalized": False}
                     for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]"])],
    "normalizer": {"type": "BertNormalizer", "lowercase": True},
    "pre_tokenizer": {"type": "BertPreTokenizer"},
    "model": {"type": "WordPiece", "unk_token": "[UNK]",
              "vocab": {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, "hello": 4}},
}
CONFIG = {"model_type": "bert", "hidden_act": "gelu", "vocab_size": 5, "hidden_size": 8,
          "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 16,
          "max_position_embeddings": 16, "type_vocab_size": 2}

failures = []


def case(name, files, stdin, expect):
    with tempfile.TemporaryDirectory() as d:
        for file, content in files.items():
            (pathlib.Path(d) / file).write_bytes(
                content if isinstance(content, bytes) else json.dumps(content).encode())
        run = subprocess.run([embed_serve, "--model", d], input=stdin, capture_output=True,
                             check=False)
    err = run.stderr.decode(errors="replace")
    if run.returncode != 1 or expect not in err:
        failures.append(f"{name}: exit {run.returncode}, stderr {err!r}; wanted 1 and {expect!r}")
    else:
        print(f"ok: {name}: {err.strip()}")


good = {"tokenizer.json": TOKENIZER, "config.json": CONFIG}
case("invalid UTF-8", good, b"hello\nbad \xff byte\n", "input line 2: invalid UTF-8 at byte 4")
case("overlong UTF-8", good, b"\xc0\xaf\n", "invalid UTF-8 at byte 0")
case("missing tokenizer.json", {"config.json": CONFIG}, b"hello\n", "cannot open the tokenizer")
case("malformed tokenizer.json", {**good, "tokenizer.json": b'{"model": {'}, b"hello\n",
     "tokenizer.json: not valid JSON")
case("tokenizer.json not WordPiece", {**good, "tokenizer.json": {**TOKENIZER, "model": {
    "type": "BPE", "vocab": {}}}}, b"hello\n", "not WordPiece")
case("missing config.json", {"tokenizer.json": TOKENIZER}, b"hello\n",
     "config.json: cannot open the model config")
case("malformed config.json", {**good, "config.json": b"{\"model_type\": \"bert\",,}"}, b"hello\n",
     "config.json: not valid JSON")
case("config not BERT", {**good, "config.json": {**CONFIG, "model_type": "llama"}}, b"hello\n",
     "model_type is \"llama\", not \"bert\"")
case("config without sizes", {**good, "config.json": {"model_type": "bert"}}, b"hello\n",
     "vocab_size is missing")
case("heads do not divide hidden", {**good, "config.json": {**CONFIG, "num_attention_heads": 3}},
     b"hello\n", "not a multiple of num_attention_heads")
case("missing model.safetensors", good, b"hello\n", "model.safetensors")
case("truncated model.safetensors", {**good, "model.safetensors": b"\x08\x00"}, b"hello\n",
     "model.safetensors")

with tempfile.TemporaryDirectory() as d:
    (pathlib.Path(d) / "tokenizer.json").write_text(json.dumps(TOKENIZER))
    (pathlib.Path(d) / "config.json").write_text(json.dumps(CONFIG))
    run = subprocess.run([embed_serve, "--model", d, "--format", "int3"], input=b"hello\n",
                         capture_output=True, check=False)
    if run.returncode != 1 or b"int3" not in run.stderr:
        failures.append(f"unknown format: exit {run.returncode}, {run.stderr!r}")

for f in failures:
    print("FAIL:", f)
sys.exit(1 if failures else 0)
