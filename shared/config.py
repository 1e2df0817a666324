"""Configuration files of teledrive (TOML), validated into frozen structs.

A malformed file stops start-up with a :class:`~teledrive.shared.errors.ConfigError` whose
message names the file, the key and what is wrong, e.g.
``vehicle.toml: [cameras[0]] fps: Expected `int` >= 1``.

Example ``vehicle.toml``::

    [vehicle]
    id = "van-01"
    hub_url = "ws://127.0.0.1:8765"

    [motor]
    url = "sim://"            # a pyserial URL or device path, e.g. /dev/ttyACM0

    [[cameras]]
    name = "front"
    source = "synthetic"      # or a device index ("0") or path ("/dev/video0")
    width = 640
    height = 480
    fps = 30

    [safety]
    command_timeout_ms = 250

    [sim]                     # optional: the simulated world (built in with url = "sim://")
    route = [[0, 0], [10, 0], [10, 8]]
    obstacles = [[5, 0.2, 0.4]]   # x, y, radius in metres
    start = [0, 0, 0]             # x, y, heading in rad; default: first waypoint, facing the next
"""

from __future__ import annotations

import math
import re
import tomllib
from pathlib import Path
from typing import Annotated, TypeVar

import msgspec

from teledrive.shared.errors import ConfigError

Name = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:-]+$")]
PositiveMs = Annotated[float, msgspec.Meta(gt=0.0, le=600_000.0)]
Metres = Annotated[float, msgspec.Meta(ge=-100_000.0, le=100_000.0)]
RadiusM = Annotated[float, msgspec.Meta(gt=0.0, le=1_000.0)]
HeadingRad = Annotated[float, msgspec.Meta(ge=-math.tau, le=math.tau)]
SIM_MOTOR_URL = "sim://"
WORLD_CAMERA_SOURCE = "world"


