"""The generated hard cases say what they promise: real frames load, labels have the promised
shape, the person is really drawn where labelled, foliage moves but stays in place, and the
same seed gives the same pixels. No detector is run here (tests/test_evaluation.py does that)."""

from __future__ import annotations

import numpy as np
import pytest

from edge.evaluation.effects import Crown
from edge.evaluation.hard_cases import HARD_CASES, LEAD_IN_S, NEGATIVE_S, Built, render
from edge.evaluation.metrics import spans_of
from edge.evaluation.scenes import DATA_FILES, H, W, real_frame
from edge.evaluation.synthetic import CASES, NEGATIVES, POSITIVES, synthetic_clips

NEGATIVE_CASES = sorted(n for n, c in HARD_CASES.items() if c.kind == "negative")
POSITIVE_CASES = sorted(n for n, c in HARD_CASES.items() if c.kind == "positive")
ALREADY_WALKING = "walker-at-connect"
FOLIAGE = ["foliage-slow", "foliage-flutter", "foliage-gust", "big-tree", "big-tree-as-one"]


def built(name: str, seed: int = 0) -> Built:
    case = HARD_CASES[name]
    assert case.build is not None
    return case.build(np.random.default_rng(seed), case.fps)


def test_shipped_frames_load_and_are_real_pictures() -> None:
    for name in ("street", "lot", "room"):
        frame = real_frame(name)
        assert frame.shape == (H, W) and frame.dtype == np.float32
        assert frame.std() > 8  # a picture, not a flat fill (the wet lot is the flattest: ~12)
    leaves = real_frame("foliage")
    assert leaves.shape == (240, 220) and leaves.std() > 20


def test_data_folder_is_small_and_documented() -> None:
    from importlib import resources

    folder = resources.files("edge.evaluation").joinpath("data")
    text = folder.joinpath("README.md").read_text()
    total = 0
    for name in DATA_FILES:
        total += len(folder.joinpath(name).read_bytes())
        assert f"`{name}`" in text
    assert total < 300_000


def test_registry_keeps_the_old_api_and_adds_frame_rates() -> None:
    assert set(NEGATIVES) | set(POSITIVES) <= set(CASES)
    assert all(CASES[n].fps == 5.0 for n in [*NEGATIVES, *POSITIVES])
    rates = sorted(c.fps for c in HARD_CASES.values() if c.fps != 5.0)
    assert rates == [10.0, 15.0, 15.0]
    assert all(c.description and c.kind in ("negative", "positive") for c in CASES.values())
    assert len(synthetic_clips()) == len(CASES)


@pytest.mark.parametrize("name", NEGATIVE_CASES)
def test_negative_is_long_and_all_zero(name: str) -> None:
    case = HARD_CASES[name]
    frames, labels = case.make(np.random.default_rng(0))
    assert len(frames) == len(labels) >= NEGATIVE_S * case.fps
    assert not labels.any()
    assert frames[0].shape == (H, W) and frames[0].dtype == np.uint8


def assert_one_span_after_a_lead_in(name: str, labels: np.ndarray, fps: float) -> None:
    assert labels.dtype == np.int8 and set(np.unique(labels)) <= {-1, 0, 1}
    ones = np.flatnonzero(labels == 1)
    assert len(ones) and np.all(labels[ones[0] : ones[-1] + 1] == 1), "exactly one unbroken span of 1s"
    assert len(spans_of(labels)) == 1
    if name == ALREADY_WALKING:
        assert labels[0] == 1
        assert not labels[ones[-1] + 10 :].any()  # then the scene alone
    else:
        first = np.flatnonzero(labels != 0)[0]
        assert first >= LEAD_IN_S[0] * fps


