/* SPDX-License-Identifier: MIT */
/* The version macros, the runtime calls and meson.build's project version
 * (LB_TEST_PROJECT_VERSION, passed by tests/packaging/meson.build) agree. */
#include <loopbridge/loopbridge.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

static void test_version_string_is_the_project_version(void **state) {
    (void)state;
    assert_non_null(lb_version());
    assert_string_equal(lb_version(), LB_VERSION_STRING);
    assert_string_equal(LB_VERSION_STRING, LB_TEST_PROJECT_VERSION);
    char parts[32];
    snprintf(parts, sizeof parts, "%d.%d.%d", LB_VERSION_MAJOR, LB_VERSION_MINOR,
             LB_VERSION_MICRO);
    assert_string_equal(parts, LB_VERSION_STRING);
}

static void test_version_number_encodes_the_parts(void **state) {
    (void)state;
    assert_int_equal(lb_version_number(), LB_VERSION_NUMBER);
    int major = -1, minor = -1, micro = -1;
    assert_int_equal(sscanf(lb_version(), "%d.%d.%d", &major, &minor, &micro), 3);
    assert_int_equal(lb_version_number(), major * 10000 + minor * 100 + micro);
}

static void test_version_encode_orders_versions(void **state) {
    (void)state;
    assert_int_equal(LB_VERSION_ENCODE(1, 2, 3), 10203);
    assert_true(LB_VERSION_ENCODE(0, 10, 0) > LB_VERSION_ENCODE(0, 9, 99));
    assert_true(LB_VERSION_ENCODE(1, 0, 0) > LB_VERSION_ENCODE(0, 99, 99));
    assert_true(LB_VERSION_AT_LEAST(0, 0, 0));
    assert_true(LB_VERSION_AT_LEAST(LB_VERSION_MAJOR, LB_VERSION_MINOR, LB_VERSION_MICRO));
    assert_false(LB_VERSION_AT_LEAST(LB_VERSION_MAJOR, LB_VERSION_MINOR, LB_VERSION_MICRO + 1));
    assert_false(LB_VERSION_AT_LEAST(LB_VERSION_MAJOR + 1, 0, 0));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_version_string_is_the_project_version),
        cmocka_unit_test(test_version_number_encodes_the_parts),
        cmocka_unit_test(test_version_encode_orders_versions),
    };
    return cmocka_run_group_tests_name("version", tests, NULL, NULL);
}
