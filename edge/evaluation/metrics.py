"""Scoring a detector on a labelled clip, strictly: as the daemon runs, and as a user
would judge its events.

- Frames: only the frames the daemon analyses are scored: each clip goes through the
  daemon's own frame pipeline (edge.pipeline: the detect_fps throttle, edge.schedule,
  on the clip's own timestamps), each frame with the label at that frame.
  The every-frame view (each verdict held until the next analysed frame) is kept as a
  second view only (`every_*`).
- Events: an event is judged where the tracker emits its start. It is FALSE when that
  frame is labelled 0 and no frame labelled 1 follows within SPAN_GRACE_S (nothing of
  interest there); it is not judged (neither false nor true) on a -1 frame with no
  label 1 within SPAN_GRACE_S. Warm-up is judged like any other time.
- Spans (maximal runs of label 1): FOUND when an event that is not false starts
  (is emitted) within SPAN_GRACE_S before or after the span's first frame, or is
  already open at that frame (someone still in view from the last span). A false
  event still open when an object comes does not find it. Latency: start emission
  minus the span's first frame, 0 for an event already open or started early.
- A clip without analysed positive frames has no precision, recall or F1 (None): it
  reports false frames (share of its analysed label-0 frames) and false events per hour.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from edge.config import EventConfig, MotionConfig
from edge.events import Event, EventTracker
from edge.motion import MotionResult
from edge.pipeline import Detector, FramePipeline, Moment, Outcome

SPAN_GRACE_S = 1.0  # a span is found by an event starting within 1 s of its first frame
_EPS = 1e-6  # timestamps k / fps are not exact in binary


def clip_pipeline(
    detector: Detector, detect_fps: float, events: EventConfig | None = None, idle_after: float = 0.0
) -> FramePipeline:
    """The daemon's frame pipeline for scoring a clip: no pictures, no backlog (times are the clip's)."""
    motion = MotionConfig(detect_fps=detect_fps, idle_after=idle_after)
    return FramePipeline("clip", detector, EventTracker("eval", "clip", events or EventConfig()), motion)


class TimedDetector:
    """A detector whose calls are timed by `clock`: the cost of detection alone."""

    def __init__(self, detector: Detector, clock: Callable[[], float]) -> None:
        self._detector = detector
        self._clock = clock
        self.seconds = 0.0

    def process(self, luma: np.ndarray, t: float) -> MotionResult:
        began = self._clock()
        result = self._detector.process(luma, t)
        self.seconds += self._clock() - began
        return result


@dataclass
class Run:
    """What the daemon did on a clip: the frames it analysed (indices, ascending) with
    their verdicts, and its events as [frame where the start was emitted, frame where
    the end was emitted or None]. `withheld`: frames the schedule picked that idle
    mode kept from the detector (edge.idle): the daemon raised nothing there."""

    analysed: list[int] = field(default_factory=list)
    motion: list[bool] = field(default_factory=list)
    events: list[tuple[int, int | None]] = field(default_factory=list)
    withheld: list[int] = field(default_factory=list)

    def fed(self, i: int, outcome: Outcome) -> bool:
        """Frame `i` went through the pipeline: recorded if it was analysed (True)."""
        if outcome.result is None:
            return False
        self.frame(i, outcome.result.motion, outcome.events)
        return True

    def frame(self, i: int, motion: bool, events: Iterable[Event] = ()) -> None:
        """Frame `i` was analysed: its verdict and the events the tracker emitted for it."""
        self.analysed.append(i)
        self.motion.append(motion)
        for event in events:
            if event.type == "start":
                self.events.append((i, None))
            elif event.type == "end" and self.events and self.events[-1][1] is None:
                self.events[-1] = (self.events[-1][0], i)


@dataclass
class Score:
    # Analysed frames (label -1 not counted); `negatives`: analysed frames labelled 0.
    tp: int = 0
    fp: int = 0
    fn: int = 0
    negatives: int = 0
    # The every-frame view: each verdict held until the next analysed frame.
    every_tp: int = 0
    every_fp: int = 0
    every_fn: int = 0
    spans: int = 0
    spans_found: int = 0
    events: int = 0
    false_events: int = 0
    negative_seconds: float = 0.0
    detect_seconds: float = 0.0
    detect_calls: int = 0
    frames_total: int = 0  # video packets of the stream (idle-mode runs only)
    frames_decoded: int = 0  # ... of which decoded (the rest were held back and never needed)
    withheld: int = 0  # scheduled frames idle mode kept from the detector (scored as no motion)
    missed: list[int] = field(default_factory=list)  # first frames of spans not found
    latencies: list[float | None] = field(default_factory=list)  # per span; None: no event at all
    span_times: list[float] = field(default_factory=list)  # per span: the time of its first frame

    def add(self, other: Score) -> None:
        for name in (
            "tp",
            "fp",
            "fn",
            "negatives",
            "every_tp",
            "every_fp",
            "every_fn",
            "spans",
            "spans_found",
            "events",
            "false_events",
            "negative_seconds",
            "detect_seconds",
            "detect_calls",
            "frames_total",
            "frames_decoded",
            "withheld",
        ):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.missed += other.missed
        self.latencies += other.latencies
        self.span_times += other.span_times

    @property
    def positives(self) -> int:
        """Analysed frames labelled 1."""
        return self.tp + self.fn

    @property
    def precision(self) -> float | None:
        """None without positives (a clean negative clip must not read as precision 1.0)
        or when nothing was raised."""
        return _precision(self.tp, self.fp, self.fn)

    @property
    def recall(self) -> float | None:
        return _recall(self.tp, self.fn)

    @property
    def f1(self) -> float | None:
        return _f1(self.tp, self.fp, self.fn)

    @property
    def every_precision(self) -> float | None:
        return _precision(self.every_tp, self.every_fp, self.every_fn)

    @property
    def every_recall(self) -> float | None:
        return _recall(self.every_tp, self.every_fn)

    @property
    def every_f1(self) -> float | None:
        return _f1(self.every_tp, self.every_fp, self.every_fn)

    @property
    def false_frame_share(self) -> float | None:
        """Share of the analysed label-0 frames raised as motion; None without any."""
        return self.fp / self.negatives if self.negatives else None

    @property
    def false_events_per_hour(self) -> float:
        return self.false_events / (self.negative_seconds / 3600) if self.negative_seconds else 0.0

    @property
    def worst_latency(self) -> float | None:
        """The longest start latency of the spans that got an event (found or late)."""
        known = [v for v in self.latencies if v is not None]
        return max(known) if known else None

    @property
    def ms_per_frame(self) -> float:
        return 1000 * self.detect_seconds / self.detect_calls if self.detect_calls else 0.0


def _precision(tp: int, fp: int, fn: int) -> float | None:
    return tp / (tp + fp) if tp + fn and tp + fp else None


def _recall(tp: int, fn: int) -> float | None:
    return tp / (tp + fn) if tp + fn else None


def _f1(tp: int, fp: int, fn: int) -> float | None:
    return 2 * tp / (2 * tp + fp + fn) if tp + fn else None


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
    times: Sequence[float] | np.ndarray | None = None,
) -> Score:
    """Run frames through the daemon's frame pipeline (the frames its throttle at
    `detect_fps` picks by `times`, default frame / fps) and score them. Cost is this
    thread's CPU time in the detector: what a camera worker pays, whatever else runs."""
    if len(frames) != len(labels):
        raise ValueError(f"{len(frames)} frames but {len(labels)} labels")
    stamps = np.arange(len(frames), dtype=np.float64) / fps if times is None else np.asarray(times, np.float64)
    timed = TimedDetector(detector, clock)
    pipeline = clip_pipeline(timed, detect_fps, events)
    run, score = Run(), Score()
    for i, luma in enumerate(frames):
        t = float(stamps[i])
        score.detect_calls += run.fed(i, pipeline.feed(luma, Moment(t, t)))
    score.detect_seconds = timed.seconds
    return score_run(score, labels, fps, run, stamps)


