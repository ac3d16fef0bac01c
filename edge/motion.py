"""Motion detection on the luma plane: frames in, a MotionResult out. Pure, no I/O.

Per analysed frame, on a `frame_height` (100) px high copy:
1. Downscale and median; remove the global gain against the background (exposure
   drift, auto-exposure hunting and lights switching scale the whole frame; an object
   does not).
2. A pixel is *different* when it departs from a running-average background by more
   than k times its own noise (a per-pixel running mean absolute deviation, so night
   noise raises its own threshold) and by more than a floor that scales down in dim,
   flat night scenes (contrast normalisation); *changing* when it also departed from
   the previous analysed frame within the last few frames. Motion is different AND
   changing: a parked car, a person standing still or the ghost a leaver leaves behind
   are absorbed into the background instead of raising motion for minutes.
3. Pixels that keep moving (foliage, a flag, a flickering sign) build up a slowly
   decaying "busy" score and are ignored while they stay high; when they calm down they
   count again, so a tree does not mask a person forever.
4. Despeckle, keep blobs of at least `min_area` that touch a zone (if any); when most
   of the frame changes at once it is lighting or an IR switch, not an object:
   suppressed and re-learnt. Smaller lighting changes are told apart blob by blob: a
   lamp switching on changes once and then holds (no fresh change inside), and light
   sweeping over a surface keeps its texture (a smooth log-ratio to the background).
   A blob where things keep moving whose pixels show only looks they have had before
   (a flag's stripes: edge.looks) is the background moving.
5. Only blobs that travel are motion (edge.tracks); where a travelling object should
   be next, every pixel is compared exactly, so foliage's tolerance does not hide it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from edge.config import MotionConfig
from edge.looks import PixelLooks
from edge.masks import polygon_mask
from edge.tracks import Blob, Tracker

# Time constants are in seconds (exponential averages: tau), so behaviour does not
# change with motion.detect_fps or the camera's frame rate; the per-frame weight is
# 1 - exp(-dt / tau) for the time dt since the previous analysed frame.
WARMUP_FRAMES = 1  # the first frame only seeds the background
FAST_S = 2.0  # fast background learning after start or a lighting change
BG_TAU_S, BG_FAST_TAU_S, BG_STILL_TAU_S = 3.9, 0.46, 1.2
NOISE_TAU_S = 3.9
NOMINAL_DT_S, MAX_DT_S = 0.2, 2.0  # dt assumed for the first frame; longer gaps count as this
NOISE_INITIAL = 2.0
RECENT_TAU_S = 0.29  # "changing" remembers a change for about 0.6 s
FRESH_CHANGE = 0.2  # ... and "fresh" for about 0.4 s
BUSY_TAU_S, BUSY_LIMIT = 6.6, 0.35
# Activity: how often a pixel changed between analysed frames lately (motion or not).
# Above SWAYING, the pixel has been moving lately (foliage, a flag) and is compared with
# a pixel's tolerance; elsewhere exactly, so a faint walker on still grass is not forgiven.
ACTIVITY_TAU_S, ACTIVITY_LEARN_S, SWAYING = 5.0, 2.0, 0.02  # ~7 s to learn a busy pixel, longer to forget it
# A new blob is calm (counted at once, edge.tracks) where activity is at most CALM: one
# active analysed frame leaves 0.039, so where a passer-by's edge crossed once stays calm;
# foliage and a flag keep their pixels well above it.
CALM = 0.05
# A blob whose mean activity is at least ALTERNATING is in an area that keeps moving: it is
# asked whether its pixels only show looks they have had before (edge.looks).
ALTERNATING = 0.1
MIN_SHAKE_RESPONSE, MAX_SHAKE_PX = 0.1, 10.0
STEP_MIN_CHANGING = 0.02  # an object changed in this share of its pixels in the last two frames
# Moving light: a changed region over textured background (RMS LoG at least 2 grey
# levels) whose log-ratio to the background is smooth (edge energy at most a quarter
# of the background's own, in the log domain) is light, not an object.
RELIT_SMOOTHNESS, RELIT_MIN_TEXTURE = 0.6, 1.5
# ... or, textured or not, a change whose edges take this many pixels to reach its mean
# strength: light and shadow fade in; an object's outline is a pixel or two wide.
SOFT_EDGE_PX = 3.0
# ... or soft along most of its outline (this percentile of the outline's slopes) when even
# its steepest change is not an object's (at least SOFT_RIM_MIN_PX wide): a light pool
# cut by a sharp line of the scene, such as a wall meeting the floor.
SOFT_RIM_PERCENTILE, SOFT_RIM_MIN_PX = 90.0, 2.0
# Night contrast normalisation: in a dim and flat scene (its mean and standard deviation
# against a typical day scene's, geometric mean) the grey-level floor of the threshold scales down.
BRIGHTNESS_DAY, CONTRAST_DAY, CONTRAST_MIN_SCALE, CONTRAST_EVERY_S = 80.0, 24.0, 0.25, 1.6
_KERNEL = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))
_TOLERANCE = cv2.getStructuringElement(cv2.MORPH_RECT, (3, 3))
_GROW = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))


@dataclass(frozen=True, slots=True)
class MotionResult:
    """One analysed frame's verdict; the event tracker sees nothing else of the frame."""

    motion: bool  # motion of interest in this frame
    score: float  # moving area as a fraction of the unmasked frame area, 0..1
    region: tuple[float, float, float, float] | None  # normalised x, y, w, h of the kept blobs
    suppressed: str | None = None  # "lighting" or "warmup": the detector cannot tell this frame
    since: float | None = None  # when the moving object was first seen (before it had travelled)
    seen: int = 1  # analysed frames the object has been seen in: the tracker counts them as a run
    provisional: bool = False  # every object here counts only for its calm place, its travel not yet judged


