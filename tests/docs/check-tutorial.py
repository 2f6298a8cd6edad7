#!/usr/bin/env python3
"""Checks that every C block of a tutorial is quoted from the demos.

Usage: check-tutorial.py TUTORIAL.md DEMO_DIR...

docs/tutorial.md promises that its code compiles because each ```c block
is cut from a program under demos/ that the test suite builds and runs.
This keeps the promise: every block must appear, line for line, in one
of the .c files below the given directories. Exit status 1 lists the
blocks that do not.
"""
import pathlib
import sys


def blocks(markdown):
    """Yields (line number, lines) of each ```c fenced block."""
    inside = False
    for number, line in enumerate(markdown.splitlines(), 1):
        if not inside and line.strip() == "```c":
            inside, start, body = True, number, []
        elif inside and line.strip() == "```":
            inside = False
            yield start, body
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

    def quoted(body):
        n = len(body)
        for lines in sources.values():
            for i in range(len(lines) - n + 1):
                if lines[i:i + n] == body:
                    return True
        return False

    missing = [(start, body) for start, body in blocks(tutorial.read_text()) if not quoted(body)]
    for start, body in missing:
        print(f"{tutorial}:{start}: this C block is not quoted from any demo:")
        print("    " + "\n    ".join(body[:6]) + ("\n    ..." if len(body) > 6 else ""))
    count = sum(1 for _ in blocks(tutorial.read_text()))
    print(f"{count - len(missing)} of {count} C blocks are quoted from the demos")
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
