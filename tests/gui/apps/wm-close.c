/* SPDX-License-Identifier: MIT */
/* wm-close WINDOW-ID: asks an X window to close the way a window manager
 * does when its close button is pressed: a WM_PROTOCOLS client message
 * carrying WM_DELETE_WINDOW (ICCCM 4.2.8.1). Xvfb runs no window manager
 * and xdotool has no such command (`xdotool windowclose` destroys the
 * window under the toolkit's feet, `windowquit` kills the connection), so
 * the test sends it itself. GTK turns it into "close-request", Tk into
 * its WM_DELETE_WINDOW protocol handler. */
#include <X11/Xlib.h>
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: wm-close WINDOW-ID\n");
        return 2;
    }
    Display *display = XOpenDisplay(NULL);
    if (!display) {
        fprintf(stderr, "wm-close: cannot open the display\n");
        return 1;
    }
    Window window = (Window)strtoul(argv[1], NULL, 0);
    XEvent event = {0};
    event.xclient.type = ClientMessage;
    event.xclient.window = window;
    event.xclient.message_type = XInternAtom(display, "WM_PROTOCOLS", False);
    event.xclient.format = 32;
    event.xclient.data.l[0] = (long)XInternAtom(display, "WM_DELETE_WINDOW", False);
    event.xclient.data.l[1] = CurrentTime;
    if (!XSendEvent(display, window, False, NoEventMask, &event)) {
        fprintf(stderr, "wm-close: XSendEvent failed\n");
        return 1;
    }
    XSync(display, False);
    XCloseDisplay(display);
    return 0;
}
