#!/usr/bin/env python3
"""End-to-end checks of `frugal replay` and `frugal quant`.

Usage: replay_quant_check.py FRUGAL WORK_DIR CASE
Each case runs the program, parses its --json output and checks the figures, the exit status
(0 success, 1 failure, 2 bad usage) and that errors are one line on stderr naming the place.
"""
import json
import math
import os
import random
import struct
import subprocess
import sys

FRUGAL, WORK, CASE = sys.argv[1], sys.argv[2], sys.argv[3]
os.makedirs(WORK, exist_ok=True)
failures = []

HEADER = "Thread,Time,Action,Pointer,Size,Stream\n"


def check(condition, what):
    if not condition:
        failures.append(what)
        print("FAILED: " + what)


def run(*args):
    p = subprocess.run([FRUGAL, *args], capture_output=True, text=True, timeout=240)
    return p.returncode, p.stdout, p.stderr


def run_json(*args):
    code, out, err = run(*args, "--json")
    check(code == 0, f"{args}: exit {code}, stderr {err!r}")
    try:
        return json.loads(out)
    except json.JSONDecodeError as e:
        check(False, f"{args}: stdout is not JSON ({e}): {out[:200]!r}")
        return {}


def expect_error(args, code, *parts):
    got, out, err = run(*args)
    check(got == code, f"{args}: exit {got}, expected {code}; stderr {err!r}")
    lines = err.strip().splitlines()
    check(len(lines) == 1, f"{args}: stderr should be one line: {err!r}")
    for part in parts:
        check(part in err, f"{args}: stderr should mention {part!r}: {err!r}")
    return err


def write(name, text, mode="w"):
    path = os.path.join(WORK, name)
    with open(path, mode) as f:
        f.write(text)
    return path


MIB = 1 << 20
SMALL_TRACE = HEADER + "".join([
    "1,1634567890.000001,allocate,0x7f0000000000,1048576,0x0\n",
    "1,1634567890.000002,allocate,0x7f0000100000,2097152,0x0\n",
    "1,1634567890.000003,free,0x7f0000000000,1048576,0x0\n",
    "1,1634567890.000004,allocate failure,0x0,1099511627776,0x0\n",
    "1,1634567890.000005,free,0x7f00deadbeef,64,0x0\n",
    "1,1634567890.000006,allocate,0x7f0000300000,524288,0x0\n",
])


