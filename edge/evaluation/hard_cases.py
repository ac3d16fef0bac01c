"""Generated hard cases made from real frames (issue 14): moving backgrounds that must raise no
event (swaying trees above all, flags, rain, cloud shadows, headlights, insects, a spider web),
and the same scenes with a person walking through after a long quiet lead-in, who must.

Each case is built in two steps so a test can render the same scene with and without its person:
`build(rng) -> Built` fixes the scene, its motion and the walk; `render(built, rng, person)` draws
the frames. `make(rng)` does both and returns (frames, labels) like the older synthetic cases.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from edge.evaluation.effects import (
    CloudShadows,
    Crown,
    Effect,
    Flag,
    Headlights,
    Insects,
    Rain,
    SpiderWeb,
    draw_trunk,
    gust,
    ir_night,
)
from edge.evaluation.scenes import H, Noise, Placed, W, Walk, label_for, look_near, real_frame, to_uint8

NEGATIVE_S = 40.0  # every negative is at least this long
LEAD_IN_S = (30.0, 34.0)  # a positive's quiet lead-in before the person appears
TAIL_S = (2.0, 3.5)  # quiet after the person has left
DAY_SIGMA, NIGHT_SIGMA, IR_SIGMA = 2.2, 4.0, 6.0
MAX_BUILD_S = 75.0  # effects that plan ahead (cloud strip, sweeps, insect paths) plan this far

Frames = tuple[list[np.ndarray], np.ndarray]


@dataclass
class Built:
    """A case ready to render: the still background, effects behind and in front of the person, the walk."""

    fps: float
    n: int
    base: np.ndarray
    back: list[Effect] = field(default_factory=list)
    front: list[Effect] = field(default_factory=list)
    sigma: float = DAY_SIGMA
    walks: list[Walk] = field(default_factory=list)
    boxes: dict[int, list[tuple[int, int, int, int]]] = field(default_factory=dict)  # where people were drawn


def render(built: Built, rng: np.random.Generator, person: bool = True) -> Frames:
    """Frames (uint8 luma) and labels; `person=False` draws the same scene, noise included, without them."""
    noise = Noise(rng, built.sigma)
    frames: list[np.ndarray] = []
    labels = np.zeros(built.n, np.int8)
    for i in range(built.n):
        t = i / built.fps
        img = built.base.copy()
        for effect in built.back:
            effect.apply(img, t, rng)
        placed = [p for walk in built.walks if person and (p := walk.draw(img, t)) is not None]
        for effect in built.front:
            effect.apply(img, t, rng)
        frames.append(to_uint8(noise.add(img, rng)))
        labels[i] = label_for(max((visible_share(p, built.front) for p in placed), default=0.0))
        built.boxes[i] = [p.box for p in placed]
    return frames, labels


def visible_share(placed: Placed, front: list[Effect]) -> float:
    """Share of the person in view and not hidden by leaves in front of them."""
    alpha = placed.alpha
    for effect in front:
        if isinstance(effect, Crown):
            alpha = alpha * (1.0 - effect.cover(placed.box))
    return float(alpha.sum()) / placed.total


# ---------------------------------------------------------------- scenes (negatives)


def _frames(seconds: float, fps: float) -> int:
    return int(round(seconds * fps))


def foliage_slow(rng: np.random.Generator, fps: float) -> Built:
    """Street; a tree crown at the top right sways slowly (0.3 Hz) but far (10 px)."""
    base = real_frame("street")
    crown = Crown(rng, (400, -20, 250, 190), amp=10.0, hz=0.3)
    return Built(fps, _frames(NEGATIVE_S, fps), base, front=[crown])


def foliage_flutter(rng: np.random.Generator, fps: float) -> Built:
    """Parking lot from above; a crown at the top left flutters fast (1-3 Hz) and small (1-4 px)."""
    base = real_frame("lot")
    crown = Crown(rng, (-20, -20, 260, 210), amp=float(rng.uniform(2.5, 4.0)), hz=float(rng.uniform(1.3, 2.0)))
    return Built(fps, _frames(NEGATIVE_S, fps), base, front=[crown])


def foliage_gust(rng: np.random.Generator, fps: float) -> Built:
    """Street; a crown at the top left is calm for 15 s, then a gust starts suddenly and grows to 8-10 px."""
    base = real_frame("street")
    amp = float(rng.uniform(8.0, 10.0))
    crown = Crown(rng, (-30, -25, 280, 200), amp=amp, hz=float(rng.uniform(0.6, 1.0)), envelope=gust(15.0), lean=0.25)
    return Built(fps, _frames(NEGATIVE_S, fps), base, front=[crown])


def big_tree(rng: np.random.Generator, fps: float) -> Built:
    """Street; a large tree near the camera covers ~40 % of the view, branches swaying out of step."""
    base = real_frame("street")
    draw_trunk(base, (520, 200), (545, H), 26, 45.0)
    crown = Crown(rng, (250, -40, 420, 270), amp=float(rng.uniform(5.0, 7.0)), hz=float(rng.uniform(0.5, 0.9)))
    return Built(fps, _frames(NEGATIVE_S, fps), base, front=[crown])


def big_tree_as_one(rng: np.random.Generator, fps: float) -> Built:
    """Street; a large crown (~40 % of the view) that sways as one piece (same phase everywhere)."""
    base = real_frame("street")
    draw_trunk(base, (150, 200), (130, H), 26, 45.0)
    crown = Crown(rng, (-40, -40, 420, 270), amp=float(rng.uniform(4.0, 6.0)), hz=0.4, coherent=True)
    return Built(fps, _frames(NEGATIVE_S, fps), base, front=[crown])


def flag(rng: np.random.Generator, fps: float) -> Built:
    """Street; a striped flag (120x75 px) waving on a pole at the left."""
    base = real_frame("street")
    waving = Flag(rng, base, (70, 60), (120, 75))
    return Built(fps, _frames(NEGATIVE_S, fps), base, back=[waving])


def rain(rng: np.random.Generator, fps: float) -> Built:
    """Street in heavy rain: hundreds of short bright streaks, new every frame; the scene a little darker."""
    return Built(fps, _frames(NEGATIVE_S, fps), real_frame("street"), front=[Rain(rng)])


def cloud_shadows(rng: np.random.Generator, fps: float) -> Built:
    """Street; large soft cloud shadows (gain 0.6-0.8) drift across the whole view at 60-150 px/s."""
    speed, gain = float(rng.uniform(60, 150)), float(rng.uniform(0.6, 0.8))
    shadows = CloudShadows(rng, MAX_BUILD_S, speed, gain)
    return Built(fps, _frames(NEGATIVE_S, fps), real_frame("street"), front=[shadows])


def headlights(rng: np.random.Generator, fps: float) -> Built:
    """A room at night (a white wall); a passing car's headlights sweep the wall every ~10 s."""
    lights = Headlights(rng, MAX_BUILD_S)
    return Built(fps, _frames(NEGATIVE_S, fps), real_frame("room"), front=[lights], sigma=NIGHT_SIGMA)


