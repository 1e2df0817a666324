"""Typed, versioned messages of teledrive: hub signaling and the WebRTC data-channel planes.

Every message is a JSON object with a ``type`` tag. Decoding is strict: an unknown type, an
unknown field, a missing field, a wrong type, a non-finite number or a value out of range is
rejected with a :class:`~teledrive.shared.errors.ProtocolError` that names the channel and the
field. ``docs/PROTOCOL.md`` describes the same messages for people.

Signaling (websocket between hub and each client)::

    vehicle  -> hub      Register(role="vehicle"), Status
    operator -> hub      Register(role="operator"), ListVehicles, Connect(vehicle_id)
    hub      -> operator Registered, VehicleList, Presence, Error
    hub      -> vehicle  Registered, Connect(session, operator_id), Error
    both     <-> both    Offer, Answer, Candidate, Bye   (relayed by the hub within a session)

Data channels (peer to peer between vehicle and operator)::

    drive      operator -> vehicle  DriveCommand                 unordered, maxRetransmits=0
    telemetry  vehicle  -> operator Telemetry, FrameTimes,       unordered, maxRetransmits=0
                                    VideoStatus
               both     <-> both    TimeRequest, TimeResponse, VideoFreshness
    events     both     <-> both    Estop, EstopReset, Takeover, Release, SelectPrimary,
                                    ModeChange, Alert, Ack, Error  reliable, ordered
"""

from __future__ import annotations

from typing import Annotated, Final, Literal, TypeVar

import msgspec

from teledrive.shared.errors import ProtocolError

PROTOCOL_VERSION: Final = 1
"""Version carried in ``Register``; a peer with another major version is refused."""

MAX_MESSAGE_BYTES: Final = 64 * 1024
"""Largest message accepted on any channel (an SDP fits easily)."""

Id = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:-]+$")]
Text = Annotated[str, msgspec.Meta(max_length=1024)]
Sdp = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_MESSAGE_BYTES)]
Seq = Annotated[int, msgspec.Meta(ge=0, le=0xFFFFFFFF)]
TimeMs = Annotated[float, msgspec.Meta(ge=-1e15, le=1e15)]
DurationMs = Annotated[float, msgspec.Meta(ge=0.0, le=3_600_000.0)]
SpeedMps = Annotated[float, msgspec.Meta(ge=-30.0, le=30.0)]
SteerRad = Annotated[float, msgspec.Meta(ge=-1.0, le=1.0)]
Count = Annotated[int, msgspec.Meta(ge=0)]


class Message(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, tag=True):
    """Base of every message; the ``type`` tag is the snake-case class name."""


# --- signaling ----------------------------------------------------------------------------


class Register(Message, tag="register", frozen=True, kw_only=True):
    """First message of a client to the hub.

    Attributes:
        v: protocol version of the client.
        role: ``vehicle`` or ``operator``.
        id: the client's id, unique on the hub (a vehicle's fleet id, an operator's name).
        name: a human-readable name.
        cameras: camera names, primary first (vehicles only).
        token: credential, for the coming authentication (ignored for now).
        offer: an SDP offer made ahead of the next session (vehicles only): a vehicle that
            re-dials after losing its operator sends it, and the hub hands it to the next
            operator that connects, saving the vehicle a round trip (see ``Connect``).
        dial: names the connections a client dials at once to register one more time (its
            re-dials after a cut); the hub registers the first of them whose upgrade request
            carries this ``Register`` and refuses the others (see ``shared/register_header.py``).
    """

    v: Annotated[int, msgspec.Meta(ge=1, le=255)] = PROTOCOL_VERSION
    role: Literal["vehicle", "operator"]
    id: Id
    name: Text = ""
    cameras: Annotated[list[Id], msgspec.Meta(max_length=16)] = []
    token: Text | None = None
    offer: Sdp | None = None
    dial: Id | None = None


