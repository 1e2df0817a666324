"""Register in the websocket upgrade request: the header's codec, and the hub reading it."""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import zlib
from collections.abc import AsyncIterator

import pytest
from websockets.asyncio.client import connect

from teledrive.operator.hub import Hub
from teledrive.shared.errors import ProtocolError
from teledrive.shared.messages import (
    MAX_MESSAGE_BYTES,
    Error,
    ListVehicles,
    Register,
    Registered,
    decode_signal,
    encode_text,
)
from teledrive.shared.register_header import (
    DUPLICATE,
    MAX_HEADER_CHARS,
    RECEIVED,
    REFUSED,
    REGISTER_HEADER,
    decode_register_header,
    encode_register_header,
)
from teledrive.shared.signaling import CLOSE_REFUSED, CLOSE_REPLACED

WAIT_S = 5.0 * float(os.environ.get("TELEDRIVE_TIME_SCALE", "1"))
OFFER = "v=0\r\n" + "".join(
    f"a=candidate:{n} 1 udp 2130706431 10.0.0.{n} 5000 typ host\r\n" for n in range(40)
)


def packed(text: str | bytes) -> str:
    raw = text.encode() if isinstance(text, str) else text
    return base64.urlsafe_b64encode(zlib.compress(raw)).decode()


def test_a_register_with_an_offer_survives_the_header_compressed() -> None:
    register = Register(role="vehicle", id="v1", cameras=["front", "rear"], offer=OFFER)
    value = encode_register_header(register)
    assert value is not None
    assert len(value) < len(encode_text(register)) / 2  # SDP is repetitive
    assert decode_register_header(value, where="test") == register


def test_a_register_too_long_for_a_header_is_not_encoded() -> None:
    noise = base64.b64encode(os.urandom(MAX_HEADER_CHARS)).decode()  # incompressible
    assert encode_register_header(Register(role="vehicle", id="v1", offer=noise)) is None


@pytest.mark.parametrize(
    ("value", "needle"),
    [
        ("x" * (MAX_HEADER_CHARS + 1), "exceed"),
        ("not base64!", "not base64url"),
        (base64.urlsafe_b64encode(b"plain text").decode(), "not zlib"),
        (packed(b"{" * (MAX_MESSAGE_BYTES + 10)), "inflates past"),
        (base64.urlsafe_b64encode(zlib.compress(b'{"type": "register"}')[:-6]).decode(), "trunc"),
        (packed('{"type": "register", "role": "pilot", "id": "v1"}'), "$.role"),
        (packed(encode_text(ListVehicles())), "carries list_vehicles"),
    ],
)
def test_a_malformed_header_says_what_and_where(value: str, needle: str) -> None:
    with pytest.raises(ProtocolError, match=r"hub: from 1\.2\.3\.4") as caught:
        decode_register_header(value, where="hub: from 1.2.3.4")
    assert REGISTER_HEADER in str(caught.value)
    assert needle in str(caught.value)


@pytest.fixture
async def hub() -> AsyncIterator[Hub]:
    async with Hub(register_timeout_s=WAIT_S) as hub:
        await hub.serve("127.0.0.1", 0)
        yield hub


async def test_the_hub_registers_a_client_from_its_upgrade_request(hub: Hub) -> None:
    register = Register(role="vehicle", id="v1", offer=OFFER)
    headers = {REGISTER_HEADER: encode_register_header(register)}
    url = f"ws://127.0.0.1:{hub.bound_port}"
    async with connect(url, additional_headers=headers, ping_interval=None) as ws:
        assert ws.response is not None
        assert ws.response.headers.get(REGISTER_HEADER) == RECEIVED
        async with asyncio.timeout(WAIT_S):  # nothing sent: the hub answers by itself
            registered = decode_signal(await ws.recv())
        assert registered == Registered(id="v1", heartbeat_ms=1000.0)
        assert hub.stats()["vehicles"] == 1
        assert hub.stats()["registered_in_upgrade"] == 1


