"""Building blocks for the generated hard cases: the shipped real frames, sensor noise, and a
walking person (a soft-edged, textured sprite with swinging legs and arms) with its labels.

The real frames live in `edge/evaluation/data/` (see its README.md for sources and licences) so
that a user's clone generates the same cases without `../shared`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache, lru_cache
from importlib import resources

import cv2
import numpy as np

H, W = 360, 640
DATA_FILES = ("street.jpg", "lot.jpg", "room.jpg", "foliage.png")
SUPERSAMPLE_PX = 240  # the sprite is drawn about this tall, then area-averaged: soft, sub-pixel edges
NOISE_SLACK = 1 << 16  # a bank of this many extra samples: one random offset per frame, no new draws


@cache
def _load(name: str) -> np.ndarray:
    """A shipped grey frame, decoded once per process (read-only: callers copy)."""
    raw = resources.files("edge.evaluation").joinpath("data", name).read_bytes()
    img = cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_GRAYSCALE)
    if img is None:
        raise FileNotFoundError(f"edge/evaluation/data/{name} is missing or unreadable")
    img.setflags(write=False)
    return img


def real_frame(name: str) -> np.ndarray:
    """A shipped real frame as float32 (a fresh copy): 'street', 'lot', 'room' (640x360) or 'foliage'."""
    match = [f for f in DATA_FILES if f.split(".")[0] == name]
    if not match:
        raise KeyError(f"no shipped frame {name!r}; have {[f.split('.')[0] for f in DATA_FILES]}")
    return _load(match[0]).astype(np.float32)


class Noise:
    """Gaussian sensor noise at the cost of a slice: one bank drawn per clip, a random offset per frame."""

    def __init__(self, rng: np.random.Generator, sigma: float) -> None:
        self.sigma = sigma
        self.bank = rng.standard_normal(H * W + NOISE_SLACK, dtype=np.float32) * np.float32(sigma)

    def add(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        off = int(rng.integers(0, NOISE_SLACK))
        img += self.bank[off : off + H * W].reshape(H, W)
        return img


def to_uint8(img: np.ndarray) -> np.ndarray:
    return np.clip(img, 0, 255).astype(np.uint8)


def smooth_field(rng: np.random.Generator, shape: tuple[int, int], cells: int) -> np.ndarray:
    """Smooth random field of unit std: `cells` random values across the longer side, cubic-interpolated."""
    h, w = shape
    ch, cw = max(2, round(cells * h / max(h, w))) + 2, max(2, round(cells * w / max(h, w))) + 2
    low = rng.standard_normal((ch, cw)).astype(np.float32)
    up = cv2.resize(low, (w, h), interpolation=cv2.INTER_CUBIC)
    return (up - up.mean()) / (up.std() + 1e-6)


# ---------------------------------------------------------------- the person


@dataclass(frozen=True)
class Look:
    """A person's grey levels: head, shirt (torso and arms), trousers; plus a fixed fabric texture."""

    head: float
    shirt: float
    legs: float
    texture_seed: int
    front: bool = False  # seen from the front (walking towards the camera): legs do not swing sideways


def look_near(rng: np.random.Generator, background: float, contrast: tuple[float, float], front: bool = False) -> Look:
    """A look whose mean differs from `background` by a random amount in `contrast`, either sign."""
    sign = 1.0 if background < 60 else -1.0 if background > 195 else float(rng.choice([-1.0, 1.0]))
    delta = rng.uniform(*contrast)
    mean = background + sign * delta
    # Head, shirt and trousers differ, but each keeps at least 70 % of the contrast.
    parts = [float(np.clip(mean + rng.uniform(-0.3, 0.3) * delta, 3, 252)) for _ in range(3)]
    return Look(parts[0], parts[1], parts[2], int(rng.integers(1 << 30)), front)


def _limb(
    canvas: np.ndarray, start: tuple[float, float], angle: float, length: float, width: int, value: int
) -> tuple[float, float]:
    """Draw one limb segment hanging from `start` at `angle` (radians from straight down); return its end."""
    end = (start[0] + length * math.sin(angle), start[1] + length * math.cos(angle))
    p0 = (round(start[0]), round(start[1]))
    p1 = (round(end[0]), round(end[1]))
    cv2.line(canvas, p0, p1, value, max(1, width), cv2.LINE_8)
    return end


