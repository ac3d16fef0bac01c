"""Two baselines, from their published descriptions, behind the detector's interface.

- FrigateStyle: Frigate's classic motion detector: Y plane scaled to 100 px high,
  percentile contrast stretch, 3x3 blur, absdiff against a running average (alpha
  0.01), threshold 30, one dilation, contours over 10 px, recalibration when over 80 %
  of the frame changes.
- FrameDifference: plain consecutive-frame differencing (threshold 25, 0.1 % of the frame).
- Cropped: either of them restricted to a clip's region of interest (cropped to it).
"""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np

from edge.motion import MotionResult

_NONE = MotionResult(False, 0.0, None)


def _region(mask: np.ndarray) -> tuple[float, float, float, float]:
    ys, xs = np.nonzero(mask)
    h, w = mask.shape
    return (xs.min() / w, ys.min() / h, (xs.max() - xs.min() + 1) / w, (ys.max() - ys.min() + 1) / h)


def boxes_result(boxes: list[tuple[int, int, int, int]], shape: tuple[int, ...]) -> MotionResult:
    """Motion where there are boxes (x, y, w, h) in a mask of `shape`: score their summed area
    over the mask's, region the box around them all."""
    if not boxes:
        return _NONE
    sh, sw = shape[:2]
    area = sum(bw * bh for _, _, bw, bh in boxes)
    x0, y0 = min(b[0] for b in boxes), min(b[1] for b in boxes)
    x1, y1 = max(b[0] + b[2] for b in boxes), max(b[1] + b[3] for b in boxes)
    return MotionResult(True, min(1.0, area / (sh * sw)), (x0 / sw, y0 / sh, (x1 - x0) / sw, (y1 - y0) / sh))


class FrigateStyle:
    name = "frigate-style"

    def __init__(self) -> None:
        self._avg: np.ndarray | None = None

    def process(self, luma: np.ndarray, t: float) -> MotionResult:
        h, w = luma.shape
        small = cv2.resize(luma, (max(1, round(w * 100 / h)), 100), interpolation=cv2.INTER_LINEAR)
        lo, hi = np.percentile(small, (4, 96))
        stretched = np.clip((small.astype(np.float32) - lo) * (255.0 / max(hi - lo, 1.0)), 0, 255).astype(np.uint8)
        blurred = cv2.GaussianBlur(stretched, (3, 3), 0)
        if self._avg is None:
            self._avg = blurred.astype(np.float32)
            return _NONE
        delta = cv2.absdiff(blurred, cv2.convertScaleAbs(self._avg))
        cv2.accumulateWeighted(blurred, self._avg, 0.01)
        thresh = cv2.dilate(cv2.threshold(delta, 30, 255, cv2.THRESH_BINARY)[1], None, iterations=1)
        contours, _ = cv2.findContours(thresh, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        boxes = [cv2.boundingRect(c) for c in contours if cv2.contourArea(c) > 10]
        if np.count_nonzero(thresh) > 0.8 * thresh.size:  # lighting: recalibrate
            self._avg = blurred.astype(np.float32)
            return _NONE
        return boxes_result(boxes, thresh.shape)


class FrameDifference:
    name = "frame-diff"

    def __init__(self, threshold: int = 25, min_fraction: float = 0.001) -> None:
        self._prev: np.ndarray | None = None
        self._threshold = threshold
        self._min = min_fraction

    def process(self, luma: np.ndarray, t: float) -> MotionResult:
        h, w = luma.shape
        small = cv2.resize(luma, (max(1, round(w * 120 / h)), 120), interpolation=cv2.INTER_AREA)
        prev, self._prev = self._prev, small
        if prev is None:
            return _NONE
        moving = cv2.absdiff(small, prev) > self._threshold
        score = float(np.count_nonzero(moving)) / moving.size
        if score < self._min:
            return _NONE
        return MotionResult(True, score, _region(moving))


class Cropped:
    """A baseline restricted to a clip's region of interest (X.roi.json), as a user of
    such a detector would restrict it: the frame is cropped to the region's bounding box
    before the detector sees it, and for a polygon the pixels outside it are frozen at
    the first frame's values (nothing moves there). Regions are mapped back to the
    whole frame. The nvr-edge detector gets the region as a zone instead (edge.motion)."""

    def __init__(self, detector: object, roi: list[tuple[float, float]]) -> None:
        self._detector = detector
        self._roi = roi
        self.name = getattr(detector, "name", type(detector).__name__)
        self._box: tuple[int, int, int, int] | None = None
        self._outside: np.ndarray | None = None
        self._frozen: np.ndarray | None = None

    def _prepare(self, luma: np.ndarray) -> None:
        h, w = luma.shape
        xs, ys = [x for x, _ in self._roi], [y for _, y in self._roi]
        x0, x1 = max(0, int(np.floor(min(xs) * w))), min(w, max(int(np.ceil(max(xs) * w)), 1))
        y0, y1 = max(0, int(np.floor(min(ys) * h))), min(h, max(int(np.ceil(max(ys) * h)), 1))
        x1, y1 = max(x1, x0 + 1), max(y1, y0 + 1)
        self._box = (x0, y0, x1, y1)
        points = np.array([[x * w - x0, y * h - y0] for x, y in self._roi], np.float64).round().astype(np.int32)
        inside = np.zeros((y1 - y0, x1 - x0), np.uint8)
        cv2.fillPoly(inside, [points], 1)
        if not inside.all():
            self._outside = inside == 0
            self._frozen = luma[y0:y1, x0:x1].copy()

    def process(self, luma: np.ndarray, t: float) -> MotionResult:
        if self._box is None:
            self._prepare(luma)
        assert self._box is not None
        x0, y0, x1, y1 = self._box
        if self._outside is not None and self._frozen is not None:
            crop = luma[y0:y1, x0:x1].copy()  # never the clip's own frame
            crop[self._outside] = self._frozen[self._outside]
        else:
            crop = np.ascontiguousarray(luma[y0:y1, x0:x1])
        result = self._detector.process(crop, t)  # type: ignore[attr-defined]
        if result.region is None:
            return result
        h, w = luma.shape
        cw, ch = x1 - x0, y1 - y0
        rx, ry, rw, rh = result.region
        region = ((x0 + rx * cw) / w, (y0 + ry * ch) / h, rw * cw / w, rh * ch / h)
        return dataclasses.replace(result, region=region)
