"""What the signaling client tests share: clients with inboxes, started and stopped.

The fixtures (``hub``, ``clients``) are in this folder's ``conftest.py``.
"""

from __future__ import annotations

import asyncio
import os
import random
from typing import Any

from teledrive.operator.hub import Hub
from teledrive.operator.presence import Role
from teledrive.shared.messages import Register, SignalMessage
from teledrive.shared.signaling import SignalingClient

TIME_SCALE = float(os.environ.get("TELEDRIVE_TIME_SCALE", "1"))
WAIT_S = 5.0 * TIME_SCALE
HEARTBEAT_S = 1.0  # the hub's longest: healthy peers on a loaded machine are not dropped


class Inbox:
    """Collects what a client dispatches, so tests can wait for it."""

    def __init__(self) -> None:
        self.messages: asyncio.Queue[SignalMessage] = asyncio.Queue()
        self.connected: asyncio.Queue[None] = asyncio.Queue()
        self.disconnected: asyncio.Queue[None] = asyncio.Queue()

    def on_message(self, message: SignalMessage) -> None:
        self.messages.put_nowait(message)

    async def on_connected(self) -> None:
        self.connected.put_nowait(None)

    def on_disconnected(self) -> None:
        self.disconnected.put_nowait(None)

    async def next(self, queue: asyncio.Queue[Any]) -> Any:
        async with asyncio.timeout(WAIT_S):
            return await queue.get()


class Running:
    """A client with its inbox and its run() task."""

    def __init__(self, client: SignalingClient, inbox: Inbox) -> None:
        self.client = client
        self.inbox = inbox
        self.task = asyncio.create_task(client.run())

    async def stop(self) -> None:
        await self.client.close()
        async with asyncio.timeout(WAIT_S):
            await self.task


def start(clients: list[Running], url: str, role: Role, peer_id: str, **kwargs: Any) -> Running:
    """Starts a client registering as ``role``/``peer_id``; ``kwargs`` go to SignalingClient."""
    inbox = Inbox()
    options: dict[str, Any] = {"backoff_initial_s": 0.05, "backoff_max_s": 0.2}
    client = SignalingClient(
        url,
        Register(role=role, id=peer_id),
        on_message=inbox.on_message,
        on_connected=inbox.on_connected,
        on_disconnected=inbox.on_disconnected,
        rng=random.Random(1),
        **(options | kwargs),
    )
    running = Running(client, inbox)
    clients.append(running)
    return running


def url_of(hub: Hub) -> str:
    return f"ws://127.0.0.1:{hub.bound_port}"