def insects(rng: np.random.Generator, fps: float) -> Built:
    """IR-lit street at night; 1-3 insects circle the lens: big blurry bright discs, fast, coming and going."""
    n = _frames(MAX_BUILD_S, fps)
    return Built(fps, _frames(NEGATIVE_S, fps), ir_night(real_frame("street")), [], [Insects(rng, n, fps)], IR_SIGMA)


def spider_web(rng: np.random.Generator, fps: float) -> Built:
    """IR-lit street at night; a spider web glows, out of focus, in the top left corner, swaying a few px."""
    web = SpiderWeb(rng, "tl")
    return Built(fps, _frames(NEGATIVE_S, fps), ir_night(real_frame("street")), front=[web], sigma=IR_SIGMA)


# ---------------------------------------------------------------- people (positives)

Path = tuple[tuple[float, float], tuple[float, float], float, float]
Build = Callable[[np.random.Generator, float], Built]


class SceneSpec(NamedTuple):
    scene: Build
    fps: float
    paths: tuple[Path, ...]  # where its person may walk
    contrast: Callable[[np.random.Generator], tuple[float, float]]
    pace: tuple[float, float] = (0.6, 1.1)  # body heights per second


# Paths on each real frame: (feet start, feet end, height at start, height at end), left to right.
STREET_PATHS = (
    ((-30.0, 165.0), (670.0, 215.0), 62.0, 72.0),  # along the road
    ((-30.0, 235.0), (670.0, 250.0), 74.0, 77.0),  # the near edge of the road
    ((-30.0, 120.0), (670.0, 140.0), 58.0, 62.0),  # the far pavement
)
STREET_OPEN = (  # clear of the crowns at the top of the foliage scenes
    ((-30.0, 235.0), (670.0, 250.0), 74.0, 77.0),  # the near edge of the road
    ((-30.0, 330.0), (670.0, 345.0), 88.0, 90.0),  # the grass in front
)
LOT_PATHS = (((-30.0, 250.0), (670.0, 300.0), 70.0, 76.0),)
ROOM_PATHS = (((-90.0, 335.0), (730.0, 345.0), 270.0, 280.0),)
IR_CONTRAST = (15.0, 35.0)