def case_replay_json():
    path = write("small.csv", SMALL_TRACE)
    r = run_json("replay", path)
    check(r.get("allocator") == "pool", f"allocator: {r.get('allocator')}")
    check(r.get("cap_bytes") is None, "no cap: cap_bytes null")
    check(r.get("events") == 5, f"events: {r.get('events')}")
    check(r.get("allocations") == 3, f"allocations: {r.get('allocations')}")
    check(r.get("frees") == 1, f"frees: {r.get('frees')}")
    check(r.get("peak_bytes_in_use") == 3 * MIB, f"peak in use: {r.get('peak_bytes_in_use')}")
    check(r.get("peak_bytes_reserved", 0) >= 3 * MIB, "peak reserved >= peak in use")
    check(r.get("failed_allocations") == 0, "no failures without a cap")
    check(r.get("live_bytes_at_end") == 2 * MIB + MIB // 2, f"live: {r.get('live_bytes_at_end')}")
    check(r.get("live_allocations_at_end") == 2, "two live allocations")
    check(r.get("logged_failures") == 1, "one 'allocate failure' row")
    # The free of a pointer never allocated is a counted warning naming its line, not an error.
    check(r.get("warnings") == 1 and r.get("unknown_frees") == 1, f"warnings: {r.get('warnings')}")
    msgs = r.get("warning_messages", [])
    check(len(msgs) == 1 and "small.csv line 6" in msgs[0] and "0x7f00deadbeef" in msgs[0],
          f"warning message: {msgs}")
    check(r.get("events_per_second", 0) > 0, "events per second")
    check(len(r.get("timeline", [])) > 0, "a timeline")
    code, out, err = run("replay", path)
    check(code == 0 and "peak reserved" in out and "warning:" in out, f"text output: {out!r}")


def case_replay_allocators():
    path = write("small.csv", SMALL_TRACE)
    for allocator in ["pool", "arena", "first-fit", "malloc"]:
        cap = 13 * MIB // 4
        r = run_json("replay", path, "--allocator", allocator, "--cap", "3.25MiB")
        check(r.get("allocator") == allocator, f"{allocator}: name {r.get('allocator')}")
        check(r.get("cap_bytes") == cap, f"{allocator}: cap {r.get('cap_bytes')}")
        check(r.get("peak_bytes_reserved", 1 << 40) <= cap,
              f"{allocator}: reserved {r.get('peak_bytes_reserved')} within the cap")
        if allocator == "arena":
            # A bump allocator reclaims only the most recent block: 1 + 2 + 0.5 MiB > 3.25 MiB.
            check(r.get("failed_allocations", 0) >= 1, f"arena failures {r.get('failed_allocations')}")
        else:
            check(r.get("failed_allocations") == 0, f"{allocator}: failures {r}")
    r = run_json("replay", path, "--allocator", "first-fit", "--cap", "2MiB")
    check(r.get("failed_allocations") == 1 and r.get("failed_bytes") == 2 * MIB,
          f"first-fit under 2 MiB: {r.get('failed_allocations')} failures")
    code, out, err = run("replay", path, "--allocator", "cuda", "--json")
    if code == 0:
        check(json.loads(out).get("allocator") == "cuda", "cuda replay output")
    else:
        check(code == 1 and "cuda" in err and len(err.strip().splitlines()) == 1,
              f"cuda without CUDA or a device: exit {code}, {err!r}")


def case_replay_synthetic():
    svg = os.path.join(WORK, "timeline.svg")
    saved = os.path.join(WORK, "serving.csv")
    naive = run_json("replay", "--synthetic", "24GiB", "--allocator", "first-fit", "--cap",
                     "24GiB", "--timeline", svg, "--write-trace", saved)
    check(naive.get("events", 0) > 100000, f"synthetic events: {naive.get('events')}")
    check(naive.get("peak_bytes_in_use", 1 << 60) <= 24 * (1 << 30) * 0.9 + 1,
          "the synthetic engine stays under 90 % in use")
    check(naive.get("failed_allocations", 0) > 0, "first-fit fragments at the budget")
    pool = run_json("replay", saved, "--allocator", "pool", "--cap", "24GiB")
    check(pool.get("events") == naive.get("events"), "the saved trace replays the same events")
    check(pool.get("failed_allocations", 1 << 30) < naive.get("failed_allocations", 0),
          f"pool fails less: {pool.get('failed_allocations')} vs {naive.get('failed_allocations')}")
    check(pool.get("warnings") == 0, "the synthetic trace is consistent")
    with open(svg) as f:
        text = f.read()
    check(text.startswith("<svg") and text.count("<polyline") == 2 and "cap 24.0" in text,
          "timeline SVG with two lines and the cap")


def case_replay_bad_input():
    ok_row = "1,1.0,allocate,0x10,256,0x0\n"
    p = write("header.csv", "Thread,Time,Action,Pointer,Size\n" + ok_row)
    expect_error(["replay", p], 1, "header.csv:1:", "wrong header")
    p = write("empty.csv", "")
    expect_error(["replay", p], 1, "empty.csv:1:", "empty trace")
    p = write("row.csv", HEADER + ok_row + "1,1.0,allocate,0x20\n")
    expect_error(["replay", p], 1, "row.csv:3:", "malformed row")
    p = write("number.csv", HEADER + ok_row + ok_row + "1,1.0,free,0x10,25x6,0x0\n")
    expect_error(["replay", p], 1, "number.csv:4:", "bad Size")
    p = write("action.csv", HEADER + "1,1.0,grab,0x10,256,0x0\n")
    expect_error(["replay", p], 1, "action.csv:2:", "unknown action")
    expect_error(["replay", os.path.join(WORK, "missing.csv")], 1, "missing.csv", "cannot open")
    # Unknown frees are warnings: exit 0 and counted.
    p = write("unknown.csv", HEADER + "1,1.0,free,0x99,256,0x0\n1,1.0,free,0x98,256,0x0\n")
    r = run_json("replay", p)
    check(r.get("unknown_frees") == 2 and r.get("warnings") == 2, f"unknown frees: {r}")
    # Zero-byte allocations and their frees are events, counted, never warned about.
    p = write("zero.csv", HEADER + "1,1.0,allocate,0x40,0,0x0\n1,1.1,allocate,0x50,256,0x0\n"
              "1,1.2,free,0x40,0,0x0\n1,1.3,allocate,0x0,0,0x0\n1,1.4,free,0x0,0,0x0\n")
    r = run_json("replay", p)
    check(r.get("warnings") == 0, f"zero-byte allocations: no warnings ({r.get('warning_messages')})")
    check(r.get("zero_byte_allocations") == 2 and r.get("allocations") == 3 and r.get("frees") == 2
          and r.get("events") == 5, f"zero-byte allocations counted: {r}")
    check(r.get("live_allocations_at_end") == 1, "one allocation live at the end")
    code, out, _ = run("replay", p)
    check("in 1 allocation\n" in out, f"'1 allocation', not '1 allocations': {out!r}")
    # A directory is no trace.
    expect_error(["replay", WORK], 1, "is a directory")


def case_replay_truncated():
    text = SMALL_TRACE
    path = os.path.join(WORK, "cut.csv")
    outcomes = {0: 0, 1: 0}
    for n in range(len(text) + 1):
        cut = text[:n]
        with open(path, "w") as f:
            f.write(cut)
        code, out, err = run("replay", path, "--json")
        check(code in (0, 1), f"truncated at {n}: exit {code} (a crash?), {err!r}")
        outcomes[code] = outcomes.get(code, 0) + 1
        if code == 1:
            lines = cut.count("\n") + 1
            named = any(f"cut.csv:{line}:" in err for line in range(1, lines + 1))
            check(named and len(err.strip().splitlines()) == 1,
                  f"truncated at {n}: error should name a line: {err!r}")
        else:
            json.loads(out)
    check(outcomes[0] > 0 and outcomes[1] > 0, f"outcomes {outcomes}")


def case_replay_usage():
    path = write("small.csv", SMALL_TRACE)
    expect_error(["replay", path, "--allocator", "tlsf"], 2)
    expect_error(["replay", path, "--cap", "12XB"], 2, "12XB")
    expect_error(["replay", path, "--cap", "0"], 2, "--cap")
    expect_error(["replay"], 2, "TRACE")
    expect_error(["replay", path, "--synthetic", "80GiB"], 2)


# ---- quant ---------------------------------------------------------------------------------

def safetensors(name, tensors, header_override=None, raw=None):
    """tensors: (name, dtype, shape, bytes). Returns the path."""
    header, data = {}, b""
    for tname, dtype, shape, blob in tensors:
        header[tname] = {"dtype": dtype, "shape": shape,
                         "data_offsets": [len(data), len(data) + len(blob)]}
        data += blob
    h = header_override if header_override is not None else json.dumps(header).encode()
    body = raw if raw is not None else struct.pack("<Q", len(h)) + h + data
    return write(name, body, "wb")


def gaussian(n, seed):
    rng = random.Random(seed)
    return [rng.gauss(0.0, 0.02) for _ in range(n)]


def bf16(values):
    out = b""
    for v in values:
        (bits,) = struct.unpack("<I", struct.pack("<f", v))
        out += struct.pack("<H", (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16 & 0xFFFF)
    return out


def model_file():
    w = gaussian(64 * 128, 1)
    b = gaussian(256, 2)
    return safetensors("model.safetensors", [
        ("layers.0.mlp.up_proj.weight", "F32", [64, 128], struct.pack(f"<{len(w)}f", *w)),
        ("layers.0.attn.q_proj.weight", "BF16", [2, 128], bf16(b)),
    ])


def case_quant_json():
    path = model_file()
    r = run_json("quant", path)
    check(r.get("bound", {}).get("min_sqnr_db") == 30.0, "default bound 30 dB")
    tensors = r.get("tensors", [])
    check(len(tensors) == 2, f"two tensors: {len(tensors)}")
    total_before = total_after = 0
    for t in tensors:
        check(t.get("cols") == 128, f"{t.get('name')}: cols is the last dimension")
        formats = t.get("formats", [])
        check(len(formats) > 5, f"{t.get('name')}: every format listed ({len(formats)})")
        bits = [f["bits_per_element"] for f in formats]
        check(bits == sorted(bits), f"{t.get('name')}: formats sorted by bits")
        check(t.get("chosen") is not None, f"{t.get('name')}: a format meets 30 dB")
        chosen = [f for f in formats if f["format"] == t.get("chosen")]
        check(len(chosen) == 1 and chosen[0]["meets_bound"], f"{t.get('name')}: chosen meets")
        if chosen:
            cheaper = [f for f in formats if f["meets_bound"] and
                       f["bits_per_element"] < chosen[0]["bits_per_element"]]
            check(not cheaper, f"{t.get('name')}: nothing cheaper meets the bound")
            check(chosen[0]["sqnr_db"] == "inf" or chosen[0]["sqnr_db"] >= 30.0, "SQNR >= bound")
        check(t.get("bytes_after", 1 << 40) < t.get("bytes_before", 0), f"{t.get('name')}: smaller")
        total_before += t.get("bytes_before", 0)
        total_after += t.get("bytes_after", 0)
    check(tensors and tensors[0].get("bytes_before") == 64 * 128 * 4, "F32 source bytes")
    check(r.get("total_bytes_before") == total_before, "total before is the sum")
    check(r.get("total_bytes_after") == total_after, "total after is the sum")
    # A bound no format meets keeps every tensor at its source precision.
    strict = run_json("quant", path, "--bound", "200")
    for t in strict.get("tensors", []):
        check(t.get("chosen") is None, "200 dB: nothing chosen")
    check(strict.get("total_bytes_after") == strict.get("total_bytes_before"), "200 dB: kept")
    only = run_json("quant", path, "--formats", "int8_channel,int4_g64")
    for t in only.get("tensors", []):
        check({f["format"] for f in t.get("formats", [])} <= {"int8_channel", "int4_g64"},
              "--formats limits the candidates")
    code, out, err = run("quant", path)
    check(code == 0 and "total:" in out and "layers.0.mlp.up_proj.weight" in out, f"text: {out!r}")


def case_quant_mixed_dtypes():
    """Integer, boolean and F64 tensors are kept as they are (no format evaluated) and counted in
    both totals; an all-zero matrix is quantized exactly, an SQNR of "inf"; NaN in the data gives
    "nan" and no format meets the bound."""
    w = gaussian(4 * 64, 4)
    ids = list(range(7))
    mask = [1, 0, 1, 1, 0]
    f64 = gaussian(3, 5)
    path = safetensors("mixed.safetensors", [
        ("weight", "F32", [4, 64], struct.pack(f"<{len(w)}f", *w)),
        ("position_ids", "I64", [1, 7], struct.pack("<7q", *ids)),
        ("attention_mask", "BOOL", [5], bytes(mask)),
        ("scale", "F64", [3], struct.pack("<3d", *f64)),
        ("token_type", "I8", [2, 2], bytes([0, 1, 0, 1])),
        ("zeros", "F32", [2, 64], bytes(2 * 64 * 4)),
        ("broken", "F32", [1, 64], struct.pack("<64f", *([float("nan")] + w[:63]))),
    ])
    r = run_json("quant", path)
    by = {t.get("name"): t for t in r.get("tensors", [])}
    check(len(by) == 7, f"seven tensors reported: {sorted(by)}")
    sizes = {"position_ids": 56, "attention_mask": 5, "scale": 24, "token_type": 4}
    for name, dtype in [("position_ids", "I64"), ("attention_mask", "BOOL"), ("scale", "F64"),
                        ("token_type", "I8")]:
        t = by.get(name, {})
        check(t.get("dtype") == dtype, f"{name}: dtype {t.get('dtype')}")
        check(t.get("kept") == "dtype " + dtype, f"{name}: kept {t.get('kept')!r}")
        check(t.get("chosen") is None and t.get("formats") == [], f"{name}: no format evaluated")
        check(t.get("bytes_before") == t.get("bytes_after") == sizes[name],
              f"{name}: {t.get('bytes_before')} -> {t.get('bytes_after')} bytes, {sizes[name]} kept")
        check(t.get("sqnr_db") == "inf" and t.get("relative_l2") == 0, f"{name}: exact")
    weight = by.get("weight", {})
    check(weight.get("chosen") is not None and weight.get("kept") is None, "the F32 matrix planned")
    check(weight.get("bytes_after", 1 << 40) < weight.get("bytes_before", 0) == 4 * 64 * 4,
          "the F32 matrix shrinks")
    zeros = by.get("zeros", {})
    check(zeros.get("chosen") is not None and zeros.get("sqnr_db") == "inf",
          f"zeros: exact, sqnr_db {zeros.get('sqnr_db')!r}")
    check(all(f.get("sqnr_db") == "inf" for f in zeros.get("formats", [{}])),
          "zeros: every format exact")
    broken = by.get("broken", {})
    check(broken.get("chosen") is None and broken.get("kept") == "no format meets the bound",
          f"NaN: kept {broken.get('kept')!r}")
    check(broken.get("formats") and all(f.get("sqnr_db") == "nan" for f in broken["formats"]),
          "NaN: every format's SQNR is \"nan\"")
    before = sum(t.get("bytes_before", 0) for t in by.values())
    after = sum(t.get("bytes_after", 0) for t in by.values())
    check(r.get("total_bytes_before") == before == (4 + 2 + 1) * 64 * 4 + sum(sizes.values()),
          f"total before {r.get('total_bytes_before')} counts every tensor ({before})")
    check(r.get("total_bytes_after") == after, f"total after {r.get('total_bytes_after')} = {after}")
    code, out, err = run("quant", path)
    check(code == 0 and err == "", f"text: exit {code}, stderr {err!r}")
    check("position_ids I64 [1 x 7]: kept: dtype I64, 56 B" in out, f"text names the kept I64: {out!r}")
    check("attention_mask BOOL [5]: kept: dtype BOOL, 5 B" in out, "text names the kept BOOL")
    zero_line = [line for line in out.splitlines() if line.startswith("zeros F32")]
    check(len(zero_line) == 1 and ", inf dB," in zero_line[0], f"zeros: inf dB in text: {zero_line}")
    check("broken F32 [1 x 64]: kept: no format meets the bound, 256 B" in out, "text: NaN kept")
    check(any(line.split()[2:3] == ["nan"] for line in out.splitlines() if line.strip()),
          "text: nan in the SQNR column")
    check("total: " in out, "text total")
    # NaN reads the same word in text and JSON: "nan", never "-nan" or null.
    check("-nan" not in out, "text: no -nan")
    check(all(f.get("relative_l2") == "nan" for f in broken.get("formats", [])),
          "NaN: relative_l2 is \"nan\" in JSON, as in text")
    check(any(line.split()[3:4] == ["nan"] for line in out.splitlines() if line.strip()),
          "text: nan in the relative error column")
    # A tensor some format meets the bound for, but none stores in fewer bytes: "no format is
    # smaller" (eight BF16 ones: every 8-bit format's scales cost more than it saves).
    p2 = safetensors("tiny.safetensors", [("tiny", "BF16", [1, 8], struct.pack("<8H", *[0x3F80] * 8))])
    tiny = run_json("quant", p2)["tensors"][0]
    check(tiny.get("kept") == "no format is smaller" and
          any(f["meets_bound"] for f in tiny.get("formats", [])),
          f"kept because no format is smaller: {tiny.get('kept')!r}")
    code, out, _ = run("quant", p2)
    check("kept: no format is smaller" in out, f"text says no format is smaller: {out[:200]!r}")


def case_quant_bad_input():
    good = gaussian(64, 3)
    blob = struct.pack("<64f", *good)
    p = safetensors("short.safetensors", [], raw=b"\x10\x00\x00")
    expect_error(["quant", p], 1, "short.safetensors")
    p = safetensors("length.safetensors", [], raw=struct.pack("<Q", 1 << 40) + b"{}")
    expect_error(["quant", p], 1, "length.safetensors")
    p = safetensors("json.safetensors", [("w", "F32", [64], blob)], header_override=b"{\"w\": [1,")
    expect_error(["quant", p], 1, "json.safetensors")
    bad = json.dumps({"w": {"dtype": "F32", "shape": [64], "data_offsets": [0, 1024]}}).encode()
    p = safetensors("offsets.safetensors", [("w", "F32", [64], blob)], header_override=bad)
    expect_error(["quant", p], 1, "offsets.safetensors")
    expect_error(["quant", os.path.join(WORK, "missing.safetensors")], 1, "missing.safetensors")
    good_path = safetensors("good.safetensors", [("w", "F32", [2, 32], blob)])
    expect_error(["quant", good_path, "--formats", "int3"], 2, "int3")
    expect_error(["quant", good_path, "--bound", "loud"], 2)
    for bound in ("", "nan", "-1"):
        expect_error(["quant", good_path, "--bound", bound], 2, "--bound")
    expect_error(["quant"], 2, "FILE")


CASES = {name[5:]: fn for name, fn in globals().items() if name.startswith("case_")}
if CASE not in CASES:
    sys.exit(f"unknown case {CASE}; known: {', '.join(CASES)}")
CASES[CASE]()
if failures:
    print(f"{len(failures)} check(s) failed")
    sys.exit(1)
print(f"{CASE}: ok")
