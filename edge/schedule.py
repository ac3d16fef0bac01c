"""Which frames are analysed: the one detection throttle, held by the frame pipeline
(edge.pipeline) that the camera worker and the motion evaluation both run, so the
evaluation scores exactly the frames the daemon analyses.

A frame is due when at least 0.95 / detect_fps seconds have passed since the last
analysed frame (the 5 % slack keeps a 5 fps camera whose frames arrive a little early
at 5 analysed frames a second instead of 2.5). The first frame is always due.
"""

from __future__ import annotations

SLACK = 0.95


class DetectSchedule:
    """`due(t)` asks, `mark(t)` records that the frame at `t` was analysed (the frame
    pipeline may find a due frame stale and skip it without marking it); `take(t)` is
    both. Times are seconds on any clock that does not step back (monotonic in the
    daemon, the clip's own timestamps in the evaluation)."""

    def __init__(self, detect_fps: float) -> None:
        self.interval = SLACK / detect_fps
        self._last: float | None = None

    def due(self, t: float) -> bool:
        return self._last is None or t - self._last >= self.interval

    def mark(self, t: float) -> None:
        self._last = t

    def take(self, t: float) -> bool:
        """Due? If so it counts as analysed."""
        if not self.due(t):
            return False
        self._last = t
        return True
