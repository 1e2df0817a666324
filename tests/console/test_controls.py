"""Input logic without Qt: key and pad mapping, deadman, e-stop latch, the command source."""

from __future__ import annotations

import pytest
from console_clock import FakeClock
from PySide6.QtCore import Qt

from teledrive.operator.console import controls as c
from teledrive.operator.console.controls import (
    Action,
    ConsoleCommandSource,
    DriveIntent,
    DriveLimits,
    GamepadInput,
    GamepadMapping,
    KeyboardInput,
)
from teledrive.operator.console.lockout import VideoLockout
from teledrive.shared.errors import ConfigError

LIMITS = DriveLimits(forward_mps=1.5, reverse_mps=0.5, steer_rad=0.3)


def test_key_codes_are_qt_key_codes() -> None:
    pairs = [
        (c.QT_KEY_SPACE, Qt.Key.Key_Space),
        (c.QT_KEY_W, Qt.Key.Key_W),
        (c.QT_KEY_A, Qt.Key.Key_A),
        (c.QT_KEY_S, Qt.Key.Key_S),
        (c.QT_KEY_D, Qt.Key.Key_D),
        (c.QT_KEY_T, Qt.Key.Key_T),
        (c.QT_KEY_R, Qt.Key.Key_R),
        (c.QT_KEY_UP, Qt.Key.Key_Up),
        (c.QT_KEY_DOWN, Qt.Key.Key_Down),
        (c.QT_KEY_LEFT, Qt.Key.Key_Left),
        (c.QT_KEY_RIGHT, Qt.Key.Key_Right),
        (c.QT_KEY_SHIFT, Qt.Key.Key_Shift),
        (c.QT_KEY_CONTROL, Qt.Key.Key_Control),
    ]
    for ours, qt in pairs:
        assert ours == qt.value


def test_keys_without_deadman_do_nothing() -> None:
    kb = KeyboardInput(limits=LIMITS)
    kb.press(c.QT_KEY_W)
    kb.press(c.QT_KEY_A)
    assert kb.intent() == DriveIntent(0.0, 0.0, False)


def test_deadman_and_keys_drive_and_release_zeroes() -> None:
    kb = KeyboardInput(limits=LIMITS)
    kb.press(c.QT_KEY_SHIFT)
    kb.press(c.QT_KEY_W)
    kb.press(c.QT_KEY_LEFT)
    assert kb.intent() == DriveIntent(1.5, 0.3, True)
    kb.release(c.QT_KEY_SHIFT)
    assert kb.intent() == DriveIntent(0.0, 0.0, False)


def test_reverse_and_right() -> None:
    kb = KeyboardInput(limits=LIMITS)
    for key in (c.QT_KEY_CONTROL, c.QT_KEY_DOWN, c.QT_KEY_D):
        kb.press(key)
    assert kb.intent() == DriveIntent(-0.5, -0.3, True)


def test_two_keys_for_one_function_both_must_be_released() -> None:
    kb = KeyboardInput(limits=LIMITS)
    kb.press(c.QT_KEY_SHIFT)
    kb.press(c.QT_KEY_CONTROL)
    kb.release(c.QT_KEY_SHIFT)
    assert kb.intent().deadman
    kb.release(c.QT_KEY_CONTROL)
    assert not kb.intent().deadman


def test_release_all_forgets_the_deadman() -> None:
    kb = KeyboardInput(limits=LIMITS)
    kb.press(c.QT_KEY_SHIFT)
    kb.press(c.QT_KEY_W)
    kb.release_all()
    assert kb.intent() == c.IDLE


def test_action_keys() -> None:
    kb = KeyboardInput()
    assert kb.press(c.QT_KEY_SPACE) is Action.ESTOP
    assert kb.press(c.QT_KEY_T) is Action.TAKEOVER
    assert kb.press(c.QT_KEY_R) is Action.RELEASE
    assert kb.press(c.QT_KEY_W) is None
    assert kb.press(0x5A) is None
    assert not kb.handles(0x5A)


def test_gamepad_needs_deadman_button() -> None:
    pad = GamepadInput(limits=LIMITS)
    pad.axis(5, 1.0)
    pad.axis(0, -1.0)
    assert pad.intent() == c.IDLE
    pad.press(10)
    intent = pad.intent()
    assert intent.deadman
    assert intent.speed_mps == pytest.approx(1.5)
    assert intent.steer_rad == pytest.approx(0.3)  # stick left (-1) is steer left (+)
    pad.release(10)
    assert pad.intent() == c.IDLE


HALF_TRIGGER = 0.525  # half of the output past the default 0.05 trigger deadzone


