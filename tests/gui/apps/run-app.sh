#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# run-app.sh gtk|tk BUILD_ROOT WORK_DIR: one of the two applications of
# tests/gui/apps as its user gets it, driven like a user drives it.
#
#  1. installs the libraries of BUILD_ROOT into WORK_DIR/dest (meson
#     install --destdir; the .pc files' prefix points into it) and builds
#     the app with `cc $(pkg-config --cflags --libs loopbridge-... gtk4|tk)`
#     against that copy, run path included (ldd must find it there);
#  2. under Xvfb (xvfb-run -a, GSK_RENDERER=cairo, no window manager),
#     clicks its buttons with xdotool at the positions it printed, and
#     closes its window mid-job with a WM_DELETE_WINDOW client message, as
#     a window manager does (wm-close.c: xdotool cannot send one;
#     `xdotool windowclose` destroys the window, which is not a close
#     request, and key alt+F4 needs a window manager);
#  3. checks the lines the app printed:
#     gtk: a small file read through GIO; Cancel stops every running job
#          within 50 ms; "Hash again" awaited through its "clicked";
#     tk:  the round trips go on while a modal tk_messageBox is open
#          (dismissed with xdotool key Return); the 16 ms `after` tick's
#          largest gap while 4 jobs hash (on a pool that leaves a core to
#          the Tk thread), with the message box open and without it, and
#          across the message box's building (Tk's own code), beside the
#          same tick in plain wish under the same load
#          (plain-tk-tick.tcl): no freeze, and without the message box
#          within 25 ms of plain Tk's (the goal, 20 ms, is reported);
#          Cancel stops the running jobs within 50 ms;
#     both: closing the window mid-job exits within 1 s (from the close
#          request to the process's exit);
#  4. runs it again under valgrind (--fair-sched=yes: valgrind runs one
#     thread at a time, and without it the four hashing threads kept the
#     Tk thread from running for up to 80 s) and closes it mid-job: no
#     memory error
#     and no definite leak in a stack through loopbridge or the app
#     (tests/valgrind/*.supp and tests/gui/apps/toolkits.supp applied;
#     what the toolkits alone lose is counted and shown).
# Timing bounds are checked when the machine is not overloaded; with a
# load average above the CPU count they are reported, not failed.
# Exit 77 (skipped) without xvfb-run, xdotool, cc, pkg-config, the
# toolkit's or Xlib's development files or valgrind.
set -u

kind=$1
build=$(cd "$2" && pwd)
work=$3
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)

# meson test points LD_LIBRARY_PATH at the build tree: the apps must
# load the installed copy, as their users' do (through the run path).
unset LD_LIBRARY_PATH

skip() { echo "SKIP: $*"; exit 77; }
fail=0
FAIL() { echo "FAIL: $*"; fail=1; }

case $kind in
  gtk) app=gtk-hasher; modules="loopbridge-glib gtk4" ;;
  tk) app=tk-pinger; modules="loopbridge-tk tk" ;;
  *) echo "usage: run-app.sh gtk|tk BUILD_ROOT WORK_DIR" >&2; exit 2 ;;
esac
for tool in xvfb-run xdotool cc pkg-config valgrind python3; do
  command -v $tool >/dev/null || skip "$tool missing"
done
pkg-config --exists "${modules#* }" x11 || skip "no ${modules#* } or x11 development files"
[ "$kind" = gtk ] || command -v wish8.6 >/dev/null || skip "wish8.6 missing (package tk8.6)"

# The load, for the timing checks.
cpus=$(nproc)
load=$(cut -d' ' -f1 /proc/loadavg)
overloaded=$(awk -v l="$load" -v c="$cpus" 'BEGIN { print (l > c) ? 1 : 0 }')
echo "load average $load on $cpus CPUs$([ "$overloaded" = 1 ] && echo ': overloaded, timing bounds are reported, not failed')"
# timing WHAT VALUE BOUND: VALUE (ms) must be at most BOUND.
timing() {
  if awk -v v="$2" -v b="$3" 'BEGIN { exit !(v != "" && v <= b) }'; then
    echo "ok: $1: $2 ms (bound $3 ms)"
  elif [ "$overloaded" = 1 ]; then
    echo "NOT CHECKED (overloaded machine): $1: $2 ms, over the bound of $3 ms"
  else
    FAIL "$1: $2 ms, over the bound of $3 ms"
  fi
}