def day_contrast(rng: np.random.Generator) -> tuple[float, float]:
    """How far a person's grey is from the background: sometimes small (15-30), usually more."""
    return (15.0, 30.0) if rng.random() < 0.4 else (25.0, 60.0)


def background_along(base: np.ndarray, start: tuple[float, float], end: tuple[float, float], h: float) -> float:
    """Mean grey of the background where a person on this path would be."""
    ys = [start[1], end[1]]
    top, bottom = int(max(0, min(ys) - h)), int(min(H, max(ys)))
    x0, x1 = int(max(0, min(start[0], end[0]))), int(min(W, max(start[0], end[0])))
    return float(base[top:bottom, x0:x1].mean())


def walker(
    rng: np.random.Generator,
    base: np.ndarray,
    paths: tuple[tuple[tuple[float, float], tuple[float, float], float, float], ...],
    enter: float,
    contrast: tuple[float, float],
    pace: tuple[float, float] = (0.6, 1.1),
    either_way: bool = True,
) -> Walk:
    """A person on one of `paths` (either direction), starting at `enter` s, walking `pace` heights/s."""
    start, end, h0, h1 = paths[int(rng.integers(len(paths)))]
    if either_way and rng.random() < 0.5:
        start, end, h0, h1 = end, start, h1, h0
    look = look_near(rng, background_along(base, start, end, max(h0, h1)), contrast)
    return Walk(look, start, end, enter, float(rng.uniform(*pace)), (h0, h1), step_hz=float(rng.uniform(0.85, 1.0)))


def walk_seconds(walk: Walk) -> float:
    """How long the walk takes from start to end."""
    length = math.dist(walk.start, walk.end)
    h0, h1 = walk.height
    if abs(h1 - h0) < 1e-6:
        return length / (walk.pace * h0)
    return length * math.log(h1 / h0) / ((h1 - h0) * walk.pace)


def with_walk(built: Built, walk: Walk, rng: np.random.Generator) -> Built:
    """The scene with the person added, long enough for the whole walk and a quiet tail."""
    built.walks.append(walk)
    built.n = _frames(walk.enter + walk_seconds(walk) + float(rng.uniform(*TAIL_S)), built.fps)
    return built


def person_in(spec: SceneSpec) -> Build:
    """The positive variant of a scene: the same scene, a long quiet lead-in, then a person walks through."""
    scene = spec.scene

    def build(rng: np.random.Generator, fps: float) -> Built:
        built = scene(rng, fps)
        walk = walker(rng, built.base, spec.paths, float(rng.uniform(*LEAD_IN_S)), spec.contrast(rng), spec.pace)
        return with_walk(built, walk, rng)

    build.__doc__ = f"{scene.__doc__} A person walks through after a quiet lead-in of 30-34 s."
    return build


def night_contrast(rng: np.random.Generator) -> tuple[float, float]:
    """In the day frame (the albedo under the headlights' scene): at 13 % ambient light this is a dim 8-14 levels."""
    return (60.0, 110.0)


def ir_contrast(rng: np.random.Generator) -> tuple[float, float]:
    return IR_CONTRAST


def person_by_tree(rng: np.random.Generator, fps: float) -> Built:
    """Street; a person walks behind a near tree's swaying low branches (head and shoulders hidden in
    places), then in front of a bush swaying behind their path."""
    base = real_frame("street")
    crown = Crown(rng, (180, 40, 280, 150), amp=float(rng.uniform(4.0, 7.0)), hz=float(rng.uniform(0.5, 1.0)))
    bush = Crown(rng, (430, 160, 160, 80), amp=float(rng.uniform(2.0, 4.0)), hz=float(rng.uniform(0.8, 1.5)))
    built = Built(fps, _frames(NEGATIVE_S, fps), base, back=[bush], front=[crown])
    path = (((-30.0, 228.0), (670.0, 240.0), 74.0, 76.0),)
    walk = walker(rng, base, path, float(rng.uniform(*LEAD_IN_S)), day_contrast(rng))
    return with_walk(built, walk, rng)


def walker_at_connect(rng: np.random.Generator, fps: float) -> Built:
    """The big swaying tree, and a person already walking in view when the stream starts (label 1
    from frame 0): no warm-up may hide them. Then 20 s of the tree alone."""
    built = big_tree(rng, fps)
    x = float(rng.uniform(150, 450))  # on the grass in front, well inside the view at frame 0
    y = 330.0 + 15.0 * x / W
    path = (((x, y), (-40.0, 330.0), 89.0, 88.0),) if rng.random() < 0.5 else (((x, y), (680.0, 345.0), 89.0, 90.0),)
    walk = walker(rng, built.base, path, 0.0, day_contrast(rng), either_way=False)
    built.walks.append(walk)
    built.n = _frames(walk_seconds(walk) + 20.0, fps)
    return built


