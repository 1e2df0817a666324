"""Per-logger levels from TELEDRIVE_LOG."""

from __future__ import annotations

import logging

import pytest

from teledrive.shared.errors import ConfigError
from teledrive.shared.log_levels import apply_log_levels, parse_log_levels


def test_levels_are_read_per_logger() -> None:
    assert parse_log_levels(" a.b=debug, c=WARNING ,,") == {
        "a.b": logging.DEBUG,
        "c": logging.WARNING,
    }
    assert parse_log_levels("") == {}


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("a.b", r"entry 1 'a\.b' is not name=LEVEL"),
        ("x=INFO,=DEBUG", r"entry 2 '=DEBUG' is not name=LEVEL"),
        ("a=LOUD", r"entry 1 'a=LOUD': level must be one of DEBUG, INFO"),
    ],
)
def test_a_malformed_entry_is_named(spec: str, message: str) -> None:
    with pytest.raises(ConfigError, match=f"TELEDRIVE_LOG: {message}"):
        parse_log_levels(spec)


def test_applying_sets_the_named_loggers_only() -> None:
    name = "teledrive.test_log_levels.traced"
    logger = logging.getLogger(name)
    try:
        assert apply_log_levels({"TELEDRIVE_LOG": f"{name}=DEBUG"}) == {name: logging.DEBUG}
        assert logger.level == logging.DEBUG
        with pytest.raises(ConfigError):
            apply_log_levels({"TELEDRIVE_LOG": f"{name}=INFO,bad"})
        assert logger.level == logging.DEBUG  # nothing set from a malformed variable
        assert apply_log_levels({}) == {}
    finally:
        logger.setLevel(logging.NOTSET)
