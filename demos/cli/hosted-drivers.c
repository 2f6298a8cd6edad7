/* SPDX-License-Identifier: MIT */
/* Linked into every demo when the bridges are built, so that the tests
 * can run a demo on a hosted driver with LB_DRIVER=glib or LB_DRIVER=tk.
 * A bridge registers its driver when its library is loaded, but the
 * linker (--as-needed) leaves out a library that no symbol of the program
 * uses, so a program that only picks its driver by name must reference
 * the bridge once: that is all this file does. */
#include <loopbridge/loopbridge.h>

#ifdef LB_DEMO_GLIB
#include <loopbridge/glib.h>
#endif
#ifdef LB_DEMO_TK
#include <loopbridge/tk.h>
#endif

__attribute__((constructor)) static void register_hosted_drivers(void) {
#ifdef LB_DEMO_GLIB
    (void)lb_driver_register(lb_driver_glib());
#endif
#ifdef LB_DEMO_TK
    (void)lb_driver_register(lb_driver_tk());
#endif
}
