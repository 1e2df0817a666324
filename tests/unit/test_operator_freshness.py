"""The operator reports the freshness of the camera it drives from, not of any camera."""

from __future__ import annotations

from teledrive.operator.client import OperatorClient
from teledrive.shared import messages as m


class Clock:
    def __init__(self) -> None:
        self.now_s = 100.0

    def __call__(self) -> float:
        return self.now_s


def test_a_frozen_primary_is_not_hidden_by_a_streaming_thumbnail() -> None:
    clock = Clock()
    client = OperatorClient("ws://127.0.0.1:9", "van", clock=clock)
    assert client.primary_video_age_ms() is None  # nothing seen yet: no report
    client._last_frame_by_camera.update({"front": 100.0, "rear": 100.0})
    client.video_status = m.VideoStatus(primary="front", cameras={})
    clock.now_s = 100.5
    client._last_frame_by_camera["rear"] = 100.5  # the thumbnail keeps streaming
    assert client.primary_video_age_ms() == 500.0
    client.video_status = m.VideoStatus(primary="rear", cameras={})
    assert client.primary_video_age_ms() == 0.0
