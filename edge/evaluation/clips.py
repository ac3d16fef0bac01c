"""Labelled clips: video files decoded the way the camera worker decodes, plus labels.

Beside `X.mp4`: `X.labels.csv` (one row per decoded frame: `label` 1 motion of
interest, 0 none, -1 ignore) and optionally `X.roi.json`, the region the labels speak
for (anything outside it is not labelled). See `parse_roi` for the accepted forms.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import numpy as np

from edge.source import decode, luma_view, select_streams

Polygon = list[tuple[float, float]]  # points (x, y) in 0..1 frame fractions, as config zones


class ClipError(ValueError):
    """A clip that cannot be scored as it is (labels and video disagree, unreadable ROI)."""


@dataclass
class LabelledClip:
    name: str
    fps: float
    frames: list[np.ndarray]  # luma planes (copies: the decoder reuses its buffers)
    labels: np.ndarray  # int8 per frame: 1 motion, 0 none, -1 ignore
    times: np.ndarray | None = None  # seconds per frame (the stream's timestamps); None: frame / fps
    roi: Polygon | None = None  # where the labels apply (X.roi.json); None: the whole frame

    @property
    def frame_times(self) -> np.ndarray:
        return frame_times(len(self.frames), self.fps) if self.times is None else self.times


def frame_times(n: int, fps: float) -> np.ndarray:
    return np.arange(n, dtype=np.float64) / fps


def read_labels(path: Path) -> np.ndarray:
    with path.open() as handle:
        return np.array([int(row["label"]) for row in csv.DictReader(handle)], dtype=np.int8)


def decode_luma(path: Path) -> Iterator[tuple[float, np.ndarray]]:
    """(time, luma) per frame, through the daemon's own decode path."""
    with av.open(str(path)) as container:
        video, _ = select_streams(container)
        for packet in container.demux(video):
            for frame in decode(packet):
                t = float(frame.time) if frame.time is not None else 0.0
                yield t, luma_view(frame).copy()


def load_clip(path: Path) -> LabelledClip:
    """Decode `path` and read its labels (and ROI, if any). Raises ClipError when the
    decoded frame count differs from the label rows: labels for another encode of the
    clip would be scored against the wrong frames."""
    labels_path = path.with_suffix(".labels.csv")
    decoded = list(decode_luma(path))
    labels = read_labels(labels_path)
    if len(decoded) != len(labels):
        raise ClipError(
            f"{path.name}: {len(decoded)} decoded frames but {len(labels)} label rows in {labels_path.name}"
        )
    if not decoded:
        raise ClipError(f"{path.name}: no frames decoded")
    with av.open(str(path)) as container:
        fps = float(container.streams.video[0].average_rate or 25)
    times = np.array([t for t, _ in decoded], np.float64)
    frames = [luma for _, luma in decoded]
    if np.any(np.diff(times) <= 0):  # no usable timestamps: the nominal rate
        times = frame_times(len(frames), fps)
    roi_path = path.with_suffix(".roi.json")
    roi = read_roi(roi_path, frames[0].shape[1], frames[0].shape[0]) if roi_path.exists() else None
    return LabelledClip(path.stem, fps, frames, labels, times, roi)


ROI_FORMS = (
    "expected an object with x,y,w,h / x,y,width,height / x0,y0,x1,y1 / left,top,right,bottom "
    '(optionally under "roi" or "rect"), a list [x, y, w, h] or a list of [x, y] points, '
    "in pixels or in 0..1 fractions"
)
_RECT_KEYS = (
    (("x", "y", "w", "h"), False),
    (("x", "y", "width", "height"), False),
    (("x0", "y0", "x1", "y1"), True),
    (("left", "top", "right", "bottom"), True),
)


def read_roi(path: Path, width: int, height: int) -> Polygon:
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ClipError(f"{path.name}: not readable JSON ({exc})") from None
    try:
        return parse_roi(data, width, height)
    except ClipError as exc:
        raise ClipError(f"{path.name}: {exc}") from None


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ClipError(f"not a number: {value!r}; {ROI_FORMS}")
    return float(value)


def parse_roi(data: Any, width: int, height: int) -> Polygon:
    """The region as a polygon in 0..1 fractions of a `width` x `height` frame.

    Accepted: an object with x,y,w,h (or x,y,width,height) or x0,y0,x1,y1 (or
    left,top,right,bottom), optionally nested under a key "roi" or "rect"; a list
    [x, y, w, h]; a list of at least 3 [x, y] points (a polygon). Values all <= 1.0 are
    fractions of the frame, otherwise pixels of the clip. Anything else, and a region
    that is empty or leaves the frame, raises ClipError with one line."""
    if isinstance(data, dict) and len(data) == 1 and next(iter(data)) in ("roi", "rect"):
        data = next(iter(data.values()))
    if isinstance(data, dict):
        for keys, corners in _RECT_KEYS:
            if set(keys) <= data.keys():
                a, b, c, d = (_number(data[k]) for k in keys)
                return _rectangle((a, b, c, d), corners, width, height)
        raise ClipError(f"unknown keys {sorted(data)}; {ROI_FORMS}")
    if isinstance(data, list) and len(data) == 4 and all(not isinstance(v, list | dict) for v in data):
        a, b, c, d = (_number(v) for v in data)
        return _rectangle((a, b, c, d), False, width, height)
    if isinstance(data, list) and len(data) >= 3 and all(isinstance(p, list) and len(p) == 2 for p in data):
        points = [(_number(x), _number(y)) for x, y in data]
        scale = _scale([v for point in points for v in point], width, height)
        polygon = [(x / scale[0], y / scale[1]) for x, y in points]
        _inside(polygon, width, height)
        xs, ys = [x for x, _ in polygon], [y for _, y in polygon]
        if max(xs) <= min(xs) or max(ys) <= min(ys):
            raise ClipError(f"empty ROI polygon {points}")
        return polygon
    raise ClipError(f"unsupported ROI {json.dumps(data)[:60]}; {ROI_FORMS}")


def _scale(values: list[float], width: int, height: int) -> tuple[float, float]:
    """Divisors to frame fractions: values all <= 1.0 are fractions already, else pixels."""
    return (1.0, 1.0) if all(v <= 1.0 for v in values) else (float(width), float(height))


def _rectangle(values: tuple[float, float, float, float], corners: bool, width: int, height: int) -> Polygon:
    sx, sy = _scale(list(values), width, height)
    x, y, c, d = values
    w, h = (c - x, d - y) if corners else (c, d)
    if w <= 0 or h <= 0:
        raise ClipError(f"empty ROI rectangle {list(values)} (width and height must be > 0)")
    x0, y0, x1, y1 = x / sx, y / sy, (x + w) / sx, (y + h) / sy
    polygon = [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]
    _inside(polygon, width, height)
    return polygon


def _inside(polygon: Polygon, width: int, height: int) -> None:
    if any(not (-1e-9 <= x <= 1 + 1e-9 and -1e-9 <= y <= 1 + 1e-9) for x, y in polygon):
        pixels = [(round(x * width, 1), round(y * height, 1)) for x, y in polygon]
        raise ClipError(f"ROI {pixels} leaves the {width}x{height} frame")
