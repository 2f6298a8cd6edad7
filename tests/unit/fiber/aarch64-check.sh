#!/bin/sh
# Cross-builds the aarch64 fiber switch with a small test and runs it
# under qemu-user. Exit 77 (skip) when the cross compiler or qemu is
# missing. Usage: aarch64-check.sh CORE_SRC_DIR TEST_DIR BUILD_DIR
set -eu
src=$1; tests=$2; out=$3/aarch64-switch
cc=aarch64-linux-gnu-gcc
command -v "$cc" >/dev/null 2>&1 || { echo "no $cc: skipped"; exit 77; }
command -v qemu-aarch64 >/dev/null 2>&1 || { echo "no qemu-aarch64: skipped"; exit 77; }
"$cc" -std=c11 -D_GNU_SOURCE -O2 -static -Wall -Wextra -Wno-unused-parameter \
  -I"$src" -I"$src/../include" \
  "$tests/aarch64-switch.c" "$src/fiber/switch_aarch64.S" "$src/fiber/fiber.c" \
  "$src/fiber/stack.c" "$src/fiber/overflow.c" "$src/alloc.c" "$src/block_reserve.c" -lpthread -o "$out"
qemu-aarch64 "$out"
