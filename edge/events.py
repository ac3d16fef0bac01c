"""The event state machine: motion results over time -> start / update / end. Pure.

Every start gets exactly one end. Times are the frames' wall-clock times; a clock
that steps backwards is treated as standing still, never as a reason to crash.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from edge.config import EventConfig
from edge.motion import MotionResult

UPDATE_GROWTH = 1.5  # an update is worth sending when the peak grows by this factor
UPDATE_MOVE = 0.25  # ... or the region's centre moves this far (frame fractions)
PROVISIONAL_MIN_SEEN = 2  # a run of provisional frames starts an event once its object is seen twice


@dataclass(frozen=True, slots=True)
class Event:
    """One event message. `id` is f"{camera}-{start ms}", shared by its start, updates and end."""

    id: str
    type: Literal["start", "update", "end"]
    box: str
    camera: str
    start_time: float
    end_time: float | None
    score: float
    peak_score: float
    region: tuple[float, float, float, float] | None
    reason: str | None = None

    def to_payload(self, thumbnail: bool, recordings: list[str]) -> dict[str, Any]:
        """The SPEC 3.1 JSON object."""
        payload: dict[str, Any] = {
            "id": self.id,
            "type": self.type,
            "box": self.box,
            "camera": self.camera,
            "start_time": round(self.start_time, 3),
            "end_time": None if self.end_time is None else round(self.end_time, 3),
            "score": round(self.score, 4),
            "peak_score": round(self.peak_score, 4),
            "region": None if self.region is None else [round(v, 4) for v in self.region],
            "thumbnail": thumbnail,
            "recordings": list(recordings),
        }
        if self.reason is not None:
            payload["reason"] = self.reason
        return payload


@dataclass(frozen=True, slots=True)
class TrackerStep:
    """What one frame changed: events to publish, the motion state, keep-this-frame."""

    events: tuple[Event, ...] = ()
    motion_on: bool | None = None  # True: ON now, False: OFF now, None: unchanged
    new_peak: bool = False  # best frame so far of the open or about-to-open event


_EMPTY = TrackerStep()


@dataclass(slots=True)
class _OpenEvent:
    """The tracker's open event: what it is now and what was last published of it."""

    id: str
    start: float
    score: float
    peak: float
    region: tuple[float, float, float, float] | None
    last_motion: float
    published_peak: float
    published_centre: tuple[float, float]
    last_update: float


def _centre(region: tuple[float, float, float, float] | None) -> tuple[float, float]:
    if region is None:
        return (0.5, 0.5)
    x, y, w, h = region
    return (x + w / 2, y + h / 2)


