/* SPDX-License-Identifier: MIT */
#ifndef LB_FUZZ_H
#define LB_FUZZ_H

#include <stddef.h>
#include <stdint.h>

/* libFuzzer's entry point: runs one input. Returns 0; a broken invariant
 * aborts. The replaying executable (replay.c) calls it for each file of
 * the corpus. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#endif
