# SPDX-License-Identifier: MIT
# The baseline of tk-pinger's tick, without loopbridge: the same 16 ms
# `after` tick, re-armed from the tick, in plain wish under the load and
# the input the test gives the app: as many CPU-bound processes at nice
# 10 as the app has pool threads, a tk_messageBox opened 0.5 s in that
# the test dismisses with xdotool, a click (on Next, as on the app's
# Cancel) 0.5 s after it closed, and the window's close (WM_DELETE_WINDOW)
# 0.5 s after that. At the close, prints the largest gap between two
# ticks until the click, from the click to the close, and the gap across
# the building of the message box (Tk's own code, which no event loop
# interrupts), as the app does:
#   widget next X Y
#   modal: open | modal: closed after MS ms
#   plain tk: max gap A ms with the message box, B ms without, C ms across its building
wm title . plain-tk-tick
button .next -text Next -command next_phase
pack .next -padx 40 -pady 20
update
puts "widget next [expr {[winfo rootx .next] + [winfo width .next] / 2}]\
    [expr {[winfo rooty .next] + [winfo height .next] / 2}]"
flush stdout

set phase 1
set last 0
set building 0
set building_gap 0
array set max {1 0 2 0}

proc tick {} {
    global last phase max building building_gap
    set t [clock microseconds]
    if {$last} {
        set gap [expr {($t - $last) / 1000.0}]
        if {$building} {
            set building_gap $gap
        } elseif {$gap > $max($phase)} {
            set max($phase) $gap
        }
    }
    set building 0
    set last $t
    after 16 tick
}

proc next_phase {} {
    set ::phase 2
}
wm protocol . WM_DELETE_WINDOW report

proc report {} {
    global max building_gap
    puts [format "plain tk: max gap %.1f ms with the message box, %.1f ms without, %.1f ms across its building" \
        $max(1) $max(2) $building_gap]
    exit 0
}

after 16 tick
after 500 {
    set building 1
    puts "modal: open"
    flush stdout
    set opened [clock milliseconds]
    tk_messageBox -title plain-tk-modal -message "A message box over a 16 ms tick"
    puts "modal: closed after [expr {[clock milliseconds] - $opened}] ms"
    flush stdout
}
