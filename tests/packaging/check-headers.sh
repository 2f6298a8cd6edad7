#!/bin/sh
# SPDX-License-Identifier: MIT
# check-headers.sh HEADER...: compiles each public header alone, included
# twice, as strict C11 and as C++, with -pedantic -Werror, so that a program
# built with its own strict flags never warns because of ours. A header's
# flags come from its package's pkg-config file (loopbridge-glib for glib.h and gio.h,
# loopbridge-tk for tk.h, loopbridge for the others): point PKG_CONFIG_PATH
# at an installed prefix, or at a build directory's meson-uninstalled/.
#
# Environment: CC (default gcc), CXX (default g++).
set -eu

cc=${CC:-gcc}
cxx=${CXX:-g++}
warnings="-pedantic -Wall -Wextra -Werror"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# compile WHAT CFLAGS SOURCE: SOURCE must compile as C11 and as C++.
compile() {
    printf '%s\n' "$3" >"$tmp/c.c"
    cp "$tmp/c.c" "$tmp/cxx.cc"
    # $2 and $warnings hold several flags each: split on purpose.
    # shellcheck disable=SC2086
    if ! "$cc" -std=c11 $warnings -Wstrict-prototypes $2 -c "$tmp/c.c" -o "$tmp/c.o"; then
        echo "check-headers: $1 fails as C11 ($cc -std=c11 $warnings)" >&2
        failed=$((failed + 1))
    fi
    # shellcheck disable=SC2086
    if ! "$cxx" $warnings $2 -c "$tmp/cxx.cc" -o "$tmp/cxx.o"; then
        echo "check-headers: $1 fails as C++ ($cxx $warnings)" >&2
        failed=$((failed + 1))
    fi
}

failed=0
checked=0
for header in "$@"; do
    name=$(basename "$header")
    case $name in
        glib.h | gio.h | gtk.h) package=loopbridge-glib ;;
        tk.h) package=loopbridge-tk ;;
        *) package=loopbridge ;;
    esac
    if ! cflags=$(pkg-config --cflags "$package"); then
        echo "check-headers: $name: pkg-config knows no $package" >&2
        failed=$((failed + 1))
        continue
    fi
    compile "$name" "$cflags" "$(printf '#include <loopbridge/%s>\n#include <loopbridge/%s>\n' "$name" "$name")"
    # gtk.h declares the GTK names it uses itself: they must agree with
    # GTK's own, included before or after it.
    if [ "$name" = gtk.h ] && gtk=$(pkg-config --cflags loopbridge-glib gtk4 2>/dev/null); then
        compile "gtk.h after <gtk/gtk.h>" "$gtk" "$(printf '#include <gtk/gtk.h>\n#include <loopbridge/gtk.h>\n')"
        compile "gtk.h before <gtk/gtk.h>" "$gtk" "$(printf '#include <loopbridge/gtk.h>\n#include <gtk/gtk.h>\n')"
    fi
    checked=$((checked + 1))
done

if [ "$checked" -eq 0 ]; then
    echo "check-headers: no header given" >&2
    exit 1
fi
echo "check-headers: $checked headers, $failed failures"
[ "$failed" -eq 0 ]
