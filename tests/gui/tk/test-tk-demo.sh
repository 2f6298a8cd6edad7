#!/bin/sh
# Drives the Tk demo under Xvfb, three times:
#  1. two real X clicks on the button (xdotool), 0.5 s apart;
#  2. --screenshot (the demo presses its button with `invoke` and saves
#     the window 1 s later) and a second press by `event generate`;
#  3. Fetch, a download from the demo's own local server.
# Each run checks that the label goes "Press the button", "Loading...",
# "Loading...", "Done!", "Done!"; that the two tasks overlapped and both
# finished; that the counter (a loopbridge task due every 100 ms) ticked
# at least 15 times during the first task, with no gap more than 100 ms
# beyond its period. The screenshot must be taken mid-task and be a real
# picture (not uniform).
# Usage: test-tk-demo.sh DEMO OUTDIR
set -u
demo=$1
outdir=$2
shot=$outdir/tk-demo.png
command -v xvfb-run >/dev/null || { echo "xvfb-run missing: skipped"; exit 77; }
command -v xdotool >/dev/null || { echo "xdotool missing: skipped"; exit 77; }
command -v import >/dev/null || { echo "ImageMagick missing: skipped"; exit 77; }
fail=0
failed() { echo "FAIL: $*"; fail=1; }

# check LOG: the checks both runs share. The label changes are printed
# with their time: the first two "Loading..." start tasks 1 and 2, the
# two "Done!" end them, in that order (each task sleeps 2 s).
check() {
  log=$1
  labels=$(printf '%s\n' "$log" | sed -n 's/^[0-9.]* status: //p' | tr '\n' '|')
  [ "$labels" = "Press the button|Loading...|Loading...|Done!|Done!|" ] ||
    failed "labels went $labels (both tasks must finish)"
  t1=$(printf '%s\n' "$log" | sed -n 's/^\([0-9.]*\) status: Loading...$/\1/p' | sed -n 1p)
  t2=$(printf '%s\n' "$log" | sed -n 's/^\([0-9.]*\) status: Loading...$/\1/p' | sed -n 2p)
  e1=$(printf '%s\n' "$log" | sed -n 's/^\([0-9.]*\) status: Done!$/\1/p' | sed -n 1p)
  awk -v t2="$t2" -v e1="$e1" 'BEGIN { exit !(t2 != "" && e1 != "" && t2 < e1) }' ||
    failed "the second task did not start while the first ran ($t2, $e1)"
  # The counter during task 1: ticks, and the largest gap between two
  # (the 100 ms period plus what a stall added: at most 50 ms, where a
  # run here shows about 1).
  printf '%s\n' "$log" | awk -v t1="$t1" -v e1="$e1" '
    / counter: tick / {
      t = $1
      if (t >= t1 && t <= e1) n++
      if (prev != "" && t >= t1 && prev <= e1 && t - prev > gap) gap = t - prev
      prev = t
    }
    END {
      printf "counter during task 1: %d ticks, max gap %.0f ms\n", n, gap * 1000
      exit !(n >= 15 && gap < 0.15)
    }' || failed "the counter stalled during the task"
}

# ---------------------------------------------------------------- run 1
# The demo prints the button's centre (root coordinates) once it is on
# screen; xdotool clicks there twice.
tmp=$(mktemp)
timeout 60 xvfb-run -a sh -c '
  demo=$1 log=$2
  "$demo" --quit-after 4 --eval "after 300 {
      puts \"button [expr {[winfo rootx .run] + [winfo width .run] / 2}] [expr {[winfo rooty .run] + [winfo height .run] / 2}]\"
      flush stdout }" >"$log" 2>&1 &
  pid=$!
  i=0
  while ! grep -q "^button " "$log" && [ $i -lt 200 ]; do sleep 0.05; i=$((i + 1)); done
  set -- $(grep "^button " "$log")
  xdotool mousemove "$2" "$3" click 1
  sleep 0.5
  xdotool click 1
  wait $pid
' sh "$demo" "$tmp"
rc=$?
log=$(cat "$tmp")
rm -f "$tmp"
echo "== run 1: two xdotool clicks"
printf '%s\n' "$log" | grep -v " counter: "
[ $rc -eq 0 ] || failed "run 1 exited with $rc"
check "$log"

# ---------------------------------------------------------------- run 2
rm -f "$shot"
log=$(timeout 60 xvfb-run -a "$demo" --screenshot "$shot" --quit-after 3.5 --eval '
  after 500 {
    event generate .run <Enter>
    event generate .run <ButtonPress-1>
    event generate .run <ButtonRelease-1>
  }' 2>&1)
rc=$?
echo "== run 2: invoke, event generate, screenshot"
printf '%s\n' "$log" | grep -v " counter: "
[ $rc -eq 0 ] || failed "run 2 exited with $rc"
check "$log"
ts=$(printf '%s\n' "$log" | sed -n 's/^\([0-9.]*\) screenshot: .*/\1/p')
awk -v t="$ts" -v t1="$t1" -v e1="$e1" 'BEGIN { exit !(t != "" && t > t1 && t < e1) }' ||
  failed "the screenshot was not taken mid-task ($ts, task from $t1 to $e1)"
if [ -s "$shot" ]; then
  sd=$(identify -format '%[fx:standard_deviation]' "$shot" 2>/dev/null)
  echo "screenshot $(identify -format '%wx%h' "$shot"), standard deviation $sd"
  awk -v s="$sd" 'BEGIN { exit !(s != "" && s > 0.01) }' || failed "uniform screenshot (sd $sd)"
else
  failed "no screenshot"
fi

# ---------------------------------------------------------------- run 3
# Fetch: a megabyte from the demo's own server over loopback TCP, read by
# a task while the progress bar moves and the counter keeps ticking.
log=$(timeout 60 xvfb-run -a "$demo" --quit-after 3 --eval 'after 200 {.net.fetch invoke}' 2>&1)
rc=$?
echo "== run 3: fetch"
printf '%s\n' "$log" | grep -v " counter: " | grep -v "fetch_status: [0-9]* of" 
[ $rc -eq 0 ] || failed "run 3 exited with $rc"
printf '%s\n' "$log" | grep -q '^fetch: received 1048576 of 1048576 bytes' ||
  failed "the fetch did not receive the whole megabyte"
steps=$(printf '%s\n' "$log" | grep -c 'fetch_status: [0-9]* of 1024 KiB')
[ "$steps" -ge 10 ] || failed "the progress moved $steps times (at least 10 expected)"
ticked=$(printf '%s\n' "$log" | sed -n 's/^fetch: .*counter ticked \([0-9]*\) times.*/\1/p')
[ "${ticked:-0}" -ge 5 ] || failed "the counter ticked ${ticked:-0} times during the fetch"

[ $fail -eq 0 ] && echo "PASS: tk demo"
exit $fail