def judge_event(labels: np.ndarray, times: np.ndarray, i: int) -> bool | None:
    """An event whose start was emitted at frame `i`: True (something of interest is
    there or comes within SPAN_GRACE_S), False (label 0 and nothing comes: a false
    event), None (label -1 and nothing comes: not judged)."""
    if labels[i] == 1:
        return True
    after = np.searchsorted(times, times[i] + SPAN_GRACE_S + _EPS, side="right")
    if (labels[i + 1 : after] == 1).any():
        return True
    return False if labels[i] == 0 else None


def score_run(
    score: Score,
    labels: np.ndarray,
    fps: float,
    run: Run,
    times: np.ndarray | None = None,
) -> Score:
    """Fill `score` from what the daemon did on a clip (see the module's rules)."""
    n = len(labels)
    labels = np.asarray(labels)
    times = np.arange(n, dtype=np.float64) / fps if times is None else np.asarray(times, np.float64)
    # Frames: the analysed ones and the withheld ones (not raised), in time order.
    scored = np.array([*run.analysed, *run.withheld], np.int64)
    verdicts = np.array([*run.motion, *([False] * len(run.withheld))], bool)
    order = np.argsort(scored, kind="stable")
    scored, verdicts = scored[order], verdicts[order]
    at = labels[scored]
    score.tp = int(np.count_nonzero(verdicts & (at == 1)))
    score.fp = int(np.count_nonzero(verdicts & (at == 0)))
    score.fn = int(np.count_nonzero(~verdicts & (at == 1)))
    score.negatives = int(np.count_nonzero(at == 0))
    score.withheld = len(run.withheld)
    # The every-frame view: a verdict holds until the next scored frame.
    held = np.zeros(n, bool)
    if len(scored):
        bounds = [*scored[1:], n]
        for first, stop, verdict in zip(scored, bounds, verdicts, strict=True):
            held[first:stop] = verdict
    score.every_tp = int(np.count_nonzero(held & (labels == 1)))
    score.every_fp = int(np.count_nonzero(held & (labels == 0)))
    score.every_fn = int(np.count_nonzero(~held & (labels == 1)))
    # Events, judged where their start was emitted.
    judged = [judge_event(labels, times, start) for start, _end in run.events]
    score.events = len(run.events)
    score.false_events = sum(verdict is False for verdict in judged)
    trusted = [
        (float(times[start]), float(times[end]) if end is not None else float("inf"))
        for (start, end), verdict in zip(run.events, judged, strict=True)
        if verdict is not False
    ]
    for first, last in spans_of(labels):
        score.spans += 1
        latency = span_latency(float(times[first]), float(times[last]), trusted)
        score.latencies.append(latency)
        score.span_times.append(float(times[first]))
        if latency is not None and latency <= SPAN_GRACE_S + _EPS:
            score.spans_found += 1
        else:
            score.missed.append(first)
    score.negative_seconds = float(np.count_nonzero(labels == 0)) / fps
    return score


def span_latency(first: float, last: float, events: list[tuple[float, float]]) -> float | None:
    """Seconds from a span's first frame (time `first`) to the start of the event that
    covers it, from (start emitted, end emitted) times of the events that are not false:
    0 when one is open at `first` or started within SPAN_GRACE_S before it; else the
    first start up to the span's end (more than SPAN_GRACE_S: late, not found); None
    when no event starts for it at all."""
    best: float | None = None
    for start, end in events:
        if first - SPAN_GRACE_S - _EPS <= start <= first + _EPS or start <= first < end:
            return 0.0
        if first < start <= max(first + SPAN_GRACE_S, last) + _EPS:
            best = start - first if best is None else min(best, start - first)
    return best
