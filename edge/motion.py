"""Motion detection on the luma plane: frames in, a MotionResult out. Pure, no I/O.

Per frame (at ~213x120): downscale, blur, remove the global gain (so exposure drift
and lights switching are not motion), compare with a running-average background
against a per-pixel noise estimate, despeckle, and keep only blobs of at least
`min_area`. When most of the frame changes at once it is lighting, not an object:
the change is suppressed and the background re-learnt quickly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from edge.config import MotionConfig
from edge.masks import polygon_mask

WARMUP_FRAMES = 5
FAST_FRAMES = 15  # frames of fast background learning after start or a lighting change
BG_RATE, BG_RATE_FAST, BG_RATE_FOREGROUND = 0.04, 0.3, 0.005
NOISE_RATE = 0.03
NOISE_INITIAL = 2.0
_KERNEL = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))


@dataclass(frozen=True, slots=True)
class MotionResult:
    motion: bool
    score: float
    region: tuple[float, float, float, float] | None
    suppressed: str | None = None


_NONE = MotionResult(False, 0.0, None)


def _thresholds(sensitivity: int) -> tuple[float, float]:
    """(k, floor): a pixel moves when |diff| > max(floor, k * its noise).

    Sensitivity 5 -> 4.0 x noise, at least 9 grey levels; 1 -> 5.6, 13.8; 10 -> 2.0, 3."""
    k = 4.0 - 0.4 * (sensitivity - 5)
    floor = 9.0 - 1.2 * (sensitivity - 5)
    return k, floor


class MotionDetector:
    """One per camera; `process` is called from that camera's worker thread only."""

    def __init__(self, config: MotionConfig, masks: Sequence[Sequence[Sequence[float]]] = ()) -> None:
        self._cfg = config
        self._masks = [list(map(list, poly)) for poly in masks]
        self._k, self._floor = _thresholds(config.sensitivity)
        self._shape: tuple[int, int] | None = None
        self.reset()

    def reset(self) -> None:
        self._bg: np.ndarray | None = None
        self._noise: np.ndarray | None = None
        self._frames = 0
        self._fast_until = WARMUP_FRAMES + FAST_FRAMES

    def _init(self, in_h: int, in_w: int) -> None:
        height = min(self._cfg.frame_height, in_h)
        width = max(8, round(in_w * height / in_h))
        self._size = (width, height)
        self._shape = (in_h, in_w)
        self._valid = ~polygon_mask(self._masks, width, height)
        self._valid_u8 = self._valid.astype(np.uint8)
        self._valid_count = max(1, int(self._valid.sum()))
        self._min_pixels = max(4, int(self._cfg.min_area * width * height))
        self.reset()

    def process(self, luma: np.ndarray, t: float) -> MotionResult:
        if self._shape != luma.shape[:2]:
            self._init(*luma.shape[:2])
        small = cv2.resize(luma, self._size, interpolation=cv2.INTER_AREA)
        frame = cv2.GaussianBlur(small, (3, 3), 0).astype(np.float32)
        self._frames += 1
        if self._bg is None or self._noise is None:
            self._bg = frame
            self._noise = np.full_like(frame, NOISE_INITIAL)
            return MotionResult(False, 0.0, None, "warmup")

        bg, noise = self._bg, self._noise
        # Remove the global gain: a camera's exposure or a light switched on scales the
        # whole frame; an object changes only part of it.
        gain = (float(cv2.mean(bg, self._valid_u8)[0]) + 1.0) / (float(cv2.mean(frame, self._valid_u8)[0]) + 1.0)
        adjusted = frame * gain
        diff = cv2.absdiff(adjusted, bg)
        threshold = np.maximum(noise * self._k, self._floor)
        moving = (diff > threshold) & self._valid

        changed = float(np.count_nonzero(moving)) / self._valid_count
        warm = self._frames <= WARMUP_FRAMES
        fast = self._frames <= self._fast_until
        if changed > self._cfg.lighting_fraction:
            # Most of the frame changed at once: lighting, IR switch, a camera bump.
            self._bg = adjusted
            self._fast_until = self._frames + FAST_FRAMES
            return MotionResult(False, 0.0, None, "lighting")

        # Learn: quickly after start/lighting, slowly elsewhere, very slowly under objects.
        rate = np.where(moving, BG_RATE_FOREGROUND, BG_RATE_FAST if fast else BG_RATE).astype(np.float32)
        cv2.accumulateProduct(adjusted - bg, rate, bg)  # bg += rate * (adjusted - bg)
        still = ~moving
        noise[still] += NOISE_RATE * (np.minimum(diff[still], 3 * self._floor) - noise[still])

        if warm:
            return MotionResult(False, 0.0, None, "warmup")
        if not moving.any():
            return _NONE
        blobs = cv2.morphologyEx(moving.view(np.uint8), cv2.MORPH_OPEN, _KERNEL)
        blobs = cv2.dilate(blobs, _KERNEL)
        count, _labels, stats, _ = cv2.connectedComponentsWithStats(blobs, connectivity=8)
        keep = [i for i in range(1, count) if stats[i, cv2.CC_STAT_AREA] >= self._min_pixels]
        if not keep:
            return _NONE
        area = int(sum(stats[i, cv2.CC_STAT_AREA] for i in keep))
        x0 = min(stats[i, cv2.CC_STAT_LEFT] for i in keep)
        y0 = min(stats[i, cv2.CC_STAT_TOP] for i in keep)
        x1 = max(stats[i, cv2.CC_STAT_LEFT] + stats[i, cv2.CC_STAT_WIDTH] for i in keep)
        y1 = max(stats[i, cv2.CC_STAT_TOP] + stats[i, cv2.CC_STAT_HEIGHT] for i in keep)
        width, height = self._size
        region = (x0 / width, y0 / height, (x1 - x0) / width, (y1 - y0) / height)
        return MotionResult(True, min(1.0, area / self._valid_count), region)
