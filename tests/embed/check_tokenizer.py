#!/usr/bin/env python3
"""Checks embed_serve's WordPiece tokenizer against Hugging Face's `tokenizers` (the reference)
on the test sentences plus a few hundred generated ones: punctuation, accents, CJK, emoji,
numbers, very long words, empty lines, control characters, inputs long enough to be truncated.
Usage: check_tokenizer.py EMBED_SERVE MODEL_DIR SENTENCES
"""
import json
import random
import subprocess
import sys

from tokenizers import Tokenizer

embed_serve, model_dir, sentences_file = sys.argv[1:4]
MAX_LENGTH = 256  # all-MiniLM-L6-v2's max_seq_length (sentence_bert_config.json)

with open(sentences_file, encoding="utf-8") as f:
    sentences = f.read().split("\n")[:-1]

rng = random.Random(18)
pieces = [
    "hello", "World", "embedding", "GPU", "memory", "naïve", "Café", "résumé", "Ångström",
    "façade", "Übermensch", "São", "Paulo", "El", "Niño", "Dvořák", "Łódź", "ﬁnance", "İstanbul",
    "Ωmega", "ΣΊΣΥΦΟΣ", "москва", "Привет", "שלום", "مرحبا", "नमस्ते", "ภาษาไทย", "한국어",
    "東京", "北京大学", "日本語のテキスト", "漢字", "😀", "🚀", "👍🏽", "🇫🇷", "❤️", "3.14159",
    "1,000,000", "42", "2024-06-01", "$19.99", "€5", "100%", "#hashtag", "@user", "e-mail",
    "don't", "it's", "co-operate", "U.S.A.", "(parenthesised)", "[bracketed]", "{braced}",
    "<tag>", "a/b", "x_y", "\"quoted\"", "'single'", "…", "—", "–", "¿Qué?", "¡Hola!", "«guillemets»",
    "supercalifragilisticexpialidocious", "pneumonoultramicroscopicsilicovolcanoconiosis",
    "x" * 99, "y" * 100, "z" * 101, "ab" * 80, "tab\there", "non\u00a0breaking", "zero\u200bwidth",
    "soft\u00adhyphen", "ctrl\u0007bell", "[MASK]", "[CLS]", "[UNK]", "[mask]", "C++", "#include",
    "ALLCAPS", "MiXeD", "ǅ", "ﬀ", "ß", "ẞ", "ǰ", "\u0301accent", "e\u0301", "Å", "Ⅻ", "①", "½",
    "²", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "\U00020000", "\uf900", "\u3000ideographic", "\r\n", "end.",
]
generated = []
for i in range(300):
    n = rng.choice([0, 1, 2, 3, 5, 8, 13, 21])
    generated.append(" ".join(rng.choice(pieces) for _ in range(n)))
for i in range(30):
    words = [rng.choice(pieces) for _ in range(rng.randint(300, 420))]
    generated.append(" ".join(words))  # 300+ words: truncated at 256 tokens
generated += ["", "   ", "\t", "a", "A.", "..." * 50, " ".join(["word"] * 300)]
lines = [s for s in sentences + generated if "\n" not in s and "\r" not in s]
lines += [s.replace("\r\n", " ") for s in generated if "\r\n" in s]

reference = Tokenizer.from_file(f"{model_dir}/tokenizer.json")
reference.no_padding()
reference.enable_truncation(MAX_LENGTH)
expected = [reference.encode(s).ids for s in lines]

run = subprocess.run([embed_serve, "--model", model_dir, "--tokenize"],
                     input="\n".join(lines) + "\n", capture_output=True, text=True,
                     encoding="utf-8", check=False)
if run.returncode != 0:
    sys.exit(f"embed_serve --tokenize failed ({run.returncode}): {run.stderr}")
got = [json.loads(line) for line in run.stdout.split("\n") if line]
if len(got) != len(lines):
    sys.exit(f"{len(lines)} lines in, {len(got)} token lists out")
bad = [(i, lines[i], expected[i], got[i]) for i in range(len(lines)) if expected[i] != got[i]]
for i, text, want, have in bad[:10]:
    print(f"line {i + 1}: {text[:80]!r}\n  tokenizers: {want[:40]}\n  embed_serve: {have[:40]}")
truncated = sum(len(e) == MAX_LENGTH for e in expected)
print(f"{len(lines) - len(bad)} of {len(lines)} lines tokenized as tokenizers does "
      f"({truncated} truncated at {MAX_LENGTH})")
if truncated == 0:
    sys.exit("no input reached the truncation limit: the test lost its long inputs")
sys.exit(1 if bad else 0)