# ---- 1. install, build ----
rm -rf "$work"
mkdir -p "$work"
dest=$work/dest
meson install -C "$build" --no-rebuild --destdir "$dest" --quiet >"$work/install.log" 2>&1 ||
  { cat "$work/install.log"; echo "FAIL: meson install --destdir"; exit 1; }
pc=$(find "$dest" -name loopbridge.pc -path '*/pkgconfig/*' | head -1)
[ -n "$pc" ] || { echo "FAIL: no loopbridge.pc installed under $dest"; exit 1; }
for f in "$(dirname "$pc")"/*.pc; do
  sed -i "s|^prefix=|prefix=$dest|" "$f"
done
PKG_CONFIG_PATH=$(dirname "$pc")
export PKG_CONFIG_PATH
libdir=$(pkg-config --variable=libdir loopbridge)
# shellcheck disable=SC2046,SC2086
cc -std=c11 -Wall -Wextra -Werror -O2 -g "$here/$app.c" -o "$work/$app" \
  $(pkg-config --cflags --libs $modules) -Wl,-rpath,"$libdir" ||
  { echo "FAIL: cannot build $app against the installed library"; exit 1; }
# shellcheck disable=SC2046
cc -std=c11 -O2 "$here/wm-close.c" -o "$work/wm-close" $(pkg-config --cflags --libs x11) ||
  { echo "FAIL: cannot build wm-close"; exit 1; }
ldd "$work/$app" | grep libloopbridge | grep -qv "$dest" &&
  { ldd "$work/$app"; echo "FAIL: $app loads a libloopbridge from outside $dest"; exit 1; }
echo "built $app with pkg-config $modules, libraries from $libdir"

# The files the GTK app hashes: a small one, two of a few MiB, a 2 GiB
# sparse one (no disk used) that lasts long enough to be cancelled.
files=$work/files
mkdir -p "$files"
printf 'loopbridge apps test\nsecond line\n' >"$files/small.txt"
head -c $((3 << 20)) /dev/urandom >"$files/a.bin"
head -c $((5 << 20)) /dev/urandom >"$files/b.bin"
truncate -s 2G "$files/big.bin"

supp=""
for f in "$root"/tests/valgrind/*.supp "$here"/toolkits.supp; do
  [ -f "$f" ] && supp="$supp --suppressions=$f"
done
# No GL under Xvfb: GTK renders with cairo and does not load Mesa.
export GSK_RENDERER=cairo GDK_DEBUG=gl-disable NO_AT_BRIDGE=1
export KIND=$kind APP=$work/$app FILES=$files WORK=$work SUPP=$supp PLAIN_TICK=$here/plain-tk-tick.tcl

# ---- 2. drive it under Xvfb ----
# Inside xvfb-run: helpers, then the runs. Each app's output goes to a log;
# the checks below read it.
# shellcheck disable=SC2016 # expanded by the inner bash
xvfb-run -a bash -c '
set -u
log=$WORK/run.log
# The apps measure while the test drives them, and on two CPUs whose
# other core the jobs keep busy, a process the test starts takes the core
# the Tk thread needs: a grep and a sleep every 100 ms, or an xdotool per
# input, made ticks 2-6 ms late (docs/tk.md). So the test starts none
# while they run: it sleeps and polls in the shell, drives the pointer
# and keyboard through one xdotool started first (reading commands on
# its standard input), and reads the clock from bash.
#
# nap SECONDS: a read that times out on a pipe nobody writes.
exec {nap_fd}<> <(:)
nap() { read -r -t "$1" -u "$nap_fd" _ || :; }
now_ms() { local us=${EPOCHREALTIME//[!0-9]/}; ms=$(( us / 1000 )); } # into ms
# What the test starts in the background goes with it, however it ends.
spinners="" pid="" wish=""
trap "kill \$spinners \$pid \$wish \${XDO_PID:-} 2>/dev/null" EXIT
# A write to an xdotool that exited fails instead of ending the script
# (caught, not ignored: what the script starts gets the default action).
trap ":" PIPE
start_xdo() { coproc XDO { exec nice -n 19 xdotool - 2>/dev/null; }; }
start_xdo
# xdo COMMAND...: runs one xdotool command line and waits until it is
# done (the location query after it answers last); found is the first
# line it printed (a window, for a search), empty if none. A search that
# finds nothing follows each command: the windows a search found are
# where xdotool would send later keys and clicks (as synthetic events,
# not as input), and an X error on them ends it.
xdo() {
  local line
  found=""
  # An X error (the focus given to a dialog not mapped yet) ends
  # xdotool: a new one takes over.
  kill -0 "${XDO_PID:-0}" 2>/dev/null && [ -n "${XDO[1]:-}" ] || start_xdo
  local in=${XDO[1]} out=${XDO[0]}
  echo "$*" >&"$in"
  echo "search --name ^lb-apps-no-such-window\$" >&"$in"
  echo getmouselocation >&"$in"
  while read -r -t 60 -u "$out" line; do
    case $line in x:*) return 0 ;; esac
    [ -n "$found" ] || found=$line
  done
  # Its answer, if it comes, would be taken for the next command: the
  # next one starts a new xdotool.
  kill "${XDO_PID:-0}" 2>/dev/null
  echo "xdotool did not answer: $*"; return 1
}
wm_close() { nice -n 19 "$WORK/wm-close" "$@"; } # the one process, at a close
# wait_for PATTERN FILE SECONDS [COUNT]: until FILE has COUNT lines
# matching (an extended regular expression).
wait_for() {
  local n=$(( $3 * 10 )) want=${4:-1} line count
  while [ "$n" -gt 0 ]; do
    count=0
    while IFS= read -r line; do
      [[ $line =~ $1 ]] && count=$((count + 1))
    done <"$2"
    [ "$count" -ge "$want" ] && return 0
    nap 0.1; n=$((n - 1))
  done
  echo "timed out waiting for \"$1\" in $2"; return 1
}
# click NAME FILE [WINDOW]: a real pointer click at the widget NAME (the
# last "widget NAME X Y" line of FILE).
click() {
  local line at=""
  while IFS= read -r line; do
    case $line in "widget $1 "*) at=${line#"widget $1 "} ;; esac
  done <"$2"
  [ -n "$at" ] || { echo "no widget $1 in $2"; return 1; }
  if [ -n "${3:-}" ]; then xdo mousemove --window "$3" $at click 1
  else xdo mousemove $at click 1; fi
}
# find_window TITLE: the window with that exact title, once it exists.
find_window() { wid=""; xdo search --sync --name "^$1\$" && wid=$found && [ -n "$wid" ]; }
# close_window ID PID SECONDS: WM_DELETE_WINDOW, then the time to exit in
# ms (polled every 10 ms); killed if still there after SECONDS.
close_window() {
  local t0 t1 rc n=$(( $3 * 100 ))
  now_ms; t0=$ms
  wm_close "$1" >/dev/null
  while kill -0 "$2" 2>/dev/null && [ "$n" -gt 0 ]; do nap 0.01; n=$((n - 1)); done
  now_ms; t1=$ms
  if [ "$n" -eq 0 ]; then
    echo "close-to-exit: still running after $3 s: killed"
    kill -9 "$2"; wait "$2"; return
  fi
  wait "$2"; rc=$?
  echo "close-to-exit: $(( t1 - t0 )) ms, status $rc"
}
# dismiss_modal LOG SECONDS DELAY [TITLE]: once the Tk app (or plain
# wish) opened its message box, presses Return in it DELAY seconds later
# (keyboard focus given as a window manager would), again each second
# until the app saw it close (a dialog not mapped yet cannot take the
# focus).
dismiss_modal() {
  wait_for "^modal: open" "$1" "$2" || return 1
  nap "$3"
  local n=$2
  while [ "$n" -gt 0 ]; do
    xdo search --onlyvisible --name "^${4:-lb-apps-modal}\$" &&
      [ -n "$found" ] && xdo windowfocus "$found" && xdo key Return
    wait_for "^modal: closed" "$1" 1 >/dev/null && return 0
    n=$((n - 1))
  done
  echo "the message box did not close"; return 1
}
title=lb-apps-$( [ "$KIND" = gtk ] && echo gtk-hasher || echo tk-pinger)

if [ "$KIND" = tk ]; then
  echo "== plain Tk: the tick and the load of the app, without loopbridge" >&2
  # As many busy processes as the app has pool threads (tk-pinger.c).
  # (the CPUs this process may run on, as the app counts them)
  cpus=$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)
  for i in $(seq $(( cpus > 2 ? cpus - 1 : 1 ))); do
    nice -n 10 sh -c "while :; do :; done" & spinners="$spinners $!"
  done
  # Driven as the app is below: its window found, the message box
  # dismissed, Next clicked (as Cancel is in the app) 0.5 s after it
  # closed, and the window closed 0.5 s later.
  plain=$WORK/plain.log
  timeout 30 wish8.6 "$PLAIN_TICK" >"$plain" 2>&1 & wish=$!
  wait_for "^widget next" "$plain" 30 &&
    find_window plain-tk-tick &&
    dismiss_modal "$plain" 30 0.7 plain-tk-modal && {
      nap 0.5
      click next "$plain"
      nap 0.5
      wm_close "$wid" >/dev/null
    }
  wait $wish
  wish=""
  # shellcheck disable=SC2086
  kill $spinners; wait $spinners 2>/dev/null
  spinners=""
fi

echo "== run: clicks and a close mid-job" >&2
"$APP" "$FILES" >"$log" 2>&1 & pid=$!
wait_for "^hashing:" "$log" 60 || { kill $pid; exit 1; }
find_window "$title" || { echo "no window $title"; exit 1; }
if [ "$KIND" = gtk ]; then
  nap 0.3
  click cancel "$log" "$wid"
  wait_for "^await: ready" "$log" 30 || { kill $pid; exit 1; }
  click again "$log" "$wid"
  wait_for "^hashing:" "$log" 30 2 || { kill $pid; exit 1; }
else
  dismiss_modal "$log" 30 0.7 || { kill $pid; exit 1; }
  nap 0.5
  click cancel "$log"
  # The jobs running then see it (one per pool thread at most, each
  # within 50 ms: checked below); Hash is refused until they stopped.
  wait_for "^job .*: cancel observed" "$log" 30 || { kill $pid; exit 1; }
  nap 0.3
  click hash "$log"
  wait_for "^hashing:" "$log" 30 2 || { kill $pid; exit 1; }
fi
nap 0.5
close_window "$wid" $pid 20 >>"$log"
pid=""

echo "== run under valgrind: a close mid-job" >&2
vlog=$WORK/valgrind.run.log
# shellcheck disable=SC2086
valgrind --leak-check=full --show-leak-kinds=definite --errors-for-leak-kinds=definite \
  --fair-sched=yes --child-silent-after-fork=yes --num-callers=40 --log-file="$WORK/valgrind.log" $SUPP "$APP" "$FILES" >"$vlog" 2>&1 & pid=$!
wait_for "^hashing:" "$vlog" 300 || { kill $pid; exit 1; }
if [ "$KIND" = tk ]; then
  # Dismissed first: a main window destroyed while tk_messageBox is still
  # setting its dialog up can leave the message box in its vwait.
  dismiss_modal "$vlog" 120 2 || { kill $pid; exit 1; }
fi
nap 1
find_window "$title" || { echo "no window $title"; exit 1; }
close_window "$wid" $pid 180 >>"$vlog"
pid=""
' || { cat "$work/run.log" "$work/valgrind.run.log" 2>/dev/null; echo "FAIL: the drive did not complete"; exit 1; }

log=$work/run.log
vlog=$work/valgrind.run.log
echo "---- $app"
cat "$log"
echo "---- $app under valgrind"
cat "$vlog"
echo "----"

# ---- 3. the checks ----
expect() { grep -q -- "$1" "$2" || FAIL "no \"$1\" in $(basename "$2")"; }
if grep -q "CRITICAL" "$log" "$vlog"; then FAIL "a critical was logged"; fi
# A task or job that failed, or a Tcl background error (tk-pinger prints
# those instead of opening bgerror's dialog).
if grep -E "^error: |: failed: " "$log" "$vlog"; then FAIL "a task, a job or a script failed"; fi
# observed START END: the latencies the jobs reported between the first
# line matching START and the next one matching END.
observed() {
  awk -v s="$1" -v e="$2" '!on && $0 ~ s { on = 1; next } on && $0 ~ e { exit }
    on && /^job [0-9]*: cancel observed after/ { print $(NF - 1) }' "$log"
}
if [ "$kind" = gtk ]; then
  expect "^gio: small.txt $(stat -c %s "$files/small.txt") bytes$" "$log"
  expect "^cancel: clicked$" "$log"
  expect "^hash: big.bin cancelled$" "$log"
  expect "^await: clicked$" "$log"
  lat=$(observed "^cancel: clicked" "^await: ready")
else
  expect "^modal: closed after" "$log"
  pings=$(sed -n 's/^modal: closed after [0-9]* ms, \([0-9]*\) pings meanwhile$/\1/p' "$log")
  { [ -n "$pings" ] && [ "$pings" -gt 0 ]; } || FAIL "no round trip while the message box was open"
  # "ticks: N while 4 jobs hashed, max gap G ms, across the message box's
  # building B ms", once a batch: the first with the message box.
  gaps=$(sed -n "s/^ticks: [0-9]* while 4 jobs hashed, max gap \([0-9.]*\) ms, across the message box's building \([0-9.]*\) ms$/\1 \2/p" "$log")
  read -r gap building <<<"$(echo "$gaps" | sed -n 1p)" # the batch with the message box
  gap_plain=$(echo "$gaps" | sed -n 2p | cut -d' ' -f1)  # the batch after Hash, without it
  ticks=$(sed -n 's/^ticks: \([0-9]*\) while 4 jobs hashed.*/\1/p' "$log" | head -1)
  { [ -n "$ticks" ] && [ "$ticks" -ge 20 ]; } || FAIL "the tick ran '$ticks' times while the jobs hashed"
  # The same tick in plain wish under the same load, without loopbridge:
  # what Tk and this machine allow (docs/tk.md, "CPU-bound jobs and the pool").
  base=$(sed -n 's/^plain tk: max gap \([0-9.]*\) ms with the message box, \([0-9.]*\) ms without, \([0-9.]*\) ms across its building$/\1 \2 \3/p' \
    "$work/plain.log")
  [ -n "$base" ] || { cat "$work/plain.log"; FAIL "plain wish printed no tick figures"; }
  read -r base_modal base_plain base_building <<<"${base:-x x x}"
  echo "16 ms tick, largest gap with the message box open: $gap ms (plain Tk under the same load: $base_modal ms)"
  echo "16 ms tick, largest gap without it: $gap_plain ms (plain Tk under the same load: $base_plain ms)"
  echo "16 ms tick, gap across the message box's building: $building ms (plain Tk under the same load: $base_building ms)"
  # A freeze fails; so does a tick loopbridge makes much later than
  # plain Tk's (the app's has reached 25 ms where plain Tk's was 16-20:
  # the bound leaves room for this machine's late wakeups).
  timing "16 ms tick, largest gap while 4 jobs hashed (a freeze)" "$gap" 100
  timing "16 ms tick, gap across the message box's building (a freeze)" "$building" 100
  timing "16 ms tick without the message box, largest gap less plain Tk's" \
    "$(awk -v a="$gap_plain" -v b="$base_plain" 'BEGIN { if (a != "" && b != "") printf "%.1f", a - b }')" 25
  goal() { # goal WHICH GAP: the 20 ms goal, reported
    if awk -v v="$2" 'BEGIN { exit !(v != "" && v <= 20) }'; then
      echo "goal met: 16 ms tick, largest gap while 4 jobs hashed, $1: $2 ms (goal 20 ms)"
    else
      echo "goal NOT met: 16 ms tick, largest gap while 4 jobs hashed, $1: $2 ms (goal 20 ms)"
    fi
  }
  goal "with the message box open" "$gap"
  goal "without it" "$gap_plain"
  # The jobs running at Cancel see it; the others, queued between slices,
  # are withdrawn, unless the pool started one before Cancel reached its
  # task (the group cancels them one after the other): that one sees it.
  lat=$(observed "^ticks:" "^hashing:")
  seen=$(echo "$lat" | grep -c .)
  { [ "$seen" -ge 1 ] && [ "$seen" -le 4 ]; } || FAIL "$seen jobs saw the cancel: '$lat'"
