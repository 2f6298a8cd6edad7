/* SPDX-License-Identifier: MIT */
/* x86_64 System V context switch: only the callee-saved registers (rbx,
 * rbp, r12-r15), the MXCSR and the x87 control word travel; everything
 * else is the caller's to save by the ABI. No syscall (glibc's
 * swapcontext makes one for the signal mask). */

    .text

/* void lb__fiber_switch_asm(void **from_sp, void *to_sp) */
    .globl lb__fiber_switch_asm
    .hidden lb__fiber_switch_asm
    .type lb__fiber_switch_asm, @function
lb__fiber_switch_asm:
    .cfi_startproc
    endbr64
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    subq $16, %rsp
    stmxcsr 8(%rsp)
    fnstcw (%rsp)
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    fldcw (%rsp)
    ldmxcsr 8(%rsp)
    addq $16, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .cfi_endproc
    .size lb__fiber_switch_asm, .-lb__fiber_switch_asm

/* A new fiber's first return lands here with the start function in r12
 * and the fiber in r13. */
    .globl lb__fiber_trampoline
    .hidden lb__fiber_trampoline
    .type lb__fiber_trampoline, @function
lb__fiber_trampoline:
    .cfi_startproc
    .cfi_undefined rip
    endbr64
    movq %r13, %rdi
    callq *%r12
    ud2
    .cfi_endproc
    .size lb__fiber_trampoline, .-lb__fiber_trampoline

/* void *lb__fiber_prepare_stack(void *top, void (*start)(lb__fiber *), lb__fiber *f)
 * Lays out the frame lb__fiber_switch_asm pops: control words, six
 * registers, and the trampoline as the return address, so that the
 * trampoline starts with rsp 16-byte aligned. */
    .globl lb__fiber_prepare_stack
    .hidden lb__fiber_prepare_stack
    .type lb__fiber_prepare_stack, @function
lb__fiber_prepare_stack:
    .cfi_startproc
    endbr64
    andq $-16, %rdi
    leaq lb__fiber_trampoline(%rip), %rax
    movq %rax, -8(%rdi)          /* return address */
    movq $0, -16(%rdi)           /* rbp */
    movq $0, -24(%rdi)           /* rbx */
    movq %rsi, -32(%rdi)         /* r12: start */
    movq %rdx, -40(%rdi)         /* r13: fiber */
    movq $0, -48(%rdi)           /* r14 */
    movq $0, -56(%rdi)           /* r15 */
    leaq -72(%rdi), %rax
    stmxcsr 8(%rax)              /* the creator's floating-point modes */
    fnstcw (%rax)
    ret
    .cfi_endproc
    .size lb__fiber_prepare_stack, .-lb__fiber_prepare_stack

    .section .note.GNU-stack,"",@progbits
