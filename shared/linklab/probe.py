"""A headless operator that reports what it sees, one JSON line per event, for the link lab.

Run inside the lab's operator namespace by :mod:`teledrive.shared.linklab.system`::

    python -m teledrive.shared.linklab.probe --hub ws://10.201.0.2:8765 --vehicle lab-van

It drives the scripted pattern through :class:`~teledrive.operator.client.OperatorClient`
and prints, on stdout, one JSON object per line; ``t`` is ``CLOCK_MONOTONIC`` in ms, the same
clock in every namespace of the machine, so the harness can line events up with the cuts it
makes:

- ``{"ev": "frame", "t", "session"}``: a decoded video frame, and the session count then;
- ``{"ev": "offer", "t", "session_id"}``: the vehicle offered a new peer connection;
- ``{"ev": "registered", "t", "count"}``: (re-)registered with the hub;
- ``{"ev": "tel", "t", "mode", "seq", "sent_t", "age_ms", "stale"}``: vehicle telemetry;
  ``sent_t`` is when this operator sent command ``seq`` (None if unknown);
- ``{"ev": "mode", "t", "mode", "previous", "reason"}``: a mode change the vehicle sent;
- ``{"ev": "summary", "t", ..., "video"}``: :meth:`OperatorStats.summary` and what each camera
  sends now (``[width, height, fps, bitrate_bps]`` from the vehicle's ``VideoStatus``), on the
  stdin line ``summary`` and once more when the probe stops (stdin ``stop``, end of stdin,
  SIGTERM).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import sys
import threading
import time
from collections import OrderedDict
from typing import Any

from teledrive.operator.client import OperatorClient
from teledrive.shared import messages as m
from teledrive.shared.errors import ConfigError
from teledrive.shared.log_levels import apply_log_levels

SENT_WINDOW = 4096
"""Sent commands remembered for ``sent_t`` (80 s at 50 Hz)."""


def now_ms() -> float:
    """CLOCK_MONOTONIC in ms (what ``t`` means)."""
    return time.monotonic() * 1000.0


class Probe:
    """Wires an :class:`OperatorClient` to JSON lines on stdout."""

    def __init__(self, hub_url: str, vehicle_id: str, operator_id: str) -> None:
        self._sent_ms: OrderedDict[int, float] = OrderedDict()
        self.client = OperatorClient(
            hub_url,
            vehicle_id,
            operator_id=operator_id,
            on_frame=self._on_frame,
            on_message=self._on_message,
            on_hub_connected=self._on_hub_connected,
            on_command_sent=self._on_command_sent,
        )
        self._registrations = 0

    @staticmethod
    def emit(event: str, **fields: Any) -> None:
        """Prints one event line."""
        print(json.dumps({"ev": event, "t": round(now_ms(), 3), **fields}), flush=True)

    def _on_frame(self, camera: str, frame: Any) -> None:
        self.emit("frame", camera=camera, session=self.client.stats.sessions)

    def _on_command_sent(self, command: m.DriveCommand) -> None:
        self._sent_ms[command.seq] = now_ms()
        while len(self._sent_ms) > SENT_WINDOW:
            self._sent_ms.popitem(last=False)

    async def _on_hub_connected(self) -> None:
        self._registrations += 1
        self.emit("registered", count=self._registrations)

    def _on_message(self, message: m.Message) -> None:
        match message:
            case m.Telemetry():
                seq = message.last_seq
                self.emit(
                    "tel",
                    mode=message.mode,
                    seq=seq,
                    sent_t=self._sent_ms.get(seq) if seq else None,
                    age_ms=message.command_age_ms,
                    stale=message.stale_applied,
                    session=self.client.stats.sessions,
                )
            case m.ModeChange():
                self.emit(
                    "mode", mode=message.mode, previous=message.previous, reason=message.reason
                )
            case m.Offer(session=session_id):
                self.emit("offer", session_id=session_id)
            case _:
                pass

    def summary(self) -> None:
        """Prints the client's figures."""
        status = self.client.video_status
        video = {name: list(point) for name, point in status.cameras.items()} if status else None
        self.emit("summary", **self.client.stats.summary(), video=video)


def _read_stdin(probe: Probe, loop: asyncio.AbstractEventLoop, done: asyncio.Event) -> None:
    """Reader thread (daemon: a blocked readline must not hold up the exit)."""
    for line in sys.stdin:
        word = line.strip()
        if word == "stop":
            break
        if word == "summary":
            loop.call_soon_threadsafe(probe.summary)
    loop.call_soon_threadsafe(done.set)


async def main_async(args: argparse.Namespace) -> int:
    """Runs the probe until stdin says ``stop`` (or closes) or SIGTERM."""
    probe = Probe(args.hub, args.vehicle, args.id)
    done = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, done.set)
    run = asyncio.create_task(probe.client.run())
    threading.Thread(target=_read_stdin, args=(probe, loop, done), daemon=True).start()
    try:
        waiter = asyncio.create_task(done.wait())
        await asyncio.wait({run, waiter}, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
    finally:
        run.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await run
    probe.summary()
    return 0


def main() -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hub", required=True, help="hub URL, ws://HOST:PORT")
    parser.add_argument("--vehicle", required=True, help="vehicle id")
    parser.add_argument("--id", default="lab-operator", help="this operator's id")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO on stderr")
    args = parser.parse_args()
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s operator %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        apply_log_levels()
    except ConfigError as err:
        print(f"linklab probe: {err}", file=sys.stderr)
        return 2
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
