"""Scoring a detector on a labelled clip: frame-level and event-level figures, and cost."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from edge.config import EventConfig
from edge.events import EventTracker
from edge.motion import MotionResult

SPAN_GRACE_S = 1.0  # a span is found when motion is raised within 1 s of its first frame


class Detector(Protocol):
    def process(self, luma: np.ndarray, t: float) -> MotionResult: ...


@dataclass
class Score:
    tp: int = 0
    fp: int = 0
    fn: int = 0
    spans: int = 0
    spans_found: int = 0
    false_events: int = 0
    negative_seconds: float = 0.0
    detect_seconds: float = 0.0
    detect_calls: int = 0
    frames_total: int = 0  # video packets of the stream (idle-mode runs only)
    frames_decoded: int = 0  # ... of which decoded (the rest were held back and never needed)
    missed: list[int] = field(default_factory=list)  # first frames of spans not found

    def add(self, other: Score) -> None:
        for name in (
            "tp",
            "fp",
            "fn",
            "spans",
            "spans_found",
            "false_events",
            "negative_seconds",
            "detect_seconds",
            "detect_calls",
            "frames_total",
            "frames_decoded",
        ):
            setattr(self, name, getattr(self, name) + getattr(other, name))

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    @property
    def false_events_per_hour(self) -> float:
        return self.false_events / (self.negative_seconds / 3600) if self.negative_seconds else 0.0

    @property
    def ms_per_frame(self) -> float:
        return 1000 * self.detect_seconds / self.detect_calls if self.detect_calls else 0.0


def spans_of(labels: np.ndarray) -> list[tuple[int, int]]:
    """Maximal runs of label 1, as (first, last) frame indices."""
    spans, start = [], None
    for i, value in enumerate(labels):
        if value == 1 and start is None:
            start = i
        elif value != 1 and start is not None:
            spans.append((start, i - 1))
            start = None
    if start is not None:
        spans.append((start, len(labels) - 1))
    return spans


def evaluate(
    frames: Sequence[np.ndarray],
    labels: np.ndarray,
    fps: float,
    detector: Detector,
    detect_fps: float = 5.0,
    events: EventConfig | None = None,
    clock: Callable[[], float] = time.thread_time,
) -> Score:
    """Run frames through detector and tracker as the camera worker does (rate-limited to
    `detect_fps`; a frame not analysed keeps the last decision) and score them. Cost is
    this thread's CPU time in the detector: what a camera worker pays, whatever else runs."""
    tracker = EventTracker("eval", "clip", events or EventConfig())
    n = len(frames)
    predicted = np.zeros(n, bool)
    active = np.zeros(n, bool)
    event_frames: list[tuple[int, int | None]] = []  # (start frame, end frame)
    last_t, last = -1e9, MotionResult(False, 0.0, None)
    score = Score()
    for i, luma in enumerate(frames):
        t = i / fps
        if t - last_t >= 0.95 / detect_fps:
            began = clock()
            last = detector.process(luma, t)
            score.detect_seconds += clock() - began
            score.detect_calls += 1
            last_t = t
            for event in tracker.update(t, last).events:
                if event.type == "start":
                    event_frames.append((round(event.start_time * fps), None))
                elif event.type == "end" and event_frames:
                    event_frames[-1] = (event_frames[-1][0], i)
        predicted[i] = last.motion
        active[i] = tracker.active
    return score_run(score, labels, fps, predicted, active, event_frames)


def score_run(
    score: Score,
    labels: np.ndarray,
    fps: float,
    predicted: np.ndarray,
    active: np.ndarray,
    event_frames: list[tuple[int, int | None]],
) -> Score:
    """Fill `score` from per-frame decisions: `predicted` (motion raised), `active` (an
    event open) and the events as (start frame, end frame or None)."""
    n = len(labels)
    valid = labels >= 0
    score.tp = int(np.count_nonzero(predicted & (labels == 1)))
    score.fp = int(np.count_nonzero(predicted & (labels == 0)))
    score.fn = int(np.count_nonzero(~predicted & (labels == 1) & valid))
    grace = int(round(SPAN_GRACE_S * fps))
    for first, _last in spans_of(labels):
        score.spans += 1
        if active[first : first + grace + 1].any():
            score.spans_found += 1
        else:
            score.missed.append(first)
    for start, end in event_frames:
        stop = n - 1 if end is None else end
        if labels[min(start, n - 1)] == 0 and not (labels[start : stop + 1] == 1).any():
            score.false_events += 1
    score.negative_seconds = float(np.count_nonzero(labels == 0)) / fps
    return score