def test_gamepad_deadzone_and_reverse() -> None:
    pad = GamepadInput(limits=LIMITS)
    pad.press(10)
    pad.axis(0, 0.05)
    pad.axis(4, HALF_TRIGGER)
    intent = pad.intent()
    assert intent.steer_rad == 0.0
    assert intent.speed_mps == pytest.approx(-0.25)


@pytest.mark.parametrize("drift", [0.001, 0.005, 0.02, 0.05])
def test_resting_triggers_that_drift_ask_for_no_speed(drift: float) -> None:
    pad = GamepadInput(limits=LIMITS)
    pad.press(10)
    pad.axis(5, drift)
    assert pad.intent().speed_mps == 0.0
    pad.axis(5, 0.0)
    pad.axis(4, drift)
    assert pad.intent().speed_mps == 0.0
    assert pad.intent().deadman


@pytest.mark.parametrize("drift", [-0.999, -0.95, -0.9])
def test_raw_joystick_trigger_resting_near_minus_one_asks_for_no_speed(drift: float) -> None:
    pad = GamepadInput(c.JOYSTICK_MAPPING, LIMITS)
    pad.press(5)
    pad.axis(5, drift)  # travel (drift + 1) / 2 <= 0.05
    pad.axis(2, drift)
    assert pad.intent().speed_mps == 0.0


def test_trigger_past_the_deadzone_starts_from_zero_and_reaches_full() -> None:
    pad = GamepadInput(limits=LIMITS)
    pad.press(10)
    speeds = []
    for travel in (0.0, 0.05, 0.051, 0.06, 0.1, 0.5, 0.9, 1.0):
        pad.axis(5, travel)
        speeds.append(pad.intent().speed_mps)
    assert speeds == sorted(speeds)
    assert speeds[:2] == [0.0, 0.0]
    assert 0.0 < speeds[2] < 0.002  # no step at the edge of the deadzone
    assert speeds[-1] == pytest.approx(1.5)


@pytest.mark.parametrize(
    ("value", "steer"), [(0.07, 0.0), (-0.08, 0.0), (0.54, -0.15), (-1.0, 0.3)]
)
def test_stick_deadzone_rescales(value: float, steer: float) -> None:
    pad = GamepadInput(limits=LIMITS)
    pad.press(10)
    pad.axis(0, value)
    assert pad.intent().steer_rad == pytest.approx(steer, abs=1e-12)


def test_deadzones_are_configurable() -> None:
    mapping = GamepadMapping.from_dict({"trigger_deadzone": 0.2, "deadzone": 0.0})
    assert (mapping.trigger_deadzone, mapping.deadzone) == (pytest.approx(0.2), 0.0)
    pad = GamepadInput(mapping, LIMITS)
    pad.press(10)
    pad.axis(5, 0.15)
    pad.axis(0, 0.01)
    intent = pad.intent()
    assert intent.speed_mps == 0.0
    assert intent.steer_rad == pytest.approx(-0.003)
    assert GamepadMapping().trigger_deadzone == c.DEFAULT_TRIGGER_DEADZONE == 0.05
    assert GamepadMapping().deadzone == c.DEFAULT_STICK_DEADZONE == 0.08


def test_deadman_trigger_threshold_uses_raw_travel() -> None:
    mapping = GamepadMapping(
        deadman_buttons=(), deadman_axis=4, deadman_axis_threshold=0.04, reverse_axis=None
    )
    pad = GamepadInput(mapping, LIMITS)
    pad.axis(4, 0.045)  # inside the trigger deadzone, but past the deadman threshold
    assert pad.intent().deadman


def test_raw_joystick_triggers_rest_at_minus_one() -> None:
    pad = GamepadInput(c.JOYSTICK_MAPPING, LIMITS)
    pad.press(5)
    pad.axis(5, -1.0)
    pad.axis(2, -1.0)
    assert pad.intent().speed_mps == 0.0
    pad.axis(5, 1.0)
    assert pad.intent().speed_mps == pytest.approx(1.5)


def test_deadman_on_a_trigger() -> None:
    mapping = GamepadMapping(deadman_buttons=(), deadman_axis=4, reverse_axis=None)
    pad = GamepadInput(mapping, LIMITS)
    pad.axis(5, 1.0)
    pad.axis(4, 0.4)
    assert not pad.intent().deadman
    pad.axis(4, 0.9)
    assert pad.intent().speed_mps == pytest.approx(1.5)


def test_gamepad_disconnect_releases_everything() -> None:
    pad = GamepadInput(limits=LIMITS)
    pad.press(10)
    pad.axis(5, 1.0)
    pad.disconnect()
    assert pad.intent() == c.IDLE


