"""Bytes in / bytes out tests of the MCU codec, the shared vectors file, and fuzzing."""

from __future__ import annotations

import dataclasses
import importlib.util
import struct
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from teledrive.shared.errors import FrameError, ProtocolError
from teledrive.vehicle.mcu_codec import (
    CLASS_BY_NAME,
    MAX_ENCODED_BYTES,
    MESSAGE_CLASSES,
    Arm,
    Decoded,
    Direction,
    Drive,
    ErrorReason,
    FrameDecoder,
    Hello,
    McuFrameError,
    Message,
    MsgType,
    Telemetry,
    cobs_decode,
    cobs_encode,
    crc16_xmodem,
    decode_frame,
    encode_frame,
    encode_packet,
)

REPO = Path(__file__).resolve().parents[2]
VECTORS = REPO / "hardware" / "vectors.txt"


def crc16_xmodem_bitwise(data: bytes) -> int:
    """Reference CRC written from the definition, independent of binascii."""
    crc = 0
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
            crc &= 0xFFFF
    return crc


# --------------------------------------------------------------------------- CRC and COBS


def test_crc_check_value() -> None:
    assert crc16_xmodem(b"123456789") == 0x31C3
    assert crc16_xmodem_bitwise(b"123456789") == 0x31C3


@given(st.binary(max_size=80))
def test_crc_matches_bitwise_reference(data: bytes) -> None:
    assert crc16_xmodem(data) == crc16_xmodem_bitwise(data)


@pytest.mark.parametrize(
    ("raw", "encoded"),
    [
        ("00", "0101"),
        ("0000", "010101"),
        ("001100", "01021101"),
        ("11220033", "0311220233"),
        ("11223344", "0511223344"),
        ("11000000", "0211010101"),
        ("", "01"),
    ],
)
def test_cobs_known_examples(raw: str, encoded: str) -> None:
    assert cobs_encode(bytes.fromhex(raw)).hex() == encoded
    assert cobs_decode(bytes.fromhex(encoded)).hex() == raw


def test_cobs_long_blocks_are_canonical() -> None:
    data = bytes(range(1, 255))  # 254 non-zero bytes: one full block, no trailing code
    assert cobs_encode(data) == b"\xff" + data
    assert cobs_decode(cobs_encode(data + b"\x00")) == data + b"\x00"


@given(st.binary(max_size=600))
def test_cobs_round_trip_and_no_zero(data: bytes) -> None:
    encoded = cobs_encode(data)
    assert 0 not in encoded
    assert cobs_decode(encoded) == data


@pytest.mark.parametrize(
    ("bad", "match"),
    [("", "empty"), ("05010203", "runs past the end"), ("0100", "0x00 inside"), ("02", "past")],
)
def test_cobs_rejects_bad_input(bad: str, match: str) -> None:
    with pytest.raises(McuFrameError, match=match) as info:
        cobs_decode(bytes.fromhex(bad))
    assert info.value.reason is ErrorReason.FRAME


# --------------------------------------------------------------------------- hand-built frames


def test_hello_frame_built_by_hand() -> None:
    body = bytes([1, 0x01, 0x00, 0x00])  # version 1, HELLO, seq 0
    crc = crc16_xmodem_bitwise(body)
    packet = body + bytes([crc & 0xFF, crc >> 8])
    # COBS by hand: 01 | 01 | 00 00 | crc_lo crc_hi (crc has no zero byte here)
    assert 0 not in packet[-2:]
    manual = bytes([0x03, 0x01, 0x01, 0x01, 0x03, packet[-2], packet[-1], 0x00])
    assert encode_frame(Hello(), 0) == manual


def test_drive_frame_layout_little_endian() -> None:
    packet = encode_packet(Drive(speed_mmps=1500, steer_mrad=-120), 0x1234)
    assert packet[:4] == bytes([1, 0x04, 0x34, 0x12])
    assert struct.unpack("<hh", packet[4:8]) == (1500, -120)
    assert int.from_bytes(packet[8:], "little") == crc16_xmodem_bitwise(packet[:8])


def test_encode_rejects_out_of_range() -> None:
    with pytest.raises(ProtocolError, match="DRIVE"):
        encode_frame(Drive(speed_mmps=40_000, steer_mrad=0), 1)
    with pytest.raises(ProtocolError, match="seq 65536"):
        encode_frame(Arm(), 65536)


# --------------------------------------------------------------------------- vectors file


def _parse_expect(expect: str) -> tuple[str, int, dict[str, int]]:
    words = expect.split()
    assert words[0] == "ok"
    seq_key, seq = words[2].split("=")
    assert seq_key == "seq"
    fields = {k: int(v) for k, v in (w.split("=") for w in words[3:])}
    return words[1], int(seq), fields


