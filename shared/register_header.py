"""``Register`` carried in the websocket upgrade request, so registering costs no round trip.

A client normally waits for the hub's upgrade response before it can send ``Register``: one
round trip on the critical path of every (re)connect, ~250 ms over a bad cellular link, and a
vehicle coming back from a cut registers with the offer its next session starts from. So the
client also puts its ``Register`` in a request header (:data:`REGISTER_HEADER`); a hub that
read it answers the upgrade with that header set to :data:`RECEIVED` and registers the client
as soon as the connection opens; one it read and refuses gets :data:`REFUSED` (an ``error``
and the close follow). A client whose upgrade response lacks the header (a hub that does not
know it, or could not read it) sends ``Register`` as its first message, as before.

A vehicle back from a cut dials several connections at once (the first ones wait on lost
SYNs), and each upgrade that reaches the hub would register, replacing the one before it. So
the connections dialled for one registration carry the same ``Register.dial``: the hub
registers the first of them and answers the others :data:`DUPLICATE` (and closes them), and
the client takes over only the connection the hub answered :data:`RECEIVED`.

The header's value is the message's JSON, zlib-compressed and base64url-encoded (an SDP offer
shrinks from ~3-8 kB to under 2 kB); one that would pass :data:`MAX_HEADER_CHARS` is not sent.
These are pure functions; the hub and :class:`~teledrive.shared.signaling.SignalingClient` do
the I/O.
"""

from __future__ import annotations

import base64
import binascii
import zlib
from typing import Final

from teledrive.shared.errors import ProtocolError
from teledrive.shared.messages import (
    MAX_MESSAGE_BYTES,
    Register,
    decode_signal,
    encode_text,
    message_type,
)

REGISTER_HEADER: Final = "Teledrive-Register"
"""Request header with the client's ``Register``; response header that says it was read."""
RECEIVED: Final = "received"
"""The response header's value when the hub read the request's ``Register``."""
REFUSED: Final = "refused"
"""The response header's value when the hub read the ``Register`` and refuses it (an ``error``
message follows, then the close)."""
DUPLICATE: Final = "duplicate"
"""The response header's value when another connection of the same ``dial`` registered first."""
MAX_HEADER_CHARS: Final = 6000
"""Longest value sent (websockets servers refuse header lines over 8 kB)."""


def encode_register_header(register: Register) -> str | None:
    """The header value for ``register``, or None when it would be too long to send."""
    packed = base64.urlsafe_b64encode(zlib.compress(encode_text(register).encode(), 9))
    if len(packed) > MAX_HEADER_CHARS:
        return None
    return packed.decode("ascii")


def decode_register_header(value: str, *, where: str) -> Register:
    """The ``Register`` a request header carries.

    Args:
        value: the header's value.
        where: names the sender in error messages.

    Returns:
        The message.

    Raises:
        ProtocolError: the value is too long, not base64url (padded), not zlib (or has bytes
            after it), larger than a message may be once inflated, not a valid message, or a
            message other than ``Register``.
    """
    channel = f"{where}: {REGISTER_HEADER} header"
    if len(value) > MAX_HEADER_CHARS:
        raise ProtocolError(f"{channel}: {len(value)} characters exceed {MAX_HEADER_CHARS}")
    try:
        packed = base64.b64decode(value.encode("ascii"), altchars=b"-_", validate=True)
    except (UnicodeEncodeError, binascii.Error, ValueError) as err:
        raise ProtocolError(f"{channel}: not base64url: {err}") from err
    inflater = zlib.decompressobj()
    try:
        text = inflater.decompress(packed, MAX_MESSAGE_BYTES + 1)
    except zlib.error as err:
        raise ProtocolError(f"{channel}: not zlib data: {err}") from err
    if len(text) > MAX_MESSAGE_BYTES or inflater.unconsumed_tail:
        raise ProtocolError(f"{channel}: inflates past {MAX_MESSAGE_BYTES} bytes")
    if not inflater.eof:
        raise ProtocolError(f"{channel}: zlib data is truncated")
    if inflater.unused_data:
        raise ProtocolError(f"{channel}: {len(inflater.unused_data)} bytes after the zlib data")
    message = decode_signal(text, channel=channel)
    if not isinstance(message, Register):
        raise ProtocolError(f"{channel}: carries {message_type(message)}, not register")
    return message
