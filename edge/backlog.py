"""How far behind the live stream a camera worker is: the bound of its detection queue.

A worker decodes and analyses in one thread; when the box cannot keep up, packets wait
in the socket and the demuxer, and would be analysed late, each one later than the
last. Every frame must still be decoded (the next ones refer to it), but a frame that
is already more than `limit` seconds behind the stream is dropped from detection,
oldest first, and counted in `frames_skipped`: motion is judged on fresh frames, and
the worker catches up instead of drifting further behind. Recording runs in its own
worker and never waits for detection.

"Behind" is measured on the stream's own clock: the offset between arrival time and
presentation time is smallest when the worker keeps up, so the lag of a frame is its
offset minus the smallest offset of the last WINDOW_S seconds (camera clocks drift,
so the minimum must be recent). A jump of the stream's clock (camera reboot, a
looping source) resets the window instead of counting as a backlog.
"""

from __future__ import annotations

from collections import deque

WINDOW_S = 30.0
JUMP_S = 10.0  # an offset this much above the minimum is a clock jump, not a backlog


class Backlog:
    """Feed each frame's arrival (monotonic) and stream time; `stale` says whether to skip detection."""

    def __init__(self, limit: float) -> None:
        self.limit = limit
        self._mins: deque[tuple[float, float]] = deque()  # (arrival, offset), offsets increasing

    @classmethod
    def for_rate(cls, detect_fps: float) -> Backlog:
        """The bound for a camera analysed at `detect_fps`: three analysed frames' worth, at
        least a second (a slower rate must not make every jittery frame stale)."""
        return cls(max(1.0, 3.0 / detect_fps))

    def stale(self, arrival: float, stream_time: float | None) -> bool:
        if stream_time is None:
            return False
        offset = arrival - stream_time
        mins = self._mins
        while mins and mins[0][0] < arrival - WINDOW_S:
            mins.popleft()
        if mins and offset - mins[0][1] > JUMP_S:
            mins.clear()
        while mins and mins[-1][1] >= offset:
            mins.pop()
        mins.append((arrival, offset))
        return offset - mins[0][1] > self.limit