_NONE = MotionResult(False, 0.0, None)


def _thresholds(sensitivity: int) -> tuple[float, float]:
    """(k, floor): a pixel departs when |diff| > max(floor, k * its noise).

    Sensitivity 5 -> 3.5 x noise, at least 8 grey levels; 1 -> 5.1, 12.8; 10 -> 1.5, 2."""
    return 3.5 - 0.4 * (sensitivity - 5), 8.0 - 1.2 * (sensitivity - 5)


def _downscale_plan(in_h: int, in_w: int, target: int) -> tuple[int, tuple[int, int] | None]:
    """(halvings, final size or None): exact 2x steps, then one small bilinear step.

    OpenCV's INTER_AREA is fast (SIMD) only for exactly 2x; any other ratio takes its
    generic path, several times slower (docs/PERFORMANCE.md "Measured facts"). The 2x
    steps do the averaging that removes noise and
    aliasing; the last step, between 1x and 2x, is bilinear and close to free. An input
    at or below the target is analysed as it is.
    """
    halvings = 0
    while (in_h >> (halvings + 1)) >= target and (in_w >> (halvings + 1)) >= 8:
        halvings += 1
    h, w = in_h >> halvings, in_w >> halvings
    if h <= target:
        return halvings, None
    return halvings, (max(8, round(w * target / h)), target)


Polygons = Sequence[Sequence[Sequence[float]]]


