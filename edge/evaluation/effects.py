"""Moving backgrounds for the hard cases, each drawn over a real frame (float32 luma, 640x360).

Every effect is built once from the case's random generator (its shape and its whole motion are
fixed then) and applied per frame with `apply(img, t, rng)`, in place. Effects that draw new
random detail every frame (rain) take it from `rng`, which the renderer advances identically with
and without a person in the scene, so the two renderings differ only by the person.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Protocol

import cv2
import numpy as np

from edge.evaluation.scenes import H, W, real_frame, smooth_field


class Effect(Protocol):
    def apply(self, img: np.ndarray, t: float, rng: np.random.Generator) -> None: ...


def smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def constant(_: float) -> float:
    return 1.0


# ---------------------------------------------------------------- foliage


def crown_shape(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """A tree crown's outline: a union of random ellipses, soft at the edge (0..1, h x w)."""
    mask = np.zeros((h, w), np.float32)
    cv2.ellipse(mask, (w // 2, h // 2), (int(w * 0.38), int(h * 0.36)), 0, 0, 360, 1.0, -1)
    for _ in range(int(rng.integers(6, 10))):  # lobes, kept inside the box so no edge is cut straight
        cx, cy = int(rng.uniform(0.3, 0.7) * w), int(rng.uniform(0.3, 0.7) * h)
        axes = (int(rng.uniform(0.1, 0.2) * w), int(rng.uniform(0.1, 0.2) * h))
        cv2.ellipse(mask, (cx, cy), axes, float(rng.uniform(0, 180)), 0, 360, 1.0, -1)
    sigma = 0.03 * min(w, h)
    return cv2.GaussianBlur(mask, (0, 0), sigma)


def foliage_texture(rng: np.random.Generator, w: int, h: int) -> tuple[np.ndarray, np.ndarray]:
    """(leaf grey, leaf cover 0..1) from the real foliage frame, scaled to cover w x h at a random crop.

    The source is a backlit tree: bright gaps between leaves are sky, so they become holes through
    which the scene behind shows (and moves, as the leaves move)."""
    src = real_frame("foliage")
    scale = max(w / src.shape[1], h / src.shape[0], 1.0) * float(rng.uniform(1.0, 1.25))
    big = cv2.resize(src, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)
    y0 = int(rng.integers(0, big.shape[0] - h + 1))
    x0 = int(rng.integers(0, big.shape[1] - w + 1))
    crop = big[y0 : y0 + h, x0 : x0 + w]
    cover = np.clip((238.0 - crop) / 45.0, 0.0, 1.0)
    grey = 0.8 * crop - 40.0  # leaves in a street scene: darker than the sky-lit source
    return grey, cover


class Crown:
    """A tree crown swaying in place: a smooth, spatially varying displacement field (cv2.remap).

    Each point moves on a small ellipse at `hz` (plus a weaker flutter at about 2.3x), with a phase
    that varies smoothly over the crown (branches out of step), more at the top than near the trunk.
    `coherent` makes the whole crown move as one (same phase everywhere). `envelope(t)` scales
    the amplitude over time (a gust); `lean` is the share of the amplitude the crown leans away
    from the wind while the envelope is up (the mean position moves a little, never by `amp`)."""

    def __init__(
        self,
        rng: np.random.Generator,
        box: tuple[int, int, int, int],
        amp: float,
        hz: float,
        coherent: bool = False,
        envelope: Callable[[float], float] = constant,
        lean: float = 0.0,
        flutter_hz: float | None = None,
    ) -> None:
        x, y, w, h = box
        pad = int(math.ceil(amp * 1.6)) + 4
        rx0, ry0, rw, rh = x - pad, y - pad, w + 2 * pad, h + 2 * pad  # the crown's region, may leave the frame
        grey, cover = foliage_texture(rng, w, h)
        layer = np.zeros((rh, rw, 2), np.float32)  # premultiplied grey, alpha: one remap moves both
        alpha = crown_shape(rng, w, h) * cover
        layer[pad : pad + h, pad : pad + w, 0] = grey * alpha
        layer[pad : pad + h, pad : pad + w, 1] = alpha
        self.layer = layer
        yy, xx = np.mgrid[0:rh, 0:rw].astype(np.float32)
        height = np.clip((pad + h - yy) / h, 0.2, 1.0)  # the trunk end moves least
        if coherent:  # one phase everywhere, the flutter too: the crown moves as one piece
            gain, phase = np.ones((rh, rw), np.float32), np.zeros((rh, rw), np.float32)
            flutter_phase = np.full((rh, rw), float(rng.uniform(0, 2 * math.pi)), np.float32)
        else:
            gain = np.clip(0.85 + 0.15 * smooth_field(rng, (rh, rw), 5), 0.6, 1.1).astype(np.float32)
            phase = (1.4 * smooth_field(rng, (rh, rw), 4)).astype(np.float32)
            flutter_phase = (2.0 * smooth_field(rng, (rh, rw), 9)).astype(np.float32)
        # Only the part inside the frame is drawn; it samples the whole layer, so leaves beyond
        # the edge can sway into view.
        self.x0, self.y0 = max(0, rx0), max(0, ry0)
        self.x1, self.y1 = min(W, rx0 + rw), min(H, ry0 + rh)
        view = np.s_[self.y0 - ry0 : self.y1 - ry0, self.x0 - rx0 : self.x1 - rx0]
        self.grid = (xx[view], yy[view])
        base = (amp * height * gain)[view]
        self.main = (base * np.cos(phase[view]), base * np.sin(phase[view]))
        fp = flutter_phase[view]
        self.flutter = (0.2 * base * np.cos(fp), 0.2 * base * np.sin(fp))
        self.lean_field = (lean * amp * height[view]).astype(np.float32)
        self.hz = hz
        self.flutter_hz = flutter_hz if flutter_hz is not None else min(3.0, 2.3 * hz)
        self.envelope = envelope
        self.amp = amp
        self.alpha = np.zeros((self.y1 - self.y0, self.x1 - self.x0), np.float32)

    def displacement(self, t: float) -> tuple[np.ndarray, np.ndarray]:
        """(dx, dy) of every point of the crown region at time t, in pixels."""
        env = self.envelope(t)
        w1, w2 = 2 * math.pi * self.hz * t, 2 * math.pi * self.flutter_hz * t
        s1, c1, s2, c2 = math.sin(w1), math.cos(w1), math.sin(w2), math.cos(w2)
        dx = env * (self.main[0] * s1 + self.main[1] * c1 + self.flutter[0] * s2 + self.flutter[1] * c2)
        dy = (0.35 * env) * (self.main[1] * s1 - self.main[0] * c1 + self.flutter[1] * s2 - self.flutter[0] * c2)
        if self.lean_field.any():
            dx = dx + self.lean_field * max(0.0, env - self.envelope(0.0))
        return dx, dy

    def apply(self, img: np.ndarray, t: float, rng: np.random.Generator) -> None:
        dx, dy = self.displacement(t)
        moved = cv2.remap(self.layer, self.grid[0] - dx, self.grid[1] - dy, cv2.INTER_LINEAR)
        region = img[self.y0 : self.y1, self.x0 : self.x1]
        region *= 1.0 - moved[..., 1]
        region += moved[..., 0]
        self.alpha = moved[..., 1]

    def cover(self, box: tuple[int, int, int, int]) -> np.ndarray:
        """How much of each pixel of `box` (x0, y0, x1, y1) the leaves hid in the last frame drawn."""
        x0, y0, x1, y1 = box
        out = np.zeros((y1 - y0, x1 - x0), np.float32)
        ix0, iy0, ix1, iy1 = max(x0, self.x0), max(y0, self.y0), min(x1, self.x1), min(y1, self.y1)
        if ix1 > ix0 and iy1 > iy0:
            part = self.alpha[iy0 - self.y0 : iy1 - self.y0, ix0 - self.x0 : ix1 - self.x0]
            out[iy0 - y0 : iy1 - y0, ix0 - x0 : ix1 - x0] = part
        return out


def gust(calm_until: float, rise_s: float = 1.2, calm: float = 0.08) -> Callable[[float], float]:
    """An envelope: near calm, then a gust that starts suddenly and stays, with slow surges."""

    def envelope(t: float) -> float:
        if t < calm_until:
            return calm
        grown = 1 - math.exp(-(t - calm_until) / rise_s)
        return calm + (1 - calm) * grown * (0.85 + 0.15 * math.sin(2 * math.pi * (t - calm_until) / 6.5))

    return envelope


def draw_trunk(base: np.ndarray, top: tuple[int, int], bottom: tuple[int, int], width: int, grey: float) -> None:
    """A static trunk under a crown (part of the background frame)."""
    cv2.line(base, top, bottom, grey, width, cv2.LINE_AA)


# ---------------------------------------------------------------- flag


class Flag:
    """A striped flag on a pole, waving: a travelling sine wave along it, growing from the pole
    outwards, with shading that follows the wave's slope and slow changes of wind strength."""

    def __init__(self, rng: np.random.Generator, base: np.ndarray, pole: tuple[int, int], size: tuple[int, int]):
        px, py = pole
        length, height = size
        self.amp = float(rng.uniform(6, 10))
        self.hz = float(rng.uniform(1.0, 1.8))
        self.k = 2 * math.pi / (float(rng.uniform(0.7, 1.0)) * length)
        stripes = rng.uniform(40, 220, 3).astype(np.float32)
        tex = np.repeat(stripes, int(math.ceil(height / 3)))[:height, None] * np.ones((1, length), np.float32)
        tex += 4.0 * smooth_field(rng, (height, length), 8)
        cv2.line(base, (px, py - 6), (px, py + int(3.2 * height)), 95.0, 3, cv2.LINE_AA)
        pad = int(self.amp) + 4
        self.x0, self.y0 = px + 1, max(0, py - pad)
        self.x1, self.y1 = min(W, px + 1 + length + 2), min(H, py + height + pad)
        rh, rw = self.y1 - self.y0, self.x1 - self.x0
        layer = np.zeros((rh, rw, 2), np.float32)
        top = py - self.y0
        layer[top : top + height, :length, 0] = tex
        layer[top : top + height, :length, 1] = 1.0
        self.layer = layer
        self.u = np.arange(rw, dtype=np.float32)
        self.grid = np.mgrid[0:rh, 0:rw].astype(np.float32)[::-1]  # (xx, yy)
        self.length = length

    def apply(self, img: np.ndarray, t: float, rng: np.random.Generator) -> None:
        wind = 0.7 + 0.3 * math.sin(2 * math.pi * t / 7.0)
        wave = self.k * self.u - 2 * math.pi * self.hz * t
        reach = np.clip(self.u / self.length, 0, 1) ** 1.3
        dy = (self.amp * wind) * reach * np.sin(wave)
        shade = 1.0 + 0.3 * wind * reach * np.cos(wave)
        moved = cv2.remap(self.layer, self.grid[0], self.grid[1] - dy[None, :], cv2.INTER_LINEAR)
        region = img[self.y0 : self.y1, self.x0 : self.x1]
        region *= 1.0 - moved[..., 1]
        region += moved[..., 0] * shade[None, :]


# ---------------------------------------------------------------- weather and light


class Rain:
    """Rain: hundreds of thin bright streaks, new every frame (a few near the lens longer and
    thicker), over a slightly darker, hazier scene."""

    def __init__(self, rng: np.random.Generator, count: int = 360, darken: float = 0.85) -> None:
        self.count = count
        self.darken = darken
        self.slant = float(rng.uniform(-0.3, 0.3))
        self.layer = np.zeros((H, W), np.uint8)

    def _streaks(self, rng: np.random.Generator, count: int, length: tuple[float, float]) -> list[np.ndarray]:
        xs, ys = rng.uniform(-40, W + 40, count), rng.uniform(-60, H, count)
        lens = rng.uniform(*length, count)
        ends = np.stack([xs + self.slant * lens, ys + lens], axis=1)
        pts = np.stack([np.stack([xs, ys], axis=1), ends], axis=1).astype(np.int32)
        return list(pts)

    def apply(self, img: np.ndarray, t: float, rng: np.random.Generator) -> None:
        img *= self.darken
        img += 8.0
        self.layer[:] = 0
        for value, share in ((255, 0.3), (170, 0.35), (100, 0.35)):
            cv2.polylines(
                self.layer, self._streaks(rng, int(self.count * share), (8, 26)), False, value, 1, cv2.LINE_AA
            )
        cv2.polylines(self.layer, self._streaks(rng, 12, (40, 80)), False, 90, 2, cv2.LINE_AA)
        img += self.layer * np.float32(0.2)


class CloudShadows:
    """Large soft-edged cloud shadows (gain `gain` inside) drifting across the whole scene.

    The shadow map is drawn once for the whole clip (a wide strip) and slid past the view."""

    def __init__(self, rng: np.random.Generator, duration: float, speed: float, gain: float) -> None:
        self.speed = speed
        travel = int(speed * duration) + W + 8
        cell = 170
        low = rng.standard_normal((H // cell + 4, travel // cell + 4)).astype(np.float32)
        field = cv2.resize(low, (travel + 4 * cell, H + 4 * cell), interpolation=cv2.INTER_CUBIC)
        field = field[2 * cell : 2 * cell + H, 2 * cell : 2 * cell + travel]
        field = (field - field.mean()) / (field.std() + 1e-6)
        shadow = smoothstep((field - 0.2) / 1.4 + 0.5)  # soft edges tens of px wide
        self.gain_map = (1.0 - (1.0 - gain) * shadow).astype(np.float32)
        self.travel = travel

    def apply(self, img: np.ndarray, t: float, rng: np.random.Generator) -> None:
        off = max(0, self.travel - W - int(self.speed * t))  # the strip slides right: clouds move +x
        img *= self.gain_map[:, off : off + W]


class Headlights:
    """Night: the scene at a small ambient light, and every ~10 s a passing car's headlights (two soft
    pools) sweep across the wall in ~2.5 s, lighting what they pass (the car stays out of view)."""

    def __init__(self, rng: np.random.Generator, duration: float, ambient: float = 0.13) -> None:
        self.ambient = ambient
        starts, t = [], float(rng.uniform(2, 6))
        while t < duration:
            starts.append(
                (t, float(rng.uniform(2.0, 3.2)), float(rng.choice([-1.0, 1.0])), float(rng.uniform(0.7, 1.0)))
            )
            t += float(rng.uniform(8.5, 11.5))
        self.sweeps = starts
        self.cy = float(rng.uniform(0.3, 0.45)) * H
        self.xs = np.arange(W, dtype=np.float32)
        self.ys = np.arange(H, dtype=np.float32)

    def pool(self, t: float) -> np.ndarray | None:
        """The headlight pools' brightness at time t (H x W), or None between sweeps."""
        for start, dur, direction, strength in self.sweeps:
            if start <= t < start + dur:
                p = (t - start) / dur
                cx = -180 + p * (W + 360) if direction > 0 else W + 180 - p * (W + 360)
                sx = 60 + 50 * abs(p - 0.5)
                gx = np.exp(-(((self.xs - cx + 55) / sx) ** 2)) + np.exp(-(((self.xs - cx - 55) / sx) ** 2))
                gy = np.exp(-(((self.ys - self.cy) / 70) ** 2))
                return np.outer(gy, gx * (0.9 * strength))
        return None

    def apply(self, img: np.ndarray, t: float, rng: np.random.Generator) -> None:
        pool = self.pool(t)
        if pool is None:
            img *= self.ambient
        else:
            img *= pool + self.ambient
        img += 4.0


def ir_night(frame: np.ndarray) -> np.ndarray:
    """A day frame as an IR-lit night view: flat, grey, brighter in the middle (the illuminator)."""
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    r2 = ((xx - W / 2) / (W / 2)) ** 2 + ((yy - H / 2) / (H / 2)) ** 2
    return (0.4 * frame + 22.0) * (1.15 - 0.35 * r2)


class Insects:
    """Insects circling an IR-lit lens: 1-3 big, blurry bright discs (10-40 px) on fast, erratic
    loops, each appearing and disappearing. Paths are fixed at build time (n frames at fps)."""

    def __init__(self, rng: np.random.Generator, n: int, fps: float) -> None:
        count = int(rng.integers(1, 4))
        dt = 1.0 / fps
        self.fps = fps
        self.tracks = [self._track(rng, n, dt) for _ in range(count)]

    @staticmethod
    def _track(rng: np.random.Generator, n: int, dt: float) -> np.ndarray:
        """Per frame: x, y, diameter, brightness (0 when away from the lens)."""
        out = np.zeros((n, 4), np.float32)
        centre = np.array([rng.uniform(100, W - 100), rng.uniform(60, H - 60)])
        angle, omega = rng.uniform(0, 2 * math.pi), rng.choice([-1, 1]) * rng.uniform(3, 8)
        radius, size, bright = rng.uniform(30, 110), rng.uniform(10, 40), rng.uniform(90, 190)
        present = bool(rng.random() < 0.6)
        for i in range(n):
            if rng.random() < dt / (3.0 if present else 2.0):  # on ~3 s, off ~2 s
                present = not present
                if present:
                    centre = np.array([rng.uniform(80, W - 80), rng.uniform(50, H - 50)])
                    size, radius = rng.uniform(10, 40), rng.uniform(30, 110)
            centre = np.clip(centre + rng.normal(0, 25 * math.sqrt(dt), 2), [40, 30], [W - 40, H - 30])
            omega = float(np.clip(omega + rng.normal(0, 4 * math.sqrt(dt)), -9, 9))
            angle += omega * dt
            r = radius * (1 + 0.35 * math.sin(1.7 * i * dt))
            jitter = rng.normal(0, 6, 2)
            x = centre[0] + r * math.cos(angle) + jitter[0]
            y = centre[1] + 0.7 * r * math.sin(angle) + jitter[1]
            d = max(10.0, size * (1 + 0.3 * math.sin(2.3 * i * dt + radius)))  # nearer, farther
            out[i] = (x, y, d, bright if present else 0.0)
        return out

    def apply(self, img: np.ndarray, t: float, rng: np.random.Generator) -> None:
        i = round(t * self.fps)
        for track in self.tracks:
            x, y, d, bright = track[min(i, len(track) - 1)]
            if bright > 0:
                blob(img, float(x), float(y), float(d), float(bright))


def blob(img: np.ndarray, x: float, y: float, d: float, bright: float) -> None:
    """An out-of-focus bright disc of diameter d (soft rim), added to img."""
    r = d / 2
    half = int(r * 1.6) + 2
    x0, y0, x1, y1 = max(0, int(x) - half), max(0, int(y) - half), min(W, int(x) + half), min(H, int(y) + half)
    if x1 <= x0 or y1 <= y0:
        return
    yy, xx = np.ogrid[y0:y1, x0:x1]
    dist = np.sqrt((xx - x) ** 2 + (yy - y) ** 2)
    img[y0:y1, x0:x1] += bright * smoothstep((r * 1.4 - dist) / (1.2 * r))


class SpiderWeb:
    """A spider web on the lens housing: thin, bright (IR-lit), very out-of-focus threads in one
    corner, swaying in place by a few pixels."""

    def __init__(self, rng: np.random.Generator, corner: str = "tl") -> None:
        w, h = 240, 190
        ss = 2
        canvas = np.zeros((h * ss, w * ss), np.float32)
        hub = np.array([w * rng.uniform(0.4, 0.55), h * rng.uniform(0.4, 0.55)]) * ss
        spokes = int(rng.integers(12, 19))
        angles = np.sort(rng.uniform(0, 2 * math.pi, spokes))
        reach = rng.uniform(0.6, 1.0, spokes) * min(w, h) * 0.6 * ss
        for a, r in zip(angles, reach, strict=True):
            end = hub + r * np.array([math.cos(a), math.sin(a)])
            cv2.line(canvas, tuple(int(v) for v in hub), tuple(int(v) for v in end), 1.0, 1, cv2.LINE_AA)
        for frac in np.linspace(0.15, 0.95, int(rng.integers(8, 14))):
            pts = hub + (frac * reach)[:, None] * np.stack([np.cos(angles), np.sin(angles)], axis=1)
            cv2.polylines(canvas, [pts.astype(np.int32)], True, 0.8, 1, cv2.LINE_AA)
        for anchor in ((0, 0), (w * ss, 0), (0, h * ss)):  # anchor threads to the housing edge
            cv2.line(canvas, tuple(int(v) for v in hub), anchor, 1.0, 2, cv2.LINE_AA)
        layer = cv2.resize(canvas, (w, h), interpolation=cv2.INTER_AREA)
        layer = cv2.GaussianBlur(layer, (0, 0), float(rng.uniform(1.8, 3.0)))
        self.layer = layer / (layer.max() + 1e-6) * float(rng.uniform(80, 130))
        flip_x, flip_y = corner[1] == "r", corner[0] == "b"
        self.layer = self.layer[:: -1 if flip_y else 1, :: -1 if flip_x else 1].copy()
        self.x0 = W - w if flip_x else 0
        self.y0 = H - h if flip_y else 0
        self.amp = float(rng.uniform(2, 4))
        self.hz = float(rng.uniform(0.4, 1.2))
        self.phases = rng.uniform(0, 2 * math.pi, 2)

    def offset(self, t: float) -> tuple[float, float]:
        """The web's sway at time t (px): in place, a few pixels."""
        w = 2 * math.pi * self.hz * t
        dx = self.amp * (math.sin(w) + 0.3 * math.sin(2.7 * w + self.phases[0]))
        dy = 0.5 * self.amp * math.sin(1.3 * w + self.phases[1])
        return dx, dy

    def apply(self, img: np.ndarray, t: float, rng: np.random.Generator) -> None:
        dx, dy = self.offset(t)
        h, w = self.layer.shape
        moved = cv2.warpAffine(self.layer, np.array([[1, 0, dx], [0, 1, dy]], np.float32), (w, h))
        img[self.y0 : self.y0 + h, self.x0 : self.x0 + w] += moved
