"""The README's examples work as written."""

import re
from pathlib import Path

from teledrive.shared.config import VehicleConfig, parse_config

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_readme_vehicle_toml_is_valid() -> None:
    text = README.read_text()
    section = text.split("### `vehicle.toml`", 1)[1]
    match = re.search(r"```toml\n(.*?)```", section, re.S)
    assert match is not None
    config = parse_config(match.group(1), VehicleConfig, source="README.md vehicle.toml")
    assert config.vehicle.id == "van-01"
    assert config.sim is not None


def test_the_readme_names_the_two_commands() -> None:
    text = README.read_text()
    assert "make demo" in text
    assert "make test" in text
