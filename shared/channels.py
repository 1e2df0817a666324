"""The WebRTC data channels between a vehicle and an operator.

Both peers create the same three channels as *negotiated* channels with fixed ids, so neither
waits for the other to announce them and a lost DCEP message cannot leave a plane missing.

| label | id | delivery | carries |
| --- | --- | --- | --- |
| ``drive`` | 0 | unordered, ``maxRetransmits=0`` | DriveCommand, 50 Hz |
| ``telemetry`` | 1 | unordered, ``maxRetransmits=0`` | Telemetry, FrameTimes, clock sync |
| ``events`` | 2 | reliable, ordered | e-stop, takeover, release, mode changes, alerts, acks |

A lost drive command is never worth waiting for (the next supersedes it), and a reliable
ordered channel would head-of-line block for at least one SCTP RTO (1 s in aiortc) on a loss.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from teledrive.shared import messages
from teledrive.shared.errors import ProtocolError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ChannelSpec:
    """How one data channel is opened.

    Attributes:
        label: channel label.
        id: SCTP stream id (negotiated out of band: both peers use it).
        ordered: in-order delivery.
        max_retransmits: None for reliable, 0 for fire-and-forget.
    """

    label: str
    id: int
    ordered: bool
    max_retransmits: int | None


DRIVE: Final = ChannelSpec("drive", 0, ordered=False, max_retransmits=0)
TELEMETRY: Final = ChannelSpec("telemetry", 1, ordered=False, max_retransmits=0)
EVENTS: Final = ChannelSpec("events", 2, ordered=True, max_retransmits=None)
ALL: Final = (DRIVE, TELEMETRY, EVENTS)


class Channel:
    """A typed wrapper around one aiortc ``RTCDataChannel``.

    Incoming text is decoded with :func:`messages.decode_data`; a malformed message is
    counted, logged and handed to ``on_error`` (which may answer on the events channel), and
    never stops the channel.
    """

    def __init__(
        self,
        spec: ChannelSpec,
        raw: Any,
        on_message: Callable[[messages.DataMessage], None],
        on_error: Callable[[ChannelSpec, str], None] | None = None,
    ) -> None:
        self.spec = spec
        self.raw = raw
        self.sent = 0
        self.received = 0
        self.errors = 0
        self.handler_errors = 0
        self.last_error = ""
        self._on_message = on_message
        self._on_error = on_error
        raw.on("message", self._receive)

    @property
    def open(self) -> bool:
        """Whether the channel can send now."""
        return bool(self.raw.readyState == "open")

    def send(self, message: messages.Message) -> bool:
        """Sends a message if the channel is open; returns whether it was sent."""
        if not self.open:
            return False
        self.raw.send(messages.encode_text(message))
        self.sent += 1
        return True

    def _receive(self, data: str | bytes) -> None:
        try:
            message = messages.decode_data(data, channel=f"data channel '{self.spec.label}'")
        except ProtocolError as err:
            self.errors += 1
            self.last_error = str(err)
            log.warning("%s", err)
            if self._on_error is not None:
                self._on_error(self.spec, str(err))
            return
        self.received += 1
        try:
            self._on_message(message)
        except Exception:
            # An exception escaping here would unwind through aiortc's SCTP/DTLS receive
            # loop and close the whole peer connection (video and all channels) over one
            # message: log it with the channel, count it, keep the session.
            self.handler_errors += 1
            log.exception("data channel '%s': handler failed on %s", self.spec.label, message)


@dataclass
class Channels:
    """The three channels of a session."""

    drive: Channel
    telemetry: Channel
    events: Channel

    @property
    def errors(self) -> int:
        """Malformed messages received on any channel."""
        return self.drive.errors + self.telemetry.errors + self.events.errors


def open_channels(
    pc: Any,
    on_message: Callable[[messages.DataMessage], None],
    on_error: Callable[[ChannelSpec, str], None] | None = None,
) -> Channels:
    """Creates the negotiated channels on an ``RTCPeerConnection``.

    The offerer calls it before ``createOffer``; the answerer after ``setRemoteDescription``.

    Args:
        pc: the peer connection.
        on_message: gets every valid message from any channel.
        on_error: gets (channel, error text) for every malformed message.

    Returns:
        The wrapped channels.
    """
    made = {}
    for spec in ALL:
        raw = pc.createDataChannel(
            spec.label,
            ordered=spec.ordered,
            maxRetransmits=spec.max_retransmits,
            negotiated=True,
            id=spec.id,
        )
        made[spec.label] = Channel(spec, raw, on_message, on_error)
    return Channels(drive=made["drive"], telemetry=made["telemetry"], events=made["events"])
