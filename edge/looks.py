"""The looks each pixel has had lately, so a background that alternates is not an object. Pure, no I/O.

A flag's stripes, a banner, laundry on a line, a sign cycling its frames: there the
background alternates between a few looks, and a running-average background calls every
change an object. A mixture of Gaussians per pixel (OpenCV's MOG2) remembers several
looks. It is learnt on every analysed frame at half the analysis size (a quarter of the
pixels: its cost, not its resolution, is what matters for judging a whole blob), and it is
only asked about blobs in areas that keep moving: a blob made mostly of looks its pixels
have had before is the background moving. A person brings looks of their own.
Measured against the alternatives (the mixture as a per-pixel gate, or alone; KNN sample
consensus instead) in docs/MOTION.md, `scripts/measure_background_models.py`.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

TAU_S = 30.0  # how long a look is remembered (MOG2's history: 150 frames at 5 fps)
VAR_THRESHOLD = 9.0  # a pixel matches a look within 3 standard deviations (MOG2: squared, in variances)
KNOWN_SHARE = 0.15  # a blob with fewer new-look pixels than this is the background moving
_KERNEL = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))


class PixelLooks:
    """One per detector, fed its analysis frames in time order (the detector's thread only)."""

    def __init__(self) -> None:
        self._model: cv2.BackgroundSubtractor | None = None
        self._half_new: np.ndarray | None = None  # this frame's pixels unlike any remembered look, half size
        self._new: np.ndarray | None = None  # ... at the analysis size, made when first asked
        self._size = (0, 0)
        self._elapsed = 0.0

    def reset(self) -> None:
        self._model = None
        self._half_new = self._new = None
        self._elapsed = 0.0

    def learn(self, frame: np.ndarray, dt: float) -> None:
        """Classify `frame` (uint8, analysis size) against the remembered looks, then learn it;
        `dt` seconds after the previous frame (so memory is in seconds, whatever the frame rate)."""
        height, width = frame.shape
        half = cv2.resize(frame, (max(1, width // 2), max(1, height // 2)), interpolation=cv2.INTER_AREA)
        if self._model is None:
            self._model = self._new_model()
        # Quick at first, as MOG2 itself learns (1 / 2n after n frames): memory grows to TAU_S.
        self._elapsed += dt
        self._half_new = self._model.apply(half, learningRate=1.0 - math.exp(-dt / min(TAU_S, 2.0 * self._elapsed)))
        self._new, self._size = None, (width, height)

    def _new_model(self) -> cv2.BackgroundSubtractor:
        # Its history is unused: every frame is learnt at the rate `learn` gives it.
        return cv2.createBackgroundSubtractorMOG2(history=1, varThreshold=VAR_THRESHOLD, detectShadows=False)

    def known(self, blob: np.ndarray, box: tuple[slice, slice]) -> bool:
        """Is the blob (`blob`: its mask, analysis size, nonzero inside `box`) made mostly of
        looks its pixels have had before?"""
        if self._half_new is None:
            return False
        if self._new is None:  # back to the analysis size, dilated once as the detector's blobs are
            self._new = cv2.dilate(cv2.resize(self._half_new, self._size, interpolation=cv2.INTER_NEAREST), _KERNEL)
        mine = blob[box]
        pixels = cv2.countNonZero(mine)
        return pixels > 0 and cv2.countNonZero(cv2.bitwise_and(self._new[box], mine)) < KNOWN_SHARE * pixels
