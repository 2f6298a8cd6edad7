/* SPDX-License-Identifier: MIT */
#ifndef LOOPBRIDGE_H
#define LOOPBRIDGE_H

/* The umbrella header: include this one. */

#include <loopbridge/common.h>
#include <loopbridge/version.h>
#include <loopbridge/loop.h>
#include <loopbridge/future.h>
#include <loopbridge/driver.h>
#include <loopbridge/task.h>
#include <loopbridge/executor.h>
#include <loopbridge/coalesce.h>
#include <loopbridge/loop_thread.h>
#include <loopbridge/io.h>
#include <loopbridge/dns.h>
#include <loopbridge/stream.h>
#include <loopbridge/process.h>

#endif
