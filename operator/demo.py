"""``teledrive demo``: the whole system on one machine, each part its own process.

A hub on a free loopback port, a vehicle with a synthetic camera and the simulated motor
controller on a pty, and an operator. With ``headless`` the operator drives a scripted pattern
and the demo prints the operator's figures as one JSON object on its last line.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from teledrive.shared.errors import LinkError

DEMO_VEHICLE_ID = "demo-van"
START_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 5.0

VEHICLE_TOML = """\
[vehicle]
id = "{vehicle_id}"
name = "Demo delivery van"
hub_url = "{hub_url}"

[motor]
url = "{motor_url}"

[[cameras]]
name = "front"
source = "synthetic"
width = 640
height = 480
fps = 30
"""


def teledrive_argv(*args: str) -> list[str]:
    """The argv that runs a ``teledrive`` subcommand with this interpreter."""
    return [sys.executable, "-m", "teledrive.shared.cli", *args]


async def start_hub(listen: str = "127.0.0.1:0") -> tuple[asyncio.subprocess.Process, str]:
    """Starts a hub process and returns it with the URL it listens on."""
    proc = await asyncio.create_subprocess_exec(
        *teledrive_argv("hub", "--listen", listen), stdout=asyncio.subprocess.PIPE
    )
    if proc.stdout is None:
        raise LinkError("hub: no stdout")
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), START_TIMEOUT_S)
    except TimeoutError as err:
        await stop_process(proc)
        raise LinkError("hub did not report its address in time") from err
    text = line.decode().strip()
    if not text.startswith("hub listening on "):
        await stop_process(proc)
        raise LinkError(f"hub failed to start: {text!r}")
    return proc, text.removeprefix("hub listening on ")


def write_vehicle_config(folder: Path, hub_url: str, *, motor_url: str = "sim://") -> Path:
    """Writes the demo's ``vehicle.toml`` into ``folder``."""
    path = folder / "vehicle.toml"
    path.write_text(
        VEHICLE_TOML.format(vehicle_id=DEMO_VEHICLE_ID, hub_url=hub_url, motor_url=motor_url)
    )
    return path


async def stop_process(proc: asyncio.subprocess.Process) -> None:
    """SIGTERM, then SIGKILL after a grace period."""
    if proc.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.terminate()
    try:
        await asyncio.wait_for(proc.wait(), STOP_TIMEOUT_S)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()


async def run_demo(*, headless: bool, seconds: float | None, mcu: str = "sim") -> int:
    """Runs the demo; returns the exit status."""
    del mcu  # only the Python simulated MCU so far
    hub, hub_url = await start_hub()
    procs = [hub]
    try:
        with tempfile.TemporaryDirectory(prefix="teledrive-demo-") as tmp:
            config = write_vehicle_config(Path(tmp), hub_url)
            vehicle = await asyncio.create_subprocess_exec(
                *teledrive_argv("vehicle", "--config", str(config))
            )
            procs.append(vehicle)
            if not headless:
                print(
                    "teledrive demo: no desktop console yet; running the headless operator "
                    "(Ctrl-C to stop)",
                    file=sys.stderr,
                )
            argv = ["operator", "--hub", hub_url, "--vehicle", DEMO_VEHICLE_ID, "--headless"]
            argv += ["--json"]
            if seconds is not None:
                argv += ["--seconds", str(seconds)]
            operator = await asyncio.create_subprocess_exec(
                *teledrive_argv(*argv), stdout=asyncio.subprocess.PIPE
            )
            procs.append(operator)
            out, _ = await operator.communicate()
            lines = out.decode().strip().splitlines()
            summary: dict[str, Any] = json.loads(lines[-1]) if lines else {"errors": 1}
            summary["demo"] = {"hub": hub_url, "vehicle": DEMO_VEHICLE_ID}
            print(json.dumps(summary), flush=True)
            return 0 if operator.returncode == 0 else 1
    finally:
        for proc in reversed(procs):
            await stop_process(proc)
