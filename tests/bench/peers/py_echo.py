#!/usr/bin/env python3
"""W11 (TCP echo) with asyncio streams, on asyncio's own loop or uvloop.

A server (asyncio.start_server) on 127.0.0.1 and 100 client connections
(asyncio.open_connection) in one process and one loop; each client sends
64 bytes, awaits the echo (readexactly) and again, for n milliseconds.
Prints one JSON line with the fields loopbridge's bench prints.

Usage: py_echo.py --loop asyncio|uvloop [--workload W11] [--n MS] [--versions]
"""
import argparse
import asyncio
import json
import platform
import resource
import sys
import time

CLIENTS = 100
MSG = 64


def pct(sorted_vals, p):
    """Nearest-rank percentile, as the other peers compute it."""
    if not sorted_vals:
        return 0
    k = max(0, (p * len(sorted_vals) + 99) // 100 - 1)
    return sorted_vals[k]


async def echo(reader, writer):
    try:
        while True:
            data = await reader.readexactly(MSG)
            writer.write(data)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def client(port, end_ns, rtt, errors):
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        errors.append(1)
        return
    msg = b"e" * MSG
    try:
        while True:
            t0 = time.perf_counter_ns()
            writer.write(msg)
            await writer.drain()
            await reader.readexactly(MSG)
            t1 = time.perf_counter_ns()
            rtt.append(t1 - t0)
            if t1 >= end_ns:
                break
    except (asyncio.IncompleteReadError, ConnectionError):
        errors.append(1)
    finally:
        writer.close()
        await writer.wait_closed()


async def w11(ms):
    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    rtt, errors = [], []
    t0 = time.perf_counter()
    end_ns = time.perf_counter_ns() + ms * 1_000_000
    await asyncio.gather(*(client(port, end_ns, rtt, errors) for _ in range(CLIENTS)))
    dt = time.perf_counter() - t0
    server.close()
    await server.wait_closed()
    rtt.sort()
    n = len(rtt)
    median = (rtt[n // 2] if n % 2 else (rtt[n // 2 - 1] + rtt[n // 2]) / 2) if n else 0
    return {"n": n, "seconds": round(dt, 4), "msgs_per_s": round(n / dt, 1),
            "median_us": round(median / 1e3, 3), "p99_us": round(pct(rtt, 99) / 1e3, 3),
            "connections": CLIENTS, "message_bytes": MSG, "errors": len(errors)}


def make_loop(kind):
    if kind == "uvloop":
        import uvloop
        return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def versions(kind):
    v = {"python": platform.python_version(), "loop": kind}
    if kind == "uvloop":
        import uvloop
        v["uvloop"] = uvloop.__version__
    return v


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--loop", choices=["asyncio", "uvloop"], default="asyncio")
    ap.add_argument("--workload", default="W11")
    ap.add_argument("--n", type=int, default=10000, help="milliseconds")
    ap.add_argument("--versions", action="store_true")
    a = ap.parse_args()
    if a.versions:
        print(json.dumps(versions(a.loop)))
        return
    for w in a.workload.split(","):
        if w != "W11":
            print(json.dumps({"peer": a.loop, "workload": w, "error": "unknown workload"}))
            continue
        loop = make_loop(a.loop)
        try:
            out = {"peer": a.loop, "workload": "W11_echo"}
            out.update(loop.run_until_complete(w11(a.n)))
        finally:
            loop.close()
        out["maxrss_kb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        out["impl"] = ("asyncio.start_server + 100 asyncio.open_connection; "
                       "write + drain + readexactly, on " + a.loop)
        print(json.dumps(out))
        sys.stdout.flush()


if __name__ == "__main__":
    main()
