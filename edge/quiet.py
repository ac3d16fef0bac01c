"""Quiet mode: what a camera that is awake (idle mode off) spends while nothing happens.

After `quiet_after` seconds without motion, and with no event open, a camera is quiet:
its decoder skips the H.264 deblocking filter (from its next keyframe) and only
`fps` frames a second are analysed. Every decoded frame still passes a cheap change
gate (`ChangeGate`: block means on a coarse grid against the last analysed frame);
the first sign of change wakes the camera at once. On waking, the frames decoded
since the last analysed one are analysed too, in order, and the decoder is rebuilt
with the filter from the last keyframe (edge.source.IdleDecoder), so the frames an
event is made of, and its thumbnail, are exact, not the filter-less approximation.

Why it is safe to approximate while quiet: without deblocking a decoded picture drifts
from the encoder's by a few grey levels at block edges until the next keyframe; the
detector compares pictures decoded the same way, and the gate leans towards waking.

Pure logic on arrays and a clock (seconds, any clock that does not step back); the
decoder (edge.source.IdleDecoder) does what it says.
"""

from __future__ import annotations

from enum import Enum

import cv2
import numpy as np

QUIET_AFTER_S = 6.0  # the default events.end_after (5 s) has passed: no event is open
QUIET_FPS = 2.0
SLACK = 0.95  # as edge.schedule: frames arriving a little early still count as due
GRID_COLS = 64  # the gate's grid: 64 columns (10 px cells at 640x360), rows by aspect
FINE = 4
# A cell changed when its mean moved by more than GATE_SIGMAS of the frame's cell noise
# (from the median cell change, which a few moving cells cannot raise), more than
# GATE_MIN_LEVELS grey levels, and more than PEAK_MARGIN times the largest change the
# cell showed lately (its own noise: the cropped bottom macroblock row of a 360-line
# stream, leaves), learnt from changes of at most PEAK_CAP levels, so a person passing
# never makes a cell blind (7.5 levels at most, under the detector's day floor of 8);
# GATE_CELLS changed cells wake the camera.
GATE_SIGMAS = 6.0
GATE_MIN_LEVELS = 5.0
GATE_CELLS = 2
PEAK_MARGIN, PEAK_CAP, PEAK_DECAY = 1.25, 6.0, 0.99  # the decay per compared frame
_MAD_TO_SIGMA = 1.4826  # median absolute value of a normal variable, in standard deviations


class Verdict(Enum):
    ANALYSE = "analyse"  # hand the frame to the detector
    HOLD = "hold"  # quiet and not due: keep it for a catch-up, do not analyse it now
    WAKE = "wake"  # the gate saw change: analyse the held frames, then this one, exactly


class ChangeGate:
    """Block means of the luma on a coarse grid, against those of the last analysed frame."""

    def __init__(self, cols: int = GRID_COLS) -> None:
        self.cols = cols
        self._reference: np.ndarray | None = None
        self._peak: np.ndarray | None = None  # each cell's recent largest change (capped)

    def grid(self, luma: np.ndarray) -> np.ndarray:
        """The frame's block means (float32), one pass over the picture: first to a grid
        FINE times finer in 8 bits, then averaged, so the means keep their fractions
        (rounded to whole grey levels, still cells would differ by 0 or 1 and nothing between)."""
        h, w = luma.shape[:2]
        cols = min(self.cols, w // FINE)
        rows = max(1, min(h // FINE, round(cols * h / w)))
        fine = cv2.resize(luma, (cols * FINE, rows * FINE), interpolation=cv2.INTER_AREA)
        return cv2.resize(fine.astype(np.float32), (cols, rows), interpolation=cv2.INTER_AREA)

    def reference(self, grid: np.ndarray) -> None:
        """The grid of the frame just analysed: what later frames are compared with."""
        self._reference = grid

    def changed(self, grid: np.ndarray) -> bool:
        """Do at least GATE_CELLS cells differ from the reference beyond their noise? (Yes
        without a reference, or when the picture's size changed.) Learns each cell's noise."""
        ref, peak = self._reference, self._peak
        if ref is None or ref.shape != grid.shape:
            self._peak = None
            return True
        diff = cv2.absdiff(grid, ref)
        sigma = _MAD_TO_SIGMA * float(np.median(diff))
        floor = max(GATE_SIGMAS * sigma, GATE_MIN_LEVELS)
        over = diff > floor if peak is None else diff > np.maximum(PEAK_MARGIN * peak, floor)
        learnt = np.minimum(diff, PEAK_CAP)
        self._peak = learnt if peak is None else np.maximum(peak * PEAK_DECAY, learnt)
        return int(np.count_nonzero(over)) >= GATE_CELLS


class QuietPolicy:
    """One per camera connection: `frame` for every decoded frame (what to do with it),
    `analysed` with every motion result, `event` when the camera's event opens or ends."""

    def __init__(self, quiet_after: float = QUIET_AFTER_S, fps: float = QUIET_FPS, now: float = 0.0) -> None:
        self.quiet_after = quiet_after
        self.interval = SLACK / fps
        self.quiet = False
        self.wakes = 0
        self.gate = ChangeGate()
        self._active = now  # last motion or wake: quiet comes quiet_after later
        self._event_open = False
        self._handed = float("-inf")  # when the last frame was handed to the detector while quiet

    @property
    def full_decode(self) -> bool:
        """Decode with the deblocking filter (awake), or without it (quiet)."""
        return not self.quiet

    def frame(self, t: float, luma: np.ndarray) -> Verdict:
        """A decoded frame that arrived at `t`: analyse it, hold it, or wake."""
        if not self.quiet:
            if self._event_open or self.quiet_after <= 0 or t - self._active < self.quiet_after:
                return Verdict.ANALYSE
            self.quiet = True
            return self._hand(t, self.gate.grid(luma))
        grid = self.gate.grid(luma)
        if self.gate.changed(grid):
            self.wake(t)
            return Verdict.WAKE
        if t - self._handed >= self.interval:
            return self._hand(t, grid)
        return Verdict.HOLD

    def _hand(self, t: float, grid: np.ndarray) -> Verdict:
        self._handed = t
        self.gate.reference(grid)
        return Verdict.ANALYSE

    def analysed(self, t: float, motion: bool) -> bool:
        """A motion result; True when it woke the camera (motion on a frame analysed while quiet)."""
        if not motion:
            return False
        woke = self.quiet
        if woke:
            self.wake(t)
        self._active = max(self._active, t)
        return woke

    def event(self, open_: bool) -> None:
        """The camera's event opened or ended: quiet never starts while one is open."""
        self._event_open = open_

    def wake(self, t: float) -> None:
        """Awake from `t` (a sign of change, motion, idle mode waking) for at least quiet_after."""
        if self.quiet:
            self.wakes += 1
        self.quiet = False
        self._active = max(self._active, t)
