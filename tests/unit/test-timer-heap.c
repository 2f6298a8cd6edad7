/* SPDX-License-Identifier: MIT */
/* The timer heap against a simple reference model: a sorted array with
 * stable insertion. 2,000 random seeds of pushes, pops and cancellations
 * (compaction included) must produce the same order of items. */
#include "timer_heap.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

typedef struct item {
    int64_t when;
    int id;
    bool dead;
} item;

typedef struct model {
    item *v[4096];
    int n;
} model;

/* Stable insert: after every entry with when <= new when. */
static void model_push(model *m, item *it) {
    int i = m->n;
    while (i > 0 && m->v[i - 1]->when > it->when) {
        m->v[i] = m->v[i - 1];
        i--;
    }
    m->v[i] = it;
    m->n++;
}

static item *model_pop_live(model *m) {
    while (m->n > 0) {
        item *it = m->v[0];
        memmove(m->v, m->v + 1, (size_t)(m->n - 1) * sizeof m->v[0]);
        m->n--;
        if (!it->dead)
            return it;
    }
    return NULL;
}

static uint64_t rnd(uint64_t *x) {
    uint64_t z = (*x += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static bool is_dead(void *p) {
    return ((item *)p)->dead;
}

static int released;
static void release(void *p) {
    (void)p;
    released++;
}

static item *heap_pop_live(lb__timer_heap *h) {
    for (;;) {
        item *it = lb__timer_heap_pop(h);
        if (!it || !it->dead)
            return it;
        h->dead--;
    }
}

static void run_seed(uint64_t seed) {
    lb__timer_heap heap;
    lb__timer_heap_init(&heap);
    model m = {0};
    static item pool[4096];
    int used = 0;
    uint64_t x = seed;
    int ops = 200 + (int)(rnd(&x) % 1500);
    for (int op = 0; op < ops; op++) {
        unsigned kind = (unsigned)(rnd(&x) % 10);
        if (kind < 5 && used < 4096) {
            item *it = &pool[used];
            /* Few distinct deadlines, so ties (FIFO) are common. */
            *it = (item){.when = (int64_t)(rnd(&x) % 50), .id = used};
            used++;
            assert_int_equal(lb__timer_heap_push(&heap, it->when, it), 0);
            model_push(&m, it);
        } else if (kind < 8) {
            item *a = heap_pop_live(&heap);
            item *b = model_pop_live(&m);
            assert_ptr_equal(a, b);
        } else if (kind < 9 && used > 0) {
            item *it = &pool[rnd(&x) % (uint64_t)used];
            /* Cancel only items still queued (the model knows). */
            bool queued = false;
            for (int i = 0; i < m.n; i++)
                queued |= m.v[i] == it;
            if (queued && !it->dead) {
                it->dead = true;
                heap.dead++;
            }
        } else {
            lb__timer_heap_compact(&heap, is_dead, release);
        }
        const lb__timer_entry *top = lb__timer_heap_top(&heap);
        if (top) {
            /* The top is never later than any live entry of the model
             * (compaction drops dead entries the model still lists). */
            for (int i = 0; i < m.n; i++)
                if (!m.v[i]->dead)
                    assert_true(top->when <= m.v[i]->when);
        }
    }
    for (;;) {
        item *a = heap_pop_live(&heap);
        item *b = model_pop_live(&m);
        assert_ptr_equal(a, b);
        if (!a)
            break;
    }
    lb__timer_heap_destroy(&heap);
}

static void test_timer_heap_matches_model(void **state) {
    (void)state;
    for (uint64_t seed = 1; seed <= 2000; seed++)
        run_seed(seed);
}

static void test_timer_heap_fifo_ties(void **state) {
    (void)state;
    lb__timer_heap heap;
    lb__timer_heap_init(&heap);
    int ids[1000];
    for (int i = 0; i < 1000; i++) {
        ids[i] = i;
        assert_int_equal(lb__timer_heap_push(&heap, 7, &ids[i]), 0);
    }
    for (int i = 0; i < 1000; i++)
        assert_int_equal(*(int *)lb__timer_heap_pop(&heap), i);
    assert_null(lb__timer_heap_pop(&heap));
    assert_null(lb__timer_heap_top(&heap));
    lb__timer_heap_destroy(&heap);
}

/* A heap that grows into large blocks (moved, not copied, as it grows)
 * keeps its order and its FIFO ties. */
static void test_timer_heap_large(void **state) {
    (void)state;
    enum { N = 300000 };
    lb__timer_heap heap;
    lb__timer_heap_init(&heap);
    int *ids = malloc(N * sizeof *ids);
    assert_non_null(ids);
    uint64_t x = 42;
    for (int i = 0; i < N; i++) {
        ids[i] = i;
        x = x * 6364136223846793005ULL + 1442695040888963407ULL;
        assert_int_equal(lb__timer_heap_push(&heap, (int64_t)(x >> 48), &ids[i]), 0);
    }
    int64_t last = INT64_MIN;
    int last_id = -1;
    for (int i = 0; i < N; i++) {
        int64_t when = lb__timer_heap_top(&heap)->when;
        int id = *(int *)lb__timer_heap_pop(&heap);
        assert_true(when >= last);
        if (when == last)
            assert_true(id > last_id);
        last = when;
        last_id = id;
    }
    assert_null(lb__timer_heap_pop(&heap));
    lb__timer_heap_destroy(&heap);
    free(ids);
}

static void test_timer_heap_compact_releases(void **state) {
    (void)state;
    lb__timer_heap heap;
    lb__timer_heap_init(&heap);
    item it[100];
    for (int i = 0; i < 100; i++) {
        it[i] = (item){.when = 100 - i, .id = i, .dead = i % 3 == 0};
        assert_int_equal(lb__timer_heap_push(&heap, it[i].when, &it[i]), 0);
    }
    released = 0;
    lb__timer_heap_compact(&heap, is_dead, release);
    assert_int_equal(released, 34);
    assert_int_equal(heap.n, 66);
    int64_t last = INT64_MIN;
    item *p;
    while ((p = lb__timer_heap_pop(&heap))) {
        assert_false(p->dead);
        assert_true(p->when >= last);
        last = p->when;
    }
    lb__timer_heap_destroy(&heap);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_timer_heap_matches_model),
        cmocka_unit_test(test_timer_heap_fifo_ties),
        cmocka_unit_test(test_timer_heap_compact_releases),
        cmocka_unit_test(test_timer_heap_large),
    };
    return cmocka_run_group_tests_name("timer_heap", tests, NULL, NULL);
}
