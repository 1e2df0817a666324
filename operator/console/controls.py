"""The console's input logic, sans-I/O: keyboard and gamepad to drive commands, deadman, e-stop.

Nothing here imports Qt or SDL. The window translates its key events to Qt key codes (plain
ints, the same values Qt uses) and :mod:`teledrive.operator.console.gamepad` translates SDL
events to axis and button numbers; both feed the classes below, and
:class:`ConsoleCommandSource` turns the result into the 50 Hz setpoints of the
:class:`~teledrive.operator.client.OperatorClient`.

Safety rules, each enforced in one place:

* Driving needs a held deadman (a key, a gamepad button or trigger); without it the command is
  zero speed, zero steering, ``deadman=False``.
* The e-stop latches in the console at once (every drive command then carries ``estop=True``,
  besides the ``Estop`` event) and is only cleared by a confirmed reset.
* After an e-stop reset, an input stall or a stale-video lockout, the deadman must be released
  and pressed again before the vehicle moves.
* The UI thread refreshes the intent at its poll rate; if it stops doing so (a hung UI, lost
  focus events) the source stops driving after ``input_stale_ms``.
"""

from __future__ import annotations

import enum
import math
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any, Final

from teledrive.operator.console.lockout import LockoutStatus, VideoLockout
from teledrive.operator.patterns import Setpoint
from teledrive.shared.errors import ConfigError

# Qt key codes (Qt.Key values), so this module needs no Qt import.
QT_KEY_SPACE: Final = 0x20
QT_KEY_A: Final = 0x41
QT_KEY_D: Final = 0x44
QT_KEY_R: Final = 0x52
QT_KEY_S: Final = 0x53
QT_KEY_T: Final = 0x54
QT_KEY_W: Final = 0x57
QT_KEY_LEFT: Final = 0x01000012
QT_KEY_UP: Final = 0x01000013
QT_KEY_RIGHT: Final = 0x01000014
QT_KEY_DOWN: Final = 0x01000015
QT_KEY_SHIFT: Final = 0x01000020
QT_KEY_CONTROL: Final = 0x01000021

DEFAULT_INPUT_STALE_MS: Final = 250.0
DEFAULT_RESET_CONFIRM_MS: Final = 5000.0
DEFAULT_KEY_ACCEL_MPS2: Final = 1.0
DEFAULT_KEY_STEER_RATE_RAD_S: Final = 0.7
DEFAULT_STICK_DEADZONE: Final = 0.08
DEFAULT_TRIGGER_DEADZONE: Final = 0.05
MAX_RAMP_STEP_MS: Final = 100.0


class Key(enum.Enum):
    """What a key does."""

    FORWARD = "forward"
    REVERSE = "reverse"
    LEFT = "left"
    RIGHT = "right"
    DEADMAN = "deadman"
    ESTOP = "estop"
    TAKEOVER = "takeover"
    RELEASE = "release"


class Action(enum.Enum):
    """A discrete operator action triggered by an input."""

    ESTOP = "estop"
    TAKEOVER = "takeover"
    RELEASE = "release"


_KEY_ACTIONS: Final = {
    Key.ESTOP: Action.ESTOP,
    Key.TAKEOVER: Action.TAKEOVER,
    Key.RELEASE: Action.RELEASE,
}

DEFAULT_KEYS: Final[Mapping[int, Key]] = {
    QT_KEY_W: Key.FORWARD,
    QT_KEY_UP: Key.FORWARD,
    QT_KEY_S: Key.REVERSE,
    QT_KEY_DOWN: Key.REVERSE,
    QT_KEY_A: Key.LEFT,
    QT_KEY_LEFT: Key.LEFT,
    QT_KEY_D: Key.RIGHT,
    QT_KEY_RIGHT: Key.RIGHT,
    QT_KEY_SHIFT: Key.DEADMAN,
    QT_KEY_CONTROL: Key.DEADMAN,
    QT_KEY_SPACE: Key.ESTOP,
    QT_KEY_T: Key.TAKEOVER,
    QT_KEY_R: Key.RELEASE,
}
"""W/S/A/D or arrows steer and drive while Shift or Ctrl (the deadman) is held; Space e-stops."""


