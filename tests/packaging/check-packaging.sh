#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# check-packaging.sh STEP...: loopbridge as its users get it.
#
#   install     builds the libraries alone (no tests, no demos) and installs
#               them into $PACKAGING_DIR/prefix
#   pkg-config  builds tests/packaging/consumer/main.c against that prefix
#               with pkg-config, linked to the shared and to the static
#               library, and runs both; links a program to each bridge
#               installed, through its own pkg-config file
#   headers     every public header of the tree is installed, and each
#               compiles alone as strict C11 and as C++ (check-headers.sh)
#   subproject  builds tests/packaging/consumer with loopbridge as a meson
#               subproject (the tree symlinked into a copy's subprojects/):
#               only loopbridge's libraries may be built, no test and no
#               demo; each bridge built must be found by its own name (the
#               wrap's [provide]); and the program must run
#   no-cmocka   configures the tree (demos included) where neither
#               pkg-config nor cmake can find cmocka: the default
#               (tests=auto) sets up, without tests
#   pip         the Python package as docs/python.md installs it: `pip
#               install --no-build-isolation` of a copy of the tree into a
#               venv made with --system-site-packages (no index: nothing is
#               downloaded), then its Tk and GLib loops run a task, from
#               outside the tree, with Debian's python3
#
# pkg-config and headers need install to have run once.
# Environment: PACKAGING_DIR (work directory, default build/packaging),
# JOBS (ninja parallelism), CC (default cc).
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
work=${PACKAGING_DIR:-$root/build/packaging}
jobs=${JOBS:-$(nproc)}
cc=${CC:-cc}
prefix=$work/prefix
pcdir=$prefix/lib/pkgconfig
consumer=$root/tests/packaging/consumer
strict=(-std=c11 -pedantic -Wall -Wextra -Werror)
bridges=(glib tk)

say() { printf '   %s\n' "$*"; }
indent() { sed 's/^/   /'; }
fail() { echo "check-packaging: $*" >&2; exit 1; }

step_install() {
  local build=$work/lib
  mkdir -p "$work"
  if [ -f "$build/build.ninja" ]; then
    meson configure "$build" --prefix "$prefix" >/dev/null
  else
    meson setup "$build" "$root" --prefix "$prefix" --libdir lib -Dtests=disabled \
      -Ddemos=false --werror >"$work/setup.log" || { cat "$work/setup.log"; fail "meson setup failed"; }
  fi
  ninja -C "$build" -j "$jobs" >"$work/build.log" || { cat "$work/build.log"; fail "the build failed"; }
  rm -rf "$prefix"
  meson install -C "$build" --no-rebuild --quiet >/dev/null
  say "installed into $prefix: $(cd "$prefix" && find . -type f | wc -l) files," \
    "pkg-config: $(cd "$pcdir" && echo *.pc)"
}

# consumer-link NAME CFLAGS/LIBS...: builds the consumer as a strict C11
# program with the flags given.
consumer_link() {
  local out=$work/pkg-config/$1; shift
  "$cc" "${strict[@]}" "$consumer/main.c" -o "$out" "$@" || fail "cannot build $out"
}