class EventTracker:
    """One per camera."""

    def __init__(self, box_id: str, camera_id: str, config: EventConfig) -> None:
        self._box = box_id
        self._camera = camera_id
        self._cfg = config
        self._now = float("-inf")
        self._run: list[tuple[float, MotionResult]] = []  # consecutive motion frames before a start
        self._run_best = -1.0  # best score in the run already reported as new_peak
        self._last_id_ms = -1
        self._open: _OpenEvent | None = None

    @property
    def active(self) -> bool:
        return self._open is not None

    def _event(
        self, kind: Literal["start", "update", "end"], end: float | None = None, reason: str | None = None
    ) -> Event:
        o = self._open
        assert o is not None
        return Event(
            id=o.id,
            type=kind,
            box=self._box,
            camera=self._camera,
            start_time=o.start,
            end_time=end,
            score=o.score,
            peak_score=o.peak,
            region=o.region,
            reason=reason,
        )

    def update(self, t: float, result: MotionResult) -> TrackerStep:
        t = max(t, self._now)
        self._now = t
        if result.suppressed is not None and not result.motion:
            # The detector could not tell (lighting change, warm-up): neither motion nor
            # quiet, so a light switching on neither starts, splits nor ends an event.
            return _EMPTY
        if self._open is None:
            return self._update_idle(t, result)
        return self._update_open(t, result)

    def _update_idle(self, t: float, result: MotionResult) -> TrackerStep:
        if not result.motion:
            self._clear_run()
            return _EMPTY
        self._run.append((t, result))
        new_peak = result.score > self._run_best
        if new_peak:
            self._run_best = result.score
        # The detector may have followed the object for frames before it reported motion
        # (until it had travelled): those frames count towards the run and its start.
        if max(len(self._run), result.seen) < self._cfg.min_frames:
            return TrackerStep(new_peak=new_peak)
        if result.provisional and result.seen < PROVISIONAL_MIN_SEEN:
            # Blobs counted at once for their calm place may be a new one each frame (insects,
            # a flag at connection): a run of them is not one object until one is seen again.
            return TrackerStep(new_peak=new_peak)
        return self._start(new_peak)

    def _start(self, new_peak: bool) -> TrackerStep:
        first_t, first = self._run[0]
        start_t = first_t if first.since is None else min(first_t, max(first.since, first_t - self._cfg.end_after))
        peak_t, peak = max(self._run, key=lambda item: item[1].score)
        last_t, last = self._run[-1]
        # Ids are unique per camera even when a clock stepping back (held at its
        # latest value here) gives two events the same start millisecond.
        id_ms = max(int(start_t * 1000), self._last_id_ms + 1)
        self._last_id_ms = id_ms
        self._open = _OpenEvent(
            id=f"{self._camera}-{id_ms}",
            start=start_t,
            score=last.score,
            peak=peak.score,
            region=peak.region,
            last_motion=last_t,
            published_peak=peak.score,
            published_centre=_centre(peak.region),
            last_update=last_t,
        )
        self._clear_run()
        return TrackerStep(events=(self._event("start"),), motion_on=True, new_peak=new_peak)

    def _update_open(self, t: float, result: MotionResult) -> TrackerStep:
        o = self._open
        assert o is not None
        if t - o.start >= self._cfg.max_duration:
            ended = self._end(o.last_motion, "max_duration")
            if result.motion:  # motion goes on: the next event starts from this frame
                # Its peak is left unreported: this step ends the old event, and a frame
                # kept now would become the old event's thumbnail. The next candidate
                # frame is reported instead, so the new start still carries a picture.
                self._run = [(t, result)]
                if self._cfg.min_frames <= 1:
                    started = self._start(True)
                    return TrackerStep(events=ended.events + started.events, motion_on=None, new_peak=True)
            return ended
        if not result.motion:
            if t - o.last_motion >= self._cfg.end_after:
                return self._end(o.last_motion, "quiet")
            return _EMPTY
        o.last_motion = t
        o.score = result.score
        new_peak = result.score > o.peak
        if new_peak:
            o.peak = result.score
            o.region = result.region
        grew = o.peak >= o.published_peak * UPDATE_GROWTH
        cx, cy = _centre(result.region)
        px, py = o.published_centre
        moved = abs(cx - px) + abs(cy - py) >= UPDATE_MOVE
        if (grew or moved) and t - o.last_update >= self._cfg.update_interval:
            o.published_peak = o.peak
            o.published_centre = (cx, cy)
            o.last_update = t
            return TrackerStep(events=(self._event("update"),), new_peak=new_peak)
        return TrackerStep(new_peak=new_peak)

    def _end(self, end_time: float, reason: str) -> TrackerStep:
        event = self._event("end", end=end_time, reason=reason)
        self._open = None
        self._clear_run()
        return TrackerStep(events=(event,), motion_on=False)

    def _clear_run(self) -> None:
        self._run.clear()
        self._run_best = -1.0

    def close(self, t: float, reason: str) -> TrackerStep:
        """End the open event now (camera lost, shutdown, detection off)."""
        self._clear_run()
        if self._open is None:
            return _EMPTY
        return self._end(self._open.last_motion, reason)
