"""The motion detector against known truth: generated hard cases and the labelled real clips.

A regression fails here: every synthetic hard negative must stay free of events, every
synthetic positive must be found in time, and the real-clip scores must stay above a
floor and above the Frigate-style baseline.
"""

from __future__ import annotations

import numpy as np
import pytest

from edge.config import MotionConfig
from edge.evaluation.baselines import FrameDifference, FrigateStyle
from edge.evaluation.clips import load_clip
from edge.evaluation.metrics import Score, evaluate, spans_of
from edge.evaluation.synthetic import NEGATIVES, POSITIVES
from edge.motion import MotionDetector
from harness.clips import shared_clips_dir

SHARED = shared_clips_dir()


@pytest.mark.parametrize("name", sorted(NEGATIVES))
def test_no_event_on_synthetic_hard_negative(name: str) -> None:
    frames, labels = NEGATIVES[name](np.random.default_rng(0))
    score = evaluate(frames, labels, 5.0, MotionDetector(MotionConfig()))
    assert score.false_events == 0


@pytest.mark.parametrize("name", sorted(POSITIVES))
def test_synthetic_positive_found_within_a_second(name: str) -> None:
    frames, labels = POSITIVES[name](np.random.default_rng(0))
    score = evaluate(frames, labels, 5.0, MotionDetector(MotionConfig()))
    assert score.spans_found == score.spans == 1
    assert score.recall > 0.9 and score.precision > 0.9


def test_spans_and_scores_are_computed_as_documented() -> None:
    labels = np.array([0, 1, 1, -1, 1, 0, 0, 1], np.int8)
    assert spans_of(labels) == [(1, 2), (4, 4), (7, 7)]
    s = Score(tp=8, fp=2, fn=2)
    assert (s.precision, s.recall) == (0.8, 0.8) and s.f1 == pytest.approx(0.8)


def test_baselines_behave_like_their_descriptions() -> None:
    frames, labels = POSITIVES["fast-car"](np.random.default_rng(0))
    for detector in (FrigateStyle(), FrameDifference()):
        assert evaluate(frames, labels, 5.0, detector).spans_found == 1
    lights, zero = NEGATIVES["lights"](np.random.default_rng(0))
    # Frame differencing has no lighting suppression: the light switch is motion to it.
    assert evaluate(lights, zero, 5.0, FrameDifference()).fp > 0


@pytest.mark.clips
@pytest.mark.skipif(SHARED is None, reason="../shared/clips is not here (a user's clone)")
def test_real_clips_floor_and_better_than_frigate_style() -> None:
    ours, frigate = Score(), Score()
    for path in sorted(SHARED.glob("*.mp4")):
        clip = load_clip(path)
        ours.add(evaluate(clip.frames, clip.labels, clip.fps, MotionDetector(MotionConfig())))
        frigate.add(evaluate(clip.frames, clip.labels, clip.fps, FrigateStyle()))
    assert ours.spans_found >= 0.95 * ours.spans
    assert ours.f1 >= 0.95
    assert ours.f1 >= frigate.f1 + 0.05
    assert ours.false_events <= frigate.false_events
