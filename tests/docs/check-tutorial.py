#!/usr/bin/env python3
"""Checks that every C block of a tutorial is quoted from the demos.

Usage: check-tutorial.py TUTORIAL.md DEMO_DIR...

docs/tutorial.md promises that its code compiles because each ```c block
is cut from a program under demos/ that the test suite builds and runs.
This keeps the promise: every block must be non-empty and appear, line
for line, in one of the .c files below the given directories; in a
section that names its demo (a line `*Demo: `name.c`...`), in a file the
section names before the block (that demo, or another `file.c`).
Exit status 1 lists the blocks that do not.
"""
import pathlib
import re
import sys

DEMO_LINE = re.compile(r"^\*Demo: `[\w.-]+\.c`")
FILE_NAME = re.compile(r"`([\w.-]+\.c)`")


def blocks(markdown):
    """Yields (line number, lines, files) of each ```c fenced block, files
    being the .c files its section named before it, or None in a section
    without a demo line."""
    inside = False
    files = None
    for number, line in enumerate(markdown.splitlines(), 1):
        if not inside and line.startswith("#"):
            files = None
        elif not inside and DEMO_LINE.match(line):
            files = set()
        if not inside and files is not None:
            files.update(FILE_NAME.findall(line))
        if not inside and line.strip() == "```c":
            inside, start, body = True, number, []
        elif inside and line.strip() == "```":
            inside = False
            yield start, body, None if files is None else set(files)
        elif inside:
            body.append(line.rstrip())


def main(argv):
    if len(argv) < 3:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    tutorial = pathlib.Path(argv[1])
    sources = {}
    for folder in argv[2:]:
        for path in sorted(pathlib.Path(folder).rglob("*.c")):
            sources[path] = [l.rstrip() for l in path.read_text().splitlines()]

    def quoted(body, files):
        n = len(body)
        if not any(line.strip() for line in body):
            return False
        for path, lines in sources.items():
            if files is not None and path.name not in files:
                continue
            for i in range(len(lines) - n + 1):
                if lines[i:i + n] == body:
                    return True
        return False

    missing = [(start, body, files) for start, body, files in blocks(tutorial.read_text())
               if not quoted(body, files)]
    for start, body, files in missing:
        where = "any demo" if files is None else " or ".join(sorted(files)) or "no file"
        print(f"{tutorial}:{start}: this C block is empty or not quoted from {where}:")
        print("    " + "\n    ".join(body[:6]) + ("\n    ..." if len(body) > 6 else ""))
    count = sum(1 for _ in blocks(tutorial.read_text()))
    print(f"{count - len(missing)} of {count} C blocks are quoted from the demos")
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
