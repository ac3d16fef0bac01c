"""Motion detection on the luma plane: frames in, a MotionResult out. Pure, no I/O.

Per analysed frame, on a ~213x120 copy:
1. Downscale and blur; remove the global gain against the background (exposure drift,
   auto-exposure hunting and lights switching scale the whole frame; an object does not).
2. A pixel is *different* when it departs from a running-average background by more
   than k times its own noise (a per-pixel running mean absolute deviation, so night
   noise raises its own threshold), and *changing* when it also departed from the
   previous analysed frame within the last few frames. Motion is different AND
   changing: a parked car, a person standing still or the ghost a leaver leaves behind
   are absorbed into the background instead of raising motion for minutes.
3. Pixels that keep moving (foliage, a flag, a flickering sign) build up a slowly
   decaying "busy" score and are ignored while it is high; when they calm down they
   count again, so a tree does not mask a person forever.
4. Despeckle, keep blobs of at least `min_area`; when most of the frame changes at
   once it is lighting or an IR switch, not an object: suppressed and re-learnt.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from edge.config import MotionConfig
from edge.masks import polygon_mask

WARMUP_FRAMES = 1
FAST_FRAMES = 10  # frames of fast background learning after start or a lighting change
BG_RATE, BG_RATE_FAST, BG_RATE_STILL = 0.05, 0.35, 0.15
NOISE_RATE = 0.05
NOISE_INITIAL = 2.0
RECENT_DECAY = 0.5  # "changing" remembers a change for about three analysed frames
BUSY_RATE, BUSY_LIMIT = 0.03, 0.35  # ~7 s to learn a busy pixel, longer to forget it
MIN_SHAKE_RESPONSE, MAX_SHAKE_PX = 0.1, 10.0
_KERNEL = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))
_GROW = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))


@dataclass(frozen=True, slots=True)
class MotionResult:
    """One analysed frame's verdict; the event tracker sees nothing else of the frame."""

    motion: bool  # motion of interest in this frame
    score: float  # moving area as a fraction of the unmasked frame area, 0..1
    region: tuple[float, float, float, float] | None  # normalised x, y, w, h of the kept blobs
    suppressed: str | None = None  # "lighting" or "warmup": the detector cannot tell this frame


_NONE = MotionResult(False, 0.0, None)


def _thresholds(sensitivity: int) -> tuple[float, float]:
    """(k, floor): a pixel departs when |diff| > max(floor, k * its noise).

    Sensitivity 5 -> 3.5 x noise, at least 8 grey levels; 1 -> 5.1, 12.8; 10 -> 1.5, 2."""
    return 3.5 - 0.4 * (sensitivity - 5), 8.0 - 1.2 * (sensitivity - 5)