@dataclass(frozen=True)
class DriveLimits:
    """The largest command an input can ask for (the vehicle caps again).

    Attributes:
        forward_mps: full throttle.
        reverse_mps: full reverse (a positive number).
        steer_rad: full lock.
    """

    forward_mps: float = 1.5
    reverse_mps: float = 0.5
    steer_rad: float = 0.35

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not (math.isfinite(value) and value >= 0):
                raise ConfigError(f"drive limits: {f.name} must be >= 0, got {value}")


@dataclass(frozen=True)
class DriveIntent:
    """What one input device asks for now.

    Attributes:
        speed_mps: wanted speed.
        steer_rad: wanted steering (+ left).
        deadman: the device's deadman is held.
    """

    speed_mps: float = 0.0
    steer_rad: float = 0.0
    deadman: bool = False


IDLE: Final = DriveIntent()


def combine_intents(*intents: DriveIntent) -> DriveIntent:
    """The first intent whose deadman is held (device priority = argument order), else idle."""
    for intent in intents:
        if intent.deadman:
            return intent
    return IDLE


def _toward(current: float, target: float, max_step: float) -> float:
    if abs(target - current) <= max_step:
        return target
    return current + math.copysign(max_step, target - current)


class KeyRamp:
    """Turns the keyboard's on/off targets into gradual commands; sans-I/O.

    Speed moving away from zero rises at ``accel_mps2``; speed toward zero (a key let go, the
    opposite key pressed) follows at once, since slowing down is never what should wait.
    Steering follows at ``steer_rate_rad_s`` both ways. A released deadman resets to zero.

    Args:
        accel_mps2: how fast a held key's speed builds up.
        steer_rate_rad_s: how fast the steering follows the keys.
    """

    def __init__(
        self,
        *,
        accel_mps2: float = DEFAULT_KEY_ACCEL_MPS2,
        steer_rate_rad_s: float = DEFAULT_KEY_STEER_RATE_RAD_S,
    ) -> None:
        for name, value in (("accel_mps2", accel_mps2), ("steer_rate_rad_s", steer_rate_rad_s)):
            if not (math.isfinite(value) and value > 0):
                raise ConfigError(f"keyboard ramp: {name} must be > 0, got {value}")
        self.accel_mps2 = accel_mps2
        self.steer_rate_rad_s = steer_rate_rad_s
        self._speed_mps = 0.0
        self._steer_rad = 0.0
        self._last_ms: float | None = None

    def step(self, target: DriveIntent, now_ms: float) -> DriveIntent:
        """The command at ``now_ms`` on the way to ``target``."""
        last_ms, self._last_ms = self._last_ms, now_ms
        if not target.deadman:
            self._speed_mps = self._steer_rad = 0.0
            return IDLE
        # a stalled UI must not turn into one big jump
        dt_s = 0.0 if last_ms is None else min(max(now_ms - last_ms, 0.0), MAX_RAMP_STEP_MS) / 1e3
        speed, want = self._speed_mps, target.speed_mps
        if speed * want < 0:
            speed = 0.0  # reversing: stop at once, then build up the other way
        # toward zero at once, away from it at the ramp's acceleration
        rise_mps = self.accel_mps2 * dt_s
        self._speed_mps = want if abs(want) <= abs(speed) else _toward(speed, want, rise_mps)
        self._steer_rad = _toward(self._steer_rad, target.steer_rad, self.steer_rate_rad_s * dt_s)
        return DriveIntent(self._speed_mps, self._steer_rad, True)


