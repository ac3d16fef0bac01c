"""JPEG encoding under a byte budget: thumbnails, snapshots and the mosaic must fit the
broker's message limit (`mqtt.max_message_bytes`), or the broker refuses them.

Quality goes down first (a picture stays the same size on the screen), then the
picture is scaled down; a bounded number of encodes, so the cost stays a few
milliseconds. `None` when even the smallest allowed picture does not fit: the caller
then sends no image at all rather than one too large to deliver.
"""

from __future__ import annotations

import math
import threading

import cv2
import numpy as np

MIN_QUALITY = 35  # below this JPEG blocks make faces and plates unreadable anyway
MIN_WIDTH = 160  # a picture narrower than this is not worth sending
_MAX_SCALINGS = 4
JPEG_MAGIC = b"\xff\xd8\xff"


class ShrinkCounter:
    """How many images were re-encoded smaller or given up to fit, for stats; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.shrunk = 0
        self.too_large = 0

    def count(self, shrunk: bool) -> None:
        with self._lock:
            if shrunk:
                self.shrunk += 1
            else:
                self.too_large += 1


COUNTER = ShrinkCounter()  # the process's figures (camera threads, the mosaic, the MQTT link)


def encode(image: np.ndarray, quality: int) -> bytes:
    """One JPEG encode; ValueError when OpenCV cannot."""
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return data.tobytes()


def _qualities(quality: int) -> list[int]:
    """Lower qualities to try after `quality`: two steps down to MIN_QUALITY."""
    low = min(quality, MIN_QUALITY)
    return sorted({max(low, round(quality - (quality - low) * f)) for f in (0.5, 1.0)} - {quality}, reverse=True)


def encode_under(image: np.ndarray, quality: int, max_bytes: int | None, encoded: bytes | None = None) -> bytes | None:
    """`image` as a JPEG of at most `max_bytes` (None: no limit), as close to `quality` as
    fits. `encoded`: the image already encoded at `quality`, if the caller has it."""
    data = encoded if encoded is not None else encode(image, quality)
    if max_bytes is None or len(data) <= max_bytes:
        return data
    for lower in _qualities(quality):
        data = encode(image, lower)
        if len(data) <= max_bytes:
            COUNTER.count(shrunk=True)
            return data
    low = min(quality, MIN_QUALITY)
    for _ in range(_MAX_SCALINGS):
        # JPEG size grows about with the pixel count: scale by the square root, with a margin.
        scale = math.sqrt(max_bytes / len(data)) * 0.9
        width = int(image.shape[1] * scale)
        if width < MIN_WIDTH:
            break
        image = cv2.resize(image, (width, max(2, int(image.shape[0] * scale))), interpolation=cv2.INTER_AREA)
        data = encode(image, low)
        if len(data) <= max_bytes:
            COUNTER.count(shrunk=True)
            return data
    COUNTER.count(shrunk=False)
    return None


def is_jpeg(payload: bytes) -> bool:
    return payload.startswith(JPEG_MAGIC)


def fit(jpeg: bytes, max_bytes: int, quality: int = 75) -> bytes | None:
    """An already encoded JPEG re-encoded under `max_bytes` (a queued thumbnail the broker
    turned out to refuse); None when it cannot be read or made to fit."""
    if len(jpeg) <= max_bytes:
        return jpeg
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        COUNTER.count(shrunk=False)
        return None
    return encode_under(image, quality, max_bytes)
