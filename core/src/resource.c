/* SPDX-License-Identifier: MIT */
/* The loop's registry of what it owns (lb_resource, driver.h): one
 * intrusive list, newest first, that close walks. Each object that holds
 * on to the loop (a stream, a process, an executor job, a GIO operation)
 * says in its close operation how to let go, so that lb_loop_close()
 * needs no rule of its own for any of them. */
#include "error.h"
#include "loop_internal.h"
#include "test_hooks.h"

static void (*on_resource_close)(const char *name);
void lb__test_on_resource_close(void (*fn)(const char *)) {
    on_resource_close = fn;
}

int lb_driver_resource_add(lb_loop *loop, lb_resource *resource, const lb_resource_ops *ops) {
    lb_assert_return(resource, -EINVAL);
    lb_assert_return(ops && ops->close && ops->name, -EINVAL);
    /* Allowed while closing: the resources of unwinding tasks are closed
     * after them. */
    LB__CHECK_LOOP(loop);
    if (resource->pprev)
        return lb__fail(loop, -EINVAL, "%s: resource %p is registered already", __func__,
                        (void *)resource);
    resource->ops = ops;
    resource->next = loop->resources;
    if (resource->next)
        resource->next->pprev = &resource->next;
    resource->pprev = &loop->resources;
    loop->resources = resource;
    return 0;
}

void lb_driver_resource_remove(lb_resource *resource) {
    if (!resource || !resource->pprev)
        return;
    *resource->pprev = resource->next;
    if (resource->next)
        resource->next->pprev = resource->pprev;
    resource->next = NULL;
    resource->pprev = NULL;
}

void lb__resources_close(lb_loop *loop) {
    /* Each is taken off the list before its close runs, which may free
     * it and others (a process lets go of its pipes): the walk never
     * holds a pointer into the list across a close. */
    lb_resource *r;
    while ((r = loop->resources)) {
        lb_driver_resource_remove(r);
        if (on_resource_close)
            on_resource_close(r->ops->name);
        r->ops->close(r);
    }
}