def supersample(h: float) -> int:
    """How much larger than shown a person `h` px tall is drawn (4x small ones, 1x large ones)."""
    return max(1, min(4, round(SUPERSAMPLE_PX / max(h, 1.0))))


def _draw_parts(h: float, phase: float, front: bool) -> tuple[np.ndarray, tuple[float, float]]:
    """Part labels (1 head, 2 shirt, 3 legs) at supersample(h) x scale, and the feet's canvas position."""
    ss = supersample(h)
    s = h * ss
    cw, ch = int(0.7 * s) + 8, int(1.08 * s) + 8
    canvas = np.zeros((ch, cw), np.uint8)
    cx, feet = cw / 2, ch - 4 - 0.02 * s
    swing = 0.0 if front else 0.45 * math.sin(phase)
    hip = (cx, feet - 0.50 * s)
    for side in (-1.0, 1.0):  # legs: thigh then shin, the knee bends on the back swing
        lift = 0.0 if not front else max(0.0, side * math.sin(phase)) * 0.06 * s
        start = (hip[0] + (0.045 * s * side if front else 0.0), hip[1] - lift)
        knee = _limb(canvas, start, side * swing, 0.26 * s, int(0.085 * s), 3)
        bend = max(0.0, -side * math.sin(phase)) * 0.6 if not front else 0.0
        _limb(canvas, knee, side * swing - bend, 0.24 * s - lift, int(0.07 * s), 3)
    shoulder = (cx, feet - 0.80 * s)
    for side in (-1.0, 1.0):  # arms swing against the legs
        start = (shoulder[0] + (0.11 * s * side if front else 0.0), shoulder[1])
        arm = -0.7 * side * swing + (0.12 * side if front else 0.0)
        elbow = _limb(canvas, start, arm, 0.17 * s, int(0.06 * s), 2)
        _limb(canvas, elbow, arm - 0.25 * abs(swing), 0.16 * s, int(0.05 * s), 2)
    torso_w = (0.13 if front else 0.09) * s
    cv2.ellipse(canvas, (round(cx), round(feet - 0.67 * s)), (round(torso_w), round(0.18 * s)), 0, 0, 360, 2, -1)
    cv2.ellipse(canvas, (round(cx), round(feet - 0.915 * s)), (round(0.055 * s), round(0.068 * s)), 0, 0, 360, 1, -1)
    return canvas, (cx / ss, feet / ss)


def sprite(h: float, phase: float, look: Look) -> tuple[np.ndarray, np.ndarray, tuple[float, float]]:
    """(premultiplied grey, alpha, feet position in the patch) of a person `h` px tall at gait `phase`."""
    canvas, feet = _draw_parts(h, phase, look.front)
    ss = supersample(h)
    size = (max(1, round(canvas.shape[1] / ss)), max(1, round(canvas.shape[0] / ss)))
    grey = np.zeros((size[1], size[0]), np.float32)
    alpha = np.zeros_like(grey)
    for label, value in ((1, look.head), (2, look.shirt), (3, look.legs)):
        cover = cv2.resize((canvas == label).astype(np.float32), size, interpolation=cv2.INTER_AREA)
        alpha += cover
        grey += cover * value
    if ss < 3:  # drawn near full size: soften the edges as a lens would
        grey, alpha = cv2.GaussianBlur(grey, (3, 3), 0.7), cv2.GaussianBlur(alpha, (3, 3), 0.7)
    alpha = np.minimum(alpha, 1.0)
    grey += alpha * _fabric(look.texture_seed, grey.shape)
    return grey, alpha, feet


@lru_cache(maxsize=64)  # bounded: a long run makes many people
def _fabric_bank(seed: int) -> np.ndarray:
    """Folds and shading of the clothes: smooth +-6 grey levels, fixed per person."""
    rng = np.random.default_rng(seed)
    bank = 6.0 * smooth_field(rng, (160, 80), 6) + rng.normal(0, 2.0, (160, 80)).astype(np.float32)
    bank.setflags(write=False)
    return bank


