#!/usr/bin/env bash
# loopbridge developer entry point: what the README's commands call.
#
#   tools/dev.sh deps     install the Debian packages that are missing (as root)
#   tools/dev.sh build    configure and build (build/normal)
#   tools/dev.sh test     deps + every test suite: normal, ASan+UBSan,
#                         ucontext fibers, TSan (threaded tests), valgrind
#   tools/dev.sh demo     deps + build + run the main demo (the GTK4 app;
#                         under Xvfb when there is no display)
#   tools/dev.sh bench    deps + the benchmark workloads side by side with
#                         the peers (tools/bench.sh; --quick, --no-peers)
#
# Environment: JOBS (ninja parallelism, default: CPU count).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
jobs=${JOBS:-$(nproc)}

packages=(
  meson ninja-build pkg-config gcc libc6-dev libcmocka-dev
  libglib2.0-dev libgtk-4-dev tcl-dev tk-dev
  xvfb xauth imagemagick xdotool valgrind
  gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user
)

log() { printf '\n== %s\n' "$*"; }

cmd_deps() {
  local missing=()
  for p in "${packages[@]}"; do
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
configure() {
  local dir=$1; shift
  if [ -f "$dir/build.ninja" ]; then
    meson configure "$dir" "$@" >/dev/null
  else
    meson setup "$dir" "$@" >/dev/null
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

cmd_test() {
  cmd_deps
  local failed=()

  log "build: normal (--werror)"
  cmd_build
  suite "normal" build/normal || failed+=(normal)

  log "build: ASan+UBSan"
  configure build/asan --werror -Db_sanitize=address,undefined -Db_lundef=false -Dbuildtype=debug
  ninja -C build/asan -j "$jobs"
  ASAN_OPTIONS=halt_on_error=1:detect_leaks=1:abort_on_error=1 \
  UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
    suite "asan+ubsan" build/asan || failed+=(asan)

  log "build: ucontext fiber switch"
  configure build/ucontext --werror -Dfiber_switch=ucontext
  ninja -C build/ucontext -j "$jobs"
  suite "ucontext" build/ucontext --suite conformance --suite unit || failed+=(ucontext)

  log "build: TSan (threaded tests)"
  configure build/tsan --werror -Db_sanitize=thread -Db_lundef=false
  ninja -C build/tsan -j "$jobs"
  LB_TEST_GROUPS=threadsafe,future,executor,signal,loop_thread TSAN_OPTIONS=halt_on_error=1 \
    suite "tsan" build/tsan conformance-native unit-inbox || failed+=(tsan)

  log "valgrind memcheck: conformance, Tk driver"
  local supp=""
  for f in "$root"/tests/valgrind/*.supp; do supp="$supp --suppressions=$f"; done
  local vtests="conformance-native" listed
  listed=$(meson test -C build/normal --list 2>/dev/null)
  for t in conformance-glib conformance-tk tk-driver tk-complaints; do
    grep -q "/ $t\$" <<<"$listed" && vtests="$vtests $t"
  done
  suite "valgrind" build/normal $vtests \
    --wrapper "valgrind --error-exitcode=1 --leak-check=full --show-leak-kinds=definite,indirect --errors-for-leak-kinds=definite,indirect$supp -q" \
    --timeout-multiplier 4 || failed+=(valgrind)

  echo
  echo "$total_passed passed, $total_failed failed"
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
  test) cmd_test ;;
  demo) shift; cmd_demo "$@" ;;
  bench) shift; cmd_deps; exec "$root/tools/bench.sh" "$@" ;;
  *) echo "usage: tools/dev.sh deps|build|test|demo|bench" >&2; exit 2 ;;
esac
