#!/usr/bin/env python3
"""Turns every ```cpp block of the given Markdown files into a function of one C++ source file.

A block compiles as the body of its own function, after tests/docs/snippet_context.hpp, which
declares the names the prose assumes (a layout, a resource called gpu, a prompt's tokens...). A
block's own declarations shadow those. `#include` lines inside a block move to the top of the
file. `#line` directives make the compiler name the Markdown file and line of an error.

A block that needs the CUDA toolkit is marked by the line `<!-- snippet: cuda -->` just before
it; it goes to the file named by --cuda-out instead (built only where CUDA is found).

Headers (--headers FILE.hpp...): the example in a header's banner compiles too, the same way,
after an #include of the header itself. The banner is the header's opening run of `//` lines;
its example is the first run of banner lines that begin with `//` and three spaces, the code
being what follows those three spaces. A banner line `// snippet: cuda` just before the example
sends it to the CUDA file. tests/docs/README.md describes the conventions.

Usage: extract_snippets.py --out host.cpp --cuda-out cuda.cpp --root DIR FILE.md...
                           [--headers FILE.hpp...]
Prints the number of blocks written to each file.
"""
import argparse
import pathlib
import sys


def blocks(path):
    """Yields (first body line number, lines, needs_cuda) for each ```cpp block of `path`."""
    lines = path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        if lines[i].strip() == "```cpp":
            previous = lines[i - 1].strip() if i > 0 else ""
            needs_cuda = previous == "<!-- snippet: cuda -->"
            start = i + 1
            j = start
            while j < len(lines) and lines[j].strip() != "```":
                j += 1
            if j == len(lines):
                sys.exit(f"{path}:{i + 1}: a ```cpp block is never closed")
            yield start + 1, lines[start:j], needs_cuda
            i = j
        i += 1


def banner_example(path, root):
    """The example of a header's banner: (first code line number, lines, needs_cuda), or None."""
    lines = path.read_text(encoding="utf-8").splitlines()
    banner = []
    for text in lines:
        if not text.startswith("//"):
            break
        banner.append(text)
    start = next((i for i, text in enumerate(banner) if text.startswith("//   ")), None)
    if start is None:
        return None
    end = start
    while end < len(banner) and banner[end].startswith("//   "):
        end += 1
    needs_cuda = start > 0 and banner[start - 1].strip() == "// snippet: cuda"
    include = "#include <" + path.relative_to(root / "include").as_posix() + ">"
    body = [text[len("//   "):] for text in banner[start:end]]
    # The header's own #include takes the line before the example (moved to the top of the
    # file, it leaves a blank line there), so #line numbers the code as in the header.
    return start, [include] + body, needs_cuda


def render(entries):
    includes, bodies = [], []
    for n, (name, line, body) in enumerate(entries):
        kept = []
        for text in body:
            if text.lstrip().startswith("#include"):
                includes.append(text.strip())
                kept.append("")  # keeps the #line numbering right
            else:
                kept.append(text)
        bodies.append(f"[[maybe_unused]] void snippet_{n}() {{\n#line {line} \"{name}\"\n"
                      + "\n".join(kept) + "\n}\n")
    header = ("// Generated from the documentation by tests/docs/extract_snippets.py: do not edit.\n"
              + "\n".join(sorted(set(includes))) + "\n#include \"snippet_context.hpp\"\n\n"
              "namespace frugal_doc_snippets {\n")
    return header + "\n".join(bodies) + "}  // namespace frugal_doc_snippets\n"


def write_if_changed(path, text):
    path = pathlib.Path(path)
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        path.write_text(text, encoding="utf-8")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--cuda-out", required=True)
    parser.add_argument("--root", required=True)
    parser.add_argument("files", nargs="+")
    parser.add_argument("--headers", nargs="*", default=[])
    args = parser.parse_args()
    root = pathlib.Path(args.root)
    host, cuda = [], []
    for f in args.files:
        path = pathlib.Path(f)
        name = path.relative_to(root).as_posix()
        for line, body, needs_cuda in blocks(path):
            (cuda if needs_cuda else host).append((name, line, body))
    examples = 0
    for f in sorted(args.headers):
        path = pathlib.Path(f)
        example = banner_example(path, root)
        if example is None:
            continue
        line, body, needs_cuda = example
        (cuda if needs_cuda else host).append((path.relative_to(root).as_posix(), line, body))
        examples += 1
    write_if_changed(args.out, render(host))
    write_if_changed(args.cuda_out, render(cuda))
    print(f"{len(host)} host blocks, {len(cuda)} CUDA blocks ({examples} from header banners)")


if __name__ == "__main__":
    main()
