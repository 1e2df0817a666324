"""Sans-I/O codec for the motor-controller serial protocol (``hardware/PROTOCOL.md``, version 1).

Bytes in, messages out, and back; no ``import serial`` here. A frame on the wire is a COBS-encoded
packet followed by one ``0x00``. A packet is ``version u8, type u8, seq u16, payload, crc u16``
(little-endian), the CRC being CRC-16/XMODEM over everything before it.

Typical use::

    wire = encode_frame(Drive(speed_mmps=1500, steer_mrad=-120), seq=7)
    decoder = FrameDecoder(accept=Direction.H2M)
    for item in decoder.feed(wire):
        print(item.seq, item.message)

Bad input never raises from :meth:`FrameDecoder.feed`: it is counted by reason and the decoder
resynchronises at the next ``0x00``.
"""

from __future__ import annotations

import binascii
import dataclasses
import enum
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from typing import ClassVar, Final

from teledrive.shared.errors import FrameError, ProtocolError

PROTOCOL_VERSION: Final = 1
MAX_PACKET_BYTES: Final = 64
"""Largest decoded packet (header + payload + CRC)."""
MAX_ENCODED_BYTES: Final = MAX_PACKET_BYTES + 1
"""Largest COBS-encoded packet, without the delimiter."""
HEADER_BYTES: Final = 4
CRC_BYTES: Final = 2
MIN_PACKET_BYTES: Final = HEADER_BYTES + CRC_BYTES
DELIMITER: Final = 0x00
SEQ_MODULUS: Final = 1 << 16

SPEED_LIMIT_MMPS: Final = 3000
STEER_LIMIT_MRAD: Final = 500
LOW_BATTERY_MV: Final = 10_500


class MsgType(enum.IntEnum):
    """Message type byte."""

    HELLO = 0x01
    ARM = 0x02
    DISARM = 0x03
    DRIVE = 0x04
    HEARTBEAT = 0x05
    ESTOP = 0x06
    INFO = 0x81
    TELEMETRY = 0x82
    FAULT = 0x83


class Direction(enum.StrEnum):
    """Who sends a message; a receiver accepts only the types of the other side."""

    H2M = "h2m"
    M2H = "m2h"


class State(enum.IntEnum):
    """MCU state as reported in telemetry."""

    DISARMED = 0
    ARMED = 1
    ESTOP = 2


class FaultBit(enum.IntFlag):
    """Bits of the telemetry ``faults`` field."""

    ESTOP_PIN = 1 << 0
    ESTOP_LATCHED = 1 << 1
    LINK_TIMEOUT = 1 << 2
    DRIVE_TIMEOUT = 1 << 3
    WDT_RESET = 1 << 4
    LOW_BATTERY = 1 << 5
    CLAMPED = 1 << 6


class FaultCode(enum.IntEnum):
    """``code`` of a FAULT event."""

    CRC_ERROR = 1
    FRAME_ERROR = 2
    BAD_VERSION = 3
    UNKNOWN_TYPE = 4
    SEQ_ERROR = 5
    LINK_TIMEOUT = 6
    ESTOP_PIN = 7
    ESTOP_CMD = 8
    WDT_RESET = 9
    ARM_REFUSED = 10


class ResetCause(enum.IntEnum):
    """Telemetry ``reset_cause``."""

    POWER_ON = 0
    WATCHDOG = 1
    EXTERNAL = 2


class ErrorReason(enum.StrEnum):
    """Why a frame was dropped; the values are the ``REASON`` words of ``vectors.txt``."""

    FRAME = "frame"
    CRC = "crc"
    VERSION = "version"
    TYPE = "type"
    LENGTH = "length"


class McuFrameError(FrameError):
    """A motor-controller frame was rejected.

    Attributes:
        reason: the check that failed.
        detail: the FAULT ``detail`` the MCU reports for it (decoded length, version byte, ...).
    """

    def __init__(self, reason: ErrorReason, message: str, *, detail: int = 0) -> None:
        super().__init__(message)
        self.reason = reason
        self.detail = detail


# --------------------------------------------------------------------------- messages


