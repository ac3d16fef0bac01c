"""Blob tracks (edge.tracks): only blobs that travel are confirmed. Pure, no frames."""

from __future__ import annotations

import math

from edge.tracks import Blob, Tracker

VIEW = (178, 100)


def blob(cx: float, cy: float, w: int = 6, h: int = 14, calm: bool = False) -> Blob:
    box = (round(cx - w / 2), round(cy - h / 2), w, h)
    return Blob.at(box, float(w * h), (cx, cy), VIEW, calm)


def verdicts(path: list[tuple[float, float]], fps: float = 5.0, calm: bool = False) -> list[bool]:
    """Whether the blob at each point of `path` counts as motion."""
    tracker = Tracker()
    return [tracker.update([blob(x, y, calm=calm)], i / fps)[0][1].confirmed for i, (x, y) in enumerate(path)]


def confirmed_at(path: list[tuple[float, float]], fps: float = 5.0) -> float | None:
    counted = verdicts(path, fps)
    return counted.index(True) / fps if True in counted else None


def test_a_walker_is_confirmed_within_half_a_second() -> None:
    assert confirmed_at([(40 + 2.5 * i, 50) for i in range(10)]) == 0.4


def test_a_blob_swaying_in_place_is_never_confirmed() -> None:
    """Up to +-2 px at the analysis size (~+-7 px at 360p): a swaying region's blob is the
    union of its changed pixels, so its centre moves much less than the leaves do."""
    sway = [(80 + 2 * math.sin(i * 1.3), 50 + 1.5 * math.cos(i * 0.9)) for i in range(100)]
    assert confirmed_at(sway) is None


def test_a_slow_drift_that_comes_back_is_not_travel() -> None:
    there_and_back = [(80 + 0.6 * i, 50) for i in range(5)] + [(82.4 - 0.6 * i, 50) for i in range(5)]
    assert confirmed_at(there_and_back * 5) is None


def test_an_object_coming_in_from_the_edge_is_measured_by_its_leading_edge() -> None:
    tracker = Tracker()
    result = None
    for i in range(6):
        width = 2 + 3 * i  # grows out of the left border: its centre moves at half speed
        b = Blob.at((0, 40, width, 16), float(width * 16), (width / 2, 48), VIEW)
        result = tracker.update([b], i / 5)[0][1]
        if result.confirmed:
            break
    assert result is not None and result.confirmed and result.path[-1][0] == result.last.w


def test_a_part_of_a_travelling_object_and_a_person_who_stopped_are_not_judged_again() -> None:
    tracker = Tracker()
    for i in range(6):
        tracker.update([blob(40 + 3 * i, 50)], i / 5)
    # Split: the legs become a blob of their own beside the body.
    linked = tracker.update([blob(58, 50), blob(59, 60, 4, 6)], 6 / 5)
    assert all(track.confirmed for _, track in linked)
    # Stood still for 5 s (no blobs), then walks on from the same place.
    assert tracker.update([blob(60, 50)], 11.5)[0][1].confirmed
    # A blob far away at the same time is new and must travel first.
    assert not tracker.update([blob(150, 20)], 11.7)[0][1].confirmed


def test_tracks_unseen_for_over_a_second_are_forgotten() -> None:
    tracker = Tracker()
    tracker.update([blob(20, 20)], 0.0)
    tracker.update([], 0.5)
    assert len(tracker.tracks) == 1
    tracker.update([], 1.6)
    assert tracker.tracks == []


def test_a_blob_where_nothing_moved_lately_counts_at_once_and_keeps_counting_if_it_travels() -> None:
    assert verdicts([(40 + 2.5 * i, 50) for i in range(10)], calm=True) == [True] * 10


def test_a_calm_blob_that_then_sways_in_place_stops_counting_at_min_age() -> None:
    """A gust in a tree that was still: its first sightings count (min_frames keeps them
    from an event), and from MIN_AGE_S it is judged by its travel like any other blob."""
    sway = [(80 + 2 * math.sin(i * 1.3), 50 + 1.5 * math.cos(i * 0.9)) for i in range(50)]
    counted = verdicts(sway, calm=True)
    assert counted[:2] == [True, True] and not any(counted[2:])


def test_a_provisional_track_lends_nothing_to_blobs_beside_it() -> None:
    tracker = Tracker()
    tracker.update([blob(80, 50, calm=True)], 0.0)
    linked = tracker.update([blob(80.5, 50), blob(84, 60, 4, 6)], 0.2)
    assert [track.provisional for _, track in linked] == [True, False]
    assert not linked[1][1].confirmed


def test_where_a_travelling_object_should_be_next_and_where_nothing_is_expected() -> None:
    """Tracker.expected: the box of a walker followed for 0.6 s or more, moved on by its last
    step; nothing for a blob that sways in place, for a calm blob not yet judged, or for a
    walker not seen for longer than EXPECT_S."""
    tracker = Tracker()
    for i in range(5):  # 2.5 px per frame to the right, at 5 fps
        tracker.update([blob(40 + 2.5 * i, 50)], i / 5)
    assert tracker.expected(0.8) == []  # seen now: nothing to predict for this frame
    ((x0, y0, x1, y1),) = tracker.expected(1.0)
    last = tracker.tracks[0].last
    assert x0 < last.x + 2.5 < last.x + last.w + 2.5 < x1  # moved on by one step, grown
    assert y0 < last.y and last.y + last.h < y1
    assert tracker.expected(2.0) == []  # lost sight of it for over EXPECT_S
    sway = Tracker()
    for i in range(25):
        sway.update([blob(80 + 2 * math.sin(i * 1.3), 50)], i / 5)
    assert sway.expected(5.0) == []
    calm = Tracker()
    calm.update([blob(40, 50, calm=True)], 0.0)
    assert calm.tracks[0].confirmed and calm.expected(0.2) == []
