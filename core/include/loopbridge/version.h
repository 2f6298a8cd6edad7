/* SPDX-License-Identifier: MIT */
#ifndef LOOPBRIDGE_VERSION_H
#define LOOPBRIDGE_VERSION_H

/* Which loopbridge a program was compiled against, and which it runs
 * with. The macros give the headers' version: LB_VERSION_MAJOR,
 * LB_VERSION_MINOR, LB_VERSION_MICRO, LB_VERSION_STRING ("0.1.0"),
 * LB_VERSION_NUMBER (LB_VERSION_ENCODE of the three) and
 * LB_VERSION_AT_LEAST(major, minor, micro) for code that uses a newer call
 * only where it exists. lb_version() and lb_version_number() give the
 * version of the library actually loaded, which can differ from the
 * headers' when a shared library was replaced. meson.build checks that
 * these numbers are the project's version. */

#include <loopbridge/common.h>

#define LB_VERSION_MAJOR 0
#define LB_VERSION_MINOR 1
#define LB_VERSION_MICRO 0
#define LB_VERSION_STRING "0.1.0"

/* One integer that orders versions: 1.2.3 is 10203 (each part < 100). */
#define LB_VERSION_ENCODE(major, minor, micro) ((major) * 10000 + (minor) * 100 + (micro))

#define LB_VERSION_NUMBER LB_VERSION_ENCODE(LB_VERSION_MAJOR, LB_VERSION_MINOR, LB_VERSION_MICRO)

#define LB_VERSION_AT_LEAST(major, minor, micro) \
    (LB_VERSION_NUMBER >= LB_VERSION_ENCODE(major, minor, micro))

#ifdef __cplusplus
extern "C" {
#endif

/* The version of the loopbridge library the program runs with,
 * as "MAJOR.MINOR.MICRO" (the LB_VERSION_STRING it was built with). The
 * string is static, never NULL. Any thread. */
LB_EXPORT const char *lb_version(void);

/* The running library's version as one integer,
 * LB_VERSION_ENCODE(major, minor, micro): compare it with
 * LB_VERSION_NUMBER to learn whether the library is at least as new as
 * the headers. Any thread. */
LB_EXPORT int lb_version_number(void);

#ifdef __cplusplus
}
#endif

#endif
