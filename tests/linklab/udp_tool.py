"""UDP probes run inside lab namespaces: echo server, pinger, paced sender, sink.

Every datagram starts with a sequence number and the sender's CLOCK_MONOTONIC in ns; the clock
is the same in all network namespaces of one machine, so a sink can measure one-way delay.
Each mode prints ``ready`` (servers) or ``started`` (senders) once (the pinger also
``first-reply``), and the result as one JSON line at the end.
"""

from __future__ import annotations

import argparse
import json
import select
import socket
import struct
import sys
import time

HEADER = struct.Struct("!IQ")
NS_PER_MS = 1e6


def _address(text: str) -> tuple[str, int]:
    host, port = text.rsplit(":", 1)
    return host, int(port)


def _packet(seq: int, size: int) -> bytes:
    return HEADER.pack(seq, time.monotonic_ns()).ljust(size, b"\0")


def echo(port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("0.0.0.0", port))
        print("ready", flush=True)
        while True:
            data, peer = sock.recvfrom(65535)
            sock.sendto(data, peer)


def ping(to: tuple[str, int], count: int, interval_ms: float, size: int, wait_ms: float) -> None:
    rtts_ms: list[float | None] = [None] * count
    sent_at_ms: list[float] = [0.0] * count
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        start_ns = time.monotonic_ns()
        end_ns = start_ns + int((count * interval_ms + wait_ms) * NS_PER_MS)
        seq = 0
        print("started", flush=True)
        while True:
            now_ns = time.monotonic_ns()
            while seq < count and now_ns >= start_ns + seq * interval_ms * NS_PER_MS:
                sock.sendto(_packet(seq, size), to)
                sent_at_ms[seq] = (now_ns - start_ns) / NS_PER_MS
                seq += 1
            if now_ns >= end_ns:
                break
            next_ns = start_ns + seq * interval_ms * NS_PER_MS if seq < count else end_ns
            readable, _, _ = select.select([sock], [], [], max(0.0, (next_ns - now_ns) / 1e9))
            if readable:
                data = sock.recv(65535)
                got_seq, stamp_ns = HEADER.unpack_from(data)
                if got_seq < count:
                    if not any(rtt is not None for rtt in rtts_ms):
                        print("first-reply", flush=True)
                    rtts_ms[got_seq] = (time.monotonic_ns() - stamp_ns) / NS_PER_MS
    print(json.dumps({"rtts_ms": rtts_ms, "sent_at_ms": sent_at_ms}), flush=True)


def blast(to: tuple[str, int], rate_bps: float, duration_s: float, size: int) -> None:
    interval_ns = size * 8 / rate_bps * 1e9
    count = int(duration_s * 1e9 / interval_ns)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 * 1024 * 1024)
        print("started", flush=True)
        start_ns = time.monotonic_ns()
        for seq in range(count):
            due_ns = start_ns + seq * interval_ns
            delta_ns = due_ns - time.monotonic_ns()
            if delta_ns > 0:
                time.sleep(delta_ns / 1e9)
            sock.sendto(_packet(seq, size), to)
        elapsed_s = (time.monotonic_ns() - start_ns) / 1e9
    print(json.dumps({"sent": count, "elapsed_s": elapsed_s}), flush=True)


def sink(port: int, idle_ms: float, max_s: float) -> None:
    delays_ms: list[float] = []
    sizes: list[int] = []
    first_ns = last_ns = 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
        sock.bind(("0.0.0.0", port))
        print("ready", flush=True)
        deadline_ns = time.monotonic_ns() + int(max_s * 1e9)
        while True:
            now_ns = time.monotonic_ns()
            limit_ns = deadline_ns if not sizes else min(deadline_ns, last_ns + idle_ms * NS_PER_MS)
            if now_ns >= limit_ns:
                break
            readable, _, _ = select.select([sock], [], [], (limit_ns - now_ns) / 1e9)
            if not readable:
                continue
            data = sock.recv(65535)
            last_ns = time.monotonic_ns()
            first_ns = first_ns or last_ns
            _, stamp_ns = HEADER.unpack_from(data)
            delays_ms.append((last_ns - stamp_ns) / NS_PER_MS)
            sizes.append(len(data))
    span_s = (last_ns - first_ns) / 1e9
    result = {"received": len(sizes), "payload_bytes": sum(sizes), "span_s": span_s}
    print(json.dumps({**result, "delays_ms": delays_ms}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    modes = parser.add_subparsers(dest="mode", required=True)
    p = modes.add_parser("echo")
    p.add_argument("--port", type=int, required=True)
    p = modes.add_parser("ping")
    p.add_argument("--to", type=_address, required=True)
    p.add_argument("--count", type=int, default=50)
    p.add_argument("--interval-ms", type=float, default=10.0)
    p.add_argument("--size", type=int, default=100)
    p.add_argument("--wait-ms", type=float, default=500.0)
    p = modes.add_parser("blast")
    p.add_argument("--to", type=_address, required=True)
    p.add_argument("--rate-bps", type=float, required=True)
    p.add_argument("--duration-s", type=float, required=True)
    p.add_argument("--size", type=int, default=1200)
    p = modes.add_parser("sink")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--idle-ms", type=float, default=500.0)
    p.add_argument("--max-s", type=float, default=30.0)
    args = parser.parse_args()
    if args.mode == "echo":
        echo(args.port)
    elif args.mode == "ping":
        ping(args.to, args.count, args.interval_ms, args.size, args.wait_ms)
    elif args.mode == "blast":
        blast(args.to, args.rate_bps, args.duration_s, args.size)
    else:
        sink(args.port, args.idle_ms, args.max_s)


if __name__ == "__main__":
    sys.exit(main())