class KeyboardInput:
    """Keyboard state: which mapped keys are held.

    Args:
        keys: Qt key code -> what it does.
        limits: command magnitudes for held keys.
        ramp: how the commands follow the keys (a default :class:`KeyRamp` when None).
    """

    def __init__(
        self,
        keys: Mapping[int, Key] = DEFAULT_KEYS,
        limits: DriveLimits | None = None,
        *,
        ramp: KeyRamp | None = None,
    ) -> None:
        self.keys = dict(keys)
        self.limits = limits or DriveLimits()
        self.ramp = ramp or KeyRamp()
        self._held: set[Key] = set()
        self._held_codes: set[int] = set()

    def handles(self, key_code: int) -> bool:
        """Whether the key is mapped (the window then consumes its events)."""
        return key_code in self.keys

    def press(self, key_code: int) -> Action | None:
        """A key went down (not an auto-repeat); returns the action it triggers, if any."""
        key = self.keys.get(key_code)
        if key is None:
            return None
        self._held_codes.add(key_code)
        self._held = {self.keys[c] for c in self._held_codes}
        return _KEY_ACTIONS.get(key)

    def release(self, key_code: int) -> None:
        """A key went up (not an auto-repeat)."""
        self._held_codes.discard(key_code)
        self._held = {self.keys[c] for c in self._held_codes}

    def release_all(self) -> None:
        """Forgets every held key (the window lost focus: releases would never arrive)."""
        self._held_codes.clear()
        self._held.clear()

    def held(self, key: Key) -> bool:
        """Whether a key with that function is held."""
        return key in self._held

    def drive(self, now_ms: float) -> DriveIntent:
        """The intent to drive with at ``now_ms``: :meth:`intent` through the ramp."""
        return self.ramp.step(self.intent(), now_ms)

    def intent(self) -> DriveIntent:
        """The target from the held keys (full speed and lock; :meth:`drive` ramps to it)."""
        if Key.DEADMAN not in self._held:
            return IDLE
        lim = self.limits
        speed = lim.forward_mps * (Key.FORWARD in self._held)
        speed -= lim.reverse_mps * (Key.REVERSE in self._held)
        steer = lim.steer_rad * ((Key.LEFT in self._held) - (Key.RIGHT in self._held))
        return DriveIntent(speed, steer, True)


@dataclass(frozen=True)
class GamepadMapping:
    """Which axes and buttons do what; values are SDL axis/button indices.

    Axis values reach :class:`GamepadInput` normalised to -1..1 (sticks) and, for triggers,
    0..1 (``triggers_rest_at_minus_one`` converts raw joysticks whose triggers rest at -1).

    Attributes:
        steer_axis: steering axis (stick X: -1 left, +1 right by SDL convention).
        steer_sign: multiplies the steering axis so that + is left (-1 for SDL sticks).
        throttle_axis: forward throttle (a trigger).
        reverse_axis: reverse (a trigger), or None.
        deadman_buttons: holding any of these is the deadman.
        deadman_axis: a trigger that is also a deadman when pressed beyond the threshold.
        deadman_axis_threshold: trigger travel (0..1) that counts as held.
        estop_buttons: e-stop.
        takeover_button: take over from autonomy, or None.
        release_button: release to autonomy, or None.
        deadzone: stick travel ignored around the centre (0..1); beyond it the output is
            rescaled to start from 0, so there is no step at its edge.
        trigger_deadzone: trigger travel (0..1, after the -1..1 conversion) ignored at rest,
            rescaled the same way. A resting trigger that reads slightly off zero (drift,
            wear) would otherwise ask for a small speed without end.
        triggers_rest_at_minus_one: triggers report -1..1 (raw joystick API), not 0..1.
    """

    steer_axis: int = 0
    steer_sign: float = -1.0
    throttle_axis: int = 5
    reverse_axis: int | None = 4
    deadman_buttons: tuple[int, ...] = (10,)
    deadman_axis: int | None = None
    deadman_axis_threshold: float = 0.5
    estop_buttons: tuple[int, ...] = (1,)
    takeover_button: int | None = 3
    release_button: int | None = 2
    deadzone: float = DEFAULT_STICK_DEADZONE
    trigger_deadzone: float = DEFAULT_TRIGGER_DEADZONE
    triggers_rest_at_minus_one: bool = False

    def __post_init__(self) -> None:
        for name in ("deadzone", "trigger_deadzone"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise ConfigError(f"gamepad mapping: {name} must be in [0, 1), got {value}")
        if not 0.0 < self.deadman_axis_threshold <= 1.0:
            raise ConfigError(
                "gamepad mapping: deadman_axis_threshold must be in (0, 1], "
                f"got {self.deadman_axis_threshold}"
            )
        if self.steer_sign not in (-1.0, 1.0):
            raise ConfigError(f"gamepad mapping: steer_sign must be 1 or -1, not {self.steer_sign}")
        if not self.deadman_buttons and self.deadman_axis is None:
            raise ConfigError("gamepad mapping: needs a deadman (deadman_buttons or deadman_axis)")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, where: str = "gamepad") -> GamepadMapping:
        """Builds a mapping from a config table (e.g. ``[gamepad]`` of a TOML file).

        Raises:
            ConfigError: an unknown key or a value of the wrong type; the message names both.
        """
        known = {f.name: f for f in fields(cls)}
        values: dict[str, Any] = {}
        for key, value in data.items():
            if key not in known:
                raise ConfigError(f"{where}: unknown key {key!r} (known: {', '.join(known)})")
            values[key] = _coerce(key, value, where)
        return cls(**values)