@pytest.mark.parametrize("name", POSITIVE_CASES)
def test_positive_labels_and_person_drawn_where_labelled(name: str) -> None:
    """One span of 1s after a quiet lead-in of 30 s or more; and rendered again without the
    person (same scene, same noise), the frames differ only around the person, and a lot there."""
    case = HARD_CASES[name]
    with_person = built(name)
    frames, labels = render(with_person, np.random.default_rng(1))
    assert_one_span_after_a_lead_in(name, labels, case.fps)
    empty, _ = render(built(name), np.random.default_rng(1), person=False)
    strong = []
    for i in np.flatnonzero(labels == 1)[:: max(1, int(case.fps) // 5)]:
        diff = np.abs(frames[i].astype(np.int16) - empty[i])
        (x0, y0, x1, y1), *_ = with_person.boxes[i]
        inside = diff[y0:y1, x0:x1]
        assert inside.max() >= 10 and np.percentile(inside, 95) >= 4, (i, float(inside.mean()))
        strong.append(np.percentile(inside, 95))
        diff[max(0, y0 - 2) : y1 + 2, max(0, x0 - 2) : x1 + 2] = 0
        assert diff.max() <= 1  # nothing else changed
    assert np.median(strong) >= 10
    for i in np.flatnonzero(labels == 0):  # before and after the walk: the very same pixels
        assert np.array_equal(frames[i], empty[i])


def crown_of(b: Built) -> Crown:
    return next(e for e in [*b.front, *b.back] if isinstance(e, Crown))


@pytest.mark.parametrize("name", FOLIAGE)
def test_foliage_moves(name: str) -> None:
    """Frame to frame, the crown changes far more than sensor noise does elsewhere."""
    b = built(name)
    crown = crown_of(b)
    frames, _ = render(b, np.random.default_rng(0))
    start = int(25 * b.fps)  # after the gust case's calm
    stack = np.stack(frames[start : start + int(5 * b.fps)]).astype(np.int16)
    leaves = np.zeros((H, W), bool)  # where the crown is dense in the last frame drawn
    leaves[crown.y0 : crown.y1, crown.x0 : crown.x1] = crown.alpha > 0.7
    moving = np.abs(np.diff(stack[:, leaves], axis=0)).mean()
    noise = np.abs(np.diff(stack[:, H - 60 :, W // 2 - 60 : W // 2 + 60], axis=0)).mean()  # still road and grass
    assert moving > 1.5 * noise, (moving, noise)


@pytest.mark.parametrize("name", FOLIAGE)
def test_foliage_stays_in_place(name: str) -> None:
    """Over any 10 s the crown's mean displacement is well below its amplitude, while each point
    really swings by about the amplitude (a sway, not a drift)."""
    b = built(name)
    crown = crown_of(b)
    for t0 in (0.0, 15.0, 25.0):
        times = t0 + np.arange(int(10 * b.fps)) / b.fps
        dx = np.stack([crown.displacement(float(t))[0] for t in times])
        top = dx[:, : dx.shape[1] // 3]  # the crown's upper third sways most
        assert np.abs(top.mean(axis=0)).max() < crown.amp
        if t0 >= 25.0:
            swing = np.percentile(top.max(axis=0) - top.min(axis=0), 90)
            assert swing > 0.8 * crown.amp, swing


def test_gust_starts_after_a_calm() -> None:
    crown = crown_of(built("foliage-gust"))
    calm = max(np.abs(crown.displacement(t)[0]).max() for t in np.arange(0, 14.8, 0.2))
    gusty = max(np.abs(crown.displacement(t)[0]).max() for t in np.arange(18, 28, 0.2))
    assert calm < 1.5 and 7.0 < gusty < 1.5 * crown.amp + 3.0


@pytest.mark.parametrize("name", ["foliage-gust-person", "insects-ir", "rain-streaks"])
def test_same_seed_same_pixels(name: str) -> None:
    make = HARD_CASES[name].make
    a, la = make(np.random.default_rng(7))
    b, lb = make(np.random.default_rng(7))
    c, _ = make(np.random.default_rng(8))
    assert np.array_equal(la, lb) and all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert any(not np.array_equal(x, y) for x, y in zip(a, c, strict=False))


def test_synthetic_clips_are_lazy_and_carry_their_rate() -> None:
    clips = synthetic_clips(seed=3)
    names = [clips.names[i] for i in range(len(clips))]
    i = names.index("walker-at-connect")
    clip = clips[i]
    assert clip.name == "synthetic/walker-at-connect" and clip.fps == 10.0
    assert len(clip.frames) == len(clip.labels)
    assert np.array_equal(clips[i].frames[5], clip.frames[5])  # generated again, same pixels
