"""One thread analyses every camera's frames, a batch at a time.

Why: a camera hands over one frame every 200 ms. Analysed on its own, right after the
camera's worker slept and decoded, a frame costs about three times the CPU it costs in
a run of other cameras' frames (caches, branch predictors and OpenCV's call paths have
gone cold in between: `scripts/bench_motion.py --gap 200` against `--gap 200 --batch 12`). So
the camera workers decode (in parallel: decoding releases the GIL) and hand each frame
that is due for analysis to this thread, which waits `window` after the first one
arrives and then analyses everything queued, back to back, oldest first.

The price is latency: at most `window` (0.1 s by default) before a frame is looked at.
The queue is bounded per camera: when `MAX_PENDING` of a camera's frames already wait
(this thread fell behind), its oldest gives way and is counted as skipped.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass

from edge.logs import get_logger
from edge.threads import name_os_thread

WINDOW_S = 0.1  # how long a batch gathers after its first frame: at 5 fps, about half the cameras
MAX_PENDING = 3  # a camera's frames waiting at once (the worker's own backlog limit is 3 frames too)
IDLE_BEAT_S = 1.0  # with nothing to do, the thread still shows signs of life this often


@dataclass(frozen=True, slots=True)
class Job:
    """One frame's analysis: `run` analyses it, `skipped` is called instead when it gives way."""

    owner: Hashable  # the camera it belongs to (bounds and `discard` are per owner)
    run: Callable[[], None]
    skipped: Callable[[], None]
    queued: float  # monotonic


class AnalysisThread:
    """The batching thread. `submit` and `discard` may be called from any thread."""

    def __init__(self, window: float = WINDOW_S, name: str = "analysis") -> None:
        self.window = window
        self.heartbeat_monotonic = time.monotonic()  # read by the systemd watchdog's probe
        self.batches = 0
        self.frames = 0
        self._queue: deque[Job] = deque()
        self._wake = threading.Condition()
        self._stop = False
        self._log = get_logger(role=name)
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    @property
    def name(self) -> str:
        return self._thread.name

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        with self._wake:
            self._stop = True
            self._wake.notify()

    def join(self, timeout: float) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def submit(self, owner: Hashable, run: Callable[[], None], skipped: Callable[[], None]) -> None:
        """Queue a frame's analysis; if `owner` already has MAX_PENDING waiting, its oldest gives way."""
        dropped = None
        with self._wake:
            mine = [job for job in self._queue if job.owner == owner]
            if len(mine) >= MAX_PENDING:
                dropped = mine[0]
                self._queue.remove(dropped)
            self._queue.append(Job(owner, run, skipped, time.monotonic()))
            if len(self._queue) == 1:
                self._wake.notify()
        if dropped is not None:
            dropped.skipped()

    def discard(self, owner: Hashable) -> int:
        """Drop every frame of `owner` still waiting (its camera stopped); how many were dropped."""
        with self._wake:
            kept = deque(job for job in self._queue if job.owner != owner)
            dropped = len(self._queue) - len(kept)
            self._queue = kept
        return dropped

    @property
    def pending(self) -> int:
        return len(self._queue)

    def _next_batch(self) -> list[Job] | None:
        """Wait for a batch: the first frame, then `window` after it; None when stopping."""
        with self._wake:
            while not self._queue and not self._stop:
                self.heartbeat_monotonic = time.monotonic()
                self._wake.wait(IDLE_BEAT_S)
            if self._stop:
                return None
            gather = self._queue[0].queued + self.window - time.monotonic()
            if gather > 0:
                self._wake.wait_for(lambda: self._stop, gather)
            if self._stop:
                return None
            batch = list(self._queue)
            self._queue.clear()
        return batch

    def _run(self) -> None:
        name_os_thread(self._thread.name)
        while (batch := self._next_batch()) is not None:
            self.heartbeat_monotonic = time.monotonic()
            for job in batch:
                try:
                    job.run()
                except Exception:  # noqa: BLE001 - one camera's bad frame must not stop the others' analysis
                    self._log.exception("analysis_failed", camera=str(job.owner))
            self.batches += 1
            self.frames += len(batch)