step_pkg_config() {
  export PKG_CONFIG_PATH=$pcdir
  rm -rf "$work/pkg-config"
  mkdir -p "$work/pkg-config"
  local cflags libs static_libs
  cflags=$(pkg-config --cflags loopbridge)
  libs=$(pkg-config --libs loopbridge)
  # $cflags and the libs hold several flags each: split on purpose.
  # shellcheck disable=SC2086
  consumer_link consumer-shared $cflags $libs
  LD_LIBRARY_PATH=$prefix/lib "$work/pkg-config/consumer-shared" | indent ||
    fail "the program linked to the installed shared library failed"
  # The archive needs Libs.private (pthreads, libm, libdl) to link.
  static_libs=$(pkg-config --static --libs loopbridge | sed 's/-lloopbridge\b/-l:libloopbridge.a/')
  # shellcheck disable=SC2086
  consumer_link consumer-static $cflags $static_libs
  if ldd "$work/pkg-config/consumer-static" | grep -q libloopbridge; then
    fail "consumer-static still loads a shared libloopbridge"
  fi
  "$work/pkg-config/consumer-static" | indent || fail "the program linked to the installed archive failed"
  local bridge
  for bridge in "${bridges[@]}"; do
    if [ ! -f "$pcdir/loopbridge-$bridge.pc" ]; then
      say "loopbridge-$bridge: not built, not checked"
      continue
    fi
    printf '#include <loopbridge/%s.h>\nint main(void) { return lb_%s_loop_new(NULL, NULL) != -EINVAL; }\n' \
      "$bridge" "$bridge" >"$work/pkg-config/$bridge.c"
    # shellcheck disable=SC2046
    "$cc" "${strict[@]}" "$work/pkg-config/$bridge.c" -o "$work/pkg-config/$bridge" \
      $(pkg-config --cflags --libs "loopbridge-$bridge") || fail "cannot link to loopbridge-$bridge"
    LD_LIBRARY_PATH=$prefix/lib "$work/pkg-config/$bridge" 2>/dev/null ||
      fail "the program linked to loopbridge-$bridge failed"
    say "loopbridge-$bridge: links and runs"
  done
}