def _fabric(seed: int, shape: tuple[int, int]) -> np.ndarray:
    return cv2.resize(_fabric_bank(seed), (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)


@dataclass(frozen=True)
class Placed:
    """Where a sprite landed: its whole alpha, and the part inside the frame with its frame box."""

    total: float
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 in the frame
    alpha: np.ndarray  # the sprite's alpha over `box`

    @property
    def seen(self) -> float:
        return float(self.alpha.sum()) / self.total if self.total > 0 else 0.0


def paste(img: np.ndarray, grey: np.ndarray, alpha: np.ndarray, x: float, y: float) -> Placed | None:
    """Composite a premultiplied sprite with its top-left at (x, y); None when none of it is in view."""
    ph, pw = alpha.shape
    x0, y0 = int(math.floor(x)), int(math.floor(y))
    fx, fy = x - x0, y - y0
    if fx or fy:  # sub-pixel placement: the sprite glides instead of stepping whole pixels
        shift = np.array([[1, 0, fx], [0, 1, fy]], np.float32)
        grey = cv2.warpAffine(grey, shift, (pw + 1, ph + 1))
        alpha = cv2.warpAffine(alpha, shift, (pw + 1, ph + 1))
        ph, pw = alpha.shape
    total = float(alpha.sum())
    ix0, iy0, ix1, iy1 = max(0, x0), max(0, y0), min(img.shape[1], x0 + pw), min(img.shape[0], y0 + ph)
    if ix1 <= ix0 or iy1 <= iy0 or total <= 0:
        return None
    a = alpha[iy0 - y0 : iy1 - y0, ix0 - x0 : ix1 - x0]
    g = grey[iy0 - y0 : iy1 - y0, ix0 - x0 : ix1 - x0]
    region = img[iy0:iy1, ix0:ix1]
    region *= 1.0 - a
    region += g
    return Placed(total, (ix0, iy0, ix1, iy1), a)


@dataclass
class Walk:
    """A person walking a straight line at a steady pace, seen at `height(y)` px for feet at y.

    Positions are in frame pixels; `start`/`end` are where the feet are at `enter` and at the end
    of the walk. The speed in px/s is `pace` body heights per second (0.5-1.5 is a realistic walk)."""

    look: Look
    start: tuple[float, float]
    end: tuple[float, float]
    enter: float  # seconds into the clip when the walk starts (negative: already walking)
    pace: float
    height: tuple[float, float]  # height at start, height at end (perspective)
    step_hz: float = 0.95  # one gait cycle (two steps) per ~1 s
    bob: float = 0.015  # vertical bob as a share of height

    def progress(self, t: float) -> float | None:
        """Share of the path walked at time t (None before the start or after the end).

        The image speed is `pace` heights per second and the height changes linearly along the
        path (perspective), so h(t) = h0 * exp(k t): closed form, no integration."""
        length = math.dist(self.start, self.end)
        dt = t - self.enter
        if dt < 0 or length == 0:
            return None
        h0, h1 = self.height
        if abs(h1 - h0) < 1e-6:
            u = self.pace * h0 * dt / length
        else:
            k = (h1 - h0) * self.pace / length
            u = (h0 * math.exp(k * dt) - h0) / (h1 - h0)
        return u if u <= 1.0 else None

    def pose(self, t: float) -> tuple[float, float, float, float] | None:
        """(feet x, feet y, height, gait phase) at time t, or None when not walking."""
        u = self.progress(t)
        if u is None:
            return None
        h = self.height[0] + (self.height[1] - self.height[0]) * u
        phase = 2 * math.pi * self.step_hz * (t - self.enter)
        x = self.start[0] + (self.end[0] - self.start[0]) * u
        y = self.start[1] + (self.end[1] - self.start[1]) * u - self.bob * h * abs(math.cos(phase))
        return x, y, h, phase

    def draw(self, img: np.ndarray, t: float) -> Placed | None:
        """Draw the person at time t into img; where they landed, or None when not in view."""
        pose = self.pose(t)
        if pose is None:
            return None
        x, y, h, phase = pose
        grey, alpha, feet = sprite(h, phase, self.look)
        return paste(img, grey, alpha, x - feet[0], y - feet[1])


def label_for(seen: float) -> int:
    """1 when at least half the body is in view, -1 (ignore) for a sliver, 0 when absent."""
    return 1 if seen >= 0.5 else -1 if seen > 0 else 0