@dataclass(frozen=True, slots=True)
class _Message:
    TYPE: ClassVar[MsgType]
    FORMAT: ClassVar[str] = ""
    DIRECTION: ClassVar[Direction]

    @classmethod
    def payload_size(cls) -> int:
        """Exact payload length in bytes for this type."""
        return struct.calcsize("<" + cls.FORMAT)

    def fields(self) -> dict[str, int]:
        """The payload fields by their PROTOCOL.md names, in wire order."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def pack_payload(self) -> bytes:
        """The payload bytes.

        Raises:
            ProtocolError: a field is out of range for its wire type.
        """
        values = list(self.fields().values())
        try:
            return struct.pack("<" + self.FORMAT, *values)
        except struct.error as err:
            raise ProtocolError(f"{self.TYPE.name}: field out of range in {self!r}: {err}") from err


@dataclass(frozen=True, slots=True)
class Hello(_Message):
    """Host → MCU: version handshake, MCU answers INFO; resets the sequence expectation."""

    TYPE: ClassVar[MsgType] = MsgType.HELLO
    DIRECTION: ClassVar[Direction] = Direction.H2M


@dataclass(frozen=True, slots=True)
class Arm(_Message):
    """Host → MCU: DISARMED → ARMED (refused while the e-stop pin is held)."""

    TYPE: ClassVar[MsgType] = MsgType.ARM
    DIRECTION: ClassVar[Direction] = Direction.H2M


@dataclass(frozen=True, slots=True)
class Disarm(_Message):
    """Host → MCU: go DISARMED, outputs off."""

    TYPE: ClassVar[MsgType] = MsgType.DISARM
    DIRECTION: ClassVar[Direction] = Direction.H2M


@dataclass(frozen=True, slots=True)
class Drive(_Message):
    """Host → MCU: setpoint. ``speed_mmps`` signed wheel speed, ``steer_mrad`` + = left."""

    TYPE: ClassVar[MsgType] = MsgType.DRIVE
    FORMAT: ClassVar[str] = "hh"
    DIRECTION: ClassVar[Direction] = Direction.H2M
    speed_mmps: int
    steer_mrad: int


@dataclass(frozen=True, slots=True)
class Heartbeat(_Message):
    """Host → MCU: keeps the link alive while idle; does not renew a drive setpoint."""

    TYPE: ClassVar[MsgType] = MsgType.HEARTBEAT
    DIRECTION: ClassVar[Direction] = Direction.H2M


@dataclass(frozen=True, slots=True)
class Estop(_Message):
    """Host → MCU: software e-stop, latched."""

    TYPE: ClassVar[MsgType] = MsgType.ESTOP
    DIRECTION: ClassVar[Direction] = Direction.H2M


@dataclass(frozen=True, slots=True)
class Info(_Message):
    """MCU → host: answer to HELLO."""

    TYPE: ClassVar[MsgType] = MsgType.INFO
    FORMAT: ClassVar[str] = "BBBHH"
    DIRECTION: ClassVar[Direction] = Direction.M2H
    proto_version: int
    fw_major: int
    fw_minor: int
    link_timeout_ms: int
    drive_timeout_ms: int


@dataclass(frozen=True, slots=True)
class Telemetry(_Message):
    """MCU → host: state report, every 20 ms in every state."""

    TYPE: ClassVar[MsgType] = MsgType.TELEMETRY
    FORMAT: ClassVar[str] = "BHHhhhhHHIB"
    DIRECTION: ClassVar[Direction] = Direction.M2H
    state: int
    faults: int
    last_seq: int
    wheel_speed_mmps: int
    speed_cmd_mmps: int
    steer_mrad: int
    motor_duty: int
    battery_mv: int
    rx_errors: int
    uptime_ms: int
    reset_cause: int


@dataclass(frozen=True, slots=True)
class Fault(_Message):
    """MCU → host: an event (see :class:`FaultCode`), sent once when it happens."""

    TYPE: ClassVar[MsgType] = MsgType.FAULT
    FORMAT: ClassVar[str] = "BH"
    DIRECTION: ClassVar[Direction] = Direction.M2H
    code: int
    detail: int


Message = Hello | Arm | Disarm | Drive | Heartbeat | Estop | Info | Telemetry | Fault
MESSAGE_CLASSES: Final[tuple[type[Message], ...]] = (
    Hello,
    Arm,
    Disarm,
    Drive,
    Heartbeat,
    Estop,
    Info,
    Telemetry,
    Fault,
)
CLASS_BY_TYPE: Final[dict[int, type[Message]]] = {cls.TYPE: cls for cls in MESSAGE_CLASSES}
CLASS_BY_NAME: Final[dict[str, type[Message]]] = {cls.TYPE.name: cls for cls in MESSAGE_CLASSES}


@dataclass(frozen=True, slots=True)
class Decoded:
    """One valid frame: the sender's sequence number and the message."""

    seq: int
    message: Message


# --------------------------------------------------------------------------- COBS and CRC


def crc16_xmodem(data: bytes) -> int:
    """CRC-16/XMODEM (poly 0x1021, init 0, no reflection, no xor-out)."""
    return binascii.crc_hqx(data, 0)


