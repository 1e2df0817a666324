"""Per-logger levels from the ``TELEDRIVE_LOG`` environment variable.

``TELEDRIVE_LOG="teledrive.vehicle.video_track=DEBUG,aioice=WARNING"`` turns on the video
track's DEBUG lines (keyframes forced, retransmissions refused) without the flood of
aiortc's and aioice's own DEBUG output that ``-vv`` gives. The link lab passes the variable
on to the processes it starts, so a diagnostic run can trace one part of the system.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

from teledrive.shared.errors import ConfigError

ENV_VAR = "TELEDRIVE_LOG"
_LEVELS = {
    "DEBUG": logging.DEBUG,
    "INFO": logging.INFO,
    "WARNING": logging.WARNING,
    "ERROR": logging.ERROR,
    "CRITICAL": logging.CRITICAL,
}


def parse_log_levels(spec: str, *, where: str = ENV_VAR) -> dict[str, int]:
    """Parse ``name=LEVEL,name=LEVEL`` (empty entries are ignored).

    Args:
        spec: the specification.
        where: what to name in an error (the variable it came from).

    Returns:
        Logger name -> level number, in the order given.

    Raises:
        ConfigError: an entry is not ``name=LEVEL`` or names an unknown level.
    """
    levels: dict[str, int] = {}
    for position, entry in enumerate(spec.split(","), start=1):
        entry = entry.strip()
        if not entry:
            continue
        name, sep, level = entry.partition("=")
        name, level = name.strip(), level.strip().upper()
        if not sep or not name:
            raise ConfigError(f"{where}: entry {position} {entry!r} is not name=LEVEL")
        if level not in _LEVELS:
            raise ConfigError(
                f"{where}: entry {position} {entry!r}: level must be one of {', '.join(_LEVELS)}"
            )
        levels[name] = _LEVELS[level]
    return levels


def apply_log_levels(environ: Mapping[str, str] | None = None) -> dict[str, int]:
    """Set the levels ``TELEDRIVE_LOG`` names (after ``logging.basicConfig``).

    Args:
        environ: the environment to read (default: ``os.environ``).

    Returns:
        What was set.

    Raises:
        ConfigError: the variable is malformed (nothing is set then).
    """
    env = os.environ if environ is None else environ
    levels = parse_log_levels(env.get(ENV_VAR, ""))
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)
    return levels
