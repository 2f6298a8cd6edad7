/* SPDX-License-Identifier: MIT */
#ifndef LB_ASAN_H
#define LB_ASAN_H

/* LB__ASAN is 1 in AddressSanitizer builds, where memory the library
 * manages itself (slab slots, mapped pages, task stacks) is poisoned and
 * unpoisoned by hand, so ASan reports a use of it as it would for malloc'd
 * memory. Elsewhere the macros cost nothing. */
#if defined(__SANITIZE_ADDRESS__)
#define LB__ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define LB__ASAN 1
#endif
#endif

#ifdef LB__ASAN
#include <sanitizer/asan_interface.h>
#define LB__ASAN_POISON(p, size) ASAN_POISON_MEMORY_REGION((p), (size))
#define LB__ASAN_UNPOISON(p, size) ASAN_UNPOISON_MEMORY_REGION((p), (size))
#else
#define LB__ASAN_POISON(p, size) ((void)(p), (void)(size))
#define LB__ASAN_UNPOISON(p, size) ((void)(p), (void)(size))
#endif

#endif
