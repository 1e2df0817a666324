"""Gamepads and wheels through SDL (pygame-ce): SDL events in, :class:`GamepadInput` state out.

Pads SDL knows (its built-in game-controller database covers the common Xbox, PlayStation,
Switch and Logitech pads; more mappings can be given in SDL's text format) are opened as *game
controllers* and read with the standard layout and :data:`CONTROLLER_MAPPING`; any other
joystick or wheel is read raw with :data:`JOYSTICK_MAPPING` (both configurable). SDL reports
both kinds of event for a game controller; the raw ones of such a device are ignored.

Background events are allowed (``SDL_JOYSTICK_ALLOW_BACKGROUND_EVENTS=1``): the console's
window is Qt's, so SDL never has focus. SDL's video subsystem is initialised only because the
event queue needs it, with the ``dummy`` driver unless ``SDL_VIDEODRIVER`` says otherwise: SDL
opens no window.

:class:`GamepadPoller.poll` drains the SDL queue without blocking; the console calls it from a
UI timer.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from typing import Any, Final

from teledrive.operator.console.controls import (
    CONTROLLER_MAPPING,
    JOYSTICK_MAPPING,
    Action,
    DriveIntent,
    DriveLimits,
    GamepadInput,
    GamepadMapping,
    combine_intents,
)

log = logging.getLogger(__name__)

SDL_AXIS_MAX: Final = 32767.0
"""Game-controller axis events carry ints in -32768..32767 (triggers 0..32767)."""


def _prepare_sdl_environment(sdl_mappings: str | None, sdl_mappings_file: str | None) -> None:
    os.environ["SDL_JOYSTICK_ALLOW_BACKGROUND_EVENTS"] = "1"
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
    if sdl_mappings:
        os.environ["SDL_GAMECONTROLLERCONFIG"] = sdl_mappings
    if sdl_mappings_file:
        os.environ["SDL_GAMECONTROLLERCONFIG_FILE"] = sdl_mappings_file


class GamepadPoller:
    """Reads SDL joystick and game-controller events into gamepad state.

    Args:
        controller_mapping: mapping of pads SDL recognises as game controllers.
        joystick_mapping: mapping of other joysticks and wheels (raw axes and buttons).
        limits: command magnitudes at full travel.
        sdl_mappings: extra SDL game-controller mapping lines (SDL_GAMECONTROLLERCONFIG format).
        sdl_mappings_file: a file of such lines (e.g. the community gamecontrollerdb.txt).
        event_source: returns pending SDL events (``pygame.event.get`` by default).
    """

    def __init__(
        self,
        *,
        controller_mapping: GamepadMapping = CONTROLLER_MAPPING,
        joystick_mapping: GamepadMapping = JOYSTICK_MAPPING,
        limits: DriveLimits | None = None,
        sdl_mappings: str | None = None,
        sdl_mappings_file: str | None = None,
        event_source: Callable[[], Sequence[Any]] | None = None,
    ) -> None:
        _prepare_sdl_environment(sdl_mappings, sdl_mappings_file)
        import pygame
        import pygame._sdl2.controller as sdl_controller

        self._pg = pygame
        self._sdl_controller = sdl_controller
        self.controller = GamepadInput(controller_mapping, limits)
        self.joystick = GamepadInput(joystick_mapping, limits)
        self._event_source = event_source
        self._devices: dict[int, Any] = {}
        self._controller_ids: set[int] = set()
        self.events_seen = 0
        self._started = False

    def start(self) -> None:
        """Initialises SDL's event queue, joystick and game-controller subsystems."""
        if self._started:
            return
        pg = self._pg
        if not pg.display.get_init():
            pg.display.init()
        pg.joystick.init()
        self._sdl_controller.init()
        self._started = True
        for index in range(pg.joystick.get_count()):
            self._open(index)

    def stop(self) -> None:
        """Closes the devices; the state says nothing is held."""
        for device in self._devices.values():
            device.quit()
        self._devices.clear()
        self._controller_ids.clear()
        self.controller.disconnect()
        self.joystick.disconnect()

    @property
    def device_names(self) -> list[str]:
        """Names of the open devices."""
        return [str(device.name) for device in self._devices.values()]

    def intent(self) -> DriveIntent:
        """Drive intent of whichever device holds its deadman (game controllers first)."""
        return combine_intents(self.controller.intent(), self.joystick.intent())

    def poll(self) -> list[Action]:
        """Drains pending SDL events; returns the actions they triggered, in order."""
        if not self._started:
            self.start()
        events = self._event_source() if self._event_source else self._pg.event.get()
        actions: list[Action] = []
        for event in events:
            action = self.handle(event)
            if action is not None:
                actions.append(action)
        return actions

    def handle(self, event: Any) -> Action | None:
        """Applies one SDL event; returns the action it triggered, if any."""
        pg = self._pg
        kind = event.type
        if kind in (pg.CONTROLLERAXISMOTION, pg.CONTROLLERBUTTONDOWN, pg.CONTROLLERBUTTONUP):
            self.events_seen += 1
            return self._controller_event(event)
        if kind in (pg.JOYAXISMOTION, pg.JOYBUTTONDOWN, pg.JOYBUTTONUP):
            if getattr(event, "instance_id", None) in self._controller_ids:
                return None  # the same device also reports as a game controller
            self.events_seen += 1
            return self._joystick_event(event)
        if kind in (pg.JOYDEVICEADDED, pg.CONTROLLERDEVICEADDED):
            self._open(int(event.device_index))
        elif kind in (pg.JOYDEVICEREMOVED, pg.CONTROLLERDEVICEREMOVED):
            self._close(int(event.instance_id))
        return None

    def _controller_event(self, event: Any) -> Action | None:
        pg = self._pg
        if event.type == pg.CONTROLLERAXISMOTION:
            self.controller.axis(int(event.axis), float(event.value) / SDL_AXIS_MAX)
            return None
        if event.type == pg.CONTROLLERBUTTONDOWN:
            return self.controller.press(int(event.button))
        self.controller.release(int(event.button))
        return None

    def _joystick_event(self, event: Any) -> Action | None:
        pg = self._pg
        if event.type == pg.JOYAXISMOTION:
            self.joystick.axis(int(event.axis), float(event.value))
            return None
        if event.type == pg.JOYBUTTONDOWN:
            return self.joystick.press(int(event.button))
        self.joystick.release(int(event.button))
        return None

    def _open(self, device_index: int) -> None:
        try:
            if self._sdl_controller.is_controller(device_index):
                pad = self._sdl_controller.Controller(device_index)
                instance_id = int(pad.as_joystick().get_instance_id())
                self._controller_ids.add(instance_id)
                self._devices[instance_id] = pad
            else:
                stick = self._pg.joystick.Joystick(device_index)
                instance_id = int(stick.get_instance_id())
                self._devices[instance_id] = stick
        except self._pg.error as err:
            log.warning("gamepad: cannot open SDL device %d: %s", device_index, err)
            return
        log.info("gamepad: opened %s", self._devices[instance_id].name)

    def _close(self, instance_id: int) -> None:
        device = self._devices.pop(instance_id, None)
        was_controller = instance_id in self._controller_ids
        self._controller_ids.discard(instance_id)
        # a device that vanished may have held the deadman: forget everything it held
        (self.controller if was_controller else self.joystick).disconnect()
        if device is not None:
            log.warning("gamepad: %s disconnected", device.name)
