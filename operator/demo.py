"""``teledrive demo``: the whole system on one machine, each part its own process.

A hub on a free loopback port, a vehicle driving in the simulated world (the built-in loop
route; its camera draws the world from the vehicle's pose) with the simulated motor controller
on a pty, and an operator. With ``headless`` the operator drives a scripted pattern
and the demo prints the operator's figures as one JSON object on its last line.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from teledrive.shared.errors import LinkError

REPO = Path(__file__).resolve().parents[1]
FIRMWARE_ELF = REPO / "hardware" / "firmware" / "build" / "teledrive_mcu.elf"
SIMAVR_RIG = REPO / "hardware" / "sim" / "build" / "teledrive_rig"
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
source = "world"
width = 640
height = 480
fps = 30

# The simulated world with its defaults: the built-in loop route, no obstacles.
[sim]
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


def has_display() -> bool:
    """Whether a desktop session is there to show the console on."""
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


async def start_simavr_mcu(
    folder: Path,
) -> tuple[asyncio.subprocess.Process, str, asyncio.Task[None]]:
    """Starts the real firmware in simavr behind a pty.

    Returns:
        The rig process, the pty path, and the task that reads the rig's pin reports (cancel
        it when the rig stops).
    """
    for path, what in ((SIMAVR_RIG, "rig binary"), (FIRMWARE_ELF, "firmware ELF")):
        if not path.exists():
            raise LinkError(f"--mcu simavr: {what} {path} is missing; run `make rig` first")
    link = folder / "ttyMCU"
    rig = await asyncio.create_subprocess_exec(
        str(SIMAVR_RIG),
        "--elf",
        str(FIRMWARE_ELF),
        "--pty",
        str(link),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    if rig.stdout is None:
        raise LinkError("simavr rig: no stdout")
    try:
        async with asyncio.timeout(START_TIMEOUT_S):
            while not (await rig.stdout.readline()).startswith(b"ready"):
                if rig.stdout.at_eof():
                    raise LinkError("simavr rig exited before it was ready")
    except TimeoutError as err:
        await stop_process(rig)
        raise LinkError("simavr rig did not become ready in time") from err
    # The rig reports every pin change on stdout: keep reading so its pipe never fills.
    drain = asyncio.create_task(_drain(rig.stdout))
    return rig, str(link), drain


async def _drain(stream: asyncio.StreamReader) -> None:
    while await stream.read(65536):
        pass


async def run_demo(
    *, headless: bool, duration_s: float | None, mcu: str = "sim", screenshot: str | None = None
) -> int:
    """Runs the demo; returns the exit status.

    Args:
        headless: drive with the headless operator and print a JSON summary.
        duration_s: stop after this long (None: until Ctrl-C).
        mcu: ``sim`` (Python model on a pty) or ``simavr`` (the real firmware in simavr).
        screenshot: run the console offscreen and save a PNG of it here.
    """
    hub, hub_url = await start_hub()
    procs = [hub]
    drain: asyncio.Task[None] | None = None
    try:
        with tempfile.TemporaryDirectory(prefix="teledrive-demo-") as tmp:
            motor_url = "sim://"
            if mcu == "simavr":
                rig, motor_url, drain = await start_simavr_mcu(Path(tmp))
                procs.append(rig)
            config = write_vehicle_config(Path(tmp), hub_url, motor_url=motor_url)
            vehicle = await asyncio.create_subprocess_exec(
                *teledrive_argv("vehicle", "--config", str(config))
            )
            procs.append(vehicle)
            if screenshot is not None or (not headless and has_display()):
                return await _run_console(procs, hub_url, duration_s, screenshot)
            if not headless:
                print(
                    "teledrive demo: no display, so the headless operator drives (Ctrl-C to stop)",
                    file=sys.stderr,
                )
            return await _run_headless(procs, hub_url, duration_s)
    finally:
        for proc in reversed(procs):
            await stop_process(proc)
        if drain is not None:
            drain.cancel()


async def _run_console(
    procs: list[asyncio.subprocess.Process],
    hub_url: str,
    duration_s: float | None,
    screenshot: str | None,
) -> int:
    # The demo camera draws the simulated world top-down: the overlay must match that view.
    argv = ["console", "--hub", hub_url, "--vehicle", DEMO_VEHICLE_ID, "--camera-view", "top-down"]
    if screenshot is not None:
        argv += ["--screenshot", screenshot, "--seconds", str(duration_s or 8.0)]
    elif duration_s is not None:
        argv += ["--seconds", str(duration_s)]
    console = await asyncio.create_subprocess_exec(*teledrive_argv(*argv))
    procs.append(console)
    return await console.wait()


async def _run_headless(
    procs: list[asyncio.subprocess.Process], hub_url: str, duration_s: float | None
) -> int:
    argv = ["operator", "--hub", hub_url, "--vehicle", DEMO_VEHICLE_ID, "--headless", "--json"]
    if duration_s is not None:
        argv += ["--seconds", str(duration_s)]
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
