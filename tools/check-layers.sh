#!/bin/sh
# SPDX-License-Identifier: MIT
# The core's layering, checked: every cross-file lb__ function is declared
# in a private header, never in a .c file, and the loop layer does not
# include the task layer's header (the task layer reaches the loop
# through loop->task_hooks instead).
# Usage: check-layers.sh <source root>
set -eu
root=${1:-.}
cd "$root"
status=0

# A prototype of an lb__ function in a .c file: a declaration at file
# scope that names one and ends with ");" (on its line or a later one),
# where a definition ends with "{".
protos=$(awk '
    /^[A-Za-z_]/ && /[ *]lb__[a-z0-9_]+\(/ && !/=/ { decl = FILENAME ":" FNR ":" $0; open = 1 }
    open && /\{[[:space:]]*$/ { open = 0 }
    open && /\);[[:space:]]*$/ { print decl; open = 0 }
    ' $(find core/src bridges -name '*.c'))
externs=$(grep -nE '^[[:space:]]*extern[[:space:]].*\blb__' $(find core/src bridges -name '*.c') || true)
if [ -n "$protos$externs" ]; then
    echo "lb__ functions declared in .c files (declare them in the layer's header):"
    printf '%s\n' "$protos" "$externs" | sed '/^$/d'
    status=1
fi

# The loop layer: the loop, its iteration, its objects and the
# structures under them.
# The executor sits on the loop layer too (lb_to_thread, which awaits,
# lives in the task layer).
loop_layer="loop.c dispatch.c handle.c future.c inbox.c timer_heap.c ready_queue.c error.c
            signal.c fd.c debug.c driver.c driver_native.c clock.c slab.c executor.c"
for f in $loop_layer; do
    if grep -nE '#include[[:space:]]+"task_internal\.h"' "core/src/$f" >/dev/null; then
        echo "core/src/$f (below the task layer) includes task_internal.h; use loop->task_hooks"
        status=1
    fi
    if grep -nE '\blb_(task|await|sleep|yield|loop_task_count|loop_all_tasks)[a-z_]*\(' \
            "core/src/$f" | grep -v '^\S*:[[:space:]]*/\?\*' >/dev/null; then
        echo "core/src/$f (below the task layer) calls the task layer:"
        grep -nE '\blb_(task|await|sleep|yield|loop_task_count|loop_all_tasks)[a-z_]*\(' "core/src/$f"
        status=1
    fi
done
# Headers the loop layer includes must not pull the task layer in either.
for h in loop_internal.h future_internal.h handle.h inbox.h ready_queue.h timer_heap.h error.h; do
    if grep -nE '#include[[:space:]]+"task_internal\.h"' "core/src/$h" >/dev/null; then
        echo "core/src/$h (loop layer) includes task_internal.h"
        status=1
    fi
done
[ $status -eq 0 ] && echo "layers: ok"
exit $status
