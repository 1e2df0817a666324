"""The network side's thread plumbing: mailbox, frame conversion, events to the client thread."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import av
import numpy as np
import pytest
from PySide6.QtGui import QImage

from teledrive.operator.console.bridge import ClientThread, FrameMailbox
from teledrive.operator.console.controls import ConsoleCommandSource
from teledrive.operator.console.video_view import frame_to_qimage
from teledrive.shared import messages as m

UNREACHABLE_HUB = "ws://127.0.0.1:9"


def test_mailbox_keeps_only_the_newest_per_camera() -> None:
    box = FrameMailbox()
    assert box.put("front", 1)
    assert not box.put("front", 2)
    assert not box.put("rear", 3)
    assert box.take() == {"front": 2, "rear": 3}
    assert box.replaced == 1
    assert box.take() == {}
    assert box.put("front", 4)  # empty again: the reader needs a new nudge


def test_frame_to_qimage_keeps_pixels() -> None:
    rgb = np.zeros((6, 10, 3), dtype=np.uint8)
    rgb[2, 3] = (200, 100, 50)
    image = frame_to_qimage(av.VideoFrame.from_ndarray(rgb, format="rgb24"))
    assert (image.width(), image.height()) == (10, 6)
    assert image.format() == QImage.Format.Format_RGB888
    color = image.pixelColor(3, 2)
    assert (color.red(), color.green(), color.blue()) == (200, 100, 50)


class FakeFrame:
    pts = 3000


@pytest.fixture
def link() -> Iterator[ClientThread]:
    source = ConsoleCommandSource(lambda: 0.0)
    nudges: list[int] = []
    thread = ClientThread(
        UNREACHABLE_HUB,
        source=source,
        frames=FrameMailbox(),
        notify_frame=lambda: nudges.append(1),
        image_from_frame=lambda frame: ("image", frame.pts),
    )
    thread.start(None)
    yield thread
    thread.stop()
    assert not thread._thread or not thread._thread.is_alive()


def _flush(link: ClientThread) -> None:
    """Waits until everything scheduled on the client loop before this call has run."""
    done = threading.Event()
    link._call(done.set)
    assert done.wait(5.0)


def test_event_without_a_session_is_counted_not_lost_silently(link: ClientThread) -> None:
    link.send_event(m.Estop(reason="test"))
    _flush(link)
    assert link.events_unsent == 1
    assert link.events_sent == []


def test_frames_on_the_client_thread_reach_the_mailbox_and_the_lockout(link: ClientThread) -> None:
    link._call(link._on_video, "front", FakeFrame())
    link._call(link._on_video, "front", FakeFrame())
    _flush(link)
    assert link.frames.take() == {"front": ("image", 3000)}
    assert link.frames.replaced == 1
    assert link.source.status().lockout.video_age_ms == 0.0


def test_fleet_only_snapshot_says_hub_offline(link: ClientThread) -> None:
    _flush(link)
    snapshot = link.snapshot()
    assert snapshot.vehicle_id is None
    assert not snapshot.session_open


def test_primary_camera_is_the_vehicles_first_not_the_first_to_arrive(link: ClientThread) -> None:
    _flush(link)  # the start-up switch to "fleet only" has run
    link._call(setattr, link, "_vehicle_id", "van-01")
    info = m.VehicleInfo(id="van-01", cameras=["front", "rear"])
    link._call(link._on_message, m.VehicleList(vehicles=[m.VehicleInfo(id="other"), info]))
    link._call(link._on_video, "rear", FakeFrame())
    link._call(link._on_video, "front", FakeFrame())
    _flush(link)
    assert link.primary_camera == "front"
    assert link._cameras == ("front", "rear")
    assert set(link.frames.take()) == {"front", "rear"}
    assert [type(x) for x in link.drain_messages()] == [m.VehicleList]