def cobs_encode(data: bytes) -> bytes:
    """COBS-encode ``data`` (canonical form); the result has no ``0x00``, no delimiter added."""
    out = bytearray()
    block = bytearray()
    ended_full = False  # the last block was a full 254-byte one (code 0xFF, no implied zero)
    for byte in data:
        if byte == 0:
            out.append(len(block) + 1)
            out += block
            block.clear()
            ended_full = False
            continue
        block.append(byte)
        ended_full = False
        if len(block) == 0xFE:
            out.append(0xFF)
            out += block
            block.clear()
            ended_full = True
    if block or not ended_full:
        out.append(len(block) + 1)
        out += block
    return bytes(out)


def cobs_decode(data: bytes) -> bytes:
    """Decode one COBS block sequence (without its delimiter).

    Raises:
        McuFrameError: reason ``frame`` if the input is empty, holds a ``0x00`` or a code byte
            points past its end.
    """
    if not data:
        raise McuFrameError(ErrorReason.FRAME, "COBS: empty frame")
    out = bytearray()
    index = 0
    while index < len(data):
        code = data[index]
        if code == 0:
            raise McuFrameError(
                ErrorReason.FRAME, f"COBS: 0x00 inside the frame at byte {index}", detail=len(out)
            )
        end = index + code
        if end > len(data):
            raise McuFrameError(
                ErrorReason.FRAME,
                f"COBS: code 0x{code:02x} at byte {index} runs past the end "
                f"({len(data)} encoded bytes)",
                detail=len(out),
            )
        out += data[index + 1 : end]
        index = end
        if code != 0xFF and index < len(data):
            out.append(0)
    return bytes(out)


# --------------------------------------------------------------------------- packets


def encode_packet(msg: Message, seq: int) -> bytes:
    """The decoded packet (header, payload, CRC) for ``msg``; no COBS, no delimiter.

    Raises:
        ProtocolError: ``seq`` or a field is out of range.
    """
    if not 0 <= seq < SEQ_MODULUS:
        raise ProtocolError(f"{msg.TYPE.name}: seq {seq} is outside 0..65535")
    body = struct.pack("<BBH", PROTOCOL_VERSION, msg.TYPE, seq) + msg.pack_payload()
    return body + struct.pack("<H", crc16_xmodem(body))


def encode_frame(msg: Message, seq: int) -> bytes:
    """The bytes to put on the wire for ``msg``: COBS(packet) + ``0x00``.

    Raises:
        ProtocolError: ``seq`` or a field is out of range.
    """
    return cobs_encode(encode_packet(msg, seq)) + b"\x00"


def _accepted_types(accept: Direction | None) -> frozenset[int]:
    return frozenset(
        cls.TYPE for cls in MESSAGE_CLASSES if accept is None or cls.DIRECTION is accept
    )


_ALL_TYPES: Final = _accepted_types(None)
_TYPES_BY_DIRECTION: Final = {d: _accepted_types(d) for d in Direction}


def decode_packet(packet: bytes, *, accept: Direction | None = None) -> Decoded:
    """Validate and parse one decoded packet, checking in PROTOCOL.md's order.

    Args:
        packet: COBS-decoded bytes of one frame.
        accept: accept only the types this direction carries (``Direction.H2M`` for the MCU's
            receiver); ``None`` accepts every known type.

    Raises:
        McuFrameError: the first failed check, with its reason and the FAULT detail.
    """
    size = len(packet)
    if size < MIN_PACKET_BYTES or size > MAX_PACKET_BYTES:
        raise McuFrameError(
            ErrorReason.FRAME,
            f"packet is {size} bytes, must be {MIN_PACKET_BYTES}..{MAX_PACKET_BYTES}",
            detail=size,
        )
    body = packet[:-CRC_BYTES]
    (crc_wire,) = struct.unpack_from("<H", packet, size - CRC_BYTES)
    crc_calc = crc16_xmodem(body)
    if crc_wire != crc_calc:
        raise McuFrameError(
            ErrorReason.CRC,
            f"CRC mismatch in {size}-byte packet: wire 0x{crc_wire:04x}, computed 0x{crc_calc:04x}",
        )
    version, type_byte, seq = struct.unpack_from("<BBH", packet, 0)
    if version != PROTOCOL_VERSION:
        raise McuFrameError(
            ErrorReason.VERSION,
            f"version byte is {version}, expected {PROTOCOL_VERSION} (seq {seq})",
            detail=version,
        )
    types = _ALL_TYPES if accept is None else _TYPES_BY_DIRECTION[accept]
    if type_byte not in types:
        where = "" if accept is None else f" for direction {accept.value}"
        raise McuFrameError(
            ErrorReason.TYPE,
            f"unknown message type 0x{type_byte:02x}{where} (seq {seq})",
            detail=type_byte,
        )
    cls = CLASS_BY_TYPE[type_byte]
    payload = body[HEADER_BYTES:]
    if len(payload) != cls.payload_size():
        raise McuFrameError(
            ErrorReason.LENGTH,
            f"{cls.TYPE.name} payload is {len(payload)} bytes, expected {cls.payload_size()} "
            f"(seq {seq})",
            detail=size,
        )
    values = struct.unpack("<" + cls.FORMAT, payload)
    return Decoded(seq=seq, message=cls(*values))


