#!/usr/bin/env bash
# Side-by-side benchmarks: loopbridge's workloads (tests/bench/bench.c) on
# every driver it was built with (native, glib, tk), and the peer programs
# of ../shared/bench/peers (asyncio, uvloop, gbulb, libuv, glib, tcl) when
# that directory is there, plus our own peers for W11, which the shared
# ones lack (tests/bench/peers: libuv in C, asyncio and uvloop with
# asyncio streams), and the Python package's loops (py-tk:
# loopbridge.tk, py-glib: loopbridge.glib) running the shared Python peer
# program's W1-W9 beside asyncio, uvloop and gbulb, interleaved in one
# session: run 1 of every
# workload of every implementation, then run 2, ... Each workload runs in
# its own process. The workloads are defined in
# ../shared/bench/WORKLOADS.md.
#
#   tools/bench.sh            full size, RUNS=3
#   tools/bench.sh --quick    n/10 (a CI smoke), RUNS=1 unless RUNS is set
#   tools/bench.sh --no-peers loopbridge only
#
# Environment: RUNS (runs per workload), TIMEOUT (seconds per process,
# default 120; 60 with --quick), DRIVERS (default "native glib tk"), PEERS (default
# "asyncio uvloop gbulb libuv glib tcl"), PYLOOPS (default "py-tk py-glib";
# "" leaves them out), WORKLOADS (default all, e.g. "W11"), JOBS (ninja
# parallelism).
#
# Writes build/bench/results-<timestamp>.jsonl (one JSON line per
# workload run, the peers' format plus "run" and "proc_maxrss_kb"),
# build/bench/table-<timestamp>.md (what is printed at the end) and
# build/bench/per-callback.png (with gnuplot).
set -uo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

quick=0
peers_on=1
for arg in "$@"; do
  case "$arg" in
    --quick) quick=1 ;;
    --no-peers) peers_on=0 ;;
    -h|--help) sed -n '2,26p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench.sh: unknown argument: $arg (try --help)" >&2; exit 2 ;;
  esac
done

if [ "$quick" = 1 ]; then runs=${RUNS:-1}; else runs=${RUNS:-3}; fi
if [ "$quick" = 1 ]; then timeout_s=${TIMEOUT:-60}; else timeout_s=${TIMEOUT:-120}; fi
drivers=${DRIVERS:-"native glib tk"}
peers=${PEERS:-"asyncio uvloop gbulb libuv glib tcl"}
jobs=${JOBS:-$(nproc)}
peers_dir=$root/../shared/bench/peers
out_dir=$root/build/bench
stamp=$(date +%Y%m%d-%H%M%S)
results=$out_dir/results-$stamp.jsonl
log=$out_dir/log-$stamp.txt
mkdir -p "$out_dir"
: > "$results"
: > "$log"

say() { printf '== %s\n' "$*" >&2; }

# ---------------------------------------------------------------- build
say "build: build/release (buildtype=release, no sanitizers)"
if [ -f build/release/build.ninja ]; then
  meson setup --reconfigure build/release -Dbuildtype=release -Db_sanitize=none -Dtests=enabled >/dev/null ||
    { echo "bench.sh: meson setup --reconfigure build/release failed" >&2; exit 1; }
else
  meson setup build/release -Dbuildtype=release -Db_sanitize=none -Dtests=enabled >/dev/null ||
    { echo "bench.sh: meson setup build/release failed" >&2; exit 1; }
fi
ninja -C build/release -j "$jobs" tests/bench/bench >/dev/null ||
  { echo "bench.sh: building tests/bench/bench failed" >&2; exit 1; }
bench=$root/build/release/tests/bench/bench

