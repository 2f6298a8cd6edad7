#!/usr/bin/env python3
"""Checks that docs/design.md's layout names every source file.

Usage: check-layout.py DESIGN.md SOURCE_ROOT

The "## Layout" section of docs/design.md is where a reader learns which
file holds what. Every source file of the libraries (core/include,
core/src with core/src/fiber, bridges/*) must appear in it by name (a
header next to its .c file goes with it: naming handle.c covers
handle.h), and every .c, .h or .S name it mentions must exist. Exit status 1 lists the
files missing from it and the names it has that no file has.
"""
import pathlib
import re
import sys

SOURCES = ("core/include/loopbridge/*.h", "core/src/*.[chS]", "core/src/fiber/*.[chS]",
           "bridges/*/*.[ch]", "bridges/*/*/*.[ch]", "bridges/*/include/loopbridge/*.h")
NAME = re.compile(r"\b[\w.-]+\.[chS]\b")


def layout_section(markdown):
    """The text between "## Layout" and the next second-level heading."""
    m = re.search(r"^## Layout\n(.*?)(?=^## )", markdown, re.S | re.M)
    return m.group(1) if m else ""


def main(design, root):
    root = pathlib.Path(root)
    section = layout_section(pathlib.Path(design).read_text())
    if not section:
        print(f"{design}: no '## Layout' section")
        return 1
    named = set(NAME.findall(section))
    files = sorted({p for pattern in SOURCES for p in root.glob(pattern)})
    def covered(p):
        return p.name in named or (p.suffix == ".h" and p.with_suffix(".c").exists()
                                   and p.with_suffix(".c").name in named)

    problems = [f"{p.relative_to(root)} is not named in the layout"
                for p in files if not covered(p)]
    existing = {p.name for p in files}
    problems += [f"the layout names {n}, which no source file is" for n in sorted(named - existing)]
    for p in problems:
        print(p)
    print(f"{len(files)} source files, {len(named)} names in the layout")
    return 1 if problems else 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    sys.exit(main(sys.argv[1], sys.argv[2]))