def test_gamepad_rejects_non_finite_axis() -> None:
    pad = GamepadInput(limits=LIMITS)
    pad.press(10)
    pad.axis(5, HALF_TRIGGER)
    pad.axis(5, float("nan"))
    assert pad.rejected == 1
    assert pad.intent().speed_mps == pytest.approx(0.75)


def test_gamepad_buttons_trigger_actions() -> None:
    pad = GamepadInput()
    assert pad.press(1) is Action.ESTOP
    assert pad.press(3) is Action.TAKEOVER
    assert pad.press(2) is Action.RELEASE
    assert pad.press(0) is None


def test_mapping_from_config_table() -> None:
    mapping = GamepadMapping.from_dict(
        {"steer_axis": 2, "deadman_buttons": [4, 5], "deadzone": 0.1, "reverse_axis": None}
    )
    assert mapping.steer_axis == 2
    assert mapping.deadman_buttons == (4, 5)
    assert mapping.reverse_axis is None
    assert mapping.deadzone == pytest.approx(0.1)


@pytest.mark.parametrize(
    ("table", "words"),
    [
        ({"steering": 1}, "unknown key 'steering'"),
        ({"steer_axis": "x"}, "steer_axis must be an axis number"),
        ({"deadman_buttons": [1, "a"]}, "deadman_buttons must be a list"),
        ({"deadzone": 1.5}, "deadzone must be in"),
        ({"trigger_deadzone": -0.1}, "trigger_deadzone must be in"),
        ({"trigger_deadzone": 1.0}, "trigger_deadzone must be in"),
        ({"trigger_deadzone": "a"}, "trigger_deadzone must be a number"),
        ({"deadman_buttons": []}, "needs a deadman"),
    ],
)
def test_bad_mapping_is_rejected_with_where(table: dict[str, object], words: str) -> None:
    with pytest.raises(ConfigError, match=words) as err:
        GamepadMapping.from_dict(table, where="console.toml: [gamepad]")
    if "must be in" not in words and "needs a deadman" not in words:
        assert "console.toml: [gamepad]" in str(err.value)


def test_combine_prefers_the_first_held_deadman() -> None:
    pad = DriveIntent(1.0, 0.1, True)
    keys = DriveIntent(0.5, 0.0, True)
    assert c.combine_intents(pad, keys) == pad
    assert c.combine_intents(c.IDLE, keys) == keys
    assert c.combine_intents(c.IDLE, c.IDLE) == c.IDLE


# --- the command source ------------------------------------------------------------------


def _source(clock: FakeClock) -> ConsoleCommandSource:
    """A source with fresh video that has seen the deadman released (ready to drive)."""
    source = ConsoleCommandSource(clock, lockout=VideoLockout(stale_after_ms=300.0))
    source.on_frame()
    source.set_intent(c.IDLE)
    source.setpoint(0.0)
    return source


def test_source_does_not_drive_if_deadman_held_before_the_first_picture() -> None:
    clock = FakeClock()
    source = ConsoleCommandSource(clock)
    source.set_intent(DriveIntent(1.0, 0.0, True))
    assert source.setpoint(0.0).speed_mps == 0.0
    source.on_frame()
    assert source.setpoint(0.0).speed_mps == 0.0


def test_source_drives_with_deadman_and_zeroes_on_release() -> None:
    clock = FakeClock()
    source = _source(clock)
    source.set_intent(DriveIntent(1.0, 0.2, True))
    point = source.setpoint(0.0)
    assert (point.speed_mps, point.steer_rad, point.deadman, point.estop) == (1.0, 0.2, True, False)
    source.set_intent(c.IDLE)
    point = source.setpoint(0.0)
    assert (point.speed_mps, point.steer_rad, point.deadman) == (0.0, 0.0, False)


def test_source_lockout_zeroes_and_needs_re_press() -> None:
    clock = FakeClock()
    source = _source(clock)
    source.set_intent(DriveIntent(1.0, 0.0, True))
    assert source.setpoint(0.0).deadman
    clock.advance(300.0)
    source.set_intent(DriveIntent(1.0, 0.0, True))
    point = source.setpoint(0.0)
    assert point.speed_mps == 0.0
    assert not point.deadman
    status = source.status()
    assert status.lockout.locked
    assert "FROZEN" in status.inhibit_reason
    source.on_frame()
    assert source.setpoint(0.0).speed_mps == 0.0  # fresh video, deadman still held
    source.set_intent(c.IDLE)
    source.setpoint(0.0)
    source.set_intent(DriveIntent(1.0, 0.0, True))
    assert source.setpoint(0.0).speed_mps == 1.0


