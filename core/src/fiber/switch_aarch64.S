/* SPDX-License-Identifier: MIT */
/* AArch64 (AAPCS64) context switch: x19-x30, sp and d8-d15, the
 * registers a callee must preserve. */

    .text

/* void lb__fiber_switch_asm(void **from_sp, void *to_sp) */
    .globl lb__fiber_switch_asm
    .hidden lb__fiber_switch_asm
    .type lb__fiber_switch_asm, %function
lb__fiber_switch_asm:
    sub sp, sp, #160
    stp x19, x20, [sp, #0]
    stp x21, x22, [sp, #16]
    stp x23, x24, [sp, #32]
    stp x25, x26, [sp, #48]
    stp x27, x28, [sp, #64]
    stp x29, x30, [sp, #80]
    stp d8, d9, [sp, #96]
    stp d10, d11, [sp, #112]
    stp d12, d13, [sp, #128]
    stp d14, d15, [sp, #144]
    mov x2, sp
    str x2, [x0]
    mov sp, x1
    ldp x19, x20, [sp, #0]
    ldp x21, x22, [sp, #16]
    ldp x23, x24, [sp, #32]
    ldp x25, x26, [sp, #48]
    ldp x27, x28, [sp, #64]
    ldp x29, x30, [sp, #80]
    ldp d8, d9, [sp, #96]
    ldp d10, d11, [sp, #112]
    ldp d12, d13, [sp, #128]
    ldp d14, d15, [sp, #144]
    add sp, sp, #160
    ret
    .size lb__fiber_switch_asm, .-lb__fiber_switch_asm

/* A new fiber's first return lands here: start in x19, fiber in x20. */
    .globl lb__fiber_trampoline
    .hidden lb__fiber_trampoline
    .type lb__fiber_trampoline, %function
lb__fiber_trampoline:
    mov x29, #0
    mov x0, x20
    blr x19
    brk #0
    .size lb__fiber_trampoline, .-lb__fiber_trampoline

/* void *lb__fiber_prepare_stack(void *top, void (*start)(lb__fiber *), lb__fiber *f) */
    .globl lb__fiber_prepare_stack
    .hidden lb__fiber_prepare_stack
    .type lb__fiber_prepare_stack, %function
lb__fiber_prepare_stack:
    and x0, x0, #~15
    sub x0, x0, #160
    mov x3, #0
    mov x4, #0
    stp x1, x2, [x0, #0]         /* x19: start, x20: fiber */
    stp x3, x4, [x0, #16]
    stp x3, x4, [x0, #32]
    stp x3, x4, [x0, #48]
    stp x3, x4, [x0, #64]
    adrp x5, lb__fiber_trampoline
    add x5, x5, :lo12:lb__fiber_trampoline
    stp x3, x5, [x0, #80]        /* x29: 0, x30: trampoline */
    stp x3, x4, [x0, #96]
    stp x3, x4, [x0, #112]
    stp x3, x4, [x0, #128]
    stp x3, x4, [x0, #144]
    ret
    .size lb__fiber_prepare_stack, .-lb__fiber_prepare_stack

    .section .note.GNU-stack,"",%progbits
