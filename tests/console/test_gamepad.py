"""SDL input mapping, fed by synthetic joystick and game-controller events posted to SDL's queue."""

from __future__ import annotations

from collections.abc import Iterator

import pygame
import pytest

from teledrive.operator.console.controls import Action, DriveLimits
from teledrive.operator.console.gamepad import GamepadPoller

LIMITS = DriveLimits(forward_mps=2.0, reverse_mps=1.0, steer_rad=0.4)


@pytest.fixture
def poller() -> Iterator[GamepadPoller]:
    pad = GamepadPoller(limits=LIMITS)
    pad.start()
    pygame.event.clear()
    yield pad
    pad.stop()


def post(kind: int, **attrs: object) -> None:
    pygame.event.post(pygame.event.Event(kind, **attrs))


def test_controller_events_drive_only_with_the_deadman(poller: GamepadPoller) -> None:
    post(
        pygame.CONTROLLERAXISMOTION,
        instance_id=7,
        axis=pygame.CONTROLLER_AXIS_TRIGGERRIGHT,
        value=32767,
    )
    post(pygame.CONTROLLERAXISMOTION, instance_id=7, axis=pygame.CONTROLLER_AXIS_LEFTX, value=32767)
    assert poller.poll() == []
    assert not poller.intent().deadman
    post(pygame.CONTROLLERBUTTONDOWN, instance_id=7, button=pygame.CONTROLLER_BUTTON_RIGHTSHOULDER)
    poller.poll()
    intent = poller.intent()
    assert intent.deadman
    assert intent.speed_mps == pytest.approx(2.0)
    assert intent.steer_rad == pytest.approx(-0.4)  # stick right -> steer right (negative)
    post(pygame.CONTROLLERBUTTONUP, instance_id=7, button=pygame.CONTROLLER_BUTTON_RIGHTSHOULDER)
    poller.poll()
    assert not poller.intent().deadman
    assert poller.intent().speed_mps == 0.0


def test_controller_estop_button_is_an_action(poller: GamepadPoller) -> None:
    post(pygame.CONTROLLERBUTTONDOWN, instance_id=7, button=pygame.CONTROLLER_BUTTON_B)
    post(pygame.CONTROLLERBUTTONDOWN, instance_id=7, button=pygame.CONTROLLER_BUTTON_Y)
    assert poller.poll() == [Action.ESTOP, Action.TAKEOVER]


def test_raw_joystick_events_use_the_joystick_mapping(poller: GamepadPoller) -> None:
    post(pygame.JOYBUTTONDOWN, instance_id=3, joy=3, button=5)
    # RT at travel 0.525: half of the output past the 0.05 trigger deadzone
    post(pygame.JOYAXISMOTION, instance_id=3, joy=3, axis=5, value=0.05)
    post(pygame.JOYAXISMOTION, instance_id=3, joy=3, axis=2, value=-1.0)  # LT at rest
    post(pygame.JOYAXISMOTION, instance_id=3, joy=3, axis=0, value=-1.0)
    poller.poll()
    intent = poller.intent()
    assert intent.deadman
    assert intent.speed_mps == pytest.approx(1.0)
    assert intent.steer_rad == pytest.approx(0.4)


def test_device_removed_releases_the_deadman(poller: GamepadPoller) -> None:
    post(pygame.JOYBUTTONDOWN, instance_id=3, joy=3, button=5)
    post(pygame.JOYAXISMOTION, instance_id=3, joy=3, axis=5, value=1.0)
    poller.poll()
    assert poller.intent().deadman
    post(pygame.JOYDEVICEREMOVED, instance_id=3)
    poller.poll()
    assert not poller.intent().deadman


def test_unrelated_events_are_ignored(poller: GamepadPoller) -> None:
    post(pygame.USEREVENT, code=1)
    assert poller.poll() == []
    assert poller.events_seen == 0