async def test_a_malformed_header_is_counted_and_the_client_registers_in_band(
    hub: Hub, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"ws://127.0.0.1:{hub.bound_port}"
    caplog.set_level(logging.WARNING, logger="teledrive.operator.hub")
    async with connect(url, additional_headers={REGISTER_HEADER: "%%%"}, ping_interval=None) as ws:
        assert ws.response is not None
        assert REGISTER_HEADER not in ws.response.headers
        await hub.wait_stats(lambda s: s["bad_messages"] == 1, WAIT_S)
        assert "Teledrive-Register header: not base64url" in caplog.text
        await ws.send(encode_text(Register(role="operator", id="op1")))
        async with asyncio.timeout(WAIT_S):
            answer = decode_signal(await ws.recv())
        assert not isinstance(answer, Error)  # the header's fault was not held against it
        assert answer == Registered(id="op1", heartbeat_ms=1000.0)
        assert hub.stats()["registered_in_upgrade"] == 0


def dialled(hub: Hub, register: Register) -> connect:
    """Opens a raw websocket to the hub with ``register`` in its upgrade request."""
    header = encode_register_header(register)
    assert header is not None
    url = f"ws://127.0.0.1:{hub.bound_port}"
    return connect(url, additional_headers={REGISTER_HEADER: header}, ping_interval=None)


async def test_of_one_dial_the_first_registers_and_the_others_are_refused(hub: Hub) -> None:
    register = Register(role="vehicle", id="v1", dial="abc.3")
    async with dialled(hub, register) as first, dialled(hub, register) as second:
        assert first.response is not None
        assert second.response is not None
        assert first.response.headers[REGISTER_HEADER] == RECEIVED
        assert second.response.headers[REGISTER_HEADER] == DUPLICATE
        async with asyncio.timeout(WAIT_S):
            await second.wait_closed()
            assert isinstance(decode_signal(await first.recv()), Registered)
        assert second.close_code == CLOSE_REFUSED
        stats = hub.stats()
        assert (stats["registrations"], stats["replaced"], stats["duplicate_dials"]) == (1, 0, 1)
    # Once the first is gone, the same dial may register (its upgrade's reply was lost, say).
    async with dialled(hub, register) as third:
        assert third.response is not None
        assert third.response.headers[REGISTER_HEADER] == RECEIVED


async def test_a_new_dial_replaces_the_connection_of_an_older_one(hub: Hub) -> None:
    async with dialled(hub, Register(role="vehicle", id="v1", dial="abc.3")) as old:
        async with asyncio.timeout(WAIT_S):
            await old.recv()
        async with dialled(hub, Register(role="vehicle", id="v1", dial="abc.4")) as new:
            async with asyncio.timeout(WAIT_S):
                assert isinstance(decode_signal(await new.recv()), Registered)
                await old.wait_closed()
            assert old.close_code == CLOSE_REPLACED


async def test_a_header_sent_twice_is_a_bad_header_not_a_server_error(hub: Hub) -> None:
    value = encode_register_header(Register(role="operator", id="op1"))
    assert value is not None
    headers = [(REGISTER_HEADER, value), (REGISTER_HEADER, value)]
    url = f"ws://127.0.0.1:{hub.bound_port}"
    async with connect(url, additional_headers=headers, ping_interval=None) as ws:
        assert ws.response is not None
        assert REGISTER_HEADER not in ws.response.headers
        await hub.wait_stats(lambda s: s["bad_messages"] == 1, WAIT_S)


async def test_another_protocol_version_in_the_header_is_refused(hub: Hub) -> None:
    async with dialled(hub, Register(v=2, role="vehicle", id="v1")) as ws:
        async with asyncio.timeout(WAIT_S):
            error = decode_signal(await ws.recv())
            await ws.wait_closed()
        assert isinstance(error, Error)
        assert error.code == "version"
        assert ws.close_code == CLOSE_REFUSED
        # Not "received": a client must not take over a connection the hub refuses.
        assert ws.response is not None
        assert ws.response.headers[REGISTER_HEADER] == REFUSED
        assert hub.stats()["registered_in_upgrade"] == 0
