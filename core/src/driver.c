/* SPDX-License-Identifier: MIT */
/* The driver registry, and the choice of driver for lb_loop_new(NULL). */
#include "error.h"
#include "loop_internal.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DRIVERS 16

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static const lb_driver *registry[MAX_DRIVERS];
static size_t registry_n;

int lb__driver_validate(const lb_driver *driver) {
    if (!driver)
        return lb__fail(NULL, -EINVAL, "driver is NULL");
    if (driver->abi_version != LB_DRIVER_ABI_VERSION)
        return lb__fail(NULL, -EINVAL, "driver ABI version %u, this library speaks %u",
                        driver->abi_version, LB_DRIVER_ABI_VERSION);
    if (!driver->name || !*driver->name)
        return lb__fail(NULL, -EINVAL, "driver has no name");
    if (!driver->attach || !driver->detach || !driver->run)
        return lb__fail(NULL, -EINVAL, "driver '%s' lacks a required entry (attach, detach, run)",
                        driver->name);
    if ((driver->caps & LB_DRIVER_CAP_WAKEUP) && !driver->wakeup)
        return lb__fail(NULL, -EINVAL,
                        "driver '%s' declares LB_DRIVER_CAP_WAKEUP without a wakeup entry",
                        driver->name);
    return 0;
}

static void register_builtin_locked(void) {
    if (registry_n == 0)
        registry[registry_n++] = lb_driver_native();
}

int lb_driver_register(const lb_driver *driver) {
    int r = lb__driver_validate(driver);
    if (r < 0)
        return r;
    pthread_mutex_lock(&registry_lock);
    register_builtin_locked();
    for (size_t i = 0; i < registry_n; i++) {
        if (registry[i] == driver) {
            pthread_mutex_unlock(&registry_lock);
            return 0;
        }
        if (strcmp(registry[i]->name, driver->name) == 0) {
            pthread_mutex_unlock(&registry_lock);
            return lb__fail(NULL, -EEXIST, "a driver named '%s' is registered already",
                            driver->name);
        }
    }
    if (registry_n == MAX_DRIVERS) {
        pthread_mutex_unlock(&registry_lock);
        return lb__fail(NULL, -ENOSPC, "the driver registry is full");
    }
    registry[registry_n++] = driver;
    pthread_mutex_unlock(&registry_lock);
    return 0;
}

int lb_driver_find(const char *name, const lb_driver **ret) {
    lb_assert_return(name, -EINVAL);
    lb_assert_return(ret, -EINVAL);
    char names[256] = "";
    size_t off = 0;
    pthread_mutex_lock(&registry_lock);
    register_builtin_locked();
    for (size_t i = 0; i < registry_n; i++) {
        if (strcmp(registry[i]->name, name) == 0) {
            *ret = registry[i];
            pthread_mutex_unlock(&registry_lock);
            return 0;
        }
        off += (size_t)snprintf(names + off, off < sizeof names ? sizeof names - off : 0, "%s%s",
                                i ? ", " : "", registry[i]->name);
    }
    pthread_mutex_unlock(&registry_lock);
    return lb__fail(NULL, -ENOENT, "unknown loop driver '%s' (available in this program: %s)",
                    name, names);
}

int lb__driver_from_env(const lb_driver **ret) {
    const char *name = getenv("LB_DRIVER");
    if (!name || !*name) {
        *ret = lb_driver_native();
        return 0;
    }
    int r = lb_driver_find(name, ret);
    if (r < 0)
        lb__log(LB_LOG_ERROR, "LB_DRIVER: %s", lb_error_detail());
    return r;
}