class _Section(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Base of config sections: unknown keys are errors (a typo must not pass silently)."""


class VehicleSection(_Section, frozen=True, kw_only=True):
    """``[vehicle]``: who the vehicle is and where its hub is.

    Attributes:
        id: fleet id, unique on the hub.
        name: human-readable name.
        hub_url: websocket URL of the hub the vehicle dials out to.
    """

    id: Name
    name: Annotated[str, msgspec.Meta(max_length=1024)] = ""
    hub_url: Annotated[str, msgspec.Meta(pattern=r"^wss?://")] = "ws://127.0.0.1:8765"


class MotorSection(_Section, frozen=True, kw_only=True):
    """``[motor]``: the motor-controller link.

    Attributes:
        url: pyserial URL or device path; ``sim://`` starts the built-in simulated MCU on a pty.
        max_speed_mps: the fastest the vehicle may ever be commanded.
        max_steer_rad: the largest steering angle.
    """

    url: Annotated[str, msgspec.Meta(min_length=1)] = "sim://"
    max_speed_mps: Annotated[float, msgspec.Meta(gt=0.0, le=3.0)] = 3.0
    max_steer_rad: Annotated[float, msgspec.Meta(gt=0.0, le=0.5)] = 0.5


class CameraSection(_Section, frozen=True, kw_only=True):
    """``[[cameras]]``: one camera; the first is the primary.

    Attributes:
        name: track name shown to the operator.
        source: ``synthetic``, ``world`` (draws the simulated world from the vehicle's pose;
            needs a simulated world, see :class:`SimSection`), a device index (``"0"``) or a
            device path.
        width: capture width in pixels.
        height: capture height in pixels.
        fps: capture frame rate.
    """

    name: Name
    source: Annotated[str, msgspec.Meta(min_length=1)] = "synthetic"
    width: Annotated[int, msgspec.Meta(ge=16, le=7680)] = 640
    height: Annotated[int, msgspec.Meta(ge=16, le=4320)] = 480
    fps: Annotated[int, msgspec.Meta(ge=1, le=120)] = 30


class SafetySection(_Section, frozen=True, kw_only=True):
    """``[safety]``: the bounds on driving. Defaults are ARCHITECTURE.md's budgets.

    Attributes:
        command_timeout_ms: a command older than this, or no command for this long, means stop.
        degrade_after_ms: command age at which the speed cap starts falling.
        link_lost_stop_ms: link silence after which the vehicle makes a minimal-risk stop.
        decel_mps2: braking used for stops.
    """

    command_timeout_ms: PositiveMs = 250.0
    degrade_after_ms: PositiveMs = 150.0
    link_lost_stop_ms: PositiveMs = 3000.0
    decel_mps2: Annotated[float, msgspec.Meta(gt=0.0, le=10.0)] = 1.5


class LinkSection(_Section, frozen=True, kw_only=True):
    """``[link]``: how the vehicle uses its network links.

    Attributes:
        bond: send every datagram of a session over each network interface (one per
            cellular modem), and ask the operator to send to the vehicle's other address too:
            a loss then needs every link at once (``shared/bond.py``).
    """

    bond: bool = False


def default_route() -> list[tuple[float, float]]:
    """The built-in demo route: a 24 m x 12 m loop with 3 m corner arcs (about 67 m).

    Starts at ``(0, 0)`` in the middle of the bottom straight, heading +x, drives
    anticlockwise and ends where it started.
    """
    corner_radius_m, half_width_m, height_m, arc_points = 3.0, 12.0, 12.0, 6
    inner_x_m = half_width_m - corner_radius_m
    centres = (
        (inner_x_m, corner_radius_m),
        (inner_x_m, height_m - corner_radius_m),
        (-inner_x_m, height_m - corner_radius_m),
        (-inner_x_m, corner_radius_m),
    )
    route = [(0.0, 0.0)]
    for k, (cx, cy) in enumerate(centres):
        start_rad = -math.pi / 2 + k * math.pi / 2
        for i in range(arc_points + 1):
            angle = start_rad + (math.pi / 2) * i / arc_points
            point = (cx + corner_radius_m * math.cos(angle), cy + corner_radius_m * math.sin(angle))
            route.append((round(point[0], 3), round(point[1], 3)))
    route.append((0.0, 0.0))
    return route


class SimSection(_Section, frozen=True, kw_only=True):
    """``[sim]``: the simulated world the vehicle drives in (route, obstacles, start pose).

    Without a ``[sim]`` section a vehicle with ``motor.url = "sim://"`` gets this section's
    defaults: the built-in loop of :func:`default_route`, no obstacles.

    Attributes:
        route: waypoints ``[x, y]`` in metres, in driving order (at least two).
        obstacles: round obstacles ``[x, y, radius]`` in metres.
        start: initial pose ``[x, y, heading_rad]``; default: the first waypoint, facing the
            second.
    """

    route: Annotated[list[tuple[Metres, Metres]], msgspec.Meta(min_length=2, max_length=10_000)] = (
        msgspec.field(default_factory=default_route)
    )
    obstacles: Annotated[list[tuple[Metres, Metres, RadiusM]], msgspec.Meta(max_length=1_000)] = (
        msgspec.field(default_factory=list)
    )
    start: tuple[Metres, Metres, HeadingRad] | None = None


class VehicleConfig(_Section, frozen=True, kw_only=True):
    """The whole ``vehicle.toml``."""

    vehicle: VehicleSection
    motor: MotorSection = MotorSection()
    cameras: Annotated[list[CameraSection], msgspec.Meta(min_length=1, max_length=8)] = (
        msgspec.field(default_factory=lambda: [CameraSection(name="front")])
    )
    safety: SafetySection = SafetySection()
    link: LinkSection = LinkSection()
    sim: SimSection | None = None

    def __post_init__(self) -> None:
        names = [camera.name for camera in self.cameras]
        for i, name in enumerate(names):
            if name in names[:i]:
                # Track ids are camera names: two alike would merge in the operator's view.
                raise ValueError(f"[cameras[{i}]] name: {name!r} is already used by another camera")
        safety = self.safety
        if safety.degrade_after_ms >= safety.command_timeout_ms:
            raise ValueError(
                f"[safety] degrade_after_ms: {safety.degrade_after_ms:g} must be below "
                f"command_timeout_ms ({safety.command_timeout_ms:g})"
            )
        if safety.link_lost_stop_ms <= safety.command_timeout_ms:
            raise ValueError(
                f"[safety] link_lost_stop_ms: {safety.link_lost_stop_ms:g} must be above "
                f"command_timeout_ms ({safety.command_timeout_ms:g})"
            )
        if simulated_world(self) is not None:
            return
        for i, camera in enumerate(self.cameras):
            if camera.source == WORLD_CAMERA_SOURCE:
                raise ValueError(
                    f"[cameras[{i}]] source: {WORLD_CAMERA_SOURCE!r} needs a simulated world: "
                    f"add a [sim] section or use motor url {SIM_MOTOR_URL!r}"
                )


def simulated_world(config: VehicleConfig) -> SimSection | None:
    """The simulated world to run: ``[sim]``, else the built-in one with the ``sim://`` motor."""
    if config.sim is not None:
        return config.sim
    if config.motor.url == SIM_MOTOR_URL:
        return SimSection()
    return None


C = TypeVar("C", bound=msgspec.Struct)

_PATH_RE = re.compile(r" - at `\$(?P<path>[^`]*)`$")


def _where(message: str) -> tuple[str, str]:
    """Splits msgspec's ``... - at `$.a[0].b``` into (``[a[0]] b``, ``...``)."""
    match = _PATH_RE.search(message)
    if match is None:
        return "", message
    parts = match.group("path").lstrip(".").rsplit(".", 1)
    what = message[: match.start()]
    if len(parts) == 2:
        return f"[{parts[0]}] {parts[1]}", what
    if what.startswith("Object"):
        return f"[{parts[0]}]", what
    return parts[0], what


def parse_config(data: str, kind: type[C], *, source: str = "<config>") -> C:
    """Parses TOML text into a config struct.

    Args:
        data: the TOML text.
        kind: the struct type, e.g. :class:`VehicleConfig`.
        source: names the file in error messages.

    Returns:
        The validated config.

    Raises:
        ConfigError: the TOML is malformed, or a key is unknown, missing or out of range.
    """
    try:
        raw = tomllib.loads(data)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{source}: not valid TOML: {err}") from err
    try:
        return msgspec.convert(raw, kind)
    except msgspec.ValidationError as err:
        where, what = _where(str(err))
        prefix = f"{source}: {where}: " if where else f"{source}: "
        raise ConfigError(prefix + what) from err


def load_config(path: str | Path, kind: type[C]) -> C:
    """Loads and validates a TOML config file; see :func:`parse_config`."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(f"{file}: cannot read: {err.strerror or err}") from err
    except UnicodeDecodeError as err:
        raise ConfigError(f"{file}: not UTF-8 text: {err}") from err
    return parse_config(text, kind, source=str(file))


def load_vehicle_config(path: str | Path) -> VehicleConfig:
    """Loads ``vehicle.toml``; raises ConfigError naming the file and key on any problem."""
    return load_config(path, VehicleConfig)
