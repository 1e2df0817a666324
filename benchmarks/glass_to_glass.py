"""Glass-to-glass latency: stock aiortc receive path vs teledrive's, same content, one run.

Two processes, as in deployment: a vehicle process (synthetic camera -> CameraVideoTrack ->
aiortc sender, H.264) and an operator process (this one: aiortc receiver, stock or with
teledrive's FastJitterBuffer). Both use the system-wide monotonic clock, so

    glass-to-glass = time the decoded picture is returned by the remote track's recv()
                     - time the camera thread handed that frame to the sending track

matched frame by frame through the counter bar code drawn into each picture. Each phase
opens fresh peer connections, warms up, then measures. CPU is the share of one core used by
each process during the measured window: ``*_cpu_percent`` the receiving (operator) process,
``*_sender_cpu_percent`` the sending (vehicle) process.

Phases per resolution: ``stock`` = aiortc's encoder and receiver (teledrive's camera only);
``teledrive`` = teledrive's encoder and receive path; ``stock_receive`` = teledrive's sender
with aiortc's receiver, to show what the receive path alone gains (``ratio_receive_p50``).

Usage: python benchmarks/glass_to_glass.py [--json] [--seconds S] [--warmup-frames N]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import multiprocessing as mp
import statistics
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

import psutil
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

from teledrive.operator.video_receive import install_fast_jitter_buffer, luma_plane
from teledrive.vehicle.camera import Camera, SyntheticSource, read_frame_counter
from teledrive.vehicle.h264_encoder import H264Settings
from teledrive.vehicle.video_track import CameraVideoTrack, add_camera_track

FPS = 30
RESOLUTIONS = {"": (640, 480), "_720p": (1280, 720)}
# (name, teledrive receive path, teledrive encoder). "stock" is aiortc's media path end to
# end (only the camera is teledrive's); "stock_receive" isolates the receive path: teledrive's
# sender, aiortc's receiver.
PHASES = (
    ("stock", False, False),
    ("teledrive", True, True),
    ("stock_receive", False, True),
)


# -- vehicle process ---------------------------------------------------------------------


def vehicle_main(
    conn: Connection, sizes: list[tuple[int, int]], fps: float, own_encoder: bool
) -> None:
    """Child process: stream one synthetic camera per size until told to stop."""
    asyncio.run(_vehicle(conn, sizes, fps, own_encoder))


async def _vehicle(
    conn: Connection, sizes: list[tuple[int, int]], fps: float, own_encoder: bool
) -> None:
    loop = asyncio.get_running_loop()
    cameras = []
    captures: list[dict[int, float]] = []
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    tracks = []
    for n, (width, height) in enumerate(sizes):
        name = f"cam{n}"
        camera = Camera(
            lambda w=width, h=height, nm=name: SyntheticSource(w, h, fps, name=nm),
            name=name,
            fps=fps,
        )
        capture: dict[int, float] = {}
        camera.subscribe(lambda f, c=capture: c.__setitem__(f.index, f.capture_time_s))
        track = CameraVideoTrack(camera, h264=H264Settings(fps=fps) if own_encoder else None)
        add_camera_track(pc, track)
        cameras.append(camera)
        captures.append(capture)
        tracks.append(track)
        camera.start()
    await pc.setLocalDescription(await pc.createOffer())
    conn.send({"offer": pc.localDescription.sdp})
    answer = await loop.run_in_executor(None, conn.recv)
    await pc.setRemoteDescription(RTCSessionDescription(answer["answer"], "answer"))
    await loop.run_in_executor(None, conn.recv)  # "stop"
    stats = {
        "captures": captures,
        "camera_fps": [c.fps for c in cameras],
        "frames_sent": [t.frames_sent for t in tracks],
        "frames_skipped": [t.frames_skipped for t in tracks],
        "frames_self_encoded": [t.frames_self_encoded for t in tracks],
    }
    await pc.close()
    for camera in cameras:
        camera.stop()
    conn.send(stats)


# -- operator side -------------------------------------------------------------------------


@dataclass
class Received:
    """Per remote track: (decode-available time, counter) of every frame."""

    warmup_frames: int
    arrivals: list[tuple[float, int | None]] = field(default_factory=list)
    shapes: set[tuple[int, int]] = field(default_factory=set)
    warm: asyncio.Event = field(default_factory=asyncio.Event)


async def _consume(track: Any, received: Received, stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            frame = await track.recv()
        except Exception:  # MediaStreamError at shutdown ends the loop
            return
        available_s = time.monotonic()
        received.arrivals.append((available_s, read_frame_counter(luma_plane(frame))))
        received.shapes.add((frame.width, frame.height))
        if len(received.arrivals) >= received.warmup_frames:
            received.warm.set()


@dataclass
class Phase:
    """One measured session: latencies and CPU."""

    latencies_ms: list[float]
    fps: list[float]
    receiver_cpu_percent: float
    sender_cpu_percent: float
    sender_stats: dict[str, Any]
    jitter_stats: list[dict[str, int]]


async def run_phase(
    sizes: list[tuple[int, int]],
    *,
    fast: bool,
    own_encoder: bool,
    warmup_frames: int,
    seconds: float,
    fps: float = FPS,
) -> Phase:
    """Start a vehicle process, receive its cameras, measure, stop it."""
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    process = ctx.Process(target=vehicle_main, args=(child, sizes, fps, own_encoder), daemon=True)
    process.start()
    loop = asyncio.get_running_loop()
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    received = [Received(warmup_frames) for _ in sizes]
    stop = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []
    buffers = []
    try:
        offer = await loop.run_in_executor(None, parent.recv)
        await pc.setRemoteDescription(RTCSessionDescription(offer["offer"], "offer"))
        video = [t for t in pc.getTransceivers() if t.kind == "video"]
        if fast:
            buffers = [install_fast_jitter_buffer(t.receiver) for t in video]
        await pc.setLocalDescription(await pc.createAnswer())
        parent.send({"answer": pc.localDescription.sdp})
        for transceiver, rec in zip(video, received, strict=True):
            tasks.append(asyncio.ensure_future(_consume(transceiver.receiver.track, rec, stop)))
        await asyncio.wait_for(asyncio.gather(*(r.warm.wait() for r in received)), 60)
        me, vehicle = psutil.Process(), psutil.Process(process.pid)
        t0 = time.monotonic()
        cpu_me0, cpu_vehicle0 = sum(me.cpu_times()[:2]), sum(vehicle.cpu_times()[:2])
        start_counts = [len(r.arrivals) for r in received]
        await asyncio.sleep(seconds)
        t1 = time.monotonic()
        cpu_me1, cpu_vehicle1 = sum(me.cpu_times()[:2]), sum(vehicle.cpu_times()[:2])
        end_counts = [len(r.arrivals) for r in received]
        stop.set()
        parent.send("stop")
        sender_stats = await loop.run_in_executor(None, parent.recv)
    finally:
        await pc.close()
        for task in tasks:
            task.cancel()
        process.join(10)
    window_s = t1 - t0
    latencies = []
    for rec, capture, a, b in zip(
        received, sender_stats["captures"], start_counts, end_counts, strict=True
    ):
        for available_s, counter in rec.arrivals[a:b]:
            if counter is not None and counter + 1 in capture:
                latencies.append(1000 * (available_s - capture[counter + 1]))
    return Phase(
        latencies_ms=latencies,
        fps=[(b - a) / window_s for a, b in zip(start_counts, end_counts, strict=True)],
        receiver_cpu_percent=100 * (cpu_me1 - cpu_me0) / window_s,
        sender_cpu_percent=100 * (cpu_vehicle1 - cpu_vehicle0) / window_s,
        sender_stats={k: v for k, v in sender_stats.items() if k != "captures"},
        jitter_stats=[dataclasses.asdict(b.stats) for b in buffers],
    )


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[k]


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    result: dict[str, Any] = {"fps": FPS, "seconds_per_phase": args.seconds}
    for suffix, size in RESOLUTIONS.items():
        phases = {}
        for name, fast, own_encoder in PHASES:
            phases[name] = await run_phase(
                [size],
                fast=fast,
                own_encoder=own_encoder,
                warmup_frames=args.warmup_frames,
                seconds=args.seconds,
            )
        stock, ours = phases["stock"], phases["teledrive"]
        stock_rx = phases["stock_receive"]
        stock_p50 = statistics.median(stock.latencies_ms)
        ours_p50 = statistics.median(ours.latencies_ms)
        stock_rx_p50 = statistics.median(stock_rx.latencies_ms)
        result.update(
            {
                f"resolution{suffix}": f"{size[0]}x{size[1]}",
                f"stock_p50_ms{suffix}": round(stock_p50, 2),
                f"stock_p95_ms{suffix}": round(percentile(stock.latencies_ms, 95), 2),
                f"teledrive_p50_ms{suffix}": round(ours_p50, 2),
                f"teledrive_p95_ms{suffix}": round(percentile(ours.latencies_ms, 95), 2),
                f"teledrive_max_ms{suffix}": round(max(ours.latencies_ms), 2),
                f"ratio_p50{suffix}": round(stock_p50 / ours_p50, 2),
                f"stock_receive_p50_ms{suffix}": round(stock_rx_p50, 2),
                f"ratio_receive_p50{suffix}": round(stock_rx_p50 / ours_p50, 2),
                f"stock_frames{suffix}": len(stock.latencies_ms),
                f"teledrive_frames{suffix}": len(ours.latencies_ms),
                f"stock_fps{suffix}": round(stock.fps[0], 1),
                f"teledrive_fps{suffix}": round(ours.fps[0], 1),
                f"stock_cpu_percent{suffix}": round(stock.receiver_cpu_percent, 1),
                f"teledrive_cpu_percent{suffix}": round(ours.receiver_cpu_percent, 1),
                f"stock_sender_cpu_percent{suffix}": round(stock.sender_cpu_percent, 1),
                f"teledrive_sender_cpu_percent{suffix}": round(ours.sender_cpu_percent, 1),
                f"teledrive_jitter_stats{suffix}": ours.jitter_stats[0],
            }
        )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print only the JSON object")
    parser.add_argument("--seconds", type=float, default=6.0, help="measured seconds per phase")
    parser.add_argument("--warmup-frames", type=int, default=30)
    args = parser.parse_args()
    result = asyncio.run(main_async(args))
    if not args.json:
        for key, value in result.items():
            print(f"{key:40s} {value}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
