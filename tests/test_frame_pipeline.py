"""The frame pipeline (edge.pipeline) with arrays and an injected clock: no RTSP, no
threads. The throttle, the backlog rule, detect ON/OFF, the event pictures, the idle
policy hook and the order of the outputs, as the camera worker and the evaluation see them."""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np
import pytest

from edge.config import EventConfig, MotionConfig
from edge.events import EventTracker
from edge.idle import KEYFRAME_EVERY_S, Action
from edge.motion import MotionResult
from edge.pipeline import CameraOutput, EventOutput, FramePipeline, Moment, MotionOutput, Outcome, Skip
from edge.thumbnail import ThumbnailMaker

WALL0 = 1_700_000_000.0  # the wall clock at arrival 0
STILL = MotionResult(False, 0.0, None)


def moving(score: float = 0.02) -> MotionResult:
    return MotionResult(True, score, (0.1, 0.2, 0.3, 0.4))


class Script:
    """A detector that answers `verdict(t)` for the frame at wall time t, and records its calls."""

    def __init__(self, verdict: Callable[[float], MotionResult] = lambda _t: STILL) -> None:
        self.verdict = verdict
        self.times: list[float] = []
        self.resets = 0

    def process(self, luma: np.ndarray, t: float) -> MotionResult:
        self.times.append(t)
        return self.verdict(t)

    def reset(self) -> None:
        self.resets += 1


def make(
    detector: Script,
    detect_fps: float = 5.0,
    events: EventConfig | None = None,
    pictures: bool = False,
    idle_after: float = 0.0,
) -> FramePipeline:
    return FramePipeline(
        "cam",
        detector,
        EventTracker("box", "cam", events or EventConfig()),
        MotionConfig(detect_fps=detect_fps, idle_after=idle_after),
        pictures=ThumbnailMaker(64, 90) if pictures else None,
    )


def grey(level: int) -> np.ndarray:
    return np.full((36, 64), level, np.uint8)


def at(t: float, stream: float | None = None) -> Moment:
    """Arrival `t` (monotonic), wall time WALL0 + t."""
    return Moment(t, WALL0 + t, stream)


def shade(jpeg: bytes | None) -> float:
    """The mean grey level of a JPEG: which grey frame it was made from."""
    assert jpeg is not None
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_GRAYSCALE)
    return float(image.mean())


def kinds(outputs: list[CameraOutput]) -> list[str]:
    return [o.event.type if isinstance(o, EventOutput) else ("ON" if o.on else "OFF") for o in outputs]


def test_the_throttle_analyses_at_detect_fps_on_the_arrival_clock() -> None:
    detector = Script()
    pipeline = make(detector, detect_fps=5.0)
    outcomes = [pipeline.feed(grey(0), at(k / 25)) for k in range(50)]
    analysed = [k for k, o in enumerate(outcomes) if o.result is not None]
    assert analysed == list(range(0, 50, 5))
    assert {o.skipped for k, o in enumerate(outcomes) if k not in analysed} == {Skip.NOT_DUE}
    assert pipeline.status.frames_detect == 10 and pipeline.status.frames_skipped == 0
    assert detector.times == [WALL0 + k / 25 for k in analysed]  # stamped with the wall clock


def test_stale_frames_are_skipped_and_counted_and_the_next_fresh_one_is_due() -> None:
    """A frame more than the backlog limit (1 s at 5 fps) behind the stream is not analysed."""
    pipeline = make(Script(), detect_fps=5.0)
    for k in range(10):  # keeping up: arrival = stream time
        pipeline.feed(grey(0), at(k / 5, stream=k / 5))
    late = pipeline.feed(grey(0), at(2.0 + 1.5, stream=2.0))  # arrives 1.5 s behind the stream
    assert late.skipped is Skip.STALE and late.result is None
    assert pipeline.status.frames_skipped == 1
    # Caught up again 0.05 s later: analysed at once, the stale frame did not use up the slot.
    fresh = pipeline.feed(grey(0), at(3.55, stream=3.55))
    assert fresh.result is not None and pipeline.status.frames_detect == 11


def test_detect_off_closes_the_open_event_and_on_resumes() -> None:
    detector = Script(lambda _t: moving())
    pipeline = make(detector, events=EventConfig(min_frames=3))
    outputs: list[CameraOutput] = []
    for k in range(5):
        outputs += pipeline.feed(grey(0), at(k / 5)).outputs
    assert kinds(outputs) == ["start", "ON"]
    pipeline.set_detect(False)
    assert pipeline.status.detect_enabled  # a request: applied on the next frame
    off = pipeline.feed(grey(0), at(1.0))
    assert off.detect_changed and off.skipped is Skip.DETECT_OFF
    assert kinds(list(off.outputs)) == ["end", "OFF"]
    end = off.outputs[0]
    assert isinstance(end, EventOutput) and end.event.reason == "detect_off"
    assert detector.resets == 1 and not pipeline.status.detect_enabled and not pipeline.status.motion
    calls = len(detector.times)
    assert all(pipeline.feed(grey(0), at(1.0 + k / 5)).skipped is Skip.DETECT_OFF for k in range(1, 10))
    assert len(detector.times) == calls  # nothing analysed while off
    pipeline.set_detect(True)
    back = pipeline.feed(grey(0), at(3.0))
    assert back.detect_changed and back.result is not None and pipeline.status.detect_enabled
    assert pipeline.close(WALL0 + 4.0, "shutdown") == ()  # the new run has not started an event yet


