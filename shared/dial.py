"""Opening the TCP connection under a hub websocket, apart from its upgrade.

The signaling client registers in its upgrade request (see
:mod:`~teledrive.shared.register_header`), so an upgrade that reaches the hub registers. A
vehicle back from a cut dials several connections at once (the first ones wait on lost SYNs):
if each of them went on to its upgrade, each would register, and each registration would
replace the one before it at the hub. So the client opens the TCP connection first with
:func:`open_tcp`, and only a connection that finds no other one upgrading goes on to its
upgrade (``websockets`` takes the open socket as ``sock``).
"""

from __future__ import annotations

import asyncio
import socket

from websockets.uri import parse_uri


async def open_tcp(url: str) -> socket.socket:
    """A connected, non-blocking TCP socket to the host and port of a ``ws://``/``wss://`` URL.

    The host's addresses are tried in the order the resolver gives them, as
    :func:`asyncio.loop.create_connection` does; no proxy is used.

    Raises:
        OSError: no address could be connected to (the last address's error).
    """
    uri = parse_uri(url)
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(uri.host, uri.port, type=socket.SOCK_STREAM)
    error: OSError = OSError(f"{uri.host}:{uri.port}: no address")
    for family, kind, proto, _, address in infos:
        sock = socket.socket(family, kind, proto)
        try:
            sock.setblocking(False)
            await loop.sock_connect(sock, address)
        except OSError as err:
            sock.close()
            error = err
            continue
        except BaseException:
            sock.close()
            raise
        return sock
    raise error
