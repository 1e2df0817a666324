from pathlib import Path

import pytest

from teledrive.shared.config import VehicleConfig, load_vehicle_config, parse_config
from teledrive.shared.errors import ConfigError

GOOD = """
[vehicle]
id = "van-01"
hub_url = "ws://127.0.0.1:9000"

[motor]
url = "/dev/ttyACM0"

[[cameras]]
name = "front"
source = "0"
fps = 25

[[cameras]]
name = "rear"
"""


def test_good_config_parses_with_defaults() -> None:
    config = parse_config(GOOD, VehicleConfig)
    assert config.vehicle.id == "van-01"
    assert config.motor.url == "/dev/ttyACM0"
    assert [c.name for c in config.cameras] == ["front", "rear"]
    assert config.cameras[0].fps == 25
    assert config.cameras[1].source == "synthetic"
    assert config.safety.command_timeout_ms == 250.0


def test_minimal_config_gets_one_synthetic_camera() -> None:
    config = parse_config('[vehicle]\nid = "v"\n', VehicleConfig)
    assert [(c.name, c.source) for c in config.cameras] == [("front", "synthetic")]
    assert config.motor.url == "sim://"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '[vehicle]\nid = "v"\n[[cameras]]\nname = "f"\nfps = 0\n',
            "[cameras[0]] fps: Expected `int` >= 1",
        ),
        ('[vehicle]\nid = "v"\nspeed = 3\n', "[vehicle]: Object contains unknown field `speed`"),
        ('[vehicle]\nid = "v"\nhub_url = "http://x"\n', "[vehicle] hub_url"),
        ('[motor]\nurl = "sim://"\n', "missing required field `vehicle`"),
        (
            '[vehicle]\nid = "v"\n[safety]\ncommand_timeout_ms = "fast"\n',
            "[safety] command_timeout_ms",
        ),
        ('[vehicle]\nid = "v"\n[motor]\nmax_speed_mps = 50.0\n', "[motor] max_speed_mps"),
        ("[vehicle\n", "not valid TOML"),
        (
            '[vehicle]\nid = "v"\n[[cameras]]\nname = "f"\n[[cameras]]\nname = "f"\n',
            "[cameras[1]] name: 'f' is already used",
        ),
        ('[vehicle]\nid = "v"\n[safety]\ndegrade_after_ms = 300\n', "[safety] degrade_after_ms"),
        ('[vehicle]\nid = "v"\n[safety]\nlink_lost_stop_ms = 100\n', "[safety] link_lost_stop_ms"),
        ('[vehicle]\nid = "v"\nname = "' + "x" * 1025 + '"\n', "[vehicle] name"),
    ],
)
def test_bad_config_names_file_key_and_problem(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(text, VehicleConfig, source="vehicle.toml")
    assert str(info.value).startswith("vehicle.toml: ")
    assert message in str(info.value)


def test_load_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "vehicle.toml"
    path.write_text('[vehicle]\nid = "bad id"\n')
    with pytest.raises(ConfigError, match=r"vehicle\.toml: \[vehicle\] id"):
        load_vehicle_config(path)
    with pytest.raises(ConfigError, match="cannot read"):
        load_vehicle_config(tmp_path / "missing.toml")
    path.write_bytes(b"\xff\xfe[")
    with pytest.raises(ConfigError, match="UTF-8"):
        load_vehicle_config(path)
