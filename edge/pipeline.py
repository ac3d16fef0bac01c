"""One camera's frame pipeline: which decoded frames the detector sees, what the detector
and the event tracker make of them, and which picture an event carries.

Pure: no threads, no I/O, no clock. The caller reads the clocks and passes each frame's
times in (`Moment`). The camera worker (edge.camera) feeds it every decoded frame of a
live stream; the evaluation (edge.evaluation) feeds it clips' frames with their own
timestamps, so the evaluation scores the daemon's throttle, backlog rule and idle policy,
not a copy of them.

Per frame, in order: a detect ON/OFF request is applied (OFF ends the open event); the
frame is analysed if detection is on, it is due (edge.schedule, on the arrival clock)
and not stale (edge.backlog: too far behind the stream); the verdict goes to idle mode
(edge.idle) and to the event tracker (edge.events); the tracker's events become outputs,
the best frame of an event so far becoming the JPEG of the next event message.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Protocol, runtime_checkable

import av
import numpy as np

from edge.backlog import Backlog
from edge.config import CameraConfig, EventConfig, MotionConfig
from edge.events import Event, EventTracker, TrackerStep
from edge.idle import IdleController, SizeTrust
from edge.motion import MotionDetector, MotionResult
from edge.schedule import DetectSchedule
from edge.source import luma_view
from edge.status import CameraStatus
from edge.thumbnail import ThumbnailMaker

# A decoded frame as the camera worker has it, or a bare luma plane (the evaluation's
# generated clips, the tests).
Picture = av.VideoFrame | np.ndarray


@dataclass(frozen=True, slots=True)
class EventOutput:
    camera: str
    event: Event
    jpeg: bytes | None


@dataclass(frozen=True, slots=True)
class MotionOutput:
    camera: str
    on: bool


CameraOutput = EventOutput | MotionOutput


class Detector(Protocol):
    def process(self, luma: np.ndarray, t: float) -> MotionResult: ...


@runtime_checkable
class Resettable(Protocol):
    """A detector with history to forget when detection is switched off (the evaluation's baselines have none)."""

    def reset(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Moment:
    """A frame's times, read by the caller (the pipeline reads no clock)."""

    arrival: float  # when its packet arrived, on a clock that never steps back: throttle, backlog, idle mode
    wall: float  # the frame's wall-clock time: what the detector and the events are stamped with
    stream: float | None = None  # its presentation time on the stream's clock (backlog rule); None: not judged


class Skip(Enum):
    """Why a frame was not analysed."""

    DETECT_OFF = "detect_off"
    NOT_DUE = "not_due"  # the throttle: detect_fps
    STALE = "stale"  # the backlog rule: too far behind the stream (counted in frames_skipped)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one frame did: the outputs to hand on, in order, and why it was or was not analysed."""

    outputs: tuple[CameraOutput, ...] = ()
    result: MotionResult | None = None  # the detector's verdict; None: not analysed (`skipped` says why)
    skipped: Skip | None = None
    detect_changed: bool = False  # a detect ON/OFF request took effect on this frame
    idle_changed: bool = False  # the verdict woke idle mode (a keyframe showed motion)

    @property
    def events(self) -> tuple[Event, ...]:
        return tuple(o.event for o in self.outputs if isinstance(o, EventOutput))


@dataclass
class _BestPicture:
    """The best frame of the open (or about-to-open) event, waiting to be sent as a JPEG."""

    image: np.ndarray | None = None
    unpublished: bool = False


def luma_of(frame: Picture) -> np.ndarray:
    """The luma plane the detector reads: a zero-copy view of a decoded frame's Y plane."""
    return frame if isinstance(frame, np.ndarray) else luma_view(frame)


class FramePipeline:
    """One per camera, as long-lived as its worker (idle mode's `trust` outlives
    connections; `connect` starts each connection's idle controller and backlog window).
    Not thread-safe: its owner serialises the calls. Counters go to `status`."""

    def __init__(
        self,
        camera_id: str,
        detector: Detector,
        tracker: EventTracker,
        motion: MotionConfig,
        pictures: ThumbnailMaker | None = None,
        status: CameraStatus | None = None,
    ) -> None:
        """`motion`: its detect_fps (the throttle) and idle_after; `pictures`: None when
        events carry no picture (share is not "full")."""
        self.camera_id = camera_id
        self.detector = detector
        self.tracker = tracker
        self.motion = motion
        self.pictures = pictures
        self.status = status if status is not None else CameraStatus(started_monotonic=0.0, heartbeat_monotonic=0.0)
        self.schedule = DetectSchedule(motion.detect_fps)
        self.idle: IdleController | None = None  # this connection's; None before `connect`
        self._trust = SizeTrust()
        self._backlog = Backlog.for_rate(motion.detect_fps)
        self._best = _BestPicture()
        self._detect_requested = True

    @classmethod
    def for_camera(
        cls, camera_id: str, camera: CameraConfig, box_id: str, events: EventConfig, status: CameraStatus
    ) -> FramePipeline:
        """The daemon's pipeline for a configured camera: its detector, zones and masks,
        and event pictures only for a share: full camera."""
        pictures = None
        if camera.share == "full":
            pictures = ThumbnailMaker(events.thumbnail_width, events.jpeg_quality, camera.privacy_masks)
        return cls(
            camera_id=camera_id,
            detector=MotionDetector(camera.motion, camera.privacy_masks, camera.zones),
            tracker=EventTracker(box_id, camera_id, events),
            motion=camera.motion,
            pictures=pictures,
            status=status,
        )

    def connect(self, now: float) -> IdleController:
        """A new connection (at `now`, arrival clock): it starts awake with no packet sizes
        learnt and a fresh backlog window. Returns the idle controller its decoder consults."""
        self.idle = IdleController(self.motion.idle_after, now, self._trust)
        self._backlog = Backlog.for_rate(self.motion.detect_fps)
        self.status.idle = False
        return self.idle

    def set_detect(self, enabled: bool) -> None:
        """detect/set ON|OFF: a request (a plain store, safe from any thread), applied on the next frame."""
        self._detect_requested = enabled

    def sync_idle(self) -> bool:
        """Copy idle mode's state to the counters; True when it entered or left idle mode."""
        idle, status = self.idle, self.status
        if idle is None:
            return False
        status.idle_allowed = idle.trust.trusted
        if status.idle == idle.idle:
            return False
        status.idle, status.idle_wakes = idle.idle, idle.wakes
        return True

    def feed(self, frame: Picture, at: Moment) -> Outcome:
        """One decoded frame, in stream order: analyse it or say why not, and what it caused."""
        stale = self._backlog.stale(at.arrival, at.stream)  # every frame keeps the window current
        outputs: list[CameraOutput] = []
        changed = self._detect_requested != self.status.detect_enabled
        if changed:
            outputs += self._apply_detect(self._detect_requested, at.wall)
        skipped = self._skip(at, stale)
        if skipped is not None:
            return Outcome(tuple(outputs), skipped=skipped, detect_changed=changed)
        self.schedule.mark(at.arrival)
        result = self.detector.process(luma_of(frame), at.wall)
        self.status.frames_detect += 1
        woke = False
        if self.idle is not None:
            self.idle.analysed(at.arrival, result.motion)
            woke = self.sync_idle()
        step = self.tracker.update(at.wall, result)
        if step.new_peak and self.pictures is not None:
            self._best = _BestPicture(self.pictures.capture(frame), True)
        outputs += self._outputs(step)
        return Outcome(tuple(outputs), result, detect_changed=changed, idle_changed=woke)

    def _skip(self, at: Moment, stale: bool) -> Skip | None:
        """Why this frame is not analysed, if it is not: a due but stale frame leaves the
        throttle unmarked, so the next fresh frame is due at once."""
        if not self.status.detect_enabled:
            return Skip.DETECT_OFF
        if not self.schedule.due(at.arrival):
            return Skip.NOT_DUE
        if stale:
            self.status.frames_skipped += 1
            return Skip.STALE
        return None

    def close(self, wall: float, reason: str) -> tuple[CameraOutput, ...]:
        """End the open event now (shutdown, camera lost, detection off); idempotent."""
        return tuple(self._outputs(self.tracker.close(wall, reason)))

    def _apply_detect(self, enabled: bool, wall: float) -> list[CameraOutput]:
        self.status.detect_enabled = enabled
        if enabled:
            return []
        closed = list(self.close(wall, "detect_off"))
        if isinstance(self.detector, Resettable):
            self.detector.reset()  # on again, it learns the view afresh
        return closed

    def _outputs(self, step: TrackerStep) -> list[CameraOutput]:
        """The tracker's step as outputs. The waiting picture goes to the first message that
        can carry it; when one step ends an event and starts the next (a max_duration
        split), it belongs to the new start, not to the end."""
        picture_for = "start" if any(e.type == "start" for e in step.events) else None
        outputs: list[CameraOutput] = []
        for event in step.events:
            wanted = picture_for is None or event.type == picture_for
            outputs.append(EventOutput(self.camera_id, event, self._take_picture() if wanted else None))
            if event.type == "end" and picture_for is None:
                self._best = _BestPicture()
        if step.motion_on is not None:
            self.status.motion = step.motion_on
            outputs.append(MotionOutput(self.camera_id, step.motion_on))
        return outputs

    def _take_picture(self) -> bytes | None:
        """The best frame's JPEG, if one is waiting to be sent (once)."""
        best = self._best
        if not best.unpublished or best.image is None or self.pictures is None:
            return None
        best.unpublished = False
        return self.pictures.encode(best.image)