# The Python package's loops: the extension and its modules, in the release
# build, imported from there by Debian's interpreter.
pyloops=${PYLOOPS-"py-tk py-glib"}
py_path=$root/build/release/bridges/python
py_impls=""
if [ -n "$pyloops" ] && [ "$peers_on" = 1 ] && [ -f "$peers_dir/py_peers.py" ]; then
  py_targets=$(ninja -C build/release -t targets all 2>/dev/null |
    grep -oE '^bridges/python/loopbridge/[^:/]+\.(so|py)' | sort -u)
  if [ -n "$py_targets" ] &&
     ninja -C build/release -j "$jobs" $py_targets >>"$log" 2>&1; then
    for p in $pyloops; do
      if PYTHONPATH=$py_path /usr/bin/python3 -c "import loopbridge.${p#py-}" >>"$log" 2>&1; then
        py_impls="$py_impls $p"
      else
        say "python loop $p: cannot import loopbridge.${p#py-} (see $log), skipped"
      fi
    done
  else
    say "python loops: the package is not in build/release (python headers?), skipped"
  fi
fi
py_factory() { case "$1" in py-tk) echo loopbridge.tk:bench_loop ;; py-glib) echo loopbridge.glib:EventLoop ;; esac; }

# The drivers this build has: LB_DRIVER=x fails when x is not linked in.
lb_impls=""
for d in $drivers; do
  if LB_DRIVER=$d "$bench" version >/dev/null 2>&1; then
    lb_impls="$lb_impls loopbridge-$d"
  else
    say "driver $d: not in this build, skipped"
  fi
done

# ---------------------------------------------------------------- peers
peer_impls=""
PY=/usr/bin/python3
peer_bin=$out_dir/peers
if [ "$peers_on" = 1 ] && [ -f "$peers_dir/run.sh" ]; then
  say "peers: $peers_dir"
  has_peer() { case " $peers " in *" $1 "*) return 0 ;; esac; return 1; }
  # The peers' own packages, from Debian, as run.sh installs them.
  need=""
  for pkg in python3-uvloop python3-gbulb python3-gi libuv1-dev libglib2.0-dev tcl-dev pkg-config gcc; do
    dpkg -s "$pkg" >/dev/null 2>&1 || need="$need $pkg"
  done
  if [ -n "$need" ]; then
    if [ "$(id -u)" = 0 ]; then
      say "installing peer packages:$need"
      (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $need) >>"$log" 2>&1 ||
        say "could not install:$need (the peers that need them are skipped)"
    else
      say "missing peer packages (run as root to install):$need"
    fi
  fi
  mkdir -p "$peer_bin"
  build_peer() { # name source pkg-config-module extra-flags
    local name=$1 src=$2 mod=$3; shift 3
    if ! pkg-config --exists "$mod" 2>/dev/null; then
      say "peer $name: pkg-config $mod missing, skipped"; return 1
    fi
    # shellcheck disable=SC2046
    gcc -O2 -Wall -o "$peer_bin/$src" "$peers_dir/$src.c" $(pkg-config --cflags --libs "$mod") "$@" -lm \
      >>"$log" 2>&1 || { say "peer $name: build failed (see $log), skipped"; return 1; }
  }
  for p in $peers; do
    case "$p" in
      libuv) build_peer libuv uv_peers libuv && peer_impls="$peer_impls libuv" ;;
      glib) build_peer glib glib_peers glib-2.0 && peer_impls="$peer_impls glib" ;;
      tcl) build_peer tcl tcl_peers tcl -lpthread && peer_impls="$peer_impls tcl" ;;
      asyncio|uvloop|gbulb)
        if "$PY" "$peers_dir/py_peers.py" --loop "$p" --versions >/dev/null 2>>"$log"; then
          peer_impls="$peer_impls $p"
        else
          say "peer $p: cannot load (see $log), skipped"
        fi ;;
      *) say "peer $p: unknown, skipped" ;;
    esac
  done
elif [ "$peers_on" = 1 ]; then
  say "no peers: $peers_dir/run.sh not found"
fi

