"""Camera capture: frame sources and a reader thread that keeps only the newest frame.

A queued camera frame is pure latency, so :class:`Camera` runs one reader thread per device
that overwrites a single slot; consumers ask for the newest frame (:meth:`Camera.latest`) or
wait for one newer than the last they used (:meth:`Camera.wait_newer`, :meth:`Camera.subscribe`).

Sources sit behind :class:`FrameSource`: :class:`OpenCVSource` for real devices and
:class:`SyntheticSource`, a virtual camera drawing a moving scene with the frame counter
written as a block bar code that :func:`read_frame_counter` reads back from a decoded
picture (compression-robust, no OCR).
"""

from __future__ import annotations

import abc
import collections
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

from teledrive.shared.errors import ConfigError, LinkError

logger = logging.getLogger(__name__)

Image = npt.NDArray[np.uint8]
"""A BGR picture, shape (height, width, 3), or a luma plane, shape (height, width)."""

# Bar code layout: BARCODE_ROWS x BARCODE_COLS cells of BARCODE_CELL_PX square pixels in the
# top-left corner, aligned to the 16-pixel macroblock grid so that compression blurs cells
# only at their edges. 24 counter bits followed by an 8-bit check byte.
BARCODE_CELL_PX = 16
BARCODE_COLS = 16
BARCODE_ROWS = 2
BARCODE_COUNTER_BITS = 24
BARCODE_CHECK_BITS = 8
BARCODE_WIDTH_PX = BARCODE_COLS * BARCODE_CELL_PX
BARCODE_HEIGHT_PX = BARCODE_ROWS * BARCODE_CELL_PX
_COUNTER_MASK = (1 << BARCODE_COUNTER_BITS) - 1
_CHECK_SALT = 0xA5
_LUMA_THRESHOLD = 128
_SAMPLE_MARGIN_PX = 4
_QUEUE_POLL_S = 0.05  # how often a blocked QueueSource.read checks for close

MIN_SYNTHETIC_WIDTH_PX = BARCODE_WIDTH_PX
MIN_SYNTHETIC_HEIGHT_PX = 2 * BARCODE_HEIGHT_PX


def _check_byte(counter: int) -> int:
    byte_sum = (counter & 0xFF) + ((counter >> 8) & 0xFF) + ((counter >> 16) & 0xFF)
    return (byte_sum & 0xFF) ^ _CHECK_SALT


def _barcode_bits(counter: int) -> list[int]:
    value = counter & _COUNTER_MASK
    word = (value << BARCODE_CHECK_BITS) | _check_byte(value)
    total_bits = BARCODE_COUNTER_BITS + BARCODE_CHECK_BITS
    return [(word >> (total_bits - 1 - i)) & 1 for i in range(total_bits)]


def draw_frame_counter(image: Image, counter: int) -> None:
    """Write ``counter`` (mod 2**24) as a black/white block bar code into the top-left corner.

    Args:
        image: BGR picture at least :data:`BARCODE_WIDTH_PX` x :data:`BARCODE_HEIGHT_PX`;
            modified in place.
        counter: the value to encode; only its low 24 bits are kept.
    """
    for i, bit in enumerate(_barcode_bits(counter)):
        row, col = divmod(i, BARCODE_COLS)
        y = row * BARCODE_CELL_PX
        x = col * BARCODE_CELL_PX
        image[y : y + BARCODE_CELL_PX, x : x + BARCODE_CELL_PX] = 255 if bit else 0


def read_frame_counter(image: Image) -> int | None:
    """Read back the counter written by :func:`draw_frame_counter`.

    Samples the centre of each cell, so blurred edges from lossy compression do not matter.

    Args:
        image: a BGR picture or a luma (Y) plane, e.g. a decoded frame's ``planes[0]``.

    Returns:
        The 24-bit counter, or None if the picture is too small or the check byte does not
        match (no bar code, or one damaged beyond reading).
    """
    if image.ndim not in (2, 3) or image.shape[0] < BARCODE_HEIGHT_PX:
        return None
    if image.shape[1] < BARCODE_WIDTH_PX:
        return None
    corner = image[:BARCODE_HEIGHT_PX, :BARCODE_WIDTH_PX]
    if corner.ndim == 3:
        corner = corner.mean(axis=2)
    cells = corner.reshape(BARCODE_ROWS, BARCODE_CELL_PX, BARCODE_COLS, BARCODE_CELL_PX)
    inner = slice(_SAMPLE_MARGIN_PX, BARCODE_CELL_PX - _SAMPLE_MARGIN_PX)
    means = cells[:, inner, :, inner].mean(axis=(1, 3)).reshape(-1)
    word = 0
    for mean in means:
        word = (word << 1) | int(mean >= _LUMA_THRESHOLD)
    counter = word >> BARCODE_CHECK_BITS
    if word & 0xFF != _check_byte(counter):
        return None
    return counter


