"""An event's life from the frame pipeline's outputs to its finished outgoing messages. Pure.

The pipeline (edge/pipeline.py) says when an event starts, updates and ends and which
picture it has; this module decides what of it leaves the box and when:

- post-roll: a camera's outputs wait behind an `end` until `end_time + events.post_roll`,
  so the end lists every segment that covers it and events stay in order per camera;
- the recordings list (SPEC 3.1 `recordings`) and the protection of that footage;
- consent: a camera's pictures only where its share allows images, nothing of a camera
  it may not name (the egress enforces the same rule on every message);
- crash recovery: the events the outbox's open-events table says a crash left open end
  with reason `interrupted` at their last sign of life, before any camera starts;
- the open-event heartbeat that gives that last sign of life;
- the last event per camera, for the centre's page.

No clock, thread or disk of its own: the clock, the recordings and the consent are passed in.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

from edge.config import Config
from edge.messages import Messages, Outgoing
from edge.outbox import OpenEvent
from edge.pipeline import CameraOutput, EventOutput, MotionOutput

INTERRUPTED = "interrupted"  # `reason` of an end sent after a crash or power cut cut the event off
HEARTBEAT_S = 2.0  # an open event's last sign of life is kept to this


class Recordings(Protocol):
    """The footage an event names and protects (edge/recordings.py)."""

    def protect(self, camera: str, event_id: str, event_time: float, t0: float, t1: float) -> None: ...
    def covering(self, camera: str, t0: float, t1: float) -> list[str]: ...


class Consent(Protocol):
    """The cameras' shares (edge/egress.py)."""

    def images_allowed(self, camera: str) -> bool: ...
    def may_name(self, camera: str) -> bool: ...


class Log(Protocol):
    def info(self, event: str, **fields: Any) -> Any: ...
    def warning(self, event: str, **fields: Any) -> Any: ...


class EventLife:
    """Turns camera outputs into outgoing messages, in order per camera.

    Owner: the event loop (the publisher); the page reads `last_events` on the same loop."""

    def __init__(
        self,
        config: Config,
        messages: Messages,
        consent: Consent,
        recordings: Recordings,
        clock: Callable[[], float],
        log: Log,
    ) -> None:
        """`clock`: wall-clock seconds (event times are the frames' wall-clock times)."""
        self._config = config
        self._messages = messages
        self._consent = consent
        self._recordings = recordings
        self._clock = clock
        self._log = log
        self._held: dict[str, deque[CameraOutput]] = {}  # per camera, outputs not released yet
        self._hold_until: dict[str, float] = {}  # per camera, when its held `end` is due
        self._open: set[str] = set()  # cameras whose latest output opened an event
        self._beat_at = float("-inf")
        self.last_events: dict[str, dict[str, Any]] = {}  # per camera, the last event that left the box

    def reconfigure(self, config: Config) -> None:
        """A reload: new pre/post-roll and camera list from here on."""
        self._config = config

    # -- outputs in, messages out --------------------------------------------------------
    def take(self, item: CameraOutput) -> list[Outgoing]:
        """A camera output: its messages now, or later behind an `end` still in its post-roll."""
        if isinstance(item, EventOutput):
            if item.event.type == "end":
                self._open.discard(item.camera)
            elif item.event.type == "start":
                self._open.add(item.camera)
        self._held.setdefault(item.camera, deque()).append(item)
        return self.release()

    def release(self, force: bool = False) -> list[Outgoing]:
        """Messages of every output whose wait is over (`force`: of all, at shutdown)."""
        now = self._clock()
        released: list[Outgoing] = []
        for camera, held in self._held.items():
            while held and (force or now >= self._hold_until.get(camera, 0.0)):
                item = held[0]
                if isinstance(item, EventOutput) and item.event.type == "end" and not force:
                    ready_at = (item.event.end_time or now) + self._config.events.post_roll
                    if now < ready_at and self._hold_until.get(camera) != ready_at:
                        self._hold_until[camera] = ready_at
                        break
                held.popleft()
                released += self._outgoing(item, now)
        return released

    def _outgoing(self, item: CameraOutput, now: float) -> list[Outgoing]:
        if not self._consent.may_name(item.camera):
            return []
        if isinstance(item, MotionOutput):
            return [self._messages.motion(item.camera, item.on)]
        event, out = item.event, []
        jpeg = item.jpeg if self._consent.images_allowed(item.camera) else None
        if jpeg is not None:
            out += [self._messages.thumbnail(item.camera, event.id, jpeg), self._messages.snapshot(item.camera, jpeg)]
        payload = event.to_payload(thumbnail=jpeg is not None, recordings=self._recordings_for(item, now))
        logged: dict[str, object] = {"camera": item.camera, "id": event.id, "type": event.type}
        logged |= {"score": round(event.peak_score, 4), "reason": event.reason}
        # Logged once committed (on the outbox's writer): a raised event in the log is on disk.
        out.append(self._messages.event(payload, on_stored=lambda: self._log.info("event", **logged)))
        at = {"start": event.start_time, "end": event.end_time}.get(event.type) or now
        self.last_events[item.camera] = {"type": event.type, "time": round(at, 3)}
        return out

    def _recordings_for(self, item: EventOutput, now: float) -> list[str]:
        event, cfg = item.event, self._config.events
        t0 = event.start_time - cfg.pre_roll
        t1 = (event.end_time + cfg.post_roll) if event.end_time is not None else now
        self._recordings.protect(item.camera, event.id, event.end_time or now, t0, t1)
        return self._recordings.covering(item.camera, t0, t1)

    # -- crash recovery and the heartbeat it reads ----------------------------------------
    def recover(self, open_events: Iterable[OpenEvent]) -> list[Outgoing]:
        """The `end` of every event a crash or power cut left open (SPEC 3.1: every started
        event ends), to send before any camera starts so they stay in order per camera. The
        end time is the event's last sign of life (at most a heartbeat before the cut)."""
        cfg, out = self._config.events, []
        for event in open_events:
            payload: dict[str, Any] = dict(event.payload)
            camera, start = str(payload["camera"]), float(payload["start_time"])
            if not self._consent.may_name(camera):
                continue  # consent withdrawn since (share: none): its end is not sent either
            end = max(start, event.last_seen)
            if camera in self._config.cameras:
                t0, t1 = start - cfg.pre_roll, end + cfg.post_roll
                self._recordings.protect(camera, str(payload["id"]), end, t0, t1)
                payload["recordings"] = self._recordings.covering(camera, t0, t1)
            payload.update(type="end", end_time=round(end, 3), reason=INTERRUPTED)
            out.append(self._messages.event(payload))
            self._log.warning("event_closed_after_restart", camera=camera, id=payload["id"], end_time=end)
        return out

    def heartbeats(self) -> Mapping[str, float]:
        """Every HEARTBEAT_S: {camera: now} for each camera with an open event (empty between)."""
        now = self._clock()
        if abs(now - self._beat_at) < HEARTBEAT_S:  # abs: a clock stepped back still beats
            return {}
        self._beat_at = now
        return dict.fromkeys(sorted(self._open), now)
