"""What a handshake datagram is: STUN or DTLS (RFC 7983), and what its DTLS records carry.

Sans-I/O helpers for :mod:`teledrive.shared.handshake_resend`: bytes in, keys out. The DTLS
record layout is RFC 6347 section 4.1 (a 13-byte header: type, version, epoch, sequence
number, length) and 4.2.2 (a 12-byte handshake header: type, length, message sequence,
fragment offset, fragment length); STUN's is RFC 5389 section 6.
"""

from __future__ import annotations

Address = tuple[str, int]

_STUN_HEADER_BYTES = 20
_STUN_COOKIE = b"\x21\x12\xa4\x42"


_DTLS_RECORD_HEADER_BYTES = 13
_DTLS_HANDSHAKE = 22
_DTLS_HANDSHAKE_HEADER_BYTES = 12


def dtls_records(data: bytes) -> list[tuple[object, ...]]:
    """What each DTLS record of a datagram carries, the same in every copy of it.

    A plaintext handshake record (epoch 0) by message type, sequence and fragment offset (a
    retransmission has a new record sequence number but the same messages); an encrypted one
    (the Finished, the only handshake message after ChangeCipherSpec in DTLS-SRTP) by its
    epoch, since each retransmission encrypts it anew; any other record by its type, epoch and
    body. A truncated record ends the list.

    Returns:
        One hashable tuple per record, in order.
    """
    records: list[tuple[object, ...]] = []
    pos = 0
    while pos + _DTLS_RECORD_HEADER_BYTES <= len(data):
        content_type = data[pos]
        epoch = data[pos + 3 : pos + 5]
        length = int.from_bytes(data[pos + 11 : pos + 13], "big")
        body = data[pos + 13 : pos + 13 + length]
        if len(body) < length:
            break
        if (
            content_type == _DTLS_HANDSHAKE
            and epoch == b"\x00\x00"
            and len(body) >= _DTLS_HANDSHAKE_HEADER_BYTES
        ):
            records.append((content_type, body[0], body[4:6], body[6:9]))
        elif content_type == _DTLS_HANDSHAKE:
            records.append((content_type, epoch))
        else:
            records.append((content_type, epoch, body))
        pos += _DTLS_RECORD_HEADER_BYTES + length
    return records


def handshake_key(addr: Address, data: bytes, *, sent: bool) -> tuple[str, object] | None:
    """What a datagram waits for (sent) or answers (received), by its first byte (RFC 7983).

    A STUN request waits for the response with its transaction id; a DTLS datagram for new
    DTLS from the same address (the caller tells a repeat from new by :func:`dtls_records`);
    anything else is not tracked.
    """
    if not data:
        return None
    first = data[0]
    if first < 4 and len(data) >= _STUN_HEADER_BYTES and data[4:8] == _STUN_COOKIE:
        message_class = ((data[0] & 0x01) << 1) | ((data[1] >> 4) & 0x01)
        is_request = message_class == 0
        if sent != is_request:
            return None  # only our requests wait, only responses (or errors) answer
        if not sent and message_class == 1:
            return None  # an indication answers nothing
        return ("stun", data[8:20])
    if 20 <= first <= 63:
        return ("dtls", addr)
    return None