def _coerce(key: str, value: Any, where: str) -> Any:
    def bad(kind: str) -> ConfigError:
        return ConfigError(f"{where}: {key} must be {kind}, got {value!r}")

    if key in ("deadman_buttons", "estop_buttons"):
        if not isinstance(value, list | tuple) or not all(_is_index(v) for v in value):
            raise bad("a list of button numbers")
        return tuple(value)
    if key in ("steer_axis", "throttle_axis"):
        if not _is_index(value):
            raise bad("an axis number")
        return value
    if key in ("reverse_axis", "deadman_axis", "takeover_button", "release_button"):
        if value is not None and not _is_index(value):
            raise bad("a number")
        return value
    if key == "triggers_rest_at_minus_one":
        if not isinstance(value, bool):
            raise bad("true or false")
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise bad("a number")
    return float(value)


def _is_index(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 256


CONTROLLER_MAPPING: Final = GamepadMapping()
"""SDL game-controller layout (Xbox naming): left stick steers, RT throttle, LT reverse,
RB (right shoulder) is the deadman, B e-stops, Y takes over, X releases."""

JOYSTICK_MAPPING: Final = GamepadMapping(
    steer_axis=0,
    throttle_axis=5,
    reverse_axis=2,
    deadman_buttons=(5,),
    estop_buttons=(1,),
    takeover_button=3,
    release_button=2,
    triggers_rest_at_minus_one=True,
)
"""Raw SDL joystick layout of an Xbox-style pad on Linux (xpad), for pads SDL cannot map."""


def apply_deadzone(value: float, deadzone: float) -> float:
    """``value`` (-1..1) with ``|value| <= deadzone`` as exactly 0, beyond it rescaled.

    The output starts at 0 at the edge of the deadzone (no step) and reaches ±1 at full travel.
    """
    magnitude = abs(value)
    if magnitude <= deadzone:
        return 0.0
    return math.copysign(min(1.0, (magnitude - deadzone) / (1.0 - deadzone)), value)


class GamepadInput:
    """Gamepad state from axis and button events.

    Args:
        mapping: which axes and buttons do what.
        limits: command magnitudes at full travel.
    """

    def __init__(
        self, mapping: GamepadMapping = CONTROLLER_MAPPING, limits: DriveLimits | None = None
    ):
        self.mapping = mapping
        self.limits = limits or DriveLimits()
        self._axes: dict[int, float] = {}
        self._buttons: set[int] = set()
        self.rejected = 0

    def axis(self, index: int, value: float) -> None:
        """An axis moved; ``value`` is -1..1 (sticks, raw triggers) or 0..1 (triggers).

        A non-finite value is rejected and counted; the axis keeps its previous value.
        """
        if not math.isfinite(value):
            self.rejected += 1
            return
        self._axes[index] = max(-1.0, min(1.0, value))

    def press(self, button: int) -> Action | None:
        """A button went down; returns the action it triggers, if any."""
        self._buttons.add(button)
        m = self.mapping
        if button in m.estop_buttons:
            return Action.ESTOP
        if button == m.takeover_button:
            return Action.TAKEOVER
        if button == m.release_button:
            return Action.RELEASE
        return None

    def release(self, button: int) -> None:
        """A button went up."""
        self._buttons.discard(button)

    def disconnect(self) -> None:
        """The pad is gone: nothing is held any more."""
        self._axes.clear()
        self._buttons.clear()

    def _trigger(self, index: int | None) -> float:
        """Raw trigger travel 0..1 (no deadzone: the deadman threshold applies to this)."""
        if index is None:
            return 0.0
        value = self._axes.get(index)
        if value is None:
            return 0.0
        if self.mapping.triggers_rest_at_minus_one:
            value = (value + 1.0) / 2.0
        return max(0.0, min(1.0, value))

    def deadman(self) -> bool:
        """Whether the deadman (any deadman button, or the deadman trigger) is held."""
        m = self.mapping
        if any(b in self._buttons for b in m.deadman_buttons):
            return True
        return m.deadman_axis is not None and self._trigger(m.deadman_axis) >= (
            m.deadman_axis_threshold
        )

    def intent(self) -> DriveIntent:
        """The drive intent from the current axes and buttons."""
        if not self.deadman():
            return IDLE
        m, lim = self.mapping, self.limits
        stick = apply_deadzone(self._axes.get(m.steer_axis, 0.0), m.deadzone)
        steer = m.steer_sign * stick * lim.steer_rad
        throttle = apply_deadzone(self._trigger(m.throttle_axis), m.trigger_deadzone)
        reverse = apply_deadzone(self._trigger(m.reverse_axis), m.trigger_deadzone)
        speed = throttle * lim.forward_mps - reverse * lim.reverse_mps
        return DriveIntent(speed, steer, True)


class EstopLatch:
    """The console's e-stop: latches on a press, clears only on a confirmed reset.

    Args:
        confirm_window_ms: a reset request must be confirmed within this time.
    """

    def __init__(self, *, confirm_window_ms: float = DEFAULT_RESET_CONFIRM_MS) -> None:
        self.confirm_window_ms = confirm_window_ms
        self.latched = False
        self._reset_requested_ms: float | None = None

    def press(self) -> None:
        """The e-stop was pressed; any pending reset request is dropped."""
        self.latched = True
        self._reset_requested_ms = None

    def request_reset(self, now_ms: float) -> bool:
        """First step of a reset; returns whether a confirmation is now awaited."""
        if not self.latched:
            return False
        self._reset_requested_ms = now_ms
        return True

    def confirm_pending(self, now_ms: float) -> bool:
        """Whether a reset request awaits confirmation at ``now_ms``."""
        requested = self._reset_requested_ms
        return requested is not None and 0 <= now_ms - requested <= self.confirm_window_ms

    def confirm_reset(self, now_ms: float) -> bool:
        """Second step: clears the latch if a request is pending; returns whether it did."""
        if not (self.latched and self.confirm_pending(now_ms)):
            self._reset_requested_ms = None
            return False
        self.latched = False
        self._reset_requested_ms = None
        return True

    def cancel_reset(self) -> None:
        """Drops a pending reset request."""
        self._reset_requested_ms = None


@dataclass(frozen=True)
class SourceStatus:
    """What the console's command source did last, for the HUD.

    Attributes:
        setpoint: the last setpoint handed to the client.
        lockout: the video lockout.
        estop: the console's e-stop latch.
        rearm_needed: the deadman must be released and pressed again before driving.
        input_stale: the UI stopped refreshing the intent.
        inhibit_reason: why the last command was zeroed while the deadman was held ("" if not).
    """

    setpoint: Setpoint
    lockout: LockoutStatus
    estop: bool
    rearm_needed: bool
    input_stale: bool
    inhibit_reason: str


def gate_setpoint(
    intent: DriveIntent, *, estop: bool, locked: bool, rearm_needed: bool, input_stale: bool
) -> Setpoint:
    """The command to send for an intent under the console's safety conditions."""
    if estop:
        return Setpoint(0.0, 0.0, deadman=False, estop=True)
    if locked or rearm_needed or input_stale or not intent.deadman:
        return Setpoint(0.0, 0.0, deadman=False)
    return Setpoint(intent.speed_mps, intent.steer_rad, deadman=True)


@dataclass
class _SourceState:
    intent: DriveIntent = IDLE
    intent_ms: float | None = None
    rearm_needed: bool = False
    status: SourceStatus | None = None


class ConsoleCommandSource:
    """The console's :class:`~teledrive.operator.patterns.CommandSource`, thread-safe.

    The UI thread calls :meth:`set_intent` (at least every poll tick) and the e-stop methods;
    the client thread calls :meth:`on_frame` for every decoded frame and :meth:`setpoint` at
    50 Hz. All times come from ``clock_ms``.

    Args:
        clock_ms: monotonic clock in ms (the client's clock).
        lockout: the stale-video lockout (a 300 ms one by default).
        input_stale_ms: the intent must be refreshed within this, or driving stops.
        estop: the e-stop latch (a new one by default).
    """

    def __init__(
        self,
        clock_ms: Callable[[], float],
        *,
        lockout: VideoLockout | None = None,
        input_stale_ms: float = DEFAULT_INPUT_STALE_MS,
        estop: EstopLatch | None = None,
    ) -> None:
        self._clock_ms = clock_ms
        self._lock = threading.Lock()
        self.lockout = lockout if lockout is not None else VideoLockout()
        self.input_stale_ms = input_stale_ms
        self.estop = estop if estop is not None else EstopLatch()
        self._state = _SourceState()

    def set_intent(self, intent: DriveIntent) -> None:
        """The operator's current intent (combined over devices); also a UI heartbeat."""
        now_ms = self._clock_ms()
        with self._lock:
            self._state.intent = intent
            self._state.intent_ms = now_ms
            if not intent.deadman:
                self._state.rearm_needed = False

    def on_frame(self) -> None:
        """A new video frame was decoded (any camera)."""
        now_ms = self._clock_ms()
        with self._lock:
            self.lockout.on_frame(now_ms)

    def press_estop(self) -> None:
        """Latches the e-stop; from now on every command carries ``estop=True``."""
        with self._lock:
            self.estop.press()

    def request_estop_reset(self) -> bool:
        """First step of a reset; True when a confirmation is now awaited."""
        now_ms = self._clock_ms()
        with self._lock:
            return self.estop.request_reset(now_ms)

    def reset_pending(self) -> bool:
        """Whether a reset request awaits confirmation."""
        now_ms = self._clock_ms()
        with self._lock:
            return self.estop.latched and self.estop.confirm_pending(now_ms)

    def confirm_estop_reset(self) -> bool:
        """Second step: clears the latch if confirmed in time; the deadman must then re-arm."""
        now_ms = self._clock_ms()
        with self._lock:
            cleared = self.estop.confirm_reset(now_ms)
            if cleared:
                self._state.rearm_needed = True
            return cleared

    @property
    def estop_latched(self) -> bool:
        """Whether the console's e-stop is latched."""
        with self._lock:
            return self.estop.latched

    def setpoint(self, elapsed_s: float) -> Setpoint:
        """The command to send now (``elapsed_s`` is unused: the operator decides, not time)."""
        del elapsed_s
        now_ms = self._clock_ms()
        with self._lock:
            state = self._state
            intent = state.intent
            stale = state.intent_ms is None or now_ms - state.intent_ms > self.input_stale_ms
            if stale and intent.deadman:
                state.rearm_needed = True
            lockout = self.lockout.update(now_ms, deadman_held=intent.deadman and not stale)
            point = gate_setpoint(
                intent,
                estop=self.estop.latched,
                locked=lockout.locked,
                rearm_needed=state.rearm_needed,
                input_stale=stale,
            )
            reason = _inhibit_reason(intent, self.estop.latched, lockout, state.rearm_needed, stale)
            state.status = SourceStatus(
                point, lockout, self.estop.latched, state.rearm_needed, stale, reason
            )
            return point

    def status(self) -> SourceStatus:
        """The status now (evaluates the same rules as :meth:`setpoint`, sends nothing)."""
        self.setpoint(0.0)
        with self._lock:
            status = self._state.status
        if status is None:  # pragma: no cover - setpoint always stores one
            raise RuntimeError("command source: no status")
        return status


def _inhibit_reason(
    intent: DriveIntent, estop: bool, lockout: LockoutStatus, rearm: bool, stale: bool
) -> str:
    if estop:
        return "E-STOP LATCHED"
    if not intent.deadman:
        return ""
    if lockout.locked:
        return lockout.reason
    if stale:
        return "INPUT STALLED: release and press the deadman"
    if rearm:
        return "RELEASE AND PRESS THE DEADMAN TO DRIVE"
    return ""
