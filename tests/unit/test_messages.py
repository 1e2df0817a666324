import contextlib
import math

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from teledrive.shared import messages as m
from teledrive.shared.errors import ProtocolError, TeledriveError

DRIVE = m.DriveCommand(
    seq=7, t_ms=1000.0, offset_ms=-3.5, ttl_ms=250.0, speed_mps=1.5, steer_rad=-0.2
)


def drive_json(**fields: object) -> bytes:
    base = msgspec.to_builtins(DRIVE)
    base.update(fields)
    return msgspec.json.encode(base)


def test_every_message_round_trips() -> None:
    samples: list[m.Message] = [
        m.Register(role="vehicle", id="van-01", cameras=["front", "rear"]),
        m.Registered(id="van-01", heartbeat_ms=1000.0),
        m.ListVehicles(),
        m.VehicleList(vehicles=[m.VehicleInfo(id="van-01", operator="op")]),
        m.Presence(vehicle=m.VehicleInfo(id="van-01", online=False)),
        m.Connect(vehicle_id="van-01", session="s1", operator_id="op"),
        m.Offer(session="s1", sdp="v=0"),
        m.Answer(session="s1", sdp="v=0"),
        m.Candidate(session="s1", candidate="candidate:1", sdp_mid="0", sdp_mline_index=0),
        m.Bye(session="s1", reason="done"),
        m.Error(code="busy", message="taken", ref="connect"),
    ]
    for message in samples:
        assert m.decode_signal(m.encode(message)) == message
    data: list[m.Message] = [
        DRIVE,
        m.Telemetry(t_ms=1.0, mode="TELEOP", drops={"stale": 2}, rtt_ms=3.0),
        m.FrameTimes(frames=[m.FrameTime(camera="front", pts=9000, capture_ms=5.0)]),
        m.TimeRequest(id=1, t1=2.0),
        m.TimeResponse(id=1, t1=2.0, t2=3.0, t3=4.0),
        m.VideoFreshness(t_ms=1.0, age_ms=33.0),
        m.Estop(),
        m.EstopReset(),
        m.Takeover(),
        m.Release(),
        m.ModeChange(t_ms=1.0, mode="AUTONOMY", previous="TELEOP", reason="stale"),
        m.Alert(level="critical", text="stopped"),
        m.Ack(ref="estop"),
        m.Error(code="bad_message", message="x"),
    ]
    for message in data:
        assert m.decode_data(m.encode_text(message)) == message


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        (b'{"type":"warp"}', "$.type"),
        (b'{"type":"drive"}', "missing required field `seq`"),
        (drive_json(speed_mps=99.0), "$.speed_mps"),
        (drive_json(steer_rad="left"), "$.steer_rad"),
        (drive_json(seq=-1), "$.seq"),
        (drive_json(ttl_ms=0.0), "$.ttl_ms"),
        (drive_json(extra=1), "unknown field `extra`"),
        (b'{"type":"drive","seq":1,"t_ms":NaN}', "malformed"),
        (b'{"type":"drive","seq":1,"t_ms":1e999}', "$.t_ms"),
        (b"[1, 2]", "Expected `object`"),
        (b"\xff\xfe", "malformed"),
    ],
)
def test_bad_data_is_rejected_with_where(raw: bytes, needle: str) -> None:
    with pytest.raises(ProtocolError) as info:
        m.decode_data(raw, channel="drive")
    assert "drive" in str(info.value)
    assert needle in str(info.value)
    assert isinstance(info.value, TeledriveError)


def test_signal_rejects_bad_ids_and_oversize() -> None:
    with pytest.raises(ProtocolError, match=r"\$\.id"):
        m.decode_signal(b'{"type":"register","role":"vehicle","id":"a b"}')
    with pytest.raises(ProtocolError, match="exceeds"):
        m.decode_signal(b" " * (m.MAX_MESSAGE_BYTES + 1))
    with pytest.raises(ProtocolError, match=r"\$\.role"):
        m.decode_signal(b'{"type":"register","role":"pilot","id":"a"}')


def test_data_messages_are_not_signaling() -> None:
    with pytest.raises(ProtocolError):
        m.decode_signal(m.encode(DRIVE))


@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_escape_as_other_errors(raw: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        m.decode_data(raw)


def _number(value: float) -> str:
    """How a sender might write a number, JSON or not (NaN and Infinity are not JSON)."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return repr(value)


@given(
    speed=st.floats(allow_nan=True, allow_infinity=True),
    steer=st.floats(allow_nan=True, allow_infinity=True),
)
def test_drive_values_outside_range_or_non_finite_never_decode(speed: float, steer: float) -> None:
    raw = (
        b'{"type":"drive","seq":1,"t_ms":1.0,"offset_ms":0.0,"ttl_ms":250.0,'
        + f'"speed_mps":{_number(speed)},"steer_rad":{_number(steer)}}}'.encode()
    )
    ok = math.isfinite(speed) and math.isfinite(steer) and abs(speed) <= 30 and abs(steer) <= 1
    if ok:
        decoded = m.decode_data(raw)
        assert isinstance(decoded, m.DriveCommand)
        assert decoded.speed_mps == speed
        assert decoded.steer_rad == steer
    else:
        with pytest.raises(ProtocolError):
            m.decode_data(raw)


def test_message_type_tag() -> None:
    assert m.message_type(DRIVE) == "drive"
    assert m.message_type(m.ListVehicles()) == "list_vehicles"