class MotionDetector:
    """One per camera; `process` is called from that camera's worker thread only.

    `masks` (privacy masks) are never looked at; `zones`, when given, are where motion
    counts: a moving object must touch one, but the whole frame still feeds the
    background, noise and lighting estimates (a zone is a question, not blinkers).
    """

    def __init__(self, config: MotionConfig, masks: Polygons = (), zones: Polygons = ()) -> None:
        self._cfg = config
        self._masks = [list(map(list, poly)) for poly in masks]
        self._zones = [list(map(list, poly)) for poly in zones]
        self._k, self._floor = _thresholds(config.sensitivity)
        self._shape: tuple[int, int] | None = None
        self._tracker = Tracker()
        self._looks = PixelLooks()
        self.reset()

    def reset(self) -> None:
        self._bg: np.ndarray | None = None
        self._frames = 0
        self._last_t: float | None = None
        self._fast_until = float("-inf")  # set from the first frame's time
        self._contrast_due = float("-inf")
        self._learnt_at = float("inf")
        self._floor_now = self._floor
        self._unsettled: np.ndarray | None = None  # activity above CALM, this frame's, before its own is added
        self._tracker.reset()
        self._looks.reset()

    def _init(self, in_h: int, in_w: int) -> None:
        self._halvings, self._final = _downscale_plan(in_h, in_w, self._cfg.frame_height)
        width, height = self._final or (in_w >> self._halvings, in_h >> self._halvings)
        self._size = (width, height)
        self._shape = (in_h, in_w)
        valid = ~polygon_mask(self._masks, width, height)
        self._valid = valid.astype(np.uint8) * 255
        self._valid_count = max(1, int(valid.sum()))
        self._zone = (polygon_mask(self._zones, width, height) & valid).astype(np.uint8) * 255 if self._zones else None
        self._min_pixels = max(4, int(self._cfg.min_area * width * height))
        self.reset()

    def _downscale(self, luma: np.ndarray) -> np.ndarray:
        """Exact 2x INTER_AREA steps, then one bilinear step (see `_downscale_plan`)."""
        img = luma
        for _ in range(self._halvings):
            h, w = img.shape[0] // 2, img.shape[1] // 2
            # An odd row or column is dropped first so that the step is exactly 2x.
            img = cv2.resize(img[: 2 * h, : 2 * w], (w, h), interpolation=cv2.INTER_AREA)
        if self._final is not None:
            img = cv2.resize(img, self._final, interpolation=cv2.INTER_LINEAR)
        return img if self._final is not None or self._halvings else np.ascontiguousarray(img)

    def _start(self, frame: np.ndarray) -> MotionResult:
        self._bg = frame.copy()
        self._prev = frame.copy()
        self._noise = np.full_like(frame, NOISE_INITIAL)
        self._recent = np.zeros_like(frame)
        self._busy = np.zeros_like(frame)
        self._activity = np.zeros_like(frame)
        return MotionResult(False, 0.0, None, "warmup")

    def _contrast_floor(self) -> float:
        """The floor for this scene: a dim, flat night view gets a proportionally lower one.

        This is the contrast stretch other detectors apply to the pixels, applied to the
        threshold instead: the same gain for a faint person at night, but the per-pixel
        noise term is untouched, so night noise is not amplified with it. Brightness and
        contrast count together (geometric mean): an IR-lit night view is mid-grey but
        flat and qualifies; a flat daytime view (asphalt from above) is bright, is
        limited by compression artefacts more than by contrast, and keeps most of the floor.
        """
        assert self._bg is not None  # only called from process() after the first frame set it
        mean, std = cv2.meanStdDev(self._bg[::4], mask=self._valid[::4])
        lit = math.sqrt(max(0.0, float(mean[0, 0])) / BRIGHTNESS_DAY * float(std[0, 0]) / CONTRAST_DAY)
        scale = min(1.0, max(CONTRAST_MIN_SCALE, lit))
        return self._floor * scale

    def _realign(self, frame: np.ndarray) -> bool:
        """Shift the background onto `frame` when the whole view moved (a shaking pole)."""
        (dx, dy), response = cv2.phaseCorrelate(self._bg, frame)
        if response < MIN_SHAKE_RESPONSE or not 0.5 <= abs(dx) + abs(dy) <= MAX_SHAKE_PX:
            return False
        shift = np.array([[1, 0, dx], [0, 1, dy]], np.float32)
        for name in ("_bg", "_prev", "_noise"):
            setattr(self, name, cv2.warpAffine(getattr(self, name), shift, self._size, borderMode=cv2.BORDER_REPLICATE))
        return True

    def process(self, luma: np.ndarray, t: float) -> MotionResult:
        if self._shape != luma.shape[:2]:
            self._init(*luma.shape[:2])
        # The median removes one-pixel structures (rain streaks, snow, sensor hot pixels).
        small = cv2.medianBlur(self._downscale(luma), 3)
        frame = small.astype(np.float32)
        # Clipped pixels (blown-out or black) carry no information and break the gain
        # estimate after a light switches on: they are left out of both, judged on this
        # frame and the previous one (cheaper than the float background, nearly the same).
        unclipped = cv2.inRange(small, 6, 249)
        self._frames += 1
        dt = NOMINAL_DT_S if self._last_t is None else min(MAX_DT_S, max(0.0, t - self._last_t))
        self._last_t = t
        self._looks.learn(small, dt)
        if self._bg is None:
            self._unclipped = unclipped
            self._fast_until = t + FAST_S
            self._learnt_at = t + ACTIVITY_LEARN_S
            return self._start(frame)
        bg, prev, noise = self._bg, self._prev, self._noise

        usable = cv2.bitwise_and(cv2.bitwise_and(unclipped, self._unclipped), self._valid)
        self._unclipped = unclipped
        if cv2.countNonZero(usable) < self._valid_count // 4:
            usable = self._valid
        # Global gain from every other row: half the cost, the same estimate.
        gain = (cv2.mean(bg[::2], usable[::2])[0] + 1.0) / (cv2.mean(frame[::2], usable[::2])[0] + 1.0)
        adjusted = frame * gain
        if t >= self._contrast_due:
            self._contrast_due = t + CONTRAST_EVERY_S
            self._floor_now = self._contrast_floor()
        threshold = cv2.max(noise * self._k, self._floor_now)
        # Where pixels have been moving in place, a pixel's shift is forgiven (foliage); elsewhere
        # nothing is (a faint walker on textured grass stays inside its neighbours' range).
        # Until the activity map is learnt (ACTIVITY_LEARN_S after start), every pixel is forgiven.
        # A map at CALM tells `_objects` where nothing moved lately (a new blob there is calm);
        # None until the map is learnt: nowhere is known to sway, every new blob is calm.
        exact = cv2.absdiff(adjusted, bg)
        departed = cv2.compare(exact, threshold, cv2.CMP_GT)  # from the background, no shift forgiven
        self._unsettled = None
        if t < self._learnt_at:
            diff_bg = _tolerant_diff(adjusted, bg)
        else:
            diff_bg = exact.copy()
            swaying = cv2.compare(self._activity, SWAYING * 255, cv2.CMP_GT)
            self._unsettled = cv2.compare(self._activity, CALM * 255, cv2.CMP_GT)
            if cv2.countNonZero(swaying):
                # Only over the swaying pixels' box (plus the 3x3 reach): often a small part.
                forgiven = cv2.dilate(swaying, _GROW)
                x, y, w, h = cv2.boundingRect(forgiven)
                near = _window(x - 1, y - 1, x + w + 1, y + h + 1, forgiven.shape)
                cv2.copyTo(_tolerant_diff(adjusted[near], bg[near]), forgiven[near], diff_bg[near])
        different = cv2.compare(diff_bg, threshold, cv2.CMP_GT)
        expected = self._expected(t)
        for box in expected:
            # Where a travelling object should be, nothing is forgiven (Tracker.expected).
            different[box] = departed[box]
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
            self._fast_until = t + FAST_S
            return MotionResult(False, 0.0, None, "lighting")

        # Scores below are kept on the 0..255 scale of the uint8 masks (no conversions).
        changing_now = cv2.compare(cv2.absdiff(adjusted, prev), threshold, cv2.CMP_GT)
        # Activity: departed from the background and from the last frame, exactly (night
        # noise rarely does both; a leaf does it all the time).
        active = cv2.bitwise_and(changing_now, departed)
        cv2.accumulateWeighted(active, self._activity, _weight(ACTIVITY_TAU_S, dt))
        cv2.accumulateWeighted(changing_now, self._recent, _weight(RECENT_TAU_S, dt))
        changing = cv2.dilate(cv2.compare(self._recent, 0.1 * 255, cv2.CMP_GT), _GROW)
        moving = cv2.bitwise_and(different, changing)

        # Learn: fast after start/lighting; still-but-different pixels (a parked car, a
        # ghost) fast enough to be absorbed within seconds; moving pixels not at all;
        # clipped pixels not at all (they say nothing about the scene behind them).
        fast = t <= self._fast_until
        not_different = cv2.bitwise_not(different)
        rate = _weight(BG_FAST_TAU_S if fast else BG_TAU_S, dt)
        cv2.accumulateWeighted(adjusted, bg, rate, mask=cv2.bitwise_and(not_different, usable))
        still = cv2.bitwise_and(different, cv2.bitwise_not(moving))
        cv2.accumulateWeighted(adjusted, bg, _weight(BG_STILL_TAU_S, dt), mask=still)
        if fast:
            cv2.accumulateWeighted(adjusted, bg, _weight(BG_TAU_S, dt), mask=moving)
        limited = cv2.min(diff_bg, 3 * self._floor_now)
        cv2.accumulateWeighted(limited, noise, _weight(NOISE_TAU_S, dt), mask=not_different)
        self._prev = adjusted
        cv2.accumulateWeighted(moving, self._busy, _weight(BUSY_TAU_S, dt))

        if self._frames <= WARMUP_FRAMES:
            return MotionResult(False, 0.0, None, "warmup")
        # Always-moving pixels (foliage, flags, signs) are ignored while they stay busy.
        quiet = cv2.compare(self._busy, BUSY_LIMIT * 255, cv2.CMP_LE)
        for box in expected:  # ... but not where a travelling object should be: a person in a busy lane
            quiet[box] = 255
        moving = cv2.bitwise_and(moving, quiet)
        if not cv2.countNonZero(moving):
            return _NONE
        blobs = cv2.morphologyEx(moving, cv2.MORPH_OPEN, _KERNEL)
        blobs = cv2.dilate(blobs, _KERNEL)
        if not cv2.countNonZero(blobs):
            return _NONE
        fresh = cv2.compare(self._recent, FRESH_CHANGE * 255, cv2.CMP_GT)
        kept, stepped = self._objects(blobs, fresh, adjusted, bg, usable)
        travelling = [(b, tr) for b, tr in self._tracker.update(kept, t) if tr.confirmed]
        if not travelling:
            return MotionResult(False, 0.0, None, "lighting") if stepped and not kept else _NONE
        area = sum(b.pixels for b, _ in travelling)
        x0, y0 = min(b.x for b, _ in travelling), min(b.y for b, _ in travelling)
        x1, y1 = max(b.x + b.w for b, _ in travelling), max(b.y + b.h for b, _ in travelling)
        width, height = self._size
        region = (x0 / width, y0 / height, (x1 - x0) / width, (y1 - y0) / height)
        first = min(travelling, key=lambda item: item[1].first_t)[1]
        provisional = all(track.provisional for _, track in travelling)
        score = min(1.0, area / self._valid_count)
        return MotionResult(True, score, region, since=first.first_t, seen=first.sightings, provisional=provisional)

    def _expected(self, t: float) -> list[tuple[slice, slice]]:
        """Where travelling objects should be now (Tracker.expected), as slices of the frame."""
        shape = (self._size[1], self._size[0])
        windows = (_window(*box, shape) for box in self._tracker.expected(t))
        return [(rows, cols) for rows, cols in windows if rows.start < rows.stop and cols.start < cols.stop]

    def _objects(
        self, blobs: np.ndarray, fresh: np.ndarray, frame: np.ndarray, bg: np.ndarray, usable: np.ndarray
    ) -> tuple[list[Blob], bool]:
        """(x, y, w, h, pixels) of each moving object, and whether a blob was dropped as
        light (a lamp switched on in part of the view, headlights sweeping a wall).

        An object is a blob of at least `min_area` that touches a zone (if any), changed
        within the last two frames somewhere inside (a walker changes at its edges every
        frame; a porch light changes once and then holds, its blob kept alive only by the
        short memory of `changing`), and is not the background relit (`_relit`).
        Outer contours are much cheaper than labelling every pixel; a blob's pixel
        count is its contour polygon's area plus half its perimeter plus one (exact for
        rectangles, close for any blob; holes count as filled, which suits a person).
        """
        candidates, stepped = [], False
        for contour in cv2.findContours(blobs, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)[0]:
            x, y, w, h = cv2.boundingRect(contour)
            if w * h < self._min_pixels:
                continue
            pixels = cv2.contourArea(contour) + cv2.arcLength(contour, True) / 2 + 1
            if pixels < self._min_pixels:
                continue
            box = (slice(y, y + h), slice(x, x + w))
            if self._zone is not None and not cv2.countNonZero(cv2.bitwise_and(self._zone[box], blobs[box])):
                continue
            if cv2.countNonZero(cv2.bitwise_and(fresh[box], blobs[box])) < STEP_MIN_CHANGING * pixels:
                stepped = True
                continue
            calm = self._unsettled is None or not cv2.countNonZero(self._unsettled[box])
            candidates.append(self._blob(contour, (x, y, w, h), pixels, calm))
        if not candidates:
            return [], stepped
        relit = _relit(candidates, cv2.bitwise_and(blobs, usable), frame, bg)
        kept = [c for c, lit in zip(candidates, relit, strict=True) if not lit]
        stepped = stepped or len(kept) < len(candidates)
        return [b for b in kept if not self._alternating(b, blobs)], stepped

    def _alternating(self, blob: Blob, blobs: np.ndarray) -> bool:
        """A blob in an area that keeps moving, made of looks its pixels have had before
        (a flag's stripes): the background moving, not an object (edge.looks)."""
        if cv2.mean(self._activity[blob.window], blobs[blob.window])[0] < ALTERNATING * 255:
            return False
        return self._looks.known(blobs, blob.window)

    def _blob(self, contour: np.ndarray, box: tuple[int, int, int, int], pixels: float, calm: bool) -> Blob:
        m = cv2.moments(contour)
        x, y, w, h = box
        cx, cy = (m["m10"] / m["m00"], m["m01"] / m["m00"]) if m["m00"] else (x + w / 2, y + h / 2)
        return Blob.at(box, pixels, (cx, cy), self._size, calm)


