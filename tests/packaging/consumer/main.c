/* SPDX-License-Identifier: MIT */
/* A program built against loopbridge from outside its tree: from an
 * installed prefix with pkg-config, or with loopbridge as a meson
 * subproject (tests/packaging/check-packaging.sh does both). It runs a
 * task that sleeps and awaits a worker thread, and checks that the
 * library it runs with is the one its headers describe. */
#include <loopbridge/loopbridge.h>

#include <stdio.h>
#include <string.h>

static int square(void *data, void **ret) {
    intptr_t n = (intptr_t)data;
    *ret = (void *)(n * n);
    return 0;
}

static int main_task(lb_task *task, void *data) {
    (void)task;
    (void)data;
    int r = lb_sleep(0.001);
    if (r < 0)
        return r;
    void *value = NULL;
    r = lb_to_thread(square, (void *)(intptr_t)7, &value);
    if (r < 0)
        return r;
    return (intptr_t)value == 49 ? 0 : -EIO;
}

int main(void) {
    if (strcmp(lb_version(), LB_VERSION_STRING) != 0 || lb_version_number() != LB_VERSION_NUMBER) {
        fprintf(stderr, "consumer: headers of loopbridge %s, library %s\n", LB_VERSION_STRING,
                lb_version());
        return 1;
    }
    int r = lb_run(main_task, NULL, NULL);
    if (r < 0) {
        fprintf(stderr, "consumer: %s (%s)\n", lb_strerror(r), lb_error_detail());
        return 1;
    }
    printf("consumer: loopbridge %s works\n", lb_version());
    return 0;
}