def _load_vectors() -> list[tuple[str, Direction, bytes, str]]:
    vectors = []
    for lineno, line in enumerate(VECTORS.read_text(encoding="utf-8").splitlines(), start=1):
        if not line or line.startswith("#"):
            continue
        parts = line.split("\t")
        assert len(parts) == 4, f"vectors.txt:{lineno}: expected 4 tab-separated fields"
        name, direction, wire_hex, expect = parts
        assert wire_hex == wire_hex.lower(), f"vectors.txt:{lineno}: hex must be lowercase"
        assert wire_hex.endswith("00"), f"vectors.txt:{lineno}: frame must end with 00"
        vectors.append((name, Direction(direction), bytes.fromhex(wire_hex), expect))
    return vectors


VECTOR_LIST = _load_vectors()


@pytest.mark.parametrize(
    ("name", "direction", "wire", "expect"), VECTOR_LIST, ids=[v[0] for v in VECTOR_LIST]
)
def test_vector(name: str, direction: Direction, wire: bytes, expect: str) -> None:
    decoder = FrameDecoder(accept=direction)
    events = decoder.feed_events(wire)
    assert len(events) == 1, name
    event = events[0]
    if expect.startswith("error "):
        reason = expect.split()[1]
        assert isinstance(event, McuFrameError), f"{name}: decoded {event}"
        assert event.reason.value == reason, f"{name}: {event}"
        assert decoder.errors[ErrorReason(reason)] == 1
        assert decoder.last_error is event
        return
    assert isinstance(event, Decoded), f"{name}: {event}"
    type_name, seq, fields = _parse_expect(expect)
    assert event.message.TYPE.name == type_name
    assert event.seq == seq
    assert event.message.fields() == fields
    # Encode from the expected fields and compare with the wire bytes.
    cls = CLASS_BY_NAME[type_name]
    assert encode_frame(cls(**fields), seq) == wire
    # CRC checked independently of binascii.
    packet = cobs_decode(wire[:-1])
    assert int.from_bytes(packet[-2:], "little") == crc16_xmodem_bitwise(packet[:-2])


def test_vectors_cover_the_spec() -> None:
    ok_types: set[tuple[str, Direction]] = set()
    reasons: set[str] = set()
    seqs: set[int] = set()
    values: set[int] = set()
    zero_in_packet = False
    for _name, direction, wire, expect in VECTOR_LIST:
        if expect.startswith("error"):
            reasons.add(expect.split()[1])
            continue
        type_name, seq, fields = _parse_expect(expect)
        ok_types.add((type_name, direction))
        seqs.add(seq)
        values.update(fields.values())
        zero_in_packet |= 0 in cobs_decode(wire[:-1])
    assert {(cls.TYPE.name, cls.DIRECTION) for cls in MESSAGE_CLASSES} <= ok_types
    assert reasons == {r.value for r in ErrorReason}
    assert {0, 65535} <= seqs
    assert {-32768, 32767} <= values
    assert zero_in_packet


