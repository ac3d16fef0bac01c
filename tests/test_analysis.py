"""The shared analysis thread (edge.analysis): frames from many cameras analysed in one
batch, bounded per camera, dropped for a camera whose events were closed, and one
camera's failure never stopping the others'."""

from __future__ import annotations

import threading
import time

import av
import numpy as np

from edge.analysis import MAX_PENDING, AnalysisThread
from edge.camera import CameraWorker, EventOutput
from edge.config import CameraConfig, EventConfig


def wait_for(condition, seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)
    return condition()


def test_frames_from_many_cameras_within_the_window_are_one_batch_in_order() -> None:
    analysis = AnalysisThread(window=0.3)
    ran: list[tuple[str, int]] = []
    analysis.start()
    try:
        for n in range(3):
            for cam in ("a", "b", "c"):
                analysis.submit(cam, lambda cam=cam, n=n: ran.append((cam, n)), lambda: None)
        assert wait_for(lambda: len(ran) == 9)
        assert ran == [(cam, n) for n in range(3) for cam in ("a", "b", "c")]
        assert (analysis.batches, analysis.frames) == (1, 9)
    finally:
        analysis.stop()
        assert analysis.join(2)


def test_a_camera_with_too_many_frames_waiting_skips_its_oldest() -> None:
    analysis = AnalysisThread(window=0.05)  # not started: everything waits
    ran: list[int] = []
    skipped: list[int] = []
    for n in range(MAX_PENDING + 2):
        analysis.submit("slow", lambda n=n: ran.append(n), lambda n=n: skipped.append(n))
    analysis.submit("other", lambda: ran.append(-1), lambda: skipped.append(-1))
    assert skipped == [0, 1] and analysis.pending == MAX_PENDING + 1
    analysis.start()
    try:
        assert wait_for(lambda: len(ran) == MAX_PENDING + 1)
        assert ran == [2, 3, 4, -1]
    finally:
        analysis.stop()
        assert analysis.join(2)


def test_discard_drops_only_that_cameras_frames() -> None:
    analysis = AnalysisThread()
    ran: list[str] = []
    for cam in ("a", "b", "a"):
        analysis.submit(cam, lambda cam=cam: ran.append(cam), lambda: None)
    assert analysis.discard("a") == 2 and analysis.pending == 1
    analysis.start()
    try:
        assert wait_for(lambda: ran == ["b"])
    finally:
        analysis.stop()
        assert analysis.join(2)


def test_a_failing_analysis_does_not_stop_the_others() -> None:
    analysis = AnalysisThread(window=0.05)
    ran: list[str] = []

    def broken() -> None:
        raise ValueError("bad frame")

    analysis.submit("bad", broken, lambda: None)
    analysis.submit("good", lambda: ran.append("good"), lambda: None)
    analysis.start()
    try:
        assert wait_for(lambda: ran == ["good"])
        analysis.submit("good", lambda: ran.append("again"), lambda: None)
        assert wait_for(lambda: ran == ["good", "again"])  # the thread lives on
    finally:
        analysis.stop()
        assert analysis.join(2)


def test_an_idle_analysis_thread_still_beats() -> None:
    analysis = AnalysisThread()
    analysis.start()
    try:
        before = analysis.heartbeat_monotonic
        assert wait_for(lambda: analysis.heartbeat_monotonic > before + 0.5, 3.0)
    finally:
        analysis.stop()
        assert analysis.join(2)
    assert threading.active_count() >= 1


def moving_frames(count: int) -> list[av.VideoFrame]:
    """A textured still view and a bright block walking across it, as decoded frames."""
    rng = np.random.default_rng(0)
    view = np.repeat(np.repeat(rng.integers(40, 200, (18, 32), np.uint8), 20, 0), 20, 1)
    frames = []
    for n in range(count):
        luma = view.copy()
        if n >= 5:
            x = 40 + 12 * n
            luma[150:260, x : x + 40] = 250
        rgb = np.dstack([luma] * 3)
        frames.append(av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p"))
    return frames


def worker_with(analysis: AnalysisThread | None, outputs: list) -> CameraWorker:
    camera = CameraConfig(url="rtsp://127.0.0.1:9/x", motion={"detect_fps": 60})  # due every 16 ms
    return CameraWorker("cam", camera, "box", EventConfig(), outputs.append, analysis=analysis)


def feed(worker: CameraWorker, frames: list[av.VideoFrame]) -> None:
    for frame in frames:
        worker._on_frame(frame)
        time.sleep(0.02)


def test_a_walker_makes_the_same_event_inline_and_on_the_analysis_thread() -> None:
    frames = moving_frames(25)
    inline: list = []
    feed(worker_with(None, inline), frames)
    analysis = AnalysisThread(window=0.05)
    batched: list = []
    worker = worker_with(analysis, batched)
    analysis.start()
    try:
        feed(worker, frames)
        assert wait_for(lambda: worker.status.frames_detect == len(frames))
    finally:
        analysis.stop()
        assert analysis.join(2)
    starts = [o for o in inline if isinstance(o, EventOutput) and o.event.type == "start"]
    assert len(starts) == 1
    assert [type(o).__name__ for o in batched] == [type(o).__name__ for o in inline]
    assert [o.event.type for o in batched if isinstance(o, EventOutput)] == [
        o.event.type for o in inline if isinstance(o, EventOutput)
    ]


def test_frames_waiting_when_the_events_are_closed_are_not_analysed() -> None:
    """A camera lost or switched off: what it queued before must not open a new event after its end."""
    analysis = AnalysisThread(window=0.05)  # not started yet: the frames wait
    outputs: list = []
    worker = worker_with(analysis, outputs)
    feed(worker, moving_frames(25))
    assert analysis.pending == MAX_PENDING  # the rest gave way, counted
    assert worker.status.frames_skipped == 25 - MAX_PENDING
    worker.close_events("camera_lost")
    assert analysis.pending == 0
    analysis.start()
    try:
        feed(worker, moving_frames(25)[:3])  # analysed: still frames, learning
        assert wait_for(lambda: worker.status.frames_detect == 3)
    finally:
        analysis.stop()
        assert analysis.join(2)
    assert not [o for o in outputs if isinstance(o, EventOutput)]


def test_a_frame_taken_out_of_the_queue_before_the_close_is_still_dropped() -> None:
    """`discard` cannot reach a batch the thread already holds: the generation check does."""
    outputs: list = []
    worker = worker_with(None, outputs)
    frame = moving_frames(1)[0]
    generation = worker._generation
    worker.close_events("detect_off", reset=True)
    worker._analyse(frame, time.time(), time.monotonic(), generation)
    assert worker.status.frames_detect == 0
    worker._analyse(frame, time.time(), time.monotonic(), worker._generation)
    assert worker.status.frames_detect == 1
