"""Presence and session routing of the hub, behind an interface.

The hub asks a :class:`PresenceStore` who is online and which sessions are open; it keeps the
live websocket connections to itself. :class:`MemoryPresence` serves one hub. Several hubs can
later share presence through an existing engine (Redis hashes for the records, pub/sub for the
relay) by implementing the same protocol: such a store keeps a local mirror for the reads and
publishes its writes, so the methods stay synchronous and the hub's decisions stay atomic
within one event-loop step. Deciding who *may* connect or control stays in the hub.
"""

from __future__ import annotations

import builtins
from dataclasses import dataclass
from typing import Literal, Protocol

from teledrive.shared.messages import Status

Role = Literal["vehicle", "operator"]


@dataclass(frozen=True)
class PeerRecord:
    """A registered client as the hub knows it.

    Attributes:
        role: ``vehicle`` or ``operator``.
        id: the client's id, unique per role.
        name: a human-readable name.
        cameras: camera names, primary first (vehicles only).
    """

    role: Role
    id: str
    name: str = ""
    cameras: tuple[str, ...] = ()


@dataclass(frozen=True)
class SessionRecord:
    """An open session between one operator and one vehicle.

    Attributes:
        id: the session id the hub assigned.
        vehicle_id: the vehicle of the session.
        operator_id: the operator of the session.
    """

    id: str
    vehicle_id: str
    operator_id: str

    def peer_of(self, role: Role) -> tuple[Role, str]:
        """The other end of the session, seen from a member with ``role``."""
        if role == "vehicle":
            return ("operator", self.operator_id)
        return ("vehicle", self.vehicle_id)

    def has(self, role: Role, peer_id: str) -> bool:
        """Whether the client ``(role, peer_id)`` is a member of this session."""
        member = self.vehicle_id if role == "vehicle" else self.operator_id
        return member == peer_id


class PresenceStore(Protocol):
    """Who is online and which sessions are open.

    A peer is keyed by ``(role, id)``: a vehicle and an operator may share an id. Registering
    a key that is already present replaces the record. A peer is in at most one session.
    """

    def register(self, peer: PeerRecord) -> None:
        """Records ``peer`` as online, replacing any record with the same key."""

    def unregister(self, role: Role, peer_id: str) -> None:
        """Forgets a peer; unknown keys are ignored."""

    def lookup(self, role: Role, peer_id: str) -> PeerRecord | None:
        """The record of an online peer, or ``None``."""

    def list(self, role: Role) -> builtins.list[PeerRecord]:
        """All online peers of a role, sorted by id."""

    def open_session(self, session: SessionRecord) -> None:
        """Records an open session (its members must not be in another one)."""

    def close_session(self, session_id: str) -> SessionRecord | None:
        """Removes a session and returns it, or ``None`` when it is unknown."""

    def session(self, session_id: str) -> SessionRecord | None:
        """A session by id, or ``None``."""

    def session_of(self, role: Role, peer_id: str) -> SessionRecord | None:
        """The session a peer is in, or ``None``."""

    def sessions(self) -> builtins.list[SessionRecord]:
        """All open sessions."""

    def set_status(self, vehicle_id: str, status: Status) -> Status | None:
        """Keeps a vehicle's latest status; returns the one it replaces."""

    def status_of(self, vehicle_id: str) -> Status | None:
        """A vehicle's latest status, or ``None`` (none yet, or offline)."""


class MemoryPresence:
    """In-process :class:`PresenceStore` for a single hub."""

    def __init__(self) -> None:
        self._peers: dict[tuple[Role, str], PeerRecord] = {}
        self._sessions: dict[str, SessionRecord] = {}
        self._status: dict[str, Status] = {}
        self._session_by_peer: dict[tuple[Role, str], str] = {}

    def register(self, peer: PeerRecord) -> None:  # noqa: D102
        self._peers[(peer.role, peer.id)] = peer

    def unregister(self, role: Role, peer_id: str) -> None:  # noqa: D102
        self._peers.pop((role, peer_id), None)
        if role == "vehicle":
            self._status.pop(peer_id, None)

    def set_status(self, vehicle_id: str, status: Status) -> Status | None:  # noqa: D102
        previous = self._status.get(vehicle_id)
        self._status[vehicle_id] = status
        return previous

    def status_of(self, vehicle_id: str) -> Status | None:  # noqa: D102
        return self._status.get(vehicle_id)

    def lookup(self, role: Role, peer_id: str) -> PeerRecord | None:  # noqa: D102
        return self._peers.get((role, peer_id))

    def list(self, role: Role) -> builtins.list[PeerRecord]:  # noqa: D102
        return sorted((p for p in self._peers.values() if p.role == role), key=lambda p: p.id)

    def open_session(self, session: SessionRecord) -> None:  # noqa: D102
        for key in (("vehicle", session.vehicle_id), ("operator", session.operator_id)):
            if key in self._session_by_peer:
                raise ValueError(f"presence: {key[0]} {key[1]!r} is already in a session")
        self._sessions[session.id] = session
        self._session_by_peer[("vehicle", session.vehicle_id)] = session.id
        self._session_by_peer[("operator", session.operator_id)] = session.id

    def close_session(self, session_id: str) -> SessionRecord | None:  # noqa: D102
        session = self._sessions.pop(session_id, None)
        if session is not None:
            self._session_by_peer.pop(("vehicle", session.vehicle_id), None)
            self._session_by_peer.pop(("operator", session.operator_id), None)
        return session

    def session(self, session_id: str) -> SessionRecord | None:  # noqa: D102
        return self._sessions.get(session_id)

    def session_of(self, role: Role, peer_id: str) -> SessionRecord | None:  # noqa: D102
        session_id = self._session_by_peer.get((role, peer_id))
        return None if session_id is None else self._sessions.get(session_id)

    def sessions(self) -> builtins.list[SessionRecord]:  # noqa: D102
        return builtins.list(self._sessions.values())