def _window(x0: float, y0: float, x1: float, y1: float, shape: tuple[int, ...]) -> tuple[slice, slice]:
    """The part of the box [x0, x1) x [y0, y1) inside a frame of `shape` (rows, columns), as
    slices (empty where the box lies outside)."""
    height, width = shape[:2]
    rows = slice(int(min(height, max(0, y0))), int(min(height, max(0, y1))))
    return rows, slice(int(min(width, max(0, x0))), int(min(width, max(0, x1))))


def _weight(tau: float, dt: float) -> float:
    """An exponential average's weight for a new sample `dt` seconds after the last."""
    return 1.0 - math.exp(-dt / tau)


def _tolerant_diff(frame: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """How far each pixel lies outside the range of `ref` in its 3x3 neighbourhood: texture
    displaced by a pixel (foliage in the wind, a vibrating pole) stays inside; an object does not."""
    above = cv2.subtract(frame, cv2.dilate(ref, _TOLERANCE))
    below = cv2.subtract(cv2.erode(ref, _TOLERANCE), frame)
    return cv2.max(cv2.max(above, below), 0.0)


def _relit(boxes: list[Blob], blobs: np.ndarray, frame: np.ndarray, bg: np.ndarray) -> list[bool]:
    # `blobs` here leaves out clipped pixels: a blown-out patch has lost its texture.
    """Per blob: is it the background's own texture, brighter or darker (headlights
    sweeping a wall, a torch beam, a cloud's or a bus's shadow) rather than an object?

    Light multiplies what is there by a gain that varies smoothly, so the log-ratio
    log(frame) - log(background) is smooth over the region; an object replaces the
    texture, and the log-ratio then carries the edges of both. The test compares the
    log-ratio's edge energy (squared Laplacian of Gaussian) with the background's own,
    in the log domain too. A region without texture cannot be told from a plain object
    and is kept as motion: a missed person costs more than a false alarm. The maps
    cover only the blobs' union box (plus the filters' reach): usually a small part.
    """
    roi = _window(
        min(b.x for b in boxes) - 2,
        min(b.y for b in boxes) - 2,
        max(b.x + b.w for b in boxes) + 2,
        max(b.y + b.h for b in boxes) + 2,
        blobs.shape,
    )
    y0, x0 = roi[0].start, roi[1].start
    log_bg = cv2.log(bg[roi] + 1.0)
    ratio = cv2.subtract(cv2.log(frame[roi] + 1.0), log_bg)
    # The three edge-energy maps as one three-channel image: one pass of each filter.
    maps = _edge_energy(cv2.merge((bg[roi], log_bg, ratio)))
    slope = _slope(ratio)
    verdicts = []
    for b in boxes:
        box = (slice(b.y - y0, b.y - y0 + b.h), slice(b.x - x0, b.x - x0 + b.w))
        mask = blobs[b.window]
        texture, log_texture, ratio_energy = cv2.mean(maps[box], mask=mask)[:3]
        relit = texture >= RELIT_MIN_TEXTURE**2 and ratio_energy <= RELIT_SMOOTHNESS**2 * log_texture
        # Soft: the change takes several pixels to reach its full strength at every edge
        # (a cloud's shadow, a light pool): an object's outline is sharp at this size.
        strength = abs(cv2.mean(ratio[box], mask=mask)[0])
        edge_width = strength / max(1e-6, float(slope[box].max()))
        verdicts.append(relit or edge_width >= SOFT_EDGE_PX or _soft_rim(slope[box], mask, strength, edge_width))
    return verdicts


def _soft_rim(slope: np.ndarray, mask: np.ndarray, strength: float, edge_width: float) -> bool:
    """Light whose pool crosses a sharp line of the scene (a wall meeting the floor): the
    steepest change in its box is that line, but along most of its outline it still fades in."""
    if edge_width < SOFT_RIM_MIN_PX:
        return False  # sharp somewhere it counts: an object's own outline
    rim = slope[cv2.subtract(mask, cv2.erode(mask, _KERNEL)) > 0]
    return bool(rim.size) and strength / max(1e-6, float(np.percentile(rim, SOFT_RIM_PERCENTILE))) >= SOFT_EDGE_PX


def _slope(ratio: np.ndarray) -> np.ndarray:
    """Steepest change per pixel of the (lightly smoothed) log-ratio to the background."""
    smooth = cv2.GaussianBlur(ratio, (5, 5), 0)
    gx = cv2.Sobel(smooth, cv2.CV_32F, 1, 0, ksize=3, scale=0.125)
    gy = cv2.Sobel(smooth, cv2.CV_32F, 0, 1, ksize=3, scale=0.125)
    return cv2.magnitude(gx, gy)


def _edge_energy(img: np.ndarray) -> np.ndarray:
    """Squared Laplacian of Gaussian: edges and texture count; a smooth ramp (the soft
    edge of a light pool) and pixel noise barely do."""
    lap = cv2.Laplacian(cv2.GaussianBlur(img, (3, 3), 0), cv2.CV_32F)
    return cv2.multiply(lap, lap)
