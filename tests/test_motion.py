"""The motion detector on synthetic frames with known truth (no camera, no files)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from edge.config import EventConfig, MotionConfig
from edge.events import EventTracker
from edge.masks import polygon_mask
from edge.motion import MotionDetector

H, W = 360, 640


def scene(seed: int = 0) -> np.ndarray:
    """A textured static scene: gradients plus blocky texture, like a street."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:H, 0:W]
    base = 60 + 80 * (xx / W) + 40 * np.sin(yy / 37.0)
    blocks = rng.integers(-25, 25, (H // 20 + 1, W // 20 + 1)).repeat(20, 0).repeat(20, 1)[:H, :W]
    return np.clip(base + blocks, 0, 255).astype(np.float32)


def noisy(img: np.ndarray, rng: np.random.Generator, sigma: float) -> np.ndarray:
    return np.clip(img + rng.normal(0, sigma, img.shape), 0, 255).astype(np.uint8)


def run(frames, detector: MotionDetector | None = None, fps: float = 5.0):
    det = detector or MotionDetector(MotionConfig())
    return [det.process(f, i / fps) for i, f in enumerate(frames)]


def events_started(results) -> int:
    """How many events the tracker (default settings) would start from these results."""
    tracker = EventTracker("box", "cam", EventConfig())
    return sum(e.type == "start" for i, r in enumerate(results) for e in tracker.update(i / 5, r).events)


def with_person(img: np.ndarray, x: int, y: int = 200, w: int = 24, h: int = 60, value: float = 230) -> np.ndarray:
    out = img.copy()
    out[y : y + h, x : x + w] = value
    return out


@pytest.mark.parametrize("sigma", [3, 8])
def test_static_noisy_scene_has_no_motion(sigma: float) -> None:
    rng = np.random.default_rng(1)
    bg = scene()
    results = run(noisy(bg, rng, sigma) for _ in range(200))
    assert not any(r.motion for r in results)


def test_person_walking_across_is_motion_with_region_near_it() -> None:
    rng = np.random.default_rng(2)
    bg = scene()
    frames = [noisy(bg, rng, 3) for _ in range(30)]
    xs = list(range(40, 600, 16))
    frames += [noisy(with_person(bg, x), rng, 3) for x in xs]
    results = run(frames)
    walking = results[30:]
    assert sum(r.motion for r in walking) >= 0.9 * len(walking)
    mid = walking[len(xs) // 2]
    x, y, w, h = mid.region
    person_x = xs[len(xs) // 2] / W
    assert x - 0.05 <= person_x <= x + w + 0.05
    assert y - 0.05 <= 200 / H <= y + h + 0.05
    assert 0 < mid.score < 0.05


def test_lights_switching_on_is_not_motion_and_detection_recovers() -> None:
    rng = np.random.default_rng(3)
    bg = scene()
    frames = [noisy(bg, rng, 3) for _ in range(30)] + [noisy(bg + 60, rng, 3) for _ in range(30)]
    results = run(frames)
    assert not any(r.motion for r in results)
    assert any(r.suppressed == "lighting" for r in results[30:33]) or not any(r.motion for r in results[30:])
    # ... and a person after the lights changed is found again.
    det = MotionDetector(MotionConfig())
    run(frames, det)
    later = [det.process(noisy(with_person(bg + 60, x), rng, 3), 20 + i / 5) for i, x in enumerate(range(40, 400, 16))]
    assert sum(r.motion for r in later) >= len(later) // 2


def test_lights_switching_off_and_gain_drop_is_not_motion() -> None:
    rng = np.random.default_rng(4)
    bg = scene()
    frames = [noisy(bg, rng, 3) for _ in range(30)] + [noisy(bg * 0.5, rng, 3) for _ in range(30)]
    assert not any(r.motion for r in run(frames))


def test_slow_brightness_ramp_is_not_motion() -> None:
    rng = np.random.default_rng(5)
    bg = scene()
    frames = [noisy(bg * (1.0 + 0.4 * i / 100), rng, 3) for i in range(100)]
    assert not any(r.motion for r in run(frames))


def test_motion_inside_a_privacy_mask_is_ignored() -> None:
    rng = np.random.default_rng(6)
    bg = scene()
    mask = [[[0.0, 0.4], [1.0, 0.4], [1.0, 0.9], [0.0, 0.9]]]  # covers rows 144..324
    det = MotionDetector(MotionConfig(), mask)
    frames = [noisy(bg, rng, 3) for _ in range(20)] + [noisy(with_person(bg, x), rng, 3) for x in range(40, 600, 16)]
    assert not any(r.motion for r in run(frames, det))


def test_input_size_change_reinitialises() -> None:
    det = MotionDetector(MotionConfig())
    rng = np.random.default_rng(7)
    for i in range(10):
        det.process(noisy(scene(), rng, 3), i)
    small = noisy(scene()[:180, :320], rng, 3)
    result = det.process(small, 11)
    assert result.suppressed == "warmup" and not result.motion


def test_non_contiguous_luma_view_is_accepted() -> None:
    rng = np.random.default_rng(8)
    padded = np.zeros((H, W + 64), np.uint8)
    det = MotionDetector(MotionConfig())
    for i in range(10):
        padded[:, :W] = noisy(scene(), rng, 3)
        view = padded[:, :W]
        assert not view.flags["C_CONTIGUOUS"]
        assert not det.process(view, i).motion


def test_higher_sensitivity_sees_fainter_objects() -> None:
    rng = np.random.default_rng(9)
    bg = scene() * 0.15 + 90  # a plain wall
    faint = [noisy(bg, rng, 2) for _ in range(20)]
    for x in range(40, 600, 16):  # a dim figure, 8 grey levels above the wall
        faint.append(noisy(with_person(bg, x, value=float(bg[200:260].mean()) + 8), rng, 2))
    low = sum(r.motion for r in run(faint, MotionDetector(MotionConfig(sensitivity=1))))
    high = sum(r.motion for r in run(faint, MotionDetector(MotionConfig(sensitivity=10))))
    assert high > low


def test_polygon_mask_fills_inside_and_empty_means_nothing() -> None:
    assert not polygon_mask([], 40, 30).any()
    mask = polygon_mask([[[0.25, 0.0], [0.75, 0.0], [0.75, 1.0], [0.25, 1.0]]], 40, 30)
    assert mask.shape == (30, 40) and mask.dtype == bool
    assert mask[15, 20] and not mask[15, 2] and not mask[15, 37]
    assert 0.45 <= mask.mean() <= 0.56


@pytest.mark.parametrize(
    ("size", "expected"),
    [((360, 640), (100, 178)), ((1080, 1920), (100, 178)), ((576, 704), (100, 122)), ((90, 160), (90, 160))],
)
def test_detection_copy_is_frame_height_high_or_the_input_if_smaller(size, expected) -> None:
    det = MotionDetector(MotionConfig())
    rng = np.random.default_rng(10)
    img = rng.integers(0, 255, size, dtype=np.uint8)
    assert det.process(img, 0.0).suppressed == "warmup"
    assert det._size[::-1] == expected
    assert not det.process(img, 0.2).motion


def walk(bg: np.ndarray, rng: np.random.Generator, y: int, xs=range(40, 600, 16), still: int = 20) -> list:
    return [noisy(bg, rng, 3) for _ in range(still)] + [noisy(with_person(bg, x, y), rng, 3) for x in xs]


def test_zones_count_motion_that_touches_them_and_ignore_the_rest() -> None:
    rng = np.random.default_rng(12)
    bg = scene()
    top_band = [[[0.0, 0.0], [1.0, 0.0], [1.0, 0.3], [0.0, 0.3]]]  # rows 0..108
    # A person walking along the bottom never touches the zone: no motion at all.
    outside = run(walk(bg, rng, y=250), MotionDetector(MotionConfig(), zones=top_band))
    assert not any(r.motion for r in outside)
    # The same walk in the zone is motion; so is one that only overlaps its edge.
    inside = run(walk(bg, rng, y=30), MotionDetector(MotionConfig(), zones=top_band))[20:]
    straddling = run(walk(bg, rng, y=80), MotionDetector(MotionConfig(), zones=top_band))[20:]
    assert sum(r.motion for r in inside) >= 0.9 * len(inside)
    assert sum(r.motion for r in straddling) >= 0.9 * len(straddling)
    # The whole object is reported, including the part outside the zone.
    mid = straddling[len(straddling) // 2]
    assert mid.region[1] + mid.region[3] > 0.35


def test_dim_flat_night_scene_lowers_the_floor_but_not_for_a_bright_one() -> None:
    rng = np.random.default_rng(13)
    night = scene() * 0.18 + 12
    figure = float(night[200:260].mean()) + 7  # barely brighter than the street
    frames = [noisy(night, rng, 2) for _ in range(20)]
    frames += [noisy(with_person(night, x, value=figure), rng, 2) for x in range(40, 600, 16)]
    det = MotionDetector(MotionConfig())
    # Its first second is spent following it until it has travelled (edge.tracks).
    walking = run(frames, det)[25:]
    assert sum(r.motion for r in walking) >= 0.8 * len(walking)
    assert det._floor_now < det._floor / 2
    day = MotionDetector(MotionConfig())
    run([noisy(scene(), rng, 3) for _ in range(20)], day)
    assert day._floor_now == day._floor


@pytest.mark.parametrize("size", [(4, 4), (1, 300), (300, 2), (37, 53)])
def test_tiny_or_odd_frames_do_not_crash(size) -> None:
    det = MotionDetector(MotionConfig())
    rng = np.random.default_rng(11)
    for i in range(5):
        result = det.process(rng.integers(0, 255, size, dtype=np.uint8), i)
        assert 0.0 <= result.score <= 1.0


def test_lamp_over_part_of_the_view_is_not_motion_but_a_walker_beside_it_is() -> None:
    rng = np.random.default_rng(14)
    bg = scene()
    pool = np.clip((np.arange(W) - 0.85 * W) / 30.0, 0, 1)[None, :]
    lit = bg * (1 + 0.6 * pool)  # a lamp on the right-hand sixth, soft-edged
    quiet = run([noisy(bg, rng, 3) for _ in range(20)] + [noisy(lit, rng, 3) for _ in range(20)])
    assert events_started(quiet) == 0
    assert any(r.suppressed == "lighting" for r in quiet[20:23])
    det = MotionDetector(MotionConfig())
    run([noisy(bg, rng, 3) for _ in range(20)], det)
    xs = range(40, 400, 16)  # the lamp switches on as the walker crosses the left
    walking = [det.process(noisy(with_person(lit, x), rng, 3), 4 + i / 5) for i, x in enumerate(xs)]
    assert sum(r.motion for r in walking) >= 0.9 * len(walking)
    # Once the lamp is on (the switching frame itself may include bits of it), the
    # motion region is the walker's alone.
    assert all(r.region[0] + r.region[2] < 0.8 for r in walking[2:] if r.motion)


def test_a_light_pool_sweeping_a_textured_wall_is_not_motion() -> None:
    rng = np.random.default_rng(15)
    bg = scene() * 0.6 + 10
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    frames = [noisy(bg, rng, 3) for _ in range(20)]
    for cx in np.linspace(-100, W + 100, 20):  # headlights crossing in 4 s
        frames.append(noisy(bg * (1 + 0.8 * np.exp(-(((xx - cx) / 90) ** 2) - ((yy - 200) / 70) ** 2)), rng, 3))
    assert events_started(run(frames)) == 0


def flat_dark_room() -> tuple[np.ndarray, np.ndarray]:
    """A plain wall over a darker floor (a sharp line between them), lit only by a little
    ambient light, and the grids to draw on it."""
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    return np.where(yy < 230, 160.0, 70.0).astype(np.float32), np.stack([yy, xx])


def test_a_light_pool_crossing_the_line_where_a_flat_wall_meets_the_floor_is_not_motion() -> None:
    """Headlights at night: on a wall with no texture the pool cannot be told by the
    texture it keeps, and where it crosses the floor line its change is sharp; along the
    rest of its outline it fades in, as light does."""
    rng = np.random.default_rng(16)
    room, (yy, xx) = flat_dark_room()
    ambient = 0.13
    frames = [noisy(room * ambient + 4, rng, 2) for _ in range(20)]
    for cx in np.linspace(-150, W + 150, 14):  # a car passing in ~3 s: two headlights' pools
        pool = sum(0.5 * np.exp(-(((xx - cx - side) / 60) ** 2) - ((yy - 200) / 70) ** 2) for side in (-55, 55))
        frames.append(noisy(room * (ambient + pool) + 4, rng, 2))
    frames += [noisy(room * ambient + 4, rng, 2) for _ in range(10)]
    assert events_started(run(frames)) == 0


def test_a_plain_object_crossing_the_same_dark_room_is_motion() -> None:
    """The rule above must not swallow an object: its outline is sharp all round."""
    rng = np.random.default_rng(17)
    room, _ = flat_dark_room()
    dark = room * 0.13 + 4
    frames = [noisy(dark, rng, 2) for _ in range(20)]
    for x in np.linspace(60, W - 120, 20):
        lit = dark.copy()
        lit[150:290, int(x) : int(x) + 50] = 60.0  # a person in a light coat, 50x140 px
        frames.append(noisy(lit, rng, 2))
    assert events_started(run(frames)) == 1


def swaying(texture: np.ndarray, t: float, amplitude: float, hz: float) -> np.ndarray:
    """`texture` displaced in place by a smooth field: each part of the crown sways with
    its own phase, as foliage does (not a rigid shift)."""
    h, w = texture.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    phase = 2 * np.pi * (hz * t) + xx / 40.0 + yy / 55.0
    dx = amplitude * np.sin(phase)
    dy = 0.4 * amplitude * np.cos(1.3 * phase)
    return cv2.remap(texture, xx + dx, yy + dy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def tree_scene(seed: int = 5) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    leaves = cv2.GaussianBlur(rng.integers(40, 200, (220, 300)).astype(np.float32), (5, 5), 0)
    return scene(seed), leaves


def tree_frames(n: int, fps: float, amplitude: float, hz: float, gust_at: float | None = None, walker_from=None):
    """A tree crown over a third of the view swaying from the first frame (or calm until
    `gust_at`), optionally with a person walking in from the left edge at `walker_from` s."""
    bg, leaves = tree_scene()
    rng = np.random.default_rng(9)
    frames, labels = [], []
    for i in range(n):
        t = i / fps
        amp = amplitude if gust_at is None or t >= gust_at else 0.0
        img = bg.copy()
        img[20:240, 300:600] = swaying(leaves, t, amp, hz)
        present = walker_from is not None and t >= walker_from
        if present:
            img = with_person(img, int(-24 + 60 * (t - walker_from)), y=250, w=20, h=56, value=200)
        frames.append(noisy(img, rng, 2))
        labels.append(present)
    return frames, labels


def first_event_time(results, fps: float) -> float | None:
    tracker = EventTracker("box", "cam", EventConfig())
    for i, r in enumerate(results):
        if any(e.type == "start" for e in tracker.update(i / fps, r).events):
            return i / fps
    return None


@pytest.mark.parametrize(
    ("amplitude", "hz", "gust_at"), [(4.0, 1.0, None), (8.0, 0.3, None), (3.0, 2.5, None), (9.0, 0.7, 8.0)]
)
def test_swaying_foliage_is_not_an_event_warm_up_and_gusts_included(amplitude, hz, gust_at) -> None:
    frames, _ = tree_frames(150, 5.0, amplitude, hz, gust_at)
    results = run(frames)
    assert first_event_time(results, 5.0) is None
    assert sum(r.motion for r in results) <= 0.05 * len(results)


@pytest.mark.parametrize("fps", [5.0, 10.0])
def test_person_walking_past_a_swaying_tree_raises_an_event_within_a_second(fps: float) -> None:
    frames, _ = tree_frames(int(20 * fps), fps, 6.0, 1.0, walker_from=12.0)
    results = run(frames, fps=fps)
    started = first_event_time(results, fps)
    assert started is not None and 12.0 <= started <= 13.0


def test_person_already_walking_when_the_camera_connects_is_found_within_a_second() -> None:
    rng = np.random.default_rng(4)
    bg = scene()
    frames = [noisy(with_person(bg, 100 + 14 * i), rng, 3) for i in range(30)]
    started = first_event_time(run(frames), 5.0)
    assert started is not None and started <= 1.0


def test_time_constants_are_seconds_not_frames() -> None:
    """A parked car is learnt into the background after the same seconds whether 5 or
    15 frames a second are analysed (time constants are in seconds, not frames)."""
    bg = scene()
    learnt = []
    for fps in (5.0, 15.0):
        rng = np.random.default_rng(3)
        det = MotionDetector(MotionConfig())
        car = with_person(bg, 300, w=60, h=40, value=30)
        frames = [noisy(bg, rng, 2) for _ in range(int(4 * fps))] + [noisy(car, rng, 2) for _ in range(int(20 * fps))]
        when = None
        for i, frame in enumerate(frames):
            det.process(frame, i / fps)
            centre = det._bg[int(det._size[1] * 0.6), int(det._size[0] * 330 / W)]
            if i / fps > 4.0 and when is None and centre < 45:
                when = i / fps
        learnt.append(when)
    assert None not in learnt and learnt[0] > 4.5
    assert abs(learnt[0] - learnt[1]) <= 0.5


def test_a_place_someone_walked_through_seconds_ago_is_calm_again() -> None:
    """A person in a flickering shirt walks along the street; a few seconds after they passed
    a spot, a second person steps out there (a doorway). One passage leaves the place calm
    again within seconds (edge.motion.CALM; activity there is 0.03-0.04 by then): the
    newcomer counts from the first frame they are seen, not only once they have travelled."""
    rng = np.random.default_rng(7)
    bg = scene()
    first = [noisy(bg, rng, 3) for _ in range(20)]
    first += [noisy(with_person(bg, x, value=230 - 60 * (i % 2)), rng, 3) for i, x in enumerate(range(40, 600, 4))]
    quiet = [noisy(bg, rng, 3) for _ in range(5)]
    second = [noisy(with_person(bg, x), rng, 3) for x in range(360, 480, 12)]
    results = run(first + quiet + second)
    assert results[len(first) + len(quiet)].motion


CAR_GREYS = (40.0, 120.0, 200.0)  # black, red and silver cars, as the camera sees them


class WithoutLooks(MotionDetector):
    def _alternating(self, blob, blobs) -> bool:  # type: ignore[no-untyped-def]
        return False


def busy_road(rng: np.random.Generator) -> tuple[list[np.ndarray], list[tuple[int, int] | None]]:
    """60 s at 5 fps of black, red and silver cars on a two-lane road; from 40 s a person as
    grey as the silver cars walks along the near lane, inside the rows its cars cover."""
    bg = scene(1)
    cars: list[list[float]] = []  # x, y, speed (px per frame), width, height, grey
    frames, person = [], []
    for i in range(300):
        if rng.random() < 0.6:
            lane = int(rng.integers(0, 2))
            start, speed = (-120.0, rng.uniform(30, 60)) if lane == 0 else (W + 10.0, -rng.uniform(30, 60))
            size = [float(rng.integers(60, 110)), float(rng.integers(30, 45))]
            cars.append([start, 150.0 + 50 * lane, speed, *size, float(rng.choice(CAR_GREYS))])
        img = bg.copy()
        for car in cars:
            car[0] += car[2]
            x, y, w, h = (int(v) for v in (car[0], car[1], car[3], car[4]))
            img[y : y + h, max(0, x) : max(0, min(W, x + w))] = car[5]
        cars = [car for car in cars if -150 < car[0] < W + 50]
        at = (60 + 5 * (i - 200), 152) if i >= 200 else None
        frames.append(noisy(with_person(img, *at, h=30, value=CAR_GREYS[2]) if at else img, rng, 3))
        person.append(at)
    return frames, person


def frames_with_person_found(results, person) -> int:
    found = 0
    for result, at in zip(results, person, strict=True):
        if at is not None and result.motion and result.region is not None:
            x, y, w, h = result.region
            cx, cy = (at[0] + 12) / W, (at[1] + 15) / H
            found += x - 0.03 <= cx <= x + w + 0.03 and y - 0.03 <= cy <= y + h + 0.03
    return found


def test_a_person_walking_in_a_busy_lane_is_followed_and_not_taken_for_the_roads_looks() -> None:
    """40 s of traffic make the lane's pixels busy and teach them the cars' looks
    (edge.looks); a person as grey as the silver cars then walks in the lane, three times
    (seeds). Where they should be next, busy pixels count (Tracker.expected): found in
    most of their 300 frames (one run: 229; 183 when busy pixels stay ignored there). And
    their blob is more than the cars' greys: the looks cost them at most 12 frames (225
    without the looks; 171 if a blob with half its pixels new were the road's)."""
    with_looks = without = 0
    for seed in (1, 2, 3):
        frames, person = busy_road(np.random.default_rng(seed))
        with_looks += frames_with_person_found(run(frames), person)
        without += frames_with_person_found(run(frames, WithoutLooks(MotionConfig())), person)
    assert with_looks >= 210
    assert with_looks >= without - 12
