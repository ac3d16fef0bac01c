"""The looks each pixel has had lately (edge.looks), with plain arrays."""

from __future__ import annotations

import numpy as np

from edge.looks import PixelLooks

SIZE = (100, 178)  # the analysis size of a 16:9 camera
REGION = (slice(30, 70), slice(60, 120))


def region_mask() -> np.ndarray:
    mask = np.zeros(SIZE, np.uint8)
    mask[REGION] = 255
    return mask


def alternating(rng: np.random.Generator, seconds: float, fps: float, looks: PixelLooks) -> None:
    """A flag-like region: each frame shows one of three stripe looks, the rest is still."""
    for _ in range(round(seconds * fps)):
        frame = np.full(SIZE, 100, np.uint8)
        frame[REGION] = rng.choice([60, 140, 200])
        looks.learn(frame, 1 / fps)


def test_a_region_that_alternates_between_a_few_looks_is_known() -> None:
    looks = PixelLooks()
    alternating(np.random.default_rng(1), 20.0, 5.0, looks)
    box = REGION
    frame = np.full(SIZE, 100, np.uint8)
    frame[REGION] = 140
    looks.learn(frame, 0.2)
    assert looks.known(region_mask(), box)


def test_a_new_look_is_not_known_there_or_where_the_scene_was_still() -> None:
    looks = PixelLooks()
    alternating(np.random.default_rng(2), 20.0, 5.0, looks)
    person = np.full(SIZE, 100, np.uint8)
    person[REGION] = 20  # darker than any look the region had
    looks.learn(person, 0.2)
    assert not looks.known(region_mask(), REGION)
    still = (slice(0, 20), slice(0, 40))  # always 100 so far
    frame = np.full(SIZE, 100, np.uint8)
    frame[still] = 140  # a look the flag had, but never here
    looks.learn(frame, 0.2)
    mask = np.zeros(SIZE, np.uint8)
    mask[still] = 255
    assert not looks.known(mask, still)


def test_memory_is_in_seconds_and_reset_forgets() -> None:
    for fps in (5.0, 15.0):
        looks = PixelLooks()
        alternating(np.random.default_rng(3), 20.0, fps, looks)
        frame = np.full(SIZE, 100, np.uint8)
        frame[REGION] = 60
        looks.learn(frame, 1 / fps)
        assert looks.known(region_mask(), REGION), fps
    looks.reset()
    assert not looks.known(region_mask(), REGION)  # nothing learnt: nothing is known
    frame = np.full(SIZE, 100, np.uint8)
    looks.learn(frame, 0.2)
    frame[REGION] = 60
    looks.learn(frame, 0.2)
    assert not looks.known(region_mask(), REGION)
