"""Helpers shared by the report and plan checkers: run the program, parse its JSON, check."""
import json
import os
import subprocess
import sys

failures = []


def run(program, *args, timeout=240):
    """Runs `program args`; returns (exit status, stdout, stderr)."""
    p = subprocess.run([program, *args], capture_output=True, text=True, timeout=timeout)
    return p.returncode, p.stdout, p.stderr


def run_json(program, *args):
    """Runs with --json; the exit status must be 0 and stdout one JSON document."""
    code, out, err = run(program, *args, "--json")
    if code != 0:
        sys.exit(f"FAIL: {' '.join(args)} exited {code}: {err.strip()}")
    try:
        return json.loads(out)
    except json.JSONDecodeError as e:
        sys.exit(f"FAIL: {' '.join(args)} printed no JSON ({e}): {out[:300]}")


def check(condition, what):
    """Records a failed check; the script ends with finish()."""
    if not condition:
        failures.append(what)
        print(f"FAIL: {what}")


def finish(name):
    if failures:
        sys.exit(f"{name}: {len(failures)} check(s) failed")
    print(f"{name}: all checks passed")


def fresh_dir(path):
    os.makedirs(path, exist_ok=True)
    return path