def far_slow_walker(rng: np.random.Generator, fps: float) -> Built:
    """Street with the slow-swaying crown; far away a small person (~12x30 px) walks slowly (~1 m/s,
    ~18 px/s) along the far road, and the clip ends while they are still in view."""
    built = foliage_slow(rng, fps)
    start, end = (-20.0, 50.0), (330.0, 45.0)
    look = look_near(rng, background_along(built.base, start, end, 30.0), (25.0, 50.0))
    walk = Walk(
        look, start, end, float(rng.uniform(*LEAD_IN_S)), pace=float(rng.uniform(0.55, 0.65)), height=(30.0, 30.0)
    )
    built.walks.append(walk)
    built.n = _frames(walk.enter + 14.0, fps)
    return built


def walker_towards_camera(rng: np.random.Generator, fps: float) -> Built:
    """Street with the slow-swaying crown; a person walks towards the camera from the far road,
    growing from 40 to 135 px tall with little sideways motion, and out of view at the bottom
    (~13 s: in the image the feet move 0.3-0.45 heights per second, about 1.4 m/s in the scene)."""
    built = foliage_slow(rng, fps)
    x = float(rng.uniform(220, 330))
    start, end = (x, 60.0), (x + float(rng.uniform(-40, 40)), 450.0)  # out of view at the bottom
    look = look_near(rng, background_along(built.base, start, end, 80.0), day_contrast(rng), front=True)
    walk = Walk(
        look, start, end, float(rng.uniform(*LEAD_IN_S)), pace=float(rng.uniform(0.3, 0.45)), height=(40.0, 135.0)
    )
    return with_walk(built, walk, rng)


@dataclass(frozen=True)
class Case:
    """One synthetic case: how to make it, at what camera frame rate, and what it is.

    `make(rng)` returns (frames, labels). Cases made from real frames also have `build`, which
    fixes the scene without drawing it, so tests can `render` it with and without its person."""

    name: str
    make: Callable[[np.random.Generator], Frames]
    fps: float
    kind: str  # "negative" (every label 0) or "positive" (a labelled person)
    description: str
    build: Build | None = None


def maker(build: Build, fps: float) -> Callable[[np.random.Generator], Frames]:
    """make(rng) for a built case: build the scene, then render it from the same generator."""

    def make(rng: np.random.Generator) -> Frames:
        return render(build(rng, fps), rng)

    make.__name__ = build.__name__
    return make


def _case(name: str, build: Build, fps: float, kind: str) -> Case:
    doc = " ".join((build.__doc__ or "").split())
    return Case(name, maker(build, fps), fps, kind, doc, build)


SCENES: dict[str, SceneSpec] = {
    "foliage-slow": SceneSpec(foliage_slow, 5.0, STREET_OPEN, day_contrast),
    "foliage-flutter": SceneSpec(foliage_flutter, 15.0, LOT_PATHS, day_contrast),
    "foliage-gust": SceneSpec(foliage_gust, 5.0, STREET_OPEN, day_contrast),
    "big-tree": SceneSpec(big_tree, 5.0, STREET_OPEN[1:], day_contrast),
    "big-tree-as-one": SceneSpec(big_tree_as_one, 5.0, STREET_OPEN[1:], day_contrast),
    "flag": SceneSpec(flag, 5.0, STREET_PATHS, day_contrast),
    "rain-streaks": SceneSpec(rain, 5.0, STREET_PATHS, day_contrast),
    "cloud-shadows": SceneSpec(cloud_shadows, 5.0, STREET_PATHS, day_contrast),
    "headlights-night": SceneSpec(headlights, 5.0, ROOM_PATHS, night_contrast, (0.45, 0.7)),
    "insects-ir": SceneSpec(insects, 5.0, STREET_PATHS, ir_contrast),
    "spider-web": SceneSpec(spider_web, 5.0, STREET_PATHS, ir_contrast),
}


def _registry() -> dict[str, Case]:
    cases: dict[str, Case] = {}
    for name, spec in SCENES.items():
        cases[name] = _case(name, spec.scene, spec.fps, "negative")
        cases[f"{name}-person"] = _case(f"{name}-person", person_in(spec), 5.0, "positive")
    cases["person-by-tree"] = _case("person-by-tree", person_by_tree, 15.0, "positive")
    cases["walker-at-connect"] = _case("walker-at-connect", walker_at_connect, 10.0, "positive")
    cases["far-slow-walker"] = _case("far-slow-walker", far_slow_walker, 5.0, "positive")
    cases["walker-towards-camera"] = _case("walker-towards-camera", walker_towards_camera, 5.0, "positive")
    return cases


HARD_CASES: dict[str, Case] = _registry()
