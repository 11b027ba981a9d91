#!/usr/bin/env python3
"""Checks that binaries carry machine code (cubins) for a GPU architecture, and which kernels.

Reads the CUDA fat binaries embedded in object files, static libraries and executables (the
same data `cuobjdump --list-elf` lists), so it works where cuobjdump is not installed.

  cubin_check.py --arch 90 [--kernel NAME ...] FILE ...

Exit status 0 when every FILE holds a cubin for sm_ARCH and every NAME (a substring of a mangled
kernel name) appears in one of each file's sm_ARCH cubins; 1 otherwise, naming what is missing.
"""

import argparse
import struct
import sys

FATBIN_MAGIC = struct.pack("<I", 0xBA55ED50)
KIND_ELF = 2


def cubins(data):
    """Yields (arch, payload, compressed) for every cubin entry of every fat binary in data."""
    start = data.find(FATBIN_MAGIC)
    while start != -1:
        if start + 16 > len(data):
            return
        _version, header_size, fat_size = struct.unpack_from("<HHQ", data, start + 4)
        pos, end = start + header_size, start + header_size + fat_size
        if header_size != 16 or end > len(data):
            start = data.find(FATBIN_MAGIC, start + 4)
            continue
        while pos + 32 <= end:
            kind, _, entry_header, size = struct.unpack_from("<HHIQ", data, pos)
            compressed_size, = struct.unpack_from("<I", data, pos + 16)
            arch, = struct.unpack_from("<I", data, pos + 28)
            if entry_header < 32 or pos + entry_header + size > end:
                break
            if kind == KIND_ELF:
                payload = data[pos + entry_header:pos + entry_header + size]
                yield arch, payload, compressed_size != 0 or not payload.startswith(b"\x7fELF")
            pos += entry_header + size
        start = data.find(FATBIN_MAGIC, end)


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--arch", type=int, required=True, help="e.g. 90 for sm_90")
    parser.add_argument("--kernel", action="append", default=[], help="substring of a kernel name")
    parser.add_argument("files", nargs="+")
    args = parser.parse_args(argv)

    ok = True
    for path in args.files:
        with open(path, "rb") as f:
            data = f.read()
        found = [(arch, payload, packed) for arch, payload, packed in cubins(data)]
        archs = sorted({arch for arch, _, _ in found})
        mine = [(payload, packed) for arch, payload, packed in found if arch == args.arch]
        if not mine:
            print(f"{path}: no sm_{args.arch} cubin (cubins for: "
                  f"{', '.join(f'sm_{a}' for a in archs) or 'none'})")
            ok = False
            continue
        readable = [payload for payload, packed in mine if not packed]
        missing = [k for k in args.kernel
                   if not any(k.encode() in payload for payload in readable)]
        if missing and len(readable) < len(mine):
            print(f"{path}: sm_{args.arch} cubins are compressed; kernel names not checked")
        elif missing:
            print(f"{path}: no sm_{args.arch} kernel named like: {', '.join(missing)}")
            ok = False
            continue
        print(f"{path}: {len(mine)} sm_{args.arch} cubin(s)"
              + (f", kernels {', '.join(args.kernel)} present" if args.kernel else ""))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
