/* SPDX-License-Identifier: MIT */
#include "slab.h"

#include "alloc.h"

#include <assert.h>
#include <stdint.h>

/* Chunks start with a header that links them; objects follow, aligned to
 * 16 bytes. */
#define CHUNK_HEADER 16

void lb__slab_init(lb__slab *slab, size_t object_size, size_t per_chunk) {
    assert(object_size >= sizeof(void *));
    slab->free_list = NULL;
    slab->chunks = NULL;
    slab->object_size = (object_size + 15) & ~(size_t)15;
    slab->per_chunk = per_chunk;
    slab->live = 0;
}

void *lb__slab_grow_and_alloc(lb__slab *slab) {
    char *chunk = lb__malloc(CHUNK_HEADER + slab->object_size * slab->per_chunk);
    if (!chunk)
        return NULL;
    *(void **)chunk = slab->chunks;
    slab->chunks = chunk;
    /* Thread the new objects onto the free list in address order, so
     * consecutive allocations walk memory forwards. */
    char *first = chunk + CHUNK_HEADER;
    for (size_t i = slab->per_chunk; i-- > 1;) {
        char *obj = first + i * slab->object_size;
        *(void **)obj = slab->free_list;
        slab->free_list = obj;
        LB__SLAB_POISON(obj, slab->object_size);
    }
    slab->live++;
    return first;
}

void lb__slab_destroy(lb__slab *slab) {
    void *c = slab->chunks;
    while (c) {
        void *next = *(void **)c;
        /* Given back to malloc whole: no slot stays poisoned. */
        LB__SLAB_UNPOISON((char *)c + CHUNK_HEADER, slab->object_size * slab->per_chunk);
        lb__free(c);
        c = next;
    }
    slab->chunks = NULL;
    slab->free_list = NULL;
}