def test_vectors_file_is_generated_from_script() -> None:
    spec = importlib.util.spec_from_file_location("make_vectors", REPO / "hardware/make_vectors.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.render() == VECTORS.read_text(encoding="utf-8")


# --------------------------------------------------------------------------- decoder behaviour


def test_error_text_says_what_was_wrong() -> None:
    wire = bytearray(encode_frame(Drive(1, 2), 3))
    wire[-2] ^= 0x01
    decoder = FrameDecoder()
    assert decoder.feed(bytes(wire)) == []
    assert decoder.errors[ErrorReason.CRC] == 1
    assert isinstance(decoder.last_error, FrameError)
    assert "CRC mismatch" in str(decoder.last_error)


def test_direction_filter() -> None:
    wire = encode_frame(Hello(), 1)
    assert FrameDecoder(accept=Direction.H2M).feed(wire) == [Decoded(1, Hello())]
    host = FrameDecoder(accept=Direction.M2H)
    assert host.feed(wire) == []
    assert host.errors[ErrorReason.TYPE] == 1
    assert "0x01" in str(host.last_error)


def test_empty_frames_are_ignored() -> None:
    decoder = FrameDecoder()
    assert decoder.feed(b"\x00\x00\x00" + encode_frame(Arm(), 2) + b"\x00") == [Decoded(2, Arm())]
    assert decoder.error_count == 0


def test_overlong_run_is_dropped_and_bounded() -> None:
    decoder = FrameDecoder()
    assert decoder.feed(b"\x41" * 10_000) == []
    assert decoder.pending_bytes == 10_000
    assert len(decoder._run) <= MAX_ENCODED_BYTES + 1
    frame = encode_frame(Drive(-5, 5), 9)
    assert decoder.feed(b"\x00" + frame) == [Decoded(9, Drive(-5, 5))]
    assert decoder.errors[ErrorReason.FRAME] == 1
    assert "10000 encoded bytes" in str(decoder.last_error)


def test_decode_frame_single() -> None:
    assert decode_frame(encode_frame(Arm(), 7)) == Decoded(7, Arm())
    with pytest.raises(McuFrameError) as info:
        decode_frame(b"\x05\x01\x02\x00")
    assert info.value.reason is ErrorReason.FRAME


# --------------------------------------------------------------------------- properties

_RANGES: dict[str, tuple[int, int]] = {
    "B": (0, 0xFF),
    "H": (0, 0xFFFF),
    "h": (-0x8000, 0x7FFF),
    "I": (0, 0xFFFFFFFF),
}


def _message_strategy(cls: type[Message]) -> st.SearchStrategy[Message]:
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs: dict[str, Any] = {
        name: st.integers(*_RANGES[code]) for name, code in zip(names, cls.FORMAT, strict=True)
    }
    return st.builds(cls, **kwargs)


messages = st.one_of(*(_message_strategy(cls) for cls in MESSAGE_CLASSES))
seqs = st.integers(0, 0xFFFF)


@given(messages, seqs)
def test_round_trip_every_message(msg: Message, seq: int) -> None:
    wire = encode_frame(msg, seq)
    assert wire.count(0) == 1
    assert wire.endswith(b"\x00")
    assert len(wire) <= MAX_ENCODED_BYTES + 1
    assert FrameDecoder(accept=msg.DIRECTION).feed(wire) == [Decoded(seq, msg)]


def _runs(stream: bytes) -> set[bytes]:
    return {run + b"\x00" for run in stream.split(b"\x00")}


@settings(deadline=None)  # shared 2-core machine: no per-example timing
@given(st.binary(max_size=400), st.lists(st.integers(1, 50), max_size=10))
def test_garbage_never_raises_nor_invents_frames(garbage: bytes, cuts: list[int]) -> None:
    decoder = FrameDecoder()
    out: list[Decoded] = []
    pos = 0
    for cut in [*cuts, len(garbage)]:
        out += decoder.feed(garbage[pos : pos + cut])
        pos += cut
    out += decoder.feed(garbage[pos:])
    runs = _runs(garbage)
    for item in out:  # whatever comes out was sent intact, byte for byte
        assert encode_frame(item.message, item.seq) in runs
    assert decoder.frames_ok == len(out)


@settings(deadline=None)  # shared 2-core machine: no per-example timing
@given(
    st.lists(st.tuples(st.binary(max_size=80), messages, seqs), min_size=1, max_size=8),
    st.binary(max_size=80),
    st.integers(1, 64),
)
def test_valid_frames_between_garbage_are_all_recovered(
    items: list[tuple[bytes, Message, int]], tail: bytes, chunk: int
) -> None:
    stream = b"".join(junk + b"\x00" + encode_frame(msg, seq) for junk, msg, seq in items) + tail
    decoder = FrameDecoder()
    out: list[Decoded] = []
    for i in range(0, len(stream), chunk):
        out += decoder.feed(stream[i : i + chunk])
    expected = [Decoded(seq, msg) for _junk, msg, seq in items]
    it = iter(out)
    assert all(any(got == want for got in it) for want in expected), (out, expected)


@settings(max_examples=50, deadline=None)
@given(messages, seqs, messages, seqs, st.data())
def test_truncated_frame_then_valid_frame(
    first: Message, seq1: int, second: Message, seq2: int, data: st.DataObject
) -> None:
    wire1 = encode_frame(first, seq1)
    cut = data.draw(st.integers(1, len(wire1) - 2))  # at least one byte lost before the 00
    decoder = FrameDecoder()
    events = decoder.feed_events(wire1[:cut] + b"\x00" + encode_frame(second, seq2))
    assert len(events) == 2
    assert events[1] == Decoded(seq2, second)
    if isinstance(events[0], Decoded):  # only if the cut happens to leave a valid frame
        assert encode_frame(events[0].message, events[0].seq) == wire1[:cut] + b"\x00"
    else:
        assert decoder.error_count == 1


def test_wrong_length_for_every_type() -> None:
    for cls in MESSAGE_CLASSES:
        body = bytes([1, cls.TYPE, 0, 0]) + bytes(cls.payload_size() + 1)
        packet = body + crc16_xmodem(body).to_bytes(2, "little")
        decoder = FrameDecoder()
        assert decoder.feed(cobs_encode(packet) + b"\x00") == []
        assert decoder.errors[ErrorReason.LENGTH] == 1, cls
        assert cls.TYPE.name in str(decoder.last_error)


def test_telemetry_payload_is_22_bytes() -> None:
    assert Telemetry.payload_size() == 22
    assert {m.TYPE for m in MESSAGE_CLASSES} == set(MsgType)
