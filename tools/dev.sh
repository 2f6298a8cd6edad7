#!/usr/bin/env bash
# loopbridge developer entry point: what the README's commands call.
#
#   tools/dev.sh deps     install the Debian packages that are missing (as root)
#   tools/dev.sh build    configure and build (build/normal)
#   tools/dev.sh test     deps + every CI job: normal, ASan+UBSan, ucontext
#                         fibers, TSan (threaded tests), valgrind, fuzz
#                         (60 s), stress; prints the time of each job
#   tools/dev.sh test JOB...  deps + the jobs named, in that order (e.g.
#                         `tools/dev.sh test packaging headers`)
#   tools/dev.sh demo     deps + build + run the main demo (the GTK4 app;
#                         under Xvfb when there is no display)
#   tools/dev.sh bench    deps + the benchmark workloads side by side with
#                         the peers (tools/bench.sh; --quick, --no-peers)
#   tools/dev.sh api      regenerates docs/api.md from the public headers
#
# Environment: JOBS (ninja parallelism, default: CPU count), FUZZ_SECONDS
# (how long the fuzz job fuzzes, default 60).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
jobs=${JOBS:-$(nproc)}

packages=(
  meson ninja-build pkg-config gcc libc6-dev libcmocka-dev
  libglib2.0-dev libgtk-4-dev tcl-dev tk-dev
  xvfb xauth imagemagick xdotool valgrind
  gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user
  clang libclang-rt-14-dev
  g++
  python3-dev python3-tk python3-gi gir1.2-gtk-4.0 libpython3.11-testsuite python3-mesonpy patchelf
)
# Only `bench` needs these: the plot of docs/performance.md.
bench_packages=(gnuplot-nox)

# Where the public headers are: docs/api.md is generated from them.
api_dirs=("$root/core/include/loopbridge" "$root/bridges/glib/include/loopbridge"
          "$root/bridges/tk/include/loopbridge")

log() { printf '\n== %s\n' "$*"; }

