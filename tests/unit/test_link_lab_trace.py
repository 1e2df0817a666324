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


def test_the_run_says_why_sessions_ended_and_how_long_they_waited_for_data() -> None:
    lines = {
        "hub": [
            LogLine(
                10.0,
                "INFO x: hub: session a1 ended: vehicle 'v' reconnected",
            ),
            LogLine(20.0, "INFO x: hub: vehicle 'v' registered"),
            LogLine(
                30.0,
                "INFO x: hub: session b2 ended: vehicle 'v' reconnected",
            ),
            LogLine(
                40.0,
                "INFO x: hub: session c3 ended: operator 'o' connected again",
            ),
        ],
        "vehicle": [
            LogLine(5.0, "INFO x: session a1: first data from the operator 1084 ms after it began"),
            LogLine(6.0, "INFO x: session b2: first data from the operator 4101 ms after it began"),
        ],
    }

    def log_lines(process: str, since_ms: float, *, containing: tuple[str, ...]) -> list[LogLine]:
        return [
            line
            for line in lines[process]
            if line.t_ms > since_ms and all(text in line.text for text in containing)
        ]

    lab = SimpleNamespace(log_lines=log_lines)
    assert link_lab._sessions_ended_by(lab) == {
        "vehicle 'v' reconnected": 2,
        "operator 'o' connected again": 1,
    }
    assert link_lab._first_data_ms(lab) == [1084.0, 4101.0]


def test_a_slow_reconnect_lists_the_hub_too_from_the_links_return() -> None:
    lab = SimpleNamespace(
        vehicle_log=[
            LogLine(900.0, "x: before the link returned"),
            LogLine(1400.0, "aioice.ice: Connection(2) ICE completed"),
        ],
        operator_log=[LogLine(1300.0, "x: video budget: every tick, left out")],
        hub_log=[LogLine(1100.0, "teledrive.operator.hub: hub: vehicle 'v' registered")],
    )
    lines = link_lab._log_around(
        lab, 1000.0, 3000.0, before_ms=0.0, skipped=link_lab._RECONNECT_SKIPPED, hub=True
    )
    assert lines == [
        "+100 hub: hub: vehicle 'v' registered",
        "+400 vehicle: Connection(2) ICE completed",
    ]
