/* SPDX-License-Identifier: MIT */
#ifndef LB_SLAB_H
#define LB_SLAB_H

#include <stddef.h>

/* Under AddressSanitizer a free object is poisoned, so a use after free of
 * a handle or a future is reported as one of malloc'd memory would be
 * (the slot is unpoisoned again when it is handed out). */
#include "asan.h"
#define LB__SLAB_POISON LB__ASAN_POISON
#define LB__SLAB_UNPOISON LB__ASAN_UNPOISON

/* A fixed-size object allocator: objects are carved from chunks and
 * recycled through a free list, so hot paths (call_soon, timers, futures)
 * do not call malloc once the loop has warmed up. Chunks grow fourfold
 * up to LB__LARGE_BLOCK, and from there come as large blocks (huge pages
 * where the system has them); a chunk's objects are handed out in address
 * order as they are first needed, so a new chunk costs no page faults
 * until its memory is used. Chunks are returned to the system when the
 * slab is destroyed. Single-threaded. */
typedef struct lb__slab {
    void *free_list;
    char *fresh, *fresh_end; /* the newest chunk's objects never handed out */
    void *chunks;            /* linked through each chunk's header */
    size_t object_size;
    size_t chunk_bytes;      /* the size of the next chunk */
    size_t live;             /* objects handed out and not freed */
} lb__slab;

void lb__slab_init(lb__slab *slab, size_t object_size, size_t per_chunk);
void lb__slab_destroy(lb__slab *slab);
void *lb__slab_alloc_fresh(lb__slab *slab);

static inline void *lb__slab_alloc(lb__slab *slab) {
    void *p = slab->free_list;
    if (__builtin_expect(p == NULL, 0))
        return lb__slab_alloc_fresh(slab);
    LB__SLAB_UNPOISON(p, slab->object_size);
    slab->free_list = *(void **)p;
    slab->live++;
    return p;
}

static inline void lb__slab_free(lb__slab *slab, void *p) {
    *(void **)p = slab->free_list;
    slab->free_list = p;
    slab->live--;
    LB__SLAB_POISON(p, slab->object_size);
}

#endif
