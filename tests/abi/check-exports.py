#!/usr/bin/env python3
"""Checks what the shared libraries export against their public headers.

Usage: tests/abi/check-exports.py LIB HEADER_DIR [LIB HEADER_DIR ...]

Each LIB (a built shared library) must export exactly the functions that
the headers of its HEADER_DIR declare with LB_EXPORT: every exported
symbol starts with lb_, none with lb__ (the internal prefix: test hooks
and helpers shared between core files), and nothing declared public is
missing. Test programs that need the internals link the core's objects
instead (core/meson.build). Exits 77 (a skip) without nm.
"""
import pathlib
import re
import shutil
import subprocess
import sys

DECLARED = re.compile(r"\bLB_EXPORT\b[^;{}]*?\b(lb_\w+)\s*\(", re.S)


def exported(lib, nm):
    """The names of the dynamic symbols that lib defines."""
    out = subprocess.run([nm, "-D", "--defined-only", "--format=posix", lib],
                         check=True, capture_output=True, text=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def declared(header_dir):
    """{name: header} for every LB_EXPORT function of the directory's headers."""
    names = {}
    for header in sorted(pathlib.Path(header_dir).glob("*.h")):
        for name in DECLARED.findall(header.read_text()):
            names[name] = header.name
    return names


def main(args):
    if len(args) < 2 or len(args) % 2:
        print(__doc__, file=sys.stderr)
        return 2
    nm = shutil.which("nm")
    if not nm:
        print("nm not found: skipped")
        return 77
    problems = []
    for lib, header_dir in zip(args[::2], args[1::2]):
        name = pathlib.Path(lib).name
        symbols = exported(lib, nm)
        public = declared(header_dir)
        if not public:
            problems.append(f"{header_dir}: no LB_EXPORT declaration found")
        for s in sorted(symbols):
            if s.startswith("lb__"):
                problems.append(f"{name} exports the internal {s} (lb__ stays inside the library)")
            elif not s.startswith("lb_"):
                problems.append(f"{name} exports {s}, which lacks the lb_ prefix")
            elif s not in public:
                problems.append(f"{name} exports {s}, which no header of {header_dir} declares LB_EXPORT")
        for s in sorted(set(public) - symbols):
            problems.append(f"{public[s]} declares {s} LB_EXPORT but {name} does not export it")
        print(f"{name}: {len(symbols)} exported, {len(public)} declared in {header_dir}")
    for p in problems:
        print(p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
