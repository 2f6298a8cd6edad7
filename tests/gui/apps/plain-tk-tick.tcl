# SPDX-License-Identifier: MIT
# The baseline of tk-pinger's tick, without loopbridge: the same 16 ms
# `after` tick, re-armed from the tick, in plain wish under the load the
# test puts next to it (four CPU-bound processes at nice 10), with a
# tk_messageBox opened 0.5 s in and dismissed 0.7 s later, as the test
# does with the app. Prints the largest gap between two ticks with the
# message box (until 0.5 s after it closed) and in the 0.5 s after that:
#   plain tk: max gap A ms with the message box, B ms without
wm title . plain-tk-tick
set phase 1
set last 0
array set max {1 0 2 0}

proc tick {} {
    global last phase max
    set t [clock microseconds]
    if {$last} {
        set gap [expr {($t - $last) / 1000.0}]
        if {$gap > $max($phase)} { set max($phase) $gap }
    }
    set last $t
    after 16 tick
}

proc report {} {
    global max
    puts [format "plain tk: max gap %.1f ms with the message box, %.1f ms without" $max(1) $max(2)]
    exit 0
}

after 16 tick
after 500 {
    after 700 { catch {.__tk__messagebox.ok invoke} }
    tk_messageBox -title plain-tk-modal -message "A message box over a 16 ms tick"
    after 500 {
        set phase 2
        after 500 report
    }
}
