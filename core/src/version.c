/* SPDX-License-Identifier: MIT */
/* The version the library was built as: its headers' macros, compiled in,
 * so a program can tell the library it runs with from the headers it was
 * compiled against. */
#include <loopbridge/version.h>

const char *lb_version(void) {
    return LB_VERSION_STRING;
}

int lb_version_number(void) {
    return LB_VERSION_NUMBER;
}
