"""benchmarks/link_lab.py --trace: the log lines listed with a freeze (no lab needed)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType, SimpleNamespace

from teledrive.shared.linklab.system import LogLine

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "link_lab.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("link_lab_under_test", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


link_lab = _load()


def test_a_freeze_lists_both_processes_lines_in_time_order_from_before_it() -> None:
    lab = SimpleNamespace(
        vehicle_log=[
            LogLine(100.0, "x: too early"),
            LogLine(1500.0, "teledrive.vehicle.video_track: camera front: keyframe forced"),
            LogLine(2100.0, "x: clock sync: sample"),  # noise, left out
            LogLine(2700.0, "x: after the freeze"),
        ],
        operator_log=[
            LogLine(1900.0, "teledrive.operator.video_receive: video: packets 5-9 missing"),
        ],
    )
    lines = link_lab._log_around(lab, 2000.0, 2600.0)
    assert lines == [
        "-500 vehicle: camera front: keyframe forced",
        "-100 operator: video: packets 5-9 missing",
    ]


def test_the_listed_log_is_capped() -> None:
    many = [LogLine(1000.0 + n, f"x: line {n}") for n in range(500)]
    lab = SimpleNamespace(vehicle_log=many, operator_log=[])
    lines = link_lab._log_around(lab, 1000.0, 2000.0)
    assert len(lines) == link_lab.TRACE_MAX_LINES
    assert lines[0] == "+0 vehicle: line 0"
