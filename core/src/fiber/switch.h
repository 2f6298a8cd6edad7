/* SPDX-License-Identifier: MIT */
#ifndef LB_FIBER_SWITCH_H
#define LB_FIBER_SWITCH_H

/* The assembly primitives (switch_<cpu>.S), private to fiber.c. */

#include "fiber.h"

#if !defined(LB_FIBER_UCONTEXT)
/* The switch primitive: saves the callee-saved state on the current
 * stack, stores the stack pointer in *from_sp, loads to_sp, restores. */
void lb__fiber_switch_asm(void **from_sp, void *to_sp);

/* Where a new fiber's first switch lands: calls its start function. */
void lb__fiber_trampoline(void);

/* Lays out a new stack whose top is top so that the first switch to it
 * runs start(f) through the trampoline; returns its stack pointer. */
void *lb__fiber_prepare_stack(void *top, void (*start)(lb__fiber *), lb__fiber *f);
#endif

#endif