# deps [PACKAGE...]: installs those of the packages (default: the build
# and test packages) that are missing.
cmd_deps() {
  local missing=() wanted=("$@")
  [ ${#wanted[@]} -gt 0 ] || wanted=("${packages[@]}")
  for p in "${wanted[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -eq 0 ]; then
    return 0
  fi
  log "installing: ${missing[*]}"
  if [ "$(id -u)" -ne 0 ]; then
    echo "dev.sh: these Debian packages are missing; run as root or install them: ${missing[*]}" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

# configure DIR [meson options...]: set up (or reconfigure) a build dir.
# Every build here runs tests: -Dtests=enabled makes a missing cmocka an
# error instead of a build without them. A dir set up while tests was a
# boolean option refuses the new value until it is reconfigured.
configure() {
  local dir=$1; shift
  if [ -f "$dir/build.ninja" ]; then
    meson configure "$dir" -Dtests=enabled "$@" >/dev/null 2>&1 ||
      meson setup --reconfigure "$dir" -Dtests=enabled "$@" >/dev/null
  else
    meson setup "$dir" -Dtests=enabled "$@" >/dev/null
  fi
}

cmd_build() {
  configure build/normal --werror
  ninja -C build/normal -j "$jobs"
}

total_passed=0
total_failed=0

# suite NAME DIR [meson test args...]: run meson test, print each cmocka
# summary line and count the results.
suite() {
  local name=$1 dir=$2; shift 2
  log "$name"
  local rc=0
  meson test -C "$dir" --print-errorlogs --num-processes "$jobs" "$@" || rc=$?
  local counts
  counts=$(python3 - "$(ls -t "$dir"/meson-logs/testlog*.json | head -1)" <<'PY'
import json, sys
ok = bad = 0
for line in open(sys.argv[1]):
    t = json.loads(line)
    for l in (t.get("stdout") or "").splitlines() + (t.get("stderr") or "").splitlines():
        if l.startswith("[  PASSED  ]") or l.startswith("[  FAILED  ]") or l.startswith("[==========] ") and "run" in l:
            print("   " + t["name"] + ": " + l, file=sys.stderr)
    if t["result"] in ("OK", "SKIP", "EXPECTEDFAIL"):
        ok += 1
    else:
        bad += 1
print(ok, bad)
PY
)
  total_passed=$((total_passed + ${counts% *}))
  total_failed=$((total_failed + ${counts#* }))
  if [ $rc -ne 0 ]; then
    echo "dev.sh: the $name suite failed" >&2
    return 1
  fi
}

# The CI jobs. Each returns non-zero when it failed; a build that fails
# fails its job.

job_normal() {
  log "build: normal (--werror)"
  cmd_build || return 1
  # The stress suite is a job of its own.
  suite "normal" build/normal --no-suite stress
}

job_asan() {
  log "build: ASan+UBSan"
  configure build/asan --werror -Db_sanitize=address,undefined -Db_lundef=false -Dbuildtype=debug &&
    ninja -C build/asan -j "$jobs" || return 1
  # The stress suite too: a callback outliving what it points to shows
  # only under load (a task cancelled while a timer still holds its
  # future).
  ASAN_OPTIONS=halt_on_error=1:detect_leaks=1:abort_on_error=1 \
  UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
    suite "asan+ubsan" build/asan
}

job_ucontext() {
  log "build: ucontext fiber switch"
  configure build/ucontext --werror -Dfiber_switch=ucontext &&
    ninja -C build/ucontext -j "$jobs" || return 1
  suite "ucontext" build/ucontext --suite conformance --suite unit
}

# ThreadSanitizer tracks at most 8,128 threads and fibers: the threaded
# groups only, and the threaded stress groups at a fifth of their size.
job_tsan() {
  log "build: TSan (threaded tests)"
  configure build/tsan --werror -Db_sanitize=thread -Db_lundef=false &&
    ninja -C build/tsan -j "$jobs" || return 1
  local rc=0 stress=() t
  for t in $(meson test -C build/tsan --list 2>/dev/null | grep -o 'stress-[a-z]*$'); do
    stress+=("$t")
  done
  local threaded=(threadsafe future executor signal loop_thread dns) conformance=() g
  for g in "${threaded[@]}"; do conformance+=("conformance-native-$g"); done
  TSAN_OPTIONS=halt_on_error=1 suite "tsan" build/tsan "${conformance[@]}" unit-inbox unit-block-reserve || rc=1
  LB_STRESS_GROUPS=posts,close_race,signals LB_STRESS_SCALE=0.2 TSAN_OPTIONS=halt_on_error=1 \
    suite "tsan stress" build/tsan "${stress[@]}" || rc=1
  return $rc
}

# The conformance suite on every driver built, the allocation failure
# sweep, the fuzz corpus and the Tk driver's Tcl-only tests: 0 errors, 0
# definite or indirect leaks.
job_valgrind() {
  log "valgrind memcheck"
  local supp=""
  for f in "$root"/tests/valgrind/*.supp; do supp="$supp --suppressions=$f"; done
  local vtests="unit-alloc-fail unit-block-reserve fuzz-replay" listed conformance
  listed=$(meson test -C build/normal --list 2>/dev/null)
  # Every conformance group on every driver built (conformance-<driver>-<group>).
  conformance=$(grep -o 'conformance-[a-z]*-[a-z_]*$' <<<"$listed" | tr '\n' ' ')
  if [ -z "$conformance" ]; then
    echo "dev.sh: build/normal lists no conformance-<driver>-<group> test" >&2
    return 1
  fi
  vtests="$vtests $conformance"
  for t in tk-driver tk-complaints; do
    grep -q "/ $t\$" <<<"$listed" && vtests="$vtests $t"
  done
  suite "valgrind" build/normal $vtests \
    --wrapper "valgrind --error-exitcode=1 --child-silent-after-fork=yes --leak-check=full --show-leak-kinds=definite,indirect --errors-for-leak-kinds=definite,indirect$supp -q" \
    --timeout-multiplier 4
}

# libFuzzer on the loop (tests/fuzz) for FUZZ_SECONDS. New inputs go to
# build/fuzz/corpus; a crash fails the job and leaves its input in
# build/fuzz/artifacts.
job_fuzz() {
  log "fuzz: ${FUZZ_SECONDS:-60} s (clang, libFuzzer, ASan+UBSan)"
  CC=clang configure build/fuzz --werror -Db_sanitize=address,undefined -Db_lundef=false \
    -Ddemos=false &&
    ninja -C build/fuzz -j "$jobs" tests/fuzz/fuzz-loop || return 1
  mkdir -p build/fuzz/corpus build/fuzz/artifacts
  local rc=0
  ASAN_OPTIONS=halt_on_error=1:detect_leaks=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
    build/fuzz/tests/fuzz/fuzz-loop -max_total_time="${FUZZ_SECONDS:-60}" -timeout=10 \
      -print_final_stats=1 -artifact_prefix=build/fuzz/artifacts/ \
      build/fuzz/corpus tests/fuzz/corpus >build/fuzz/fuzz.log 2>&1 || rc=$?
  grep -E "DONE|stat::number_of_executed_units|stat::new_units_added" build/fuzz/fuzz.log | sed 's/^/   /'
  if [ $rc -ne 0 ]; then
    tail -40 build/fuzz/fuzz.log
    echo "dev.sh: the fuzzer failed (input in build/fuzz/artifacts/); once fixed, copy the" \
      "input to tests/fuzz/corpus/regression-<what> so every test run replays it" >&2
    total_failed=$((total_failed + 1))
    return 1
  fi
  total_passed=$((total_passed + 1))
}

job_stress() {
  log "stress (normal build)"
  suite "stress" build/normal --suite stress
}

# check_steps NAME STEP...: runs tests/packaging/check-packaging.sh's steps
# and counts the job as one result.
check_steps() {
  local name=$1; shift
  if JOBS=$jobs "$root/tests/packaging/check-packaging.sh" "$@"; then
    total_passed=$((total_passed + 1))
  else
    echo "dev.sh: the $name check failed" >&2
    total_failed=$((total_failed + 1))
    return 1
  fi
}

# loopbridge as its users get it: the libraries alone installed into a
# prefix (build/packaging/prefix) and a program built against them with
# pkg-config; tests/packaging/consumer built with loopbridge as a meson
# subproject, which must build nothing but the libraries; a setup
# without cmocka; and the Python package installed with pip into a venv.
job_packaging() {
  log "packaging: install + pkg-config, subproject, no cmocka, pip"
  check_steps packaging install pkg-config subproject no-cmocka pip
}

# Every installed public header compiles alone as strict C11 and as C++
# (-pedantic -Werror), with its pkg-config file's flags.
job_headers() {
  log "headers: each alone, gcc -std=c11 and g++, -pedantic -Werror"
  check_steps headers install headers
}

# test [JOB...]: the jobs named, or every job.
cmd_test() {
  local all=(normal packaging headers asan ucontext tsan valgrind fuzz stress)
  local chosen=("$@") failed=() times=() job start
  [ ${#chosen[@]} -gt 0 ] || chosen=("${all[@]}")
  for job in "${chosen[@]}"; do
    if ! declare -F "job_$job" >/dev/null; then
      echo "dev.sh test: no job '$job'; the jobs: ${all[*]}" >&2
      exit 2
    fi
  done
  cmd_deps
  for job in "${chosen[@]}"; do
    start=$SECONDS
    "job_$job" || failed+=("$job")
    times+=("$(printf '%-10s %5d s' "$job" $((SECONDS - start)))")
  done

  echo
  echo "$total_passed passed, $total_failed failed"
  log "time per job ($(nproc) cores)"
  printf '   %s\n' "${times[@]}"
  printf '   %-10s %5d s\n' total "$SECONDS"
  if [ ${#failed[@]} -ne 0 ]; then
    echo "dev.sh test: FAILED: ${failed[*]}" >&2
    exit 1
  fi
}

# The main demo: the GTK4 app (async tasks updating widgets while the
# window stays live). Without a display it runs under Xvfb for a few
# seconds and leaves a screenshot in build/gtk4-demo.png.
cmd_demo() {
  cmd_deps
  cmd_build
  local demo=build/normal/demos/gtk4/gtk4-demo
  if [ ! -x "$demo" ]; then
    echo "dev.sh: the GTK4 demo was not built (GTK 4 missing?)" >&2
    exit 1
  fi
  if [ -n "${DISPLAY:-}${WAYLAND_DISPLAY:-}" ]; then
    "$demo" "$@"
  else
    log "no display: running the GTK4 demo under Xvfb for 6 s"
    GSK_RENDERER=cairo xvfb-run -a "$demo" --autostart --cancel-one \
      --screenshot build/gtk4-demo.png --quit-after 6 "$@"
    echo "screenshot: build/gtk4-demo.png"
  fi
}

case "${1:-}" in
  deps) cmd_deps ;;
  build) cmd_deps; cmd_build ;;
  test) shift; cmd_test "$@" ;;
  demo) shift; cmd_demo "$@" ;;
  bench) shift; cmd_deps; cmd_deps "${bench_packages[@]}"; exec "$root/tools/bench.sh" "$@" ;;
  api) exec python3 "$root/tools/gen-api.py" "$root/docs/api.md" "${api_dirs[@]}" ;;
  *) echo "usage: tools/dev.sh deps|build|test [JOB...]|demo|bench|api" >&2; exit 2 ;;
esac
