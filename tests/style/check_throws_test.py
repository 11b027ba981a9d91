#!/usr/bin/env python3
"""scripts/check-throws catches a planted throw of a frugal error, and only that.

Usage: check_throws_test.py CHECK_THROWS
"""
import pathlib
import subprocess
import sys
import tempfile

check = sys.argv[1]

PLANTED = """#include <frugal/error.hpp>
void f(int x) {
  if (x < 0) throw frugal::invalid_argument("negative");
  if (x == 0)
    throw out_of_memory(1, "state", "pool_resource");
  if (x == 1) throw ::frugal::cli::usage_error{"bad"};
  if (x == 2)
    ::frugal::detail::throw_error<frugal::error>(
        __FILE__, __LINE__, "by hand");
}
"""

CLEAN = """#include <frugal/error.hpp>
// A comment may say: throw frugal::error("x");
/* and a block comment: throw invalid_argument("y"); */
void g(int x) {
  const char* text = "throw error(\\"quoted\\")";
  (void)text;
  FRUGAL_EXPECTS(x > 0, "x must be positive", frugal::invalid_argument);
  if (x == 2) FRUGAL_FAIL("two", frugal::error);
  if (x == 4) frugal::detail::throw_error<frugal::error>(file, line, "a caller's place");
  try {
    if (x == 3) throw std::invalid_argument("the standard library's");
    throw std::runtime_error("not frugal's");
  } catch (...) {
    throw;
  }
}
"""

failures = []
with tempfile.TemporaryDirectory() as tmp:
    planted = pathlib.Path(tmp) / "planted.cpp"
    planted.write_text(PLANTED)
    clean = pathlib.Path(tmp) / "clean.cpp"
    clean.write_text(CLEAN)

    r = subprocess.run([sys.executable, check, str(planted)], capture_output=True, text=True)
    if r.returncode != 1:
        failures.append(f"planted file: exit status {r.returncode}, expected 1")
    for line in (3, 5, 6, 8):
        if f"planted.cpp:{line}:" not in r.stdout:
            failures.append(f"planted file: line {line} not reported:\n{r.stdout}")
    if r.stdout.count("\n") != 4:
        failures.append(f"planted file: expected 4 reports:\n{r.stdout}")

    r = subprocess.run([sys.executable, check, str(clean)], capture_output=True, text=True)
    if r.returncode != 0 or r.stdout:
        failures.append(f"clean file: exit status {r.returncode}, output:\n{r.stdout}")

for f in failures:
    print("FAIL:", f)
sys.exit(1 if failures else 0)