# Our own W11 peers (tests/bench/peers): the shared peers do not run W11.
own_dir=$root/tests/bench/peers
shared_impls=$peer_impls
w11_peers=""
if [ "$peers_on" = 1 ]; then
  mkdir -p "$peer_bin"
  for p in $peers; do
    case "$p" in
      libuv)
        if pkg-config --exists libuv 2>/dev/null &&
           gcc -O2 -Wall -o "$peer_bin/uv_echo" "$own_dir/uv_echo.c" $(pkg-config --cflags --libs libuv) \
             >>"$log" 2>&1; then
          w11_peers="$w11_peers libuv"
        else
          say "W11 peer libuv: libuv missing or build failed (see $log), skipped"
        fi ;;
      asyncio|uvloop)
        if "$PY" "$own_dir/py_echo.py" --loop "$p" --versions >/dev/null 2>>"$log"; then
          w11_peers="$w11_peers $p"
        else
          say "W11 peer $p: cannot load (see $log), skipped"
        fi ;;
    esac
  done
  for p in $w11_peers; do
    case " $peer_impls " in *" $p "*) ;; *) peer_impls="$peer_impls $p" ;; esac
  done
fi
has_w11_peer() { case " $w11_peers " in *" $1 "*) return 0 ;; esac; return 1; }
has_shared_peer() { case " $shared_impls " in *" $1 "*) return 0 ;; esac; return 1; }

# ---------------------------------------------------------------- versions
versions=$out_dir/versions-$stamp.json
{
  for i in $lb_impls; do LB_DRIVER=${i#loopbridge-} "$bench" version; done
  for p in $peer_impls; do
    case "$p" in
      libuv) if [ -x "$peer_bin/uv_peers" ]; then "$peer_bin/uv_peers" version; else "$peer_bin/uv_echo" version; fi ;;
      glib) "$peer_bin/glib_peers" version ;;
      tcl) "$peer_bin/tcl_peers" version ;;
      py-*) PYTHONPATH=$py_path "$PY" "$peers_dir/py_peers.py" --loop "$p" --factory "$(py_factory "$p")" --versions ;;
      *) if [ -f "$peers_dir/py_peers.py" ]; then "$PY" "$peers_dir/py_peers.py" --loop "$p" --versions
         else "$PY" "$own_dir/py_echo.py" --loop "$p" --versions; fi ;;
    esac
  done
} > "$versions" 2>>"$log"

# ---------------------------------------------------------------- workloads
all_workloads=${WORKLOADS:-"W1 W2 W3 W4 W5 W6 W7 W8 W9 W10 W11 G1 G2 G3 G4"}

# W11 comes from our own peers, the rest from the shared ones.
workloads_of() {
  local shared="" own=""
  has_w11_peer "$1" && own="W11"
  case "$1" in
    loopbridge-*-shared) echo "W6 W7"; return ;; # tasks on the loop's shared stack
    loopbridge-native) echo "W1 W2 W3 W4 W5 W6 W7 W8 W9 W10 W11 G2 G3"; return ;; # G1, G4 need a host loop
    loopbridge-*) echo "W1 W2 W3 W4 W5 W6 W7 W8 W9 W10 W11 G1 G2 G3 G4"; return ;;
    libuv) shared="W1 W2 W3 W4 W5 W9" ;;
    glib) shared="W1 W2 W3 W4 W5 W9 G2" ;;
    tcl) shared="W1 W2 W3 W4 W5 G2" ;;
    asyncio|uvloop|gbulb) shared="W1 W2 W3 W4 W5 W6 W7 W8 W9" ;;
    py-*) echo "W1 W2 W3 W4 W5 W6 W7 W8 W9"; return ;;
  esac
  has_shared_peer "$1" || shared=""
  echo "$shared $own"
}

# The default n of each workload (WORKLOADS.md; G2: timers, G4: ms of
# each phase), and the tcl peer's own smaller defaults for W2 and W3.
default_n() {
  case "$1:$2" in
    tcl:W2) echo 100000 ;;
    tcl:W3) echo 20000 ;;
    *:W1|*:W2|*:W4|*:W8|*:G1) echo 1000000 ;;
    *:W3) echo 200000 ;;
    *:W5) echo 20000 ;;
    *:W6|*:W7|*:W9|*:W10) echo 100000 ;;
    *:G2) echo 1000 ;;
    *:G3) echo 5000 ;;
    *:G4) echo 2000 ;;
    *:W11) echo 10000 ;; # milliseconds of echo
  esac
}

has_workload() { case " $(workloads_of "$1") " in *" $2 "*) return 0 ;; esac; return 1; }

