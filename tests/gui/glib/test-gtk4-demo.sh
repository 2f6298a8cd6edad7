#!/bin/sh
# Drives the GTK4 demo under Xvfb (GSK_RENDERER=cairo: no GL there). The
# demo presses its buttons itself (--autostart emits their "clicked"
# signals, as a click would), so this checks:
#  - Start goes "Loading..." then "Done!", in that order;
#  - the clock (a loopbridge timer due every 100 ms) ticked at least 15
#    times during the 2 s task, none more than 100 ms behind its schedule
#    and no gap between two ticks over 100 ms beyond the 100 ms period;
#  - the cancelled progress task stopped (its bar did not move after the
#    cancel) while the other two finished;
#  - the worker thread and the GIO file load reported back;
#  - Fetch downloaded the whole megabyte from the demo's own server in
#    many reads (the bar moved as bytes arrived), and the clock kept
#    ticking meanwhile (the download takes at least 0.96 s: the server
#    paces 64 chunks 15 ms apart);
#  - the screenshot taken mid-task is a real picture (not uniform).
# A warning about the session bus (no D-Bus under Xvfb) is harmless.
# Usage: test-gtk4-demo.sh DEMO OUTDIR
set -u
demo=$1; out=$2/gtk4-demo.png
command -v xvfb-run >/dev/null || { echo "xvfb-run missing: skipped"; exit 77; }
rm -f "$out"
export GSK_RENDERER=${GSK_RENDERER:-cairo}
log=$(timeout 60 xvfb-run -a "$demo" --autostart --cancel-one \
      --screenshot "$out" --quit-after 3.5 2>&1)
rc=$?
printf '%s\n' "$log"
[ $rc -eq 0 ] || { echo "FAIL: demo exited with $rc"; exit 1; }
fail=0
expect() { printf '%s\n' "$log" | grep -q -- "$1" || { echo "FAIL: no '$1'"; fail=1; }; }
expect "^label: Loading...$"
expect "^label: Done!$"
expect "^progress 0: cancelled at"
expect "^progress 1: finished$"
expect "^progress 2: finished$"
expect "^worker: done$"
expect "^file: loaded"
expect "^screenshot: "
expect "^fetch: received 1048576 of 1048576 bytes"

# Order: Loading... before Done!
first=$(printf '%s\n' "$log" | grep "^label:" | head -1)
last=$(printf '%s\n' "$log" | grep "^label:" | tail -1)
[ "$first" = "label: Loading..." ] || { echo "FAIL: first label was '$first'"; fail=1; }
[ "$last" = "label: Done!" ] || { echo "FAIL: last label was '$last'"; fail=1; }

# The clock during the task.
ticks=$(printf '%s\n' "$log" | sed -n 's/.*during task \([0-9]*\),.*/\1/p')
stall=$(printf '%s\n' "$log" | sed -n 's/.*(stall \([0-9.]*\) ms).*/\1/p')
late=$(printf '%s\n' "$log" | sed -n 's/.*max lateness \([0-9.]*\) ms.*/\1/p')
[ -n "$ticks" ] && [ "$ticks" -ge 15 ] || { echo "FAIL: only '$ticks' ticks during the task"; fail=1; }
awk -v l="$late" 'BEGIN { exit !(l != "" && l < 100) }' || { echo "FAIL: a tick was $late ms late"; fail=1; }
awk -v s="$stall" 'BEGIN { exit !(s != "" && s < 100) }' || { echo "FAIL: the clock stalled $stall ms"; fail=1; }

# The cancelled bar stayed where the cancel left it.
at_cancel=$(printf '%s\n' "$log" | sed -n 's/^progress 0: cancelled at \([0-9]*\)%.*/\1/p')
bars=$(printf '%s\n' "$log" | sed -n 's/^bars at quit: //p')
bar0=$(echo "$bars" | awk '{ sub("%", "", $1); print $1 }')
[ -n "$at_cancel" ] && [ "$at_cancel" -lt 100 ] && [ "$bar0" = "$at_cancel" ] ||
  { echo "FAIL: cancelled at '$at_cancel'%, bar at quit '$bar0'%"; fail=1; }
[ "$(echo "$bars" | awk '{ print $2, $3 }')" = "100% 100%" ] ||
  { echo "FAIL: bars at quit: $bars"; fail=1; }

# The download: in pieces, with the window live.
reads=$(printf '%s\n' "$log" | sed -n 's/^fetch: .* in \([0-9]*\) reads.*/\1/p')
fticks=$(printf '%s\n' "$log" | sed -n 's/^fetch: .*clock ticked \([0-9]*\) times.*/\1/p')
[ -n "$reads" ] && [ "$reads" -ge 10 ] || { echo "FAIL: the fetch took '$reads' reads"; fail=1; }
[ -n "$fticks" ] && [ "$fticks" -ge 5 ] ||
  { echo "FAIL: the clock ticked '$fticks' times during the fetch"; fail=1; }

# The screenshot.
[ -s "$out" ] || { echo "FAIL: no screenshot"; fail=1; }
if command -v identify >/dev/null && [ -s "$out" ]; then
  sd=$(identify -format '%[fx:standard_deviation]' "$out" 2>/dev/null)
  awk -v s="$sd" 'BEGIN { exit !(s != "" && s > 0.01) }' || { echo "FAIL: uniform screenshot (sd $sd)"; fail=1; }
  echo "screenshot standard deviation: $sd"
fi
[ $fail -eq 0 ] && echo "PASS: gtk4 demo"
exit $fail