fi
[ -n "$lat" ] || FAIL "no job observed Cancel"
worst=$(echo "$lat" | sort -n | tail -1)
timing "Cancel to the last job's stop ($(echo "$lat" | wc -l) jobs were running)" "$worst" 50
expect "^close: cancelling$" "$log"
expect "^exit: " "$log"
close=$(sed -n 's/^close-to-exit: \([0-9]*\) ms, status 0$/\1/p' "$log")
[ -n "$close" ] || FAIL "the app did not exit with status 0 after the close"
timing "window closed mid-job to process exit" "$close" 1000

# ---- 4. valgrind ----
expect "^close: cancelling$" "$vlog"
grep -q "status 0" "$vlog" || FAIL "the app under valgrind did not exit with status 0"
python3 - "$work/valgrind.log" "$app" <<'PY' || fail=1
import re, sys
text = open(sys.argv[1]).read()
app = sys.argv[2]
# A record: the lines of one error or leak, up to a blank line.
records, cur = [], []
for line in text.splitlines():
    body = re.sub(r"^==\d+== ?", "", line)
    if body.strip():
        cur.append(body)
    elif cur:
        records.append(cur)
        cur = []
if cur:
    records.append(cur)
# Whose is a record: ours when loopbridge or the app is among the
# innermost frames (what allocated the lost block, or made the bad
# access). Every toolkit allocation has main() and, often, a loopbridge
# callback far down its stack: those do not count.
INNER = 8
ours, theirs = [], []
for r in records:
    head = r[0]
    if not re.match(r"(Invalid|Conditional|Use of uninit|Syscall param|Mismatched|Source and dest"
                    r"|Argument|.*definitely lost)", head):
        continue
    frames = " ".join(r[1:1 + INNER])
    mine = re.search(r"\blb_|libloopbridge|%s\.c" % re.escape(app), frames)
    (ours if mine else theirs).append(r)
summary = re.findall(r"ERROR SUMMARY: (\d+) errors", text)
print("valgrind: %s errors in all; %d records through loopbridge or %s, %d in the toolkits alone"
      % (summary[-1] if summary else "?", len(ours), app, len(theirs)))
for r in theirs:
    print("   toolkit: " + r[0])
for r in ours:
    print("FAIL: valgrind:\n   " + "\n   ".join(r))
sys.exit(1 if ours or not summary else 0)
PY

[ $fail -eq 0 ] && echo "PASS: $app"
exit $fail