def decode_frame(encoded: bytes, *, accept: Direction | None = None) -> Decoded:
    """COBS-decode and validate one frame; a trailing ``0x00`` delimiter is allowed.

    Raises:
        McuFrameError: the first failed check.
    """
    if encoded.endswith(b"\x00"):
        encoded = encoded[:-1]
    if len(encoded) > MAX_ENCODED_BYTES:
        raise McuFrameError(
            ErrorReason.FRAME,
            f"frame is {len(encoded)} encoded bytes, at most {MAX_ENCODED_BYTES} allowed",
            detail=len(encoded),
        )
    return decode_packet(cobs_decode(encoded), accept=accept)


# --------------------------------------------------------------------------- stream decoder


class FrameDecoder:
    """Streaming receiver: feed it bytes as they come, get valid frames back.

    Invalid frames are dropped and counted in :attr:`errors` by :class:`ErrorReason`;
    :attr:`last_error` keeps the most recent one. After any error the decoder resynchronises at
    the next ``0x00``, so a valid frame that follows is never lost. Empty frames (``00 00``)
    are skipped silently.

    Args:
        accept: message direction this receiver accepts (see :func:`decode_packet`).
    """

    def __init__(self, *, accept: Direction | None = None) -> None:
        self._accept = accept
        self._run = bytearray()
        self._overflow_bytes = 0
        self.errors: dict[ErrorReason, int] = dict.fromkeys(ErrorReason, 0)
        self.frames_ok = 0
        self.last_error: McuFrameError | None = None

    @property
    def error_count(self) -> int:
        """All dropped frames, every reason."""
        return sum(self.errors.values())

    @property
    def pending_bytes(self) -> int:
        """Bytes of a frame received so far without its delimiter."""
        return len(self._run) + self._overflow_bytes

    def reset(self) -> None:
        """Forget a partial frame (e.g. after the port was reopened); counters are kept."""
        self._run.clear()
        self._overflow_bytes = 0

    def feed(self, data: bytes) -> list[Decoded]:
        """Consume bytes and return the valid frames they completed, in order."""
        return [item for item in self.feed_events(data) if isinstance(item, Decoded)]

    def feed_events(self, data: bytes) -> list[Decoded | McuFrameError]:
        """Like :meth:`feed`, but also return each error in stream order (already counted)."""
        events: list[Decoded | McuFrameError] = []
        start = 0
        while True:
            end = data.find(b"\x00", start)
            if end < 0:
                self._append(data[start:])
                return events
            self._append(data[start:end])
            event = self._complete()
            if event is not None:
                events.append(event)
            start = end + 1

    def _append(self, chunk: bytes) -> None:
        room = MAX_ENCODED_BYTES + 1 - len(self._run)
        if room > 0:
            self._run += chunk[:room]
        self._overflow_bytes += max(0, len(chunk) - max(room, 0))

    def _complete(self) -> Decoded | McuFrameError | None:
        run = bytes(self._run)
        total = len(run) + self._overflow_bytes
        self.reset()
        if total == 0:
            return None
        try:
            if total > MAX_ENCODED_BYTES:
                raise McuFrameError(
                    ErrorReason.FRAME,
                    f"frame is {total} encoded bytes without a delimiter, "
                    f"at most {MAX_ENCODED_BYTES} allowed",
                    detail=min(total, 0xFFFF),
                )
            decoded = decode_packet(cobs_decode(run), accept=self._accept)
        except McuFrameError as err:
            self.errors[err.reason] += 1
            self.last_error = err
            return err
        self.frames_ok += 1
        return decoded


def iter_frames(messages: Iterable[tuple[Message, int]]) -> bytes:
    """Concatenate the frames of ``(message, seq)`` pairs (a convenience for tests and rigs)."""
    return b"".join(encode_frame(msg, seq) for msg, seq in messages)