# run_one IMPL WORKLOAD RUN: one process, one JSON line appended.
run_one() {
  local impl=$1 w=$2 r=$3 n="" cmd=() rssf outf line rc rss
  [ "$quick" = 1 ] && n=$(( $(default_n "$impl" "$w") / 10 ))
  case "$impl:$w" in
    libuv:W11) cmd=("$peer_bin/uv_echo" W11 ${n:+"$n"}) ;;
    asyncio:W11|uvloop:W11) cmd=("$PY" "$own_dir/py_echo.py" --loop "$impl" --workload W11 ${n:+--n "$n"}) ;;
    loopbridge-*-shared:*)
      local d=${impl#loopbridge-}
      cmd=(env "LB_DRIVER=${d%-shared}" "$bench" "${w}s" ${n:+"$n"}) ;;
    loopbridge-*) cmd=(env "LB_DRIVER=${impl#loopbridge-}" "$bench" "$w" ${n:+"$n"}) ;;
    libuv:*) cmd=("$peer_bin/uv_peers" "$w" ${n:+"$n"}) ;;
    glib:*) cmd=("$peer_bin/glib_peers" "$w" ${n:+"$n"}) ;;
    tcl:*) cmd=("$peer_bin/tcl_peers" "$w" ${n:+"$n"}) ;;
    py-*) cmd=(env "PYTHONPATH=$py_path" "$PY" "$peers_dir/py_peers.py" --loop "$impl"
                 --factory "$(py_factory "$impl")" --workload "$w" ${n:+--n "$n"}) ;;
    *) cmd=("$PY" "$peers_dir/py_peers.py" --loop "$impl" --workload "$w" ${n:+--n "$n"}) ;;
  esac
  rssf=$(mktemp) outf=$(mktemp)
  # /usr/bin/time: the same peak-RSS figure (ru_maxrss of the process)
  # for every implementation, as proc_maxrss_kb.
  timeout "$timeout_s" /usr/bin/time -f '%M' -o "$rssf" "${cmd[@]}" >"$outf" 2>>"$log"
  rc=$?
  line=$(grep '^{' "$outf" | tail -1)
  rss=$(grep -E '^[0-9]+$' "$rssf" | tail -1)
  rm -f "$rssf" "$outf"
  case "$line" in
    "{"*) ;;
    *)
      local why="rc=$rc"
      [ "$rc" = 124 ] && why="timeout after ${timeout_s} s"
      line="{\"peer\": \"$impl\", \"workload\": \"$w\", \"error\": \"$why (no result line; stderr in $(basename "$log"))\"}" ;;
  esac
  echo "[$impl $w run $r] rc=$rc" >>"$log"
  echo "$line" | sed "s/^{/{\"run\": $r, \"proc_maxrss_kb\": ${rss:-null}, /" >>"$results"
  printf '  run %s %-18s %-4s %s\n' "$r" "$impl" "$w" \
    "$(echo "$line" | cut -c1-150 | sed 's/^{"peer": "[^"]*", //')" >&2
}

# Shared-stack tasks (LB_TASK_SHARED_STACK) for W6 and W7, on the native
# driver: a column of their own, since a program asks for them.
case " $lb_impls " in *" loopbridge-native "*) lb_impls="$lb_impls loopbridge-native-shared" ;; esac
impls="$lb_impls $peer_impls $py_impls"
say "implementations:$impls"
say "runs: $runs$([ "$quick" = 1 ] && echo ", quick (n/10)"); results: $results"
start=$(date +%s)
for r in $(seq 1 "$runs"); do
  for w in $all_workloads; do
    for impl in $impls; do
      has_workload "$impl" "$w" && run_one "$impl" "$w" "$r"
    done
  done
done
say "done in $(( $(date +%s) - start )) s"

# ---------------------------------------------------------------- table
table=$out_dir/table-$stamp.md
python3 "$root/tools/bench_table.py" "$results" --versions "$versions" \
  --plot "$out_dir/per-callback.png" $([ "$quick" = 1 ] && echo --quick) | tee "$table"
say "results: $results"
say "table:   $table"
