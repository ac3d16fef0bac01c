"""Hard cases generated in code, with known truth (luma frames, 640x360).

The first set (drawn on a made-up blocky scene, 30 s at 5 fps; `NEGATIVES` and `POSITIVES`):
negatives (nothing of interest moves; every frame label 0): lights on/off, a porch light over
a tenth of the view, slow brightness ramp, IR day/night switch, night sensor noise, rain,
swaying foliage, headlights sweeping a wall, auto-exposure hunting, keyframe "pumping";
positives: a small far-away walker, a fast car, a person barely brighter than a dim night
street, a person walking in while the lights change.

The hard cases of issue 14 (`edge.evaluation.hard_cases`): each drawn over a real frame,
moving backgrounds that must raise no event (foliage at 0.3-3 Hz and 1-10 px, gusts, a big
tree, a flag, rain streaks, cloud shadows, headlights at night, insects at an IR lens, a spider
web), each again with a person walking through after a quiet lead-in of 30 s or more, and a few
people that are hard to find in time. Some are at 10 or 15 fps (the camera's rate; the daemon
analyses 5 per second).

`CASES` has every case with its frame rate, kind and description; `synthetic_clips(seed)`
generates them one at a time as they are used (all of them at once would take ~2 GB).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import overload

import cv2
import numpy as np

from edge.evaluation.clips import LabelledClip
from edge.evaluation.hard_cases import HARD_CASES, Case

H, W, FPS, N = 360, 640, 5.0, 150


def _scene(rng: np.random.Generator) -> np.ndarray:
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    base = 70 + 70 * (xx / W) + 25 * np.sin(yy / 40.0)
    blocks = rng.integers(-22, 22, (H // 16 + 1, W // 16 + 1)).astype(np.float32).repeat(16, 0).repeat(16, 1)
    return base + blocks[:H, :W]


def _out(img: np.ndarray, rng: np.random.Generator, sigma: float = 2.5) -> np.ndarray:
    return np.clip(img + rng.normal(0, sigma, img.shape), 0, 255).astype(np.uint8)


def _person(img: np.ndarray, x: float, y: int, w: int, h: int, value: float) -> np.ndarray:
    x0, x1 = max(0, int(x)), min(W, int(x) + w)
    if x1 > x0:
        img[y : y + h, x0:x1] = value
    return img


def lights(rng: np.random.Generator) -> tuple[list[np.ndarray], np.ndarray]:
    bg = _scene(rng)
    gains = [1.0 if i < 50 or i >= 100 else 1.7 for i in range(N)]
    return [_out(bg * g, rng) for g in gains], np.zeros(N, np.int8)


def ramp(rng: np.random.Generator) -> tuple[list[np.ndarray], np.ndarray]:
    bg = _scene(rng)
    return [_out(bg * (0.5 + 0.8 * i / N), rng) for i in range(N)], np.zeros(N, np.int8)


def ir_switch(rng: np.random.Generator) -> tuple[list[np.ndarray], np.ndarray]:
    """Day colour to night IR: contrast and gain jump, noisier sensor."""
    bg = _scene(rng)
    frames = [_out(bg if i < 75 else bg * 0.55 + 70, rng, 2.5 if i < 75 else 6) for i in range(N)]
    return frames, np.zeros(N, np.int8)


def night_noise(rng: np.random.Generator) -> tuple[list[np.ndarray], np.ndarray]:
    bg = _scene(rng) * 0.15 + 8
    return [_out(bg, rng, 9) for _ in range(N)], np.zeros(N, np.int8)


def rain(rng: np.random.Generator) -> tuple[list[np.ndarray], np.ndarray]:
    bg = _scene(rng)
    frames = []
    for _ in range(N):
        img = bg.copy()
        for _ in range(120):  # short bright diagonal streaks, new every frame
            x, y = int(rng.integers(0, W)), int(rng.integers(0, H - 20))
            cv2.line(img, (x, y), (x + 4, y + 16), 200.0, 1)
        frames.append(_out(img, rng))
    return frames, np.zeros(N, np.int8)


def foliage(rng: np.random.Generator) -> tuple[list[np.ndarray], np.ndarray]:
    """A tree crown swaying in a corner: textured region moving back and forth."""
    bg = _scene(rng)
    leaves = rng.integers(30, 160, (150, 220)).astype(np.float32)
    leaves = cv2.GaussianBlur(leaves, (5, 5), 0)
    frames = []
    for i in range(N):
        img = bg.copy()
        shift = int(round(6 * np.sin(2 * np.pi * i / 7) + 3 * np.sin(2 * np.pi * i / 3.1)))
        img[20:160, 420:600] = leaves[5:145, 20 + shift : 200 + shift]
        frames.append(_out(img, rng))
    return frames, np.zeros(N, np.int8)


def porch_light(rng: np.random.Generator) -> tuple[list[np.ndarray], np.ndarray]:
    """A light switching on and off over a tenth of the view (a porch, a shop sign),
    with a soft edge: too small for the whole-frame lighting check."""
    bg = _scene(rng)
    pool = np.clip((np.arange(W) - 0.9 * W) / 40.0, 0, 1)[None, :] * np.ones((H, 1), np.float32)
    lit = bg * (1 + 0.6 * pool)
    return [_out(lit if 50 <= i < 100 else bg, rng) for i in range(N)], np.zeros(N, np.int8)


def headlights(rng: np.random.Generator) -> tuple[list[np.ndarray], np.ndarray]:
    """At dusk, a passing car's headlights sweep a soft pool of light along a wall
    (the car itself is out of view) every 10 s."""
    bg = _scene(rng) * 0.5 + 10
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    frames = []
    for i in range(N):
        phase = (i % 50) / 15.0  # a 3 s sweep, then 7 s dark
        img = bg.copy()
        if phase < 1.0:
            cx = -100 + phase * (W + 200)
            img *= 1 + 0.8 * np.exp(-(((xx - cx) / 90) ** 2) - ((yy - 0.55 * H) / 70) ** 2)
        frames.append(_out(img, rng))
    return frames, np.zeros(N, np.int8)


def exposure_hunting(rng: np.random.Generator) -> tuple[list[np.ndarray], np.ndarray]:
    bg = _scene(rng)
    return [_out(bg * (1.0 + 0.2 * np.sin(2 * np.pi * i / 15)), rng) for i in range(N)], np.zeros(N, np.int8)


def keyframe_pumping(rng: np.random.Generator) -> tuple[list[np.ndarray], np.ndarray]:
    """Every GOP (10 frames) the codec re-quantises: blocky +-4 offsets over the frame."""
    bg = _scene(rng)
    frames = []
    blocks = np.zeros((H, W), np.float32)
    for i in range(N):
        if i % 10 == 0:
            blocks = rng.integers(-4, 5, (H // 8, W // 8)).astype(np.float32).repeat(8, 0).repeat(8, 1)
        frames.append(_out(bg + blocks, rng, 1.5))
    return frames, np.zeros(N, np.int8)


def _walk(
    rng: np.random.Generator,
    bg: Callable[[int], np.ndarray],
    size: tuple[int, int],
    y: int,
    speed: float,
    value: float,
    enter: int,
    x0: float = -30,
) -> tuple[list[np.ndarray], np.ndarray]:
    w, h = size
    frames, labels = [], np.zeros(N, np.int8)
    for i in range(N):
        img = bg(i).copy()
        if i >= enter:
            x = x0 + speed * (i - enter)
            if -w < x < W:
                _person(img, x, y, w, h, value)
                labels[i] = 1
        frames.append(_out(img, rng))
    return frames, labels


def far_walker(rng: np.random.Generator) -> tuple[list[np.ndarray], np.ndarray]:
    """A person far away: 10x26 px, walking slowly (3 px/frame = 15 px/s)."""
    scene = _scene(rng)
    return _walk(rng, lambda i: scene, (10, 26), 120, 3.0, 215, 30, x0=150)


def fast_car(rng: np.random.Generator) -> tuple[list[np.ndarray], np.ndarray]:
    scene = _scene(rng)
    return _walk(rng, lambda i: scene, (90, 40), 260, 60.0, 30, 40)


def night_walker(rng: np.random.Generator) -> tuple[list[np.ndarray], np.ndarray]:
    """A dim, flat night scene (contrast a sixth of day) and a person barely brighter
    than the street: the case contrast normalisation exists for."""
    scene = _scene(rng) * 0.18 + 12
    return _walk(rng, lambda i: scene, (24, 64), 200, 6.0, float(scene[200:264].mean()) + 7, 40)


def walker_in_lighting_change(rng: np.random.Generator) -> tuple[list[np.ndarray], np.ndarray]:
    scene = _scene(rng)
    return _walk(rng, lambda i: scene * (1.0 if i < 60 else 1.5), (24, 64), 200, 8.0, 235, 55)


NEGATIVES = {
    f.__name__.replace("_", "-"): f
    for f in (
        lights,
        porch_light,
        ramp,
        ir_switch,
        night_noise,
        rain,
        foliage,
        headlights,
        exposure_hunting,
        keyframe_pumping,
    )
}
POSITIVES = {f.__name__.replace("_", "-"): f for f in (far_walker, fast_car, night_walker, walker_in_lighting_change)}


def _first_set_case(
    name: str, make: Callable[[np.random.Generator], tuple[list[np.ndarray], np.ndarray]], kind: str
) -> Case:
    doc = " ".join((make.__doc__ or name.replace("-", " ")).split())
    return Case(name, make, FPS, kind, doc)


CASES: dict[str, Case] = {
    **{name: _first_set_case(name, make, "negative") for name, make in NEGATIVES.items()},
    **{name: _first_set_case(name, make, "positive") for name, make in POSITIVES.items()},
    **HARD_CASES,
}


def clip_of(case: Case, seed: int = 0) -> LabelledClip:
    """One case as a labelled clip at its own frame rate."""
    frames, labels = case.make(np.random.default_rng(seed))
    return LabelledClip(f"synthetic/{case.name}", case.fps, frames, labels)


class SyntheticClips(Sequence[LabelledClip]):
    """Every case as a clip, generated when asked for and not kept: iterating holds one clip at a
    time (the largest ~160 MB) instead of all (~2 GB). Indexing again generates again (same pixels)."""

    def __init__(self, seed: int = 0, names: list[str] | None = None) -> None:
        self.seed = seed
        self.names = list(CASES) if names is None else names

    def __len__(self) -> int:
        return len(self.names)

    @overload
    def __getitem__(self, index: int) -> LabelledClip: ...
    @overload
    def __getitem__(self, index: slice) -> list[LabelledClip]: ...
    def __getitem__(self, index: int | slice) -> LabelledClip | list[LabelledClip]:
        if isinstance(index, slice):
            return [clip_of(CASES[name], self.seed) for name in self.names[index]]
        return clip_of(CASES[self.names[index]], self.seed)

    def __iter__(self) -> Iterator[LabelledClip]:
        for name in self.names:
            yield clip_of(CASES[name], self.seed)


def synthetic_clips(seed: int = 0) -> SyntheticClips:
    """All synthetic cases as labelled clips, generated lazily (see SyntheticClips)."""
    return SyntheticClips(seed)
