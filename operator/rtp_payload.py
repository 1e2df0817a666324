"""What the video jitter buffer reads in RTP payloads: frame starts and keyframes (sans-I/O).

Pure functions of the payload bytes, per codec: H.264 (RFC 6184: single NAL units, STAP-A,
FU-A) and VP8 (RFC 7741 payload descriptor). See :mod:`teledrive.operator.video_receive` for
how the buffer uses them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from aiortc.rtp import RtpPacket

# H.264 NAL unit types (ITU-T H.264 table 7-1, RFC 6184)
_NAL_SLICE = 1
_NAL_IDR = 5
_NAL_SEI = 6
_NAL_SPS = 7
_NAL_PPS = 8
_NAL_AUD = 9
_NAL_STAP_A = 24
_NAL_FU_A = 28
_NAL_AU_STARTERS = frozenset({_NAL_SEI, _NAL_SPS, _NAL_PPS, _NAL_AUD})


def _h264_first_nal(payload: bytes) -> tuple[int, int] | None:
    """(NAL type, offset of the byte after its header) of the NAL unit this packet starts.

    None when the packet does not start a NAL unit (an FU-A continuation) or is malformed.
    """
    if len(payload) < 2:
        return None
    nal_type = payload[0] & 0x1F
    if nal_type == _NAL_FU_A:
        if not payload[1] & 0x80:
            return None
        return payload[1] & 0x1F, 2
    if nal_type == _NAL_STAP_A:
        if len(payload) < 4:
            return None
        return payload[3] & 0x1F, 4
    return nal_type, 1


def h264_starts_frame(payload: bytes) -> bool:
    """Whether this H.264 RTP payload is the first packet of an access unit."""
    first = _h264_first_nal(payload)
    if first is None:
        return False
    nal_type, body = first
    if nal_type in _NAL_AU_STARTERS:
        return True
    if nal_type in (_NAL_SLICE, _NAL_IDR):
        # first_mb_in_slice is ue(v); the value 0 is coded as the single bit "1".
        return len(payload) > body and bool(payload[body] & 0x80)
    return False


def h264_nal_types(payload: bytes) -> list[int]:
    """NAL unit types that begin in this H.264 RTP payload (all units of a STAP-A)."""
    if len(payload) < 2:
        return []
    nal_type = payload[0] & 0x1F
    if nal_type == _NAL_FU_A:
        return [payload[1] & 0x1F] if payload[1] & 0x80 else []
    if nal_type != _NAL_STAP_A:
        return [nal_type]
    types = []
    pos = 1
    while pos + 2 < len(payload):
        size = int.from_bytes(payload[pos : pos + 2], "big")
        if size == 0 or pos + 2 + size > len(payload):
            break
        types.append(payload[pos + 2] & 0x1F)
        pos += 2 + size
    return types


def _vp8_descriptor(payload: bytes) -> tuple[bool, int] | None:
    """(S bit, offset of the VP8 payload) from an RFC 7741 payload descriptor, or None."""
    if not payload:
        return None
    first = payload[0]
    start = bool(first & 0x10) and (first & 0x0F) == 0
    pos = 1
    if first & 0x80:
        if len(payload) < 2:
            return None
        ext = payload[1]
        pos = 2
        if ext & 0x80:  # I: picture id, 7 or 15 bits
            if len(payload) <= pos:
                return None
            pos += 2 if payload[pos] & 0x80 else 1
        if ext & 0x40:  # L: TL0PICIDX
            pos += 1
        if ext & 0x30:  # T or K: one shared octet
            pos += 1
    if pos > len(payload):
        return None
    return start, pos


def vp8_starts_frame(payload: bytes) -> bool:
    """Whether this VP8 RTP payload is the first packet of a frame (S=1, partition 0)."""
    descriptor = _vp8_descriptor(payload)
    return descriptor is not None and descriptor[0]


def vp8_is_keyframe(payload: bytes) -> bool:
    """Whether this VP8 RTP payload starts a key frame (inverse key frame flag P is 0)."""
    descriptor = _vp8_descriptor(payload)
    if descriptor is None or not descriptor[0]:
        return False
    pos = descriptor[1]
    return len(payload) > pos and not payload[pos] & 0x01


@dataclass(frozen=True, slots=True)
class CodecRules:
    """How to read one codec's RTP payloads.

    Attributes:
        starts_frame: whether a payload is the first packet of a frame.
        is_keyframe: whether the packets of one whole frame make a keyframe that decodes on
            its own.
        marks_keyframe: whether one payload shows that its frame is a keyframe (an H.264
            parameter set or IDR slice start, a VP8 key frame start), whatever else is lost.
    """

    starts_frame: Callable[[bytes], bool]
    is_keyframe: Callable[[list[RtpPacket]], bool]
    marks_keyframe: Callable[[bytes], bool]


def _h264_keyframe(packets: list[RtpPacket]) -> bool:
    # Self-contained: an IDR picture with its parameter sets. Then it decodes whatever was
    # lost before it, and a frame "start" found by payload inspection (a first slice whose
    # SPS/PPS packet was lost) cannot pass for one.
    types = {t for p in packets for t in h264_nal_types(p.payload)}
    return {_NAL_IDR, _NAL_SPS, _NAL_PPS} <= types


def _h264_marks_keyframe(payload: bytes) -> bool:
    return not {_NAL_IDR, _NAL_SPS}.isdisjoint(h264_nal_types(payload))


def _vp8_keyframe(packets: list[RtpPacket]) -> bool:
    return bool(packets) and vp8_is_keyframe(packets[0].payload)


_RULES: dict[str, CodecRules] = {
    "h264": CodecRules(h264_starts_frame, _h264_keyframe, _h264_marks_keyframe),
    "vp8": CodecRules(vp8_starts_frame, _vp8_keyframe, vp8_is_keyframe),
}


def codec_rules(codec_name: str | None) -> CodecRules | None:
    """The rules for a codec name ("H264", "VP8", any case), or None for another codec."""
    return _RULES.get(codec_name.lower()) if codec_name else None