def test_the_start_carries_the_best_frame_seen_before_it() -> None:
    """The run before the start: scores 0.01, 0.05, 0.02; the second frame is the best."""
    scores = {0: 0.01, 1: 0.05, 2: 0.02}
    pipeline = make(Script(lambda t: moving(scores[round((t - WALL0) * 5)])), pictures=True)
    levels = [40, 200, 120]
    outcomes = [pipeline.feed(grey(level), at(k / 5)) for k, level in enumerate(levels)]
    assert [o.events for o in outcomes[:2]] == [(), ()]
    start = outcomes[2].outputs[0]
    assert isinstance(start, EventOutput) and start.event.type == "start"
    assert shade(start.jpeg) == pytest.approx(200, abs=3)


def test_a_max_duration_split_gives_the_waiting_picture_to_the_new_start() -> None:
    """A better frame at 1.8 s waits unsent; the split at 2 s ends the event and starts the
    next in one step: the end carries nothing, the new start the split frame."""
    score = {9: 0.03}  # frame 9 (1.8 s): a new peak, 1.5 x the published one (no update: too soon)
    pipeline = make(
        Script(lambda t: moving(score.get(round((t - WALL0) * 5), 0.02))),
        events=EventConfig(min_frames=1, max_duration=2.0, end_after=60),
        pictures=True,
    )
    outputs: list[CameraOutput] = []
    for k in range(11):  # 0 .. 2.0 s
        outputs += pipeline.feed(grey(20 * k + 10), at(k / 5)).outputs
    assert kinds(outputs) == ["start", "ON", "end", "start"]
    first, end, second = (o for o in outputs if isinstance(o, EventOutput))
    assert shade(first.jpeg) == pytest.approx(10, abs=3)
    assert end.jpeg is None and end.event.reason == "max_duration"
    assert shade(second.jpeg) == pytest.approx(210, abs=3)  # frame 10, the split frame
    assert second.event.id != first.event.id


def test_outputs_come_in_order_and_close_is_idempotent() -> None:
    pipeline = make(Script(lambda t: moving() if t - WALL0 < 2.0 else STILL), events=EventConfig(end_after=1.0))
    outputs: list[CameraOutput] = []
    for k in range(25):
        outputs += pipeline.feed(grey(0), at(k / 5)).outputs
    assert kinds(outputs) == ["start", "ON", "end", "OFF"]
    assert isinstance(outputs[1], MotionOutput) and outputs[1].camera == "cam"
    assert pipeline.close(WALL0 + 9.0, "shutdown") == ()


def test_shutdown_closes_an_open_event_with_its_reason() -> None:
    pipeline = make(Script(lambda _t: moving()))
    for k in range(4):
        pipeline.feed(grey(0), at(k / 5))
    closed = pipeline.close(WALL0 + 1.0, "shutdown")
    assert kinds(list(closed)) == ["end", "OFF"]
    assert isinstance(closed[0], EventOutput) and closed[0].event.reason == "shutdown"
    assert pipeline.close(WALL0 + 1.0, "shutdown") == ()


GOP = 10  # packets (= frames) per keyframe, at 5 fps


def drive(pipeline: FramePipeline, start: float, seconds: float, size: int = 100) -> list[Outcome]:
    """A stand-in for the decoder: one packet per frame, a keyframe every GOP; a frame
    reaches the pipeline only when idle mode lets its packet be decoded."""
    idle = pipeline.idle
    assert idle is not None
    outcomes = []
    for k in range(int(seconds * 5)):
        t = start + k / 5
        key = k % GOP == 0
        action = idle.packet(t, 20000 if key else size, key, None if key else "P")
        pipeline.sync_idle()
        if action is not Action.HOLD:
            outcomes.append(pipeline.feed(grey(0), at(t)))
    return outcomes


def test_idle_mode_withholds_frames_and_a_keyframe_with_motion_wakes_it() -> None:
    motion_at: set[float] = set()
    moving_from = [float("inf")]  # from then on, every analysed frame shows motion

    def verdict(t: float) -> MotionResult:
        t -= WALL0
        return moving(0.05) if round(t, 3) in motion_at or t >= moving_from[0] else STILL

    pipeline = make(Script(verdict), idle_after=5.0)
    pipeline.connect(0.0)
    assert len(drive(pipeline, 0.0, 10.0)) == 50  # still, awake: every frame decoded; sizes learnt
    # Someone walks in: the packets grow as the detector sees them, so sizes earn idle mode.
    motion_at.update(round(10.0 + k / 5, 3) for k in range(1, 5))
    drive(pipeline, 10.0, 1.0, size=800)
    assert pipeline.status.idle_allowed and not pipeline.status.idle
    seen = drive(pipeline, 11.0, 20.0)  # still again: idle after 5 s
    assert pipeline.status.idle
    assert len(seen) < 100 - 30  # the P-frames after idle set in were held back
    quiet = [o for o in seen if o.result is not None]
    assert quiet and all(not o.idle_changed for o in quiet)
    # Someone comes, and the sizes miss it: held back until the next analysed keyframe
    # (at most KEYFRAME_EVERY_S later) shows the motion, and that wakes it.
    moving_from[0] = 31.0
    after = drive(pipeline, 31.0, KEYFRAME_EVERY_S + 2.0)
    woken = [k for k, o in enumerate(after) if o.idle_changed]
    assert len(woken) == 1 and after[woken[0]].result is not None
    assert all(o.result is not None and o.result.motion for o in after[woken[0] : woken[0] + 2])
    assert not pipeline.status.idle and pipeline.status.idle_wakes == 1
    assert pipeline.idle is not None and pipeline.idle.trust.missed == 1


def test_a_new_connection_starts_awake_and_keeps_the_earned_trust() -> None:
    pipeline = make(Script(), idle_after=5.0)
    first = pipeline.connect(0.0)
    first.trust.onset(True)
    second = pipeline.connect(100.0)
    assert second is not first and second.trust is first.trust and not second.idle
    assert not pipeline.status.idle
