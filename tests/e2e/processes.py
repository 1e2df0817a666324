"""Helpers for end-to-end tests that run teledrive's processes as a user would."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def cli(*args: str) -> list[str]:
    """The argv of a ``teledrive`` subcommand with this interpreter."""
    return [sys.executable, "-m", "teledrive.shared.cli", *args]


def stop(proc: subprocess.Popen[str]) -> None:
    """SIGTERM, then SIGKILL after 5 s."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def hub_process() -> Iterator[str]:
    """``teledrive hub`` on a free loopback port; yields the URL it prints."""
    hub = subprocess.Popen(cli("hub", "--listen", "127.0.0.1:0"), stdout=subprocess.PIPE, text=True)
    try:
        assert hub.stdout is not None
        line = hub.stdout.readline().strip()
        assert line.startswith("hub listening on "), line
        yield line.removeprefix("hub listening on ")
    finally:
        stop(hub)


@contextmanager
def vehicle_process(
    folder: Path,
    *,
    vehicle_id: str,
    hub_url: str,
    motor_url: str,
    width: int = 640,
    height: int = 480,
) -> Iterator[subprocess.Popen[str]]:
    """``teledrive vehicle`` with a synthetic camera and the given motor controller."""
    config = folder / "vehicle.toml"
    config.write_text(
        f'[vehicle]\nid = "{vehicle_id}"\nhub_url = "{hub_url}"\n\n'
        f'[motor]\nurl = "{motor_url}"\n\n'
        f'[[cameras]]\nname = "front"\nsource = "synthetic"\n'
        f"width = {width}\nheight = {height}\nfps = 30\n"
    )
    proc = subprocess.Popen(cli("vehicle", "--config", str(config)), text=True)
    try:
        yield proc
    finally:
        stop(proc)