step_headers() {
  local h missing=0 bridge
  for h in "$root"/core/include/loopbridge/*.h; do
    [ -f "$prefix/include/loopbridge/${h##*/}" ] || { echo "not installed: ${h#"$root"/}" >&2; missing=1; }
  done
  for bridge in "${bridges[@]}"; do
    [ -f "$pcdir/loopbridge-$bridge.pc" ] || continue
    for h in "$root/bridges/$bridge"/include/loopbridge/*.h; do
      [ -f "$prefix/include/loopbridge/${h##*/}" ] || { echo "not installed: ${h#"$root"/}" >&2; missing=1; }
    done
  done
  [ $missing -eq 0 ] || fail "public headers are missing from the installation"
  PKG_CONFIG_PATH=$pcdir "$root/tests/packaging/check-headers.sh" "$prefix"/include/loopbridge/*.h | indent
}

step_subproject() {
  local src=$work/consumer-src build=$work/consumer
  rm -rf "$src" "$build"
  cp -r "$consumer" "$src"
  ln -s "$root" "$src/subprojects/loopbridge"
  # Forced, so that a loopbridge installed on the machine is not used.
  meson setup "$build" "$src" --force-fallback-for=loopbridge,loopbridge-glib,loopbridge-tk \
    >"$work/consumer-setup.log" ||
    { cat "$work/consumer-setup.log"; fail "the consumer's meson setup failed"; }
  ninja -C "$build" -j "$jobs" >"$work/consumer-build.log" ||
    { cat "$work/consumer-build.log"; fail "the consumer's build failed"; }
  meson introspect --targets "$build" >"$work/consumer-targets.json"
  meson introspect --tests "$build" >"$work/consumer-tests.json"
  python3 - "$work/consumer-targets.json" "$work/consumer-tests.json" "$work/consumer-setup.log" <<'PY' || fail "the subproject as a consumer sees it is wrong (above)"
import json, sys
targets = json.load(open(sys.argv[1]))
tests = json.load(open(sys.argv[2]))
ours = [t for t in targets if t["subproject"] == "loopbridge"]
libraries = sorted(t["name"] for t in ours if t["type"] in ("shared library", "static library"))
others = sorted("%s (%s)" % (t["name"], t["type"]) for t in ours if t["name"] not in libraries)
own = sorted(t["name"] for t in targets if not t["subproject"])
own_tests = sorted(t["name"] for t in tests)
print("   subproject targets: %d libraries (%s), %d others; consumer targets: %s; tests: %s"
      % (len(libraries), " ".join(libraries), len(others), " ".join(own), " ".join(own_tests)))
ok = True
if others:
    print("   not libraries: " + ", ".join(others), file=sys.stderr)
    ok = False
if "loopbridge" not in libraries:
    print("   libloopbridge was not built", file=sys.stderr)
    ok = False
if own != ["consumer"] or own_tests != ["consumer"]:
    print("   expected the consumer's program and test alone", file=sys.stderr)
    ok = False
log = open(sys.argv[3]).read()
for bridge in ("loopbridge-glib", "loopbridge-tk"):
    if bridge in libraries and "Message: %s: found" % bridge not in log:
        print("   dependency('%s') did not find the subproject's bridge" % bridge, file=sys.stderr)
        ok = False
sys.exit(0 if ok else 1)
PY
  "$build/consumer" | indent || fail "the consumer built with the subproject failed"
}

step_no_cmocka() {
  local empty=$work/no-cmocka-pc build=$work/no-cmocka
  rm -rf "$empty" "$build"
  mkdir -p "$empty"
  printf "[binaries]\ncmake = '/nonexistent/cmake'\n" >"$work/no-cmake.ini"
  PKG_CONFIG_LIBDIR=$empty meson setup "$build" "$root" --native-file "$work/no-cmake.ini" \
    >"$work/no-cmocka.log" || { cat "$work/no-cmocka.log"; fail "meson setup without cmocka failed"; }
  grep -q "Run-time dependency cmocka found: NO" "$work/no-cmocka.log" ||
    fail "cmocka was found although hidden (see $work/no-cmocka.log)"
  local tests
  tests=$(meson introspect --tests "$build" | python3 -c 'import json, sys; print(len(json.load(sys.stdin)))')
  [ "$tests" -eq 0 ] || fail "without cmocka, $tests tests were still defined"
  say "without cmocka: set up, no test"
}

step_pip() {
  local py=/usr/bin/python3 venv=$work/venv src=$work/pip-src
  $py -c "import mesonpy" 2>/dev/null || { say "pip: skipped (no python3-mesonpy)"; return 0; }
  rm -rf "$venv" "$src"
  # A copy without build directories: pip builds in the tree it is given.
  mkdir -p "$src"
  if git -C "$root" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    git -C "$root" ls-files -z | (cd "$root" && xargs -0 cp --parents -t "$src")
  else
    tar -C "$root" --exclude=./build -cf - . | tar -C "$src" -xf -
  fi || fail "cannot copy the tree for pip"
  $py -m venv --system-site-packages "$venv" || fail "cannot make a venv"
  "$venv/bin/pip" install --no-build-isolation --no-index "$src" >"$work/pip.log" 2>&1 ||
    { tail -40 "$work/pip.log"; fail "pip install --no-build-isolation failed"; }
  cat >"$work/pip-check.py" <<'PY'
import asyncio, os, sys
import loopbridge
here = os.path.realpath(loopbridge.__file__)
assert here.startswith(os.path.realpath(sys.prefix) + os.sep), here  # the venv's copy
ran = []
try:
    import tkinter, loopbridge.tk
    loop = loopbridge.tk.EventLoop(tkinter.Tcl())
    ran.append(loop.run_until_complete(asyncio.sleep(0.01, "tk")))
    loop.close()
except ImportError as e:
    print("no tk:", e)
try:
    from gi.repository import GLib
    import loopbridge.glib
    loop = loopbridge.glib.EventLoop()
    ran.append(loop.run_until_complete(asyncio.sleep(0.01, "glib")))
    loop.close()
except ImportError as e:
    print("no glib:", e)
assert ran, "neither loop could be imported"
print("installed package ran its loops:", ", ".join(ran))
PY
  (cd "$work" && "$venv/bin/python" pip-check.py) | indent ||
    fail "the installed package does not run"
}

[ $# -gt 0 ] || { echo "usage: check-packaging.sh install|pkg-config|headers|subproject|no-cmocka|pip..." >&2; exit 2; }
for step in "$@"; do
  case $step in
    install) step_install ;;
    pkg-config) step_pkg_config ;;
    headers) step_headers ;;
    subproject) step_subproject ;;
    no-cmocka) step_no_cmocka ;;
    pip) step_pip ;;
    *) echo "check-packaging.sh: no step $step" >&2; exit 2 ;;
  esac
done
