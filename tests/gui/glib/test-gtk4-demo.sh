#!/bin/sh
# Drives the GTK4 demo under Xvfb: Start goes Loading... -> Done!, the
# clock keeps ticking through the 2 s task (>= 15 ticks, none more than
# 100 ms late), a cancelled task stops, the worker thread and the GIO
# load report back, and the screenshot is a real picture.
# Usage: test-gtk4-demo.sh DEMO OUTDIR
set -u
demo=$1; out=$2/gtk4-demo.png
command -v xvfb-run >/dev/null || { echo "xvfb-run missing: skipped"; exit 77; }
rm -f "$out"
log=$(GSK_RENDERER=cairo timeout 60 xvfb-run -a "$demo" --autostart --cancel-one \
      --screenshot "$out" --quit-after 3.5 2>&1)
rc=$?
printf '%s\n' "$log"
[ $rc -eq 0 ] || { echo "FAIL: demo exited with $rc"; exit 1; }
fail=0
expect() { printf '%s\n' "$log" | grep -q -- "$1" || { echo "FAIL: no '$1'"; fail=1; }; }
expect "^label: Loading...$"
expect "^label: Done!$"
expect "^progress 0: cancelled"
expect "^progress 1: finished$"
expect "^progress 2: finished$"
expect "^worker: done$"
expect "^file: loaded"
# Order: Loading... before Done!
first=$(printf '%s\n' "$log" | grep -n "^label:" | head -1 | cut -d: -f3-)
[ "$first" = " Loading..." ] || { echo "FAIL: first label was '$first'"; fail=1; }
ticks=$(printf '%s\n' "$log" | sed -n 's/.*during task \([0-9]*\),.*/\1/p')
late=$(printf '%s\n' "$log" | sed -n 's/.*max lateness \([0-9.]*\) ms.*/\1/p')
[ -n "$ticks" ] && [ "$ticks" -ge 15 ] || { echo "FAIL: only '$ticks' ticks during the task"; fail=1; }
awk -v l="$late" 'BEGIN { exit !(l != "" && l < 100) }' || { echo "FAIL: a tick was $late ms late"; fail=1; }
[ -s "$out" ] || { echo "FAIL: no screenshot"; fail=1; }
if command -v identify >/dev/null && [ -s "$out" ]; then
  sd=$(identify -format '%[fx:standard_deviation]' "$out" 2>/dev/null)
  awk -v s="$sd" 'BEGIN { exit !(s > 0.01) }' || { echo "FAIL: uniform screenshot (sd $sd)"; fail=1; }
  echo "screenshot standard deviation: $sd"
fi
[ $fail -eq 0 ] && echo "PASS: gtk4 demo"
exit $fail
