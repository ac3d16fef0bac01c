"""Event thumbnails: the best frame of an event, privacy masks blacked out, as JPEG."""

from __future__ import annotations

from collections.abc import Sequence

import av
import cv2
import numpy as np
from av.video.reformatter import VideoReformatter

from edge.masks import polygon_mask


class ThumbnailMaker:
    """Converts decoded frames to small colour images; one per camera worker.

    The converter context is reused (building one per frame costs more than the
    conversion), and a frame is only converted when it becomes an event's best frame.
    """

    def __init__(self, width: int, quality: int, masks: Sequence[Sequence[Sequence[float]]] = ()) -> None:
        self._width = width
        self._quality = quality
        self._masks = [list(map(list, poly)) for poly in masks]
        self._reformatter = VideoReformatter()
        self._mask_cache: tuple[tuple[int, int], np.ndarray] | None = None

    def capture(self, frame: av.VideoFrame | np.ndarray) -> np.ndarray:
        """A BGR copy of `frame` (a decoded frame, or a grey or BGR array), at most `width`
        wide, with privacy masks blacked out."""
        frame_h, frame_w = (
            (frame.shape[0], frame.shape[1]) if isinstance(frame, np.ndarray) else (frame.height, frame.width)
        )
        width = min(self._width, frame_w)
        height = max(2, round(frame_h * width / frame_w / 2) * 2)
        if isinstance(frame, np.ndarray):
            image = _bgr(cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA))
        else:
            image = self._reformatter.reformat(frame, width=width, height=height, format="bgr24").to_ndarray()
        if self._masks:
            image[self._mask(width, height)] = 0
        return image

    def _mask(self, width: int, height: int) -> np.ndarray:
        if self._mask_cache is None or self._mask_cache[0] != (width, height):
            self._mask_cache = ((width, height), polygon_mask(self._masks, width, height))
        return self._mask_cache[1]

    def encode(self, image: np.ndarray) -> bytes:
        ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, self._quality])
        if not ok:
            raise ValueError("JPEG encoding failed")
        return data.tobytes()


def _bgr(image: np.ndarray) -> np.ndarray:
    """A grey array as BGR (a BGR one as it is): the JPEG is always in colour."""
    return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR) if image.ndim == 2 else image