class Registered(Message, tag="registered", frozen=True, kw_only=True):
    """The hub accepted a ``Register``.

    Attributes:
        heartbeat_ms: interval at which the hub pings (websocket ping frames).
    """

    id: Id
    heartbeat_ms: DurationMs


class VehicleInfo(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A vehicle as the hub knows it.

    Attributes:
        operator: id of the operator in session with it, if any.
        mode: the vehicle's safety mode by its last ``Status`` (None before the first).
        reason: why it is in that mode.
        battery_v: its battery voltage by its last ``Status``.
    """

    id: Id
    name: Text = ""
    cameras: list[Id] = []
    online: bool = True
    operator: Id | None = None
    mode: Text | None = None
    reason: Text = ""
    battery_v: Annotated[float, msgspec.Meta(ge=0.0, le=1000.0)] | None = None


class Status(Message, tag="status", frozen=True, kw_only=True):
    """Vehicle -> hub: its safety mode, sent on every mode change and every few seconds.

    The hub shows it to every operator in ``Presence``/``VehicleList``, so a fleet view sees a
    vehicle that needs help (autonomy blocked, stopped, e-stop) without a session with it.
    """

    mode: Text
    reason: Text = ""
    battery_v: Annotated[float, msgspec.Meta(ge=0.0, le=1000.0)] | None = None


class ListVehicles(Message, tag="list_vehicles", frozen=True, kw_only=True):
    """Operator asks for the vehicles on the hub."""


class VehicleList(Message, tag="vehicle_list", frozen=True, kw_only=True):
    """Answer to ``ListVehicles``."""

    vehicles: list[VehicleInfo]


class Presence(Message, tag="presence", frozen=True, kw_only=True):
    """Pushed to operators when a vehicle comes, goes or changes session."""

    vehicle: VehicleInfo


class Connect(Message, tag="connect", frozen=True, kw_only=True):
    """Operator -> hub: open a session with a vehicle; hub -> vehicle: an operator wants one.

    Attributes:
        vehicle_id: the vehicle asked for (operator -> hub).
        session: the session id the hub assigned (hub -> vehicle, and echoed in ``Offer``).
        operator_id: who asks (hub -> vehicle).
        offer_ahead: hub -> vehicle: the session's offer is the one the vehicle sent with its
            registration, already relayed to the operator; the vehicle sends no other.
    """

    vehicle_id: Id
    session: Id | None = None
    operator_id: Id | None = None
    offer_ahead: bool = False


class Offer(Message, tag="offer", frozen=True, kw_only=True):
    """SDP offer within a session (the vehicle offers)."""

    session: Id
    sdp: Sdp


class Answer(Message, tag="answer", frozen=True, kw_only=True):
    """SDP answer within a session."""

    session: Id
    sdp: Sdp


class Candidate(Message, tag="candidate", frozen=True, kw_only=True):
    """A trickled ICE candidate (aiortc gathers before offering, so rarely used)."""

    session: Id
    candidate: Text
    sdp_mid: Text | None = None
    sdp_mline_index: Annotated[int, msgspec.Meta(ge=0, le=64)] | None = None


class Bye(Message, tag="bye", frozen=True, kw_only=True):
    """End of a session, from either peer or from the hub when a peer disconnects."""

    session: Id
    reason: Text = ""


class Error(Message, tag="error", frozen=True, kw_only=True):
    """Something a peer sent was refused; ``ref`` names the offending message type."""

    code: Literal[
        "bad_message", "unknown_vehicle", "busy", "not_registered", "duplicate_id", "version"
    ]
    message: Text
    ref: Text | None = None


SignalMessage = (
    Register
    | Registered
    | Status
    | ListVehicles
    | VehicleList
    | Presence
    | Connect
    | Offer
    | Answer
    | Candidate
    | Bye
    | Error
)

# --- data channels ------------------------------------------------------------------------


class DriveCommand(Message, tag="drive", frozen=True, kw_only=True):
    """One drive command, sent at 50 Hz on the unreliable ``drive`` channel.

    Attributes:
        seq: operator sequence number, +1 per command (u32, wraps).
        t_ms: operator clock at sending, ms.
        offset_ms: the operator's estimate of ``vehicle_clock - operator_clock``, ms.
        ttl_ms: the command must not be applied after ``t_ms + offset_ms + ttl_ms``.
        speed_mps: wanted speed (negative = reverse).
        steer_rad: wanted steering angle (+ = left).
        estop: the operator's e-stop is pressed (also sent on the events channel).
        deadman: the operator's deadman control is held; without it speed is zero.
    """

    seq: Seq
    t_ms: TimeMs
    offset_ms: TimeMs
    ttl_ms: Annotated[float, msgspec.Meta(gt=0.0, le=10_000.0)]
    speed_mps: SpeedMps
    steer_rad: SteerRad
    estop: bool = False
    deadman: bool = True


class Telemetry(Message, tag="telemetry", frozen=True, kw_only=True):
    """Vehicle state, sent at 20-50 Hz on the unreliable ``telemetry`` channel.

    Attributes:
        t_ms: vehicle clock at sending, ms.
        mode: supervisor mode (``TELEOP``, ``DEGRADED``, ...).
        reason: why the vehicle is in that mode.
        speed_mps: measured wheel speed.
        steer_rad: steering in force.
        speed_cap_mps: speed cap in force.
        battery_v: battery voltage.
        mcu_state: motor controller state (``DISARMED``, ``ARMED``, ``ESTOP``, ``OFFLINE``).
        last_seq: last drive command sequence applied.
        commands_applied: drive commands sent on to the motor controller.
        drops: drive commands dropped, by reason.
        one_way_ms: the vehicle's estimate of the one-way delay.
        rtt_ms: round trip time of the data channel.
        command_age_ms: age of the newest accepted drive command when it was applied
            (operator send -> motor-controller write, with the clock offset).
        stale_applied: commands applied while older than the bound (must stay 0; a runtime
            check independent of the supervisor).
    """

    t_ms: TimeMs
    mode: Text
    reason: Text = ""
    speed_mps: SpeedMps = 0.0
    steer_rad: SteerRad = 0.0
    speed_cap_mps: Annotated[float, msgspec.Meta(ge=0.0, le=30.0)] = 0.0
    battery_v: Annotated[float, msgspec.Meta(ge=0.0, le=1000.0)] = 0.0
    mcu_state: Text = "OFFLINE"
    last_seq: Seq = 0
    commands_applied: Count = 0
    drops: dict[Text, Count] = {}
    one_way_ms: DurationMs | None = None
    rtt_ms: DurationMs | None = None
    command_age_ms: Annotated[float, msgspec.Meta(ge=-3_600_000.0, le=3_600_000.0)] | None = None
    stale_applied: Count = 0


class FrameTime(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """When a video frame was captured: keyed by its RTP-clock pts on a named track."""

    camera: Id
    pts: Annotated[int, msgspec.Meta(ge=0)]
    capture_ms: TimeMs


class FrameTimes(Message, tag="frame_times", frozen=True, kw_only=True):
    """Capture times of recently sent frames (vehicle clock), for glass-to-glass."""

    frames: Annotated[list[FrameTime], msgspec.Meta(max_length=64)]


class TimeRequest(Message, tag="time_request", frozen=True, kw_only=True):
    """Clock-sync probe: ``t1`` is the sender's clock."""

    id: Seq
    t1: TimeMs


class TimeResponse(Message, tag="time_response", frozen=True, kw_only=True):
    """Clock-sync answer: ``t2`` receive and ``t3`` send time on the responder's clock."""

    id: Seq
    t1: TimeMs
    t2: TimeMs
    t3: TimeMs


class VideoFreshness(Message, tag="video_freshness", frozen=True, kw_only=True):
    """Operator -> vehicle: time since the operator last saw a new frame."""

    t_ms: TimeMs
    age_ms: DurationMs


class Estop(Message, tag="estop", frozen=True, kw_only=True):
    """Emergency stop; latches on the vehicle until ``EstopReset``."""

    source: Text = "operator"
    reason: Text = ""


class EstopReset(Message, tag="estop_reset", frozen=True, kw_only=True):
    """Clear a latched e-stop (needs an operator's confirmation in the console)."""


class Takeover(Message, tag="takeover", frozen=True, kw_only=True):
    """Operator asks for teleop control."""


class Release(Message, tag="release", frozen=True, kw_only=True):
    """Operator hands the vehicle back to its autonomy."""


class SelectPrimary(Message, tag="select_primary", frozen=True, kw_only=True):
    """Operator -> vehicle: make this camera the primary one (it gets most of the bitrate)."""

    camera: Id


class VideoStatus(Message, tag="video_status", frozen=True, kw_only=True):
    """Vehicle -> operator: what each camera is sending now (sent about once a second).

    Attributes:
        primary: the primary camera.
        cameras: per camera, ``[width, height, fps, target_bitrate_bps]``.
    """

    primary: Id
    cameras: dict[Id, Annotated[list[int], msgspec.Meta(min_length=4, max_length=4)]]


class ModeChange(Message, tag="mode_change", frozen=True, kw_only=True):
    """Vehicle -> operator: the supervisor changed mode, with the reason."""

    t_ms: TimeMs
    mode: Text
    previous: Text
    reason: Text


class Alert(Message, tag="alert", frozen=True, kw_only=True):
    """Vehicle -> operator: something the operator must see."""

    level: Literal["info", "warning", "critical"]
    text: Text


class Ack(Message, tag="ack", frozen=True, kw_only=True):
    """Acknowledges an events-channel message by type."""

    ref: Text
    ok: bool = True
    detail: Text = ""


DataMessage = (
    DriveCommand
    | Telemetry
    | FrameTimes
    | TimeRequest
    | TimeResponse
    | VideoFreshness
    | Estop
    | EstopReset
    | Takeover
    | Release
    | SelectPrimary
    | VideoStatus
    | ModeChange
    | Alert
    | Ack
    | Error
)

# --- codec ---------------------------------------------------------------------------------

_ENCODER: Final = msgspec.json.Encoder()
_SIGNAL_DECODER: Final = msgspec.json.Decoder(SignalMessage)
_DATA_DECODER: Final = msgspec.json.Decoder(DataMessage)

M = TypeVar("M", bound=Message)


def encode(message: Message) -> bytes:
    """Encodes a message to JSON bytes (send as text on websockets, as str on data channels)."""
    return _ENCODER.encode(message)


def encode_text(message: Message) -> str:
    """Encodes a message to a JSON string."""
    return _ENCODER.encode(message).decode()


def _decode(decoder: msgspec.json.Decoder[M], data: bytes | str, channel: str) -> M:
    if len(data) > MAX_MESSAGE_BYTES:
        raise ProtocolError(f"{channel}: message of {len(data)} bytes exceeds {MAX_MESSAGE_BYTES}")
    try:
        return decoder.decode(data)
    except msgspec.DecodeError as err:
        raise ProtocolError(f"{channel}: {err}") from err


def decode_signal(data: bytes | str, *, channel: str = "signaling") -> SignalMessage:
    """Decodes one signaling message.

    Args:
        data: the JSON text of the message.
        channel: names the channel in error messages.

    Returns:
        The typed message.

    Raises:
        ProtocolError: the message is malformed, unknown or out of range; the text says
            what and at which field.
    """
    message: SignalMessage = _decode(_SIGNAL_DECODER, data, channel)
    return message


def decode_data(data: bytes | str, *, channel: str = "data channel") -> DataMessage:
    """Decodes one data-channel message; raises ``ProtocolError`` like :func:`decode_signal`."""
    message: DataMessage = _decode(_DATA_DECODER, data, channel)
    return message


def message_type(message: Message) -> str:
    """The wire ``type`` tag of a message."""
    tag = type(message).__struct_config__.tag
    return str(tag)
