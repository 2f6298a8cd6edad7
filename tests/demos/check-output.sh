#!/bin/sh
# Runs a demo and checks that its output lines match the given extended
# regular expressions, in that order, each on a line of its own.
# Usage: check-output.sh PROGRAM [ARGS...] -- REGEX...
set -u
prog=$1; shift
args=""
while [ $# -gt 0 ] && [ "$1" != "--" ]; do args="$args $1"; shift; done
[ $# -gt 0 ] && shift
out=$("$prog" $args 2>&1)
rc=$?
printf '%s\n' "$out"
if [ $rc -ne 0 ]; then
  echo "check-output: $prog exited with $rc" >&2
  exit 1
fi
rest=$out
for re in "$@"; do
  line=$(printf '%s\n' "$rest" | grep -n -E -m1 -- "$re" | cut -d: -f1)
  if [ -z "$line" ]; then
    echo "check-output: no line matching '$re' (in order) in the output above" >&2
    exit 1
  fi
  rest=$(printf '%s\n' "$rest" | tail -n +"$((line + 1))")
done
exit 0