def test_source_stops_when_the_ui_stops_refreshing() -> None:
    clock = FakeClock()
    source = _source(clock)
    source.set_intent(DriveIntent(1.0, 0.0, True))
    clock.advance(200.0)
    source.on_frame()
    assert source.setpoint(0.0).speed_mps == 1.0
    clock.advance(100.0)  # 300 ms since the last intent > 250 ms
    source.on_frame()
    assert source.setpoint(0.0).speed_mps == 0.0
    assert source.status().input_stale
    source.set_intent(DriveIntent(1.0, 0.0, True))  # UI back, deadman still held: re-arm first
    assert source.setpoint(0.0).speed_mps == 0.0
    source.set_intent(c.IDLE)
    source.set_intent(DriveIntent(1.0, 0.0, True))
    assert source.setpoint(0.0).speed_mps == 1.0


def test_estop_wins_over_everything_and_survives_lockout() -> None:
    clock = FakeClock()
    source = _source(clock)
    source.set_intent(DriveIntent(1.0, 0.0, True))
    source.press_estop()
    point = source.setpoint(0.0)
    assert point.estop
    assert point.speed_mps == 0.0
    assert not point.deadman
    clock.advance(5000.0)  # video frozen, input stale: the e-stop flag still goes out
    assert source.setpoint(0.0).estop


def test_estop_reset_needs_confirmation_in_time_and_then_a_re_press() -> None:
    clock = FakeClock()
    source = _source(clock)
    source.press_estop()
    assert not source.confirm_estop_reset()  # no request first
    assert source.request_estop_reset()
    clock.advance(6000.0)
    assert not source.reset_pending()
    assert not source.confirm_estop_reset()  # too late
    assert source.estop_latched
    assert source.request_estop_reset()
    clock.advance(1000.0)
    assert source.confirm_estop_reset()
    assert not source.estop_latched
    source.on_frame()
    source.set_intent(DriveIntent(1.0, 0.0, True))
    assert source.setpoint(0.0).speed_mps == 0.0  # deadman held through the reset
    assert "RELEASE AND PRESS" in source.status().inhibit_reason
    source.set_intent(c.IDLE)
    source.set_intent(DriveIntent(1.0, 0.0, True))
    assert source.setpoint(0.0).speed_mps == 1.0


def test_reset_request_without_estop_is_refused() -> None:
    source = _source(FakeClock())
    assert not source.request_estop_reset()


def held(*keys: int) -> KeyboardInput:
    kb = KeyboardInput(limits=LIMITS, ramp=c.KeyRamp(accel_mps2=1.0, steer_rate_rad_s=0.6))
    for key in keys:
        kb.press(key)
    return kb


def test_keyboard_speed_ramps_up_and_holds_at_the_limit() -> None:
    kb = held(c.QT_KEY_SHIFT, c.QT_KEY_W, c.QT_KEY_A)
    assert kb.drive(0.0) == DriveIntent(0.0, 0.0, True)
    first = kb.drive(100.0)
    assert first.speed_mps == pytest.approx(0.1)
    assert first.steer_rad == pytest.approx(0.06)
    for t_ms in range(200, 3000, 20):
        kb.drive(float(t_ms))
    assert kb.drive(3000.0) == DriveIntent(1.5, 0.3, True)


def test_keyboard_slows_at_once_and_the_deadman_zeroes() -> None:
    kb = held(c.QT_KEY_SHIFT, c.QT_KEY_W)
    for t_ms in range(0, 1000, 20):
        kb.drive(float(t_ms))
    assert kb.drive(1000.0).speed_mps == pytest.approx(1.0)
    kb.release(c.QT_KEY_W)
    assert kb.drive(1020.0).speed_mps == 0.0  # letting go never waits for a ramp
    kb.press(c.QT_KEY_W)
    assert kb.drive(1040.0).speed_mps == pytest.approx(0.02)
    kb.release(c.QT_KEY_SHIFT)
    assert kb.drive(1080.0) == c.IDLE


def test_keyboard_reversing_stops_first_then_builds_up() -> None:
    kb = held(c.QT_KEY_SHIFT, c.QT_KEY_W)
    for t_ms in range(0, 500, 20):
        kb.drive(float(t_ms))
    kb.release(c.QT_KEY_W)
    kb.press(c.QT_KEY_S)
    assert kb.drive(500.0).speed_mps == pytest.approx(-0.02)
    assert kb.drive(600.0).speed_mps == pytest.approx(-0.12)


def test_a_stalled_ui_does_not_jump_to_full_speed() -> None:
    kb = held(c.QT_KEY_SHIFT, c.QT_KEY_W)
    kb.drive(0.0)
    assert kb.drive(5000.0).speed_mps == pytest.approx(0.1)


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan")])
def test_ramp_rates_must_be_positive(bad: float) -> None:
    with pytest.raises(ConfigError, match="accel_mps2"):
        c.KeyRamp(accel_mps2=bad)