def _downscale_plan(in_h: int, in_w: int, target: int) -> tuple[int, int, int, int]:
    """(halvings, factor, width, height): reduce by 2**halvings * factor to ~`target` rows.

    OpenCV's INTER_AREA is fast only for exact integer ratios, and by far fastest for
    exactly 2x (SIMD): on 640x360 a 213x120 target costs 0.4 ms as a 3.005x ratio and
    0.13 ms as an exact 3x of a 639x360 crop; 1920x1080 costs 1 ms as one 9x step and
    0.3 ms as three 2x steps. So the input is cropped (at most a few edge pixels) to a
    whole multiple, an odd factor of 5 or more gives way to the even one below it (a
    little more detail, much cheaper), and even factors are done as 2x steps.
    """
    total = max(1, round(in_h / target))
    if total >= 5 and total % 2:
        total -= 1
    halvings = 0
    while total % 2 == 0:
        total //= 2
        halvings += 1
    scale = total << halvings
    if min(in_w, in_h) // scale < 8:  # a sliver of a frame: analyse it as it is
        return 0, 1, in_w, in_h
    return halvings, total, in_w // scale, in_h // scale


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
        self._frames = 0
        self._fast_until = WARMUP_FRAMES + FAST_FRAMES

    def _init(self, in_h: int, in_w: int) -> None:
        self._halvings, self._factor, width, height = _downscale_plan(in_h, in_w, self._cfg.frame_height)
        self._crop = (height * self._factor << self._halvings, width * self._factor << self._halvings)
        self._size = (width, height)
        self._shape = (in_h, in_w)
        valid = ~polygon_mask(self._masks, width, height)
        self._valid = valid.astype(np.uint8) * 255
        self._valid_count = max(1, int(valid.sum()))
        self._min_pixels = max(4, int(self._cfg.min_area * width * height))
        # 16-bit labels halve the labelling cost; 8-connected blobs number at most one
        # per 2x2 cell, so they fit unless frame_height is set very high.
        self._label_type = cv2.CV_16U if ((width + 1) // 2) * ((height + 1) // 2) < 65535 else cv2.CV_32S
        self.reset()

    def _downscale(self, luma: np.ndarray) -> np.ndarray:
        """INTER_AREA by exact 2x steps, then one exact integer step (see `_downscale_plan`)."""
        img = luma[: self._crop[0], : self._crop[1]]  # a view: whole multiples of the factor
        for _ in range(self._halvings):
            img = cv2.resize(img, (img.shape[1] // 2, img.shape[0] // 2), interpolation=cv2.INTER_AREA)
        if self._factor > 1:
            img = cv2.resize(img, self._size, interpolation=cv2.INTER_AREA)
        return img if self._factor > 1 or self._halvings else np.ascontiguousarray(img)

    def _start(self, frame: np.ndarray) -> MotionResult:
        self._bg = frame.copy()
        self._prev = frame.copy()
        self._noise = np.full_like(frame, NOISE_INITIAL)
        self._recent = np.zeros_like(frame)
        self._busy = np.zeros_like(frame)
        return MotionResult(False, 0.0, None, "warmup")

    def _realign(self, frame: np.ndarray) -> bool:
        """Shift the background onto `frame` when the whole view moved (a shaking pole)."""
        (dx, dy), response = cv2.phaseCorrelate(self._bg, frame)
        if response < MIN_SHAKE_RESPONSE or not 0.5 <= abs(dx) + abs(dy) <= MAX_SHAKE_PX:
            return False
        shift = np.float32([[1, 0, dx], [0, 1, dy]])
        for name in ("_bg", "_prev", "_noise"):
            setattr(self, name, cv2.warpAffine(getattr(self, name), shift, self._size, borderMode=cv2.BORDER_REPLICATE))
        return True

    def process(self, luma: np.ndarray, t: float) -> MotionResult:
        if self._shape != luma.shape[:2]:
            self._init(*luma.shape[:2])
        small = self._downscale(luma)
        # The median removes one-pixel structures (rain streaks, snow, sensor hot pixels).
        frame = cv2.medianBlur(small, 3).astype(np.float32)
        self._frames += 1
        if self._bg is None:
            return self._start(frame)
        bg, prev, noise = self._bg, self._prev, self._noise

        # Clipped pixels (blown-out or black) carry no information and break the gain
        # estimate after a light switches on: they are left out of both.
        usable = cv2.bitwise_and(cv2.bitwise_and(cv2.inRange(frame, 6, 249), cv2.inRange(bg, 6, 249)), self._valid)
        if cv2.countNonZero(usable) < self._valid_count // 4:
            usable = self._valid
        adjusted = frame * ((cv2.mean(bg, usable)[0] + 1.0) / (cv2.mean(frame, usable)[0] + 1.0))
        threshold = cv2.max(noise * self._k, self._floor)
        diff_bg = cv2.absdiff(adjusted, bg)
        different = cv2.compare(diff_bg, threshold, cv2.CMP_GT)
        different = cv2.bitwise_and(different, usable)
        changed = cv2.countNonZero(different) / self._valid_count
        if changed > self._cfg.lighting_fraction and self._realign(adjusted):
            # The camera shook: the background was shifted into line; compare again.
            bg, prev = self._bg, self._prev
            diff_bg = cv2.absdiff(adjusted, bg)
            different = cv2.bitwise_and(cv2.compare(diff_bg, threshold, cv2.CMP_GT), usable)
            changed = cv2.countNonZero(different) / self._valid_count
        if changed > self._cfg.lighting_fraction:
            # Most of the frame departed at once: lighting, IR switch, a camera bump.
            self._bg = adjusted
            self._prev = adjusted
            self._recent[:] = 0
            self._fast_until = self._frames + FAST_FRAMES
            return MotionResult(False, 0.0, None, "lighting")

        # Scores below are kept on the 0..255 scale of the uint8 masks (no conversions).
        changing_now = cv2.compare(cv2.absdiff(adjusted, prev), threshold, cv2.CMP_GT)
        cv2.accumulateWeighted(changing_now, self._recent, 1 - RECENT_DECAY)
        changing = cv2.dilate(cv2.compare(self._recent, 0.1 * 255, cv2.CMP_GT), _GROW)
        moving = cv2.bitwise_and(different, changing)

        # Learn: fast after start/lighting; still-but-different pixels (a parked car, a
        # ghost) fast enough to be absorbed within seconds; moving pixels not at all;
        # clipped pixels not at all (they say nothing about the scene behind them).
        fast = self._frames <= self._fast_until
        not_different = cv2.bitwise_not(different)
        cv2.accumulateWeighted(
            adjusted, bg, BG_RATE_FAST if fast else BG_RATE, mask=cv2.bitwise_and(not_different, usable)
        )
        cv2.accumulateWeighted(adjusted, bg, BG_RATE_STILL, mask=cv2.bitwise_and(different, cv2.bitwise_not(moving)))
        if fast:
            cv2.accumulateWeighted(adjusted, bg, BG_RATE, mask=moving)
        cv2.accumulateWeighted(cv2.min(diff_bg, 3 * self._floor), noise, NOISE_RATE, mask=not_different)
        self._prev = adjusted
        cv2.accumulateWeighted(moving, self._busy, BUSY_RATE)

        if self._frames <= WARMUP_FRAMES:
            return MotionResult(False, 0.0, None, "warmup")
        # Always-moving pixels (foliage, flags, signs) are ignored while they stay busy.
        moving = cv2.bitwise_and(moving, cv2.compare(self._busy, BUSY_LIMIT * 255, cv2.CMP_LE))
        if not cv2.countNonZero(moving):
            return _NONE
        blobs = cv2.morphologyEx(moving, cv2.MORPH_OPEN, _KERNEL)
        blobs = cv2.dilate(blobs, _KERNEL)
        if not cv2.countNonZero(blobs):
            return _NONE
        _count, _labels, stats, _ = cv2.connectedComponentsWithStats(blobs, connectivity=8, ltype=self._label_type)
        kept = stats[1:][stats[1:, cv2.CC_STAT_AREA] >= self._min_pixels]
        if not len(kept):
            return _NONE
        area = int(kept[:, cv2.CC_STAT_AREA].sum())
        x0 = int(kept[:, cv2.CC_STAT_LEFT].min())
        y0 = int(kept[:, cv2.CC_STAT_TOP].min())
        x1 = int((kept[:, cv2.CC_STAT_LEFT] + kept[:, cv2.CC_STAT_WIDTH]).max())
        y1 = int((kept[:, cv2.CC_STAT_TOP] + kept[:, cv2.CC_STAT_HEIGHT]).max())
        width, height = self._size
        region = (x0 / width, y0 / height, (x1 - x0) / width, (y1 - y0) / height)
        return MotionResult(True, min(1.0, area / self._valid_count), region)