class FrameSource(abc.ABC):
    """A camera device: blocking reads of BGR frames, one reader thread at a time."""

    @abc.abstractmethod
    def read(self) -> Image | None:
        """Block until the next frame and return it (BGR, uint8), or None if the device failed."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the device. Safe to call more than once."""

    def interrupt(self) -> None:  # noqa: B027  (optional hook, deliberately empty)
        """Make a blocked :meth:`read` return soon (called from another thread on stop).

        The default does nothing, which is right for sources whose ``read`` returns within
        a frame period anyway.
        """


class SyntheticSource(FrameSource):
    """A virtual camera: a moving scene, a large frame counter, and the counter as a bar code.

    Paces itself to ``fps`` (``read`` blocks until the next frame is due), like a real camera.

    Args:
        width: picture width in pixels (at least :data:`MIN_SYNTHETIC_WIDTH_PX`).
        height: picture height in pixels (at least :data:`MIN_SYNTHETIC_HEIGHT_PX`).
        fps: frame rate, > 0.
        name: label drawn into the picture.
        clock: monotonic clock in seconds (injectable for tests).
        sleep: sleep function used for pacing (injectable for tests).

    Raises:
        ConfigError: if the size or frame rate is out of range.
    """

    def __init__(
        self,
        width: int,
        height: int,
        fps: float,
        *,
        name: str = "synthetic",
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if width < MIN_SYNTHETIC_WIDTH_PX or height < MIN_SYNTHETIC_HEIGHT_PX:
            raise ConfigError(
                f"camera {name!r}: synthetic size {width}x{height} is below the minimum "
                f"{MIN_SYNTHETIC_WIDTH_PX}x{MIN_SYNTHETIC_HEIGHT_PX}"
            )
        if not fps > 0:
            raise ConfigError(f"camera {name!r}: fps must be > 0, got {fps}")
        self._width = width
        self._height = height
        self._period_s = 1.0 / fps
        self._name = name
        self._clock = clock
        self._sleep = sleep
        self._counter = 0
        self._next_due_s: float | None = None
        self._closed = False
        self._background = self._make_background(width, height)

    @staticmethod
    def _make_background(width: int, height: int) -> Image:
        # Twice as wide as the picture so that a moving window over it needs no wrap-around.
        x = np.linspace(0, 4 * np.pi, 2 * width, dtype=np.float32)
        y = np.linspace(0, 2 * np.pi, height, dtype=np.float32)[:, None]
        blue = 127 + 100 * np.sin(x[None, :] + y)
        green = 127 + 100 * np.cos(0.5 * x[None, :] - y)
        red = np.broadcast_to(127 + 100 * np.sin(2 * y), blue.shape)
        return np.ascontiguousarray(np.stack([blue, green, red], axis=2).astype(np.uint8))

    @property
    def frames_drawn(self) -> int:
        """How many frames :meth:`read` has returned."""
        return self._counter

    def _wait_until_due(self) -> None:
        now_s = self._clock()
        if self._next_due_s is None:
            self._next_due_s = now_s
        delay_s = self._next_due_s - now_s
        if delay_s > 0:
            self._sleep(delay_s)
        elif delay_s < -self._period_s:
            # Fell behind by more than a frame: do not burst to catch up, real cameras do not.
            self._next_due_s = now_s
        self._next_due_s += self._period_s

    def render(self, counter: int) -> Image:
        """Draw the picture for frame ``counter`` (no pacing)."""
        offset_px = (counter * 4) % self._width
        image = self._background[:, offset_px : offset_px + self._width].copy()
        box_px = self._height // 4
        box_x = (counter * 7) % max(1, self._width - box_px)
        box_y = self._height // 2
        cv2.rectangle(image, (box_x, box_y), (box_x + box_px, box_y + box_px), (20, 20, 220), -1)
        scale = self._height / 160.0
        cv2.putText(
            image,
            f"{self._name} {counter}",
            (8, BARCODE_HEIGHT_PX + int(40 * scale)),
            cv2.FONT_HERSHEY_SIMPLEX,
            scale,
            (255, 255, 255),
            max(1, int(2 * scale)),
        )
        draw_frame_counter(image, counter)
        return image

    def read(self) -> Image | None:
        """Return the next frame once it is due; None once closed."""
        if self._closed:
            return None
        self._wait_until_due()
        image = self.render(self._counter)
        self._counter += 1
        return image

    def close(self) -> None:
        """Stop producing frames."""
        self._closed = True


class QueueSource(FrameSource):
    """A virtual device fed by code: :meth:`put` an image, or None to make it "unplug".

    ``read`` blocks until something is put or the source is closed, like a real camera
    waiting for its next frame. For tests, and for feeding pictures from another pipeline.
    """

    def __init__(self) -> None:
        self._frames: queue.Queue[Image | None] = queue.Queue()
        self._closed = threading.Event()

    def put(self, image: Image | None) -> None:
        """Delivers ``image`` to the next ``read`` (None: the device disappears)."""
        self._frames.put(image)

    @property
    def closed(self) -> bool:
        """Whether the source was closed or interrupted."""
        return self._closed.is_set()

    def read(self) -> Image | None:
        """The next image put, or None when unplugged or closed."""
        while not self._closed.is_set():
            try:
                return self._frames.get(timeout=_QUEUE_POLL_S)
            except queue.Empty:
                continue
        return None

    def close(self) -> None:
        """Closes the source; a blocked ``read`` returns None."""
        self._closed.set()

    def interrupt(self) -> None:
        """Unblocks ``read`` (the camera is stopping)."""
        self._closed.set()


class OpenCVSource(FrameSource):
    """A V4L2/USB/RTSP camera through OpenCV, with a one-frame driver buffer.

    Args:
        device: device index (``0`` for /dev/video0) or a path/URL.
        width: requested width in pixels.
        height: requested height in pixels.
        fps: requested frame rate.

    Raises:
        LinkError: if the device cannot be opened.
    """

    def __init__(self, device: int | str, width: int, height: int, fps: float) -> None:
        self._device = device
        self._capture = cv2.VideoCapture(device)
        if not self._capture.isOpened():
            self._capture.release()
            raise LinkError(f"camera device {device!r}: cannot open")
        # Queued frames are latency: keep at most one in the driver.
        self._capture.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        self._capture.set(cv2.CAP_PROP_FRAME_WIDTH, width)
        self._capture.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
        self._capture.set(cv2.CAP_PROP_FPS, fps)

    def read(self) -> Image | None:
        """Return the next frame, or None if the device failed (unplugged, stream ended)."""
        ok, image = self._capture.read()
        if not ok or image is None:
            return None
        return np.asarray(image, dtype=np.uint8)

    def close(self) -> None:
        """Release the device."""
        self._capture.release()


@dataclass(frozen=True, slots=True)
class CapturedFrame:
    """One captured picture.

    Attributes:
        image: the BGR picture.
        capture_time_s: the camera clock when the reader thread got it, in seconds.
        index: 1 for the first frame this camera captured, increasing by one per frame.
    """

    image: Image
    capture_time_s: float
    index: int


FrameListener = Callable[[CapturedFrame], None]


class Camera:
    """One reader thread per device that keeps only the newest frame.

    The device is opened by ``source_factory`` in the reader thread; when it fails (factory
    raises, or ``read`` returns None) the camera closes it, waits (exponential backoff from
    ``retry_min_s`` to ``retry_max_s``) and opens it again.

    Args:
        source_factory: opens the device and returns a :class:`FrameSource`.
        name: camera name for logs ("front", "rear", ...).
        fps: nominal frame rate (used for the fps window and reported figures).
        clock: monotonic clock in seconds that stamps capture times.
        retry_min_s: first backoff after a device failure.
        retry_max_s: longest backoff.

    Raises:
        ConfigError: if fps or the retry bounds are out of range.
    """

    def __init__(
        self,
        source_factory: Callable[[], FrameSource],
        *,
        name: str,
        fps: float,
        clock: Callable[[], float] = time.monotonic,
        retry_min_s: float = 0.1,
        retry_max_s: float = 2.0,
    ) -> None:
        if not fps > 0:
            raise ConfigError(f"camera {name!r}: fps must be > 0, got {fps}")
        if not 0 < retry_min_s <= retry_max_s:
            raise ConfigError(
                f"camera {name!r}: need 0 < retry_min_s <= retry_max_s, "
                f"got {retry_min_s} and {retry_max_s}"
            )
        self._factory = source_factory
        self.name = name
        self.nominal_fps = fps
        self._clock = clock
        self._retry_min_s = retry_min_s
        self._retry_max_s = retry_max_s
        self._cond = threading.Condition()
        self._latest: CapturedFrame | None = None
        self._listeners: list[FrameListener] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._source: FrameSource | None = None
        self._recent_s: collections.deque[float] = collections.deque(maxlen=max(2, int(fps) + 1))
        self.device_failures = 0
        """How many times the device failed to open or stopped delivering frames."""

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Start the reader thread (idempotent)."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"camera-{self.name}", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop the reader thread and close the device.

        Args:
            timeout_s: how long to wait for the thread (a blocked device read can delay it).
        """
        self._stop.set()
        source = self._source
        if source is not None:
            source.interrupt()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout_s)
        with self._cond:
            self._cond.notify_all()

    @property
    def running(self) -> bool:
        """Whether the reader thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    # -- consumers -------------------------------------------------------------------------

    def latest(self) -> CapturedFrame | None:
        """The newest frame, or None before the first one."""
        return self._latest

    def wait_newer(self, index: int, timeout_s: float) -> CapturedFrame | None:
        """Block until a frame with ``index`` greater than the given one exists.

        Args:
            index: the index of the last frame the caller used (0 for none).
            timeout_s: longest wait in seconds.

        Returns:
            The newest frame (possibly several ahead of ``index``), or None on timeout or stop.
        """
        with self._cond:
            self._cond.wait_for(
                lambda: (
                    self._stop.is_set() or (self._latest is not None and self._latest.index > index)
                ),
                timeout_s,
            )
            frame = self._latest
        if frame is None or frame.index <= index:
            return None
        return frame

    def subscribe(self, listener: FrameListener) -> Callable[[], None]:
        """Call ``listener`` from the reader thread on every new frame.

        The listener must be quick and must not block (e.g. ``loop.call_soon_threadsafe``).

        Returns:
            A function that removes the listener.
        """
        with self._cond:
            self._listeners.append(listener)

        def unsubscribe() -> None:
            with self._cond:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return unsubscribe

    @property
    def fps(self) -> float:
        """Measured frame rate over about the last second (0 until two frames exist)."""
        with self._cond:
            times = list(self._recent_s)
        if len(times) < 2 or times[-1] <= times[0]:
            return 0.0
        return (len(times) - 1) / (times[-1] - times[0])

    # -- reader thread ---------------------------------------------------------------------

    def _publish(self, image: Image) -> None:
        capture_time_s = self._clock()
        with self._cond:
            index = 1 if self._latest is None else self._latest.index + 1
            frame = CapturedFrame(image=image, capture_time_s=capture_time_s, index=index)
            self._latest = frame
            self._recent_s.append(capture_time_s)
            listeners = list(self._listeners)
            self._cond.notify_all()
        for listener in listeners:
            listener(frame)

    def _open(self) -> FrameSource | None:
        try:
            return self._factory()
        except Exception as exc:  # any driver failure: log, count, retry after backoff
            self.device_failures += 1
            logger.warning("camera %s: cannot open device: %s", self.name, exc)
            return None

    def _run(self) -> None:
        backoff_s = self._retry_min_s
        while not self._stop.is_set():
            source = self._open()
            if source is None:
                self._stop.wait(backoff_s)
                backoff_s = min(2 * backoff_s, self._retry_max_s)
                continue
            self._source = source
            try:
                delivered = self._pump(source)
            finally:
                self._source = None
                source.close()
            if self._stop.is_set():
                break
            self.device_failures += 1
            logger.warning("camera %s: device stopped delivering frames; reopening", self.name)
            if delivered:
                backoff_s = self._retry_min_s
            self._stop.wait(backoff_s)
            backoff_s = min(2 * backoff_s, self._retry_max_s)

    def _pump(self, source: FrameSource) -> bool:
        """Read frames until the source fails or the camera stops; True if any arrived."""
        delivered = False
        while not self._stop.is_set():
            image = source.read()
            if image is None:
                return delivered
            delivered = True
            self._publish(image)
        return delivered
