"""The cameras service: starts, stops and restarts the camera workers (threads) and
keeps what the rest of the daemon reads of them: statuses, heartbeats, tiles, who
turned detection off.

Outputs go to `sink` (thread-safe, edge/publisher.py); nothing here publishes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable

from edge.camera import CameraWorker, RecordWorker, StreamWorker
from edge.config import Config
from edge.mosaic import Frame
from edge.pipeline import CameraOutput
from edge.recordings import Recordings
from edge.status import CameraState, CameraStatus

JOIN_S = 3.0  # a worker's longest wait is one RTSP read: a stop joins it this long


class Cameras:
    """The running workers of the enabled cameras.

    Owner: the event loop. `statuses` is written by the worker threads (plain attribute
    stores) and read by the loop and the page; the dicts themselves change on the loop only."""

    def __init__(
        self,
        config: Callable[[], Config],
        recordings: Recordings,
        sink: Callable[[CameraOutput], None],
        on_restart: Callable[[str], None] = lambda _camera: None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """`config` returns the running configuration (a reload replaces it); `on_restart`
        is called with a camera id when its worker has started or stopped (its retained
        motion state must say OFF: a crash or its last event may have left ON)."""
        self._config = config
        self._recordings = recordings
        self._sink = sink
        self._on_restart = on_restart
        self._clock = clock
        self.workers: dict[str, CameraWorker] = {}
        self.record_workers: dict[str, RecordWorker] = {}
        self.statuses: dict[str, CameraStatus] = {}
        # Worker name -> its last sign of life (the systemd watchdog's probe reads it).
        self.heartbeats: dict[str, Callable[[], float | None]] = {}
        # Per camera turned off by detect/set OFF: the worker it was sent to, when and by which topic.
        self._detect_off: dict[str, tuple[CameraWorker, float, str]] = {}

    def start(self, cam_id: str) -> None:
        """Build and start the worker(s) of one camera (or list it as disabled)."""
        config = self._config()
        cam = config.cameras[cam_id]
        if not cam.enabled:
            self.statuses[cam_id] = CameraStatus(state=CameraState.DISABLED)
            return
        recorder = self._recordings.recorder_for(cam_id)
        separate = cam.detect_url is not None and cam.detect_url != cam.url
        started: list[StreamWorker] = []
        if separate:
            self.record_workers[cam_id] = RecordWorker(cam_id, cam.url, recorder, max_size=cam.max_resolution.record)
            started.append(self.record_workers[cam_id])
        worker = CameraWorker(
            cam_id, cam, config.box.id, config.events, self._sink, recorder=None if separate else recorder
        )
        self.workers[cam_id] = worker
        self.statuses[cam_id] = worker.status
        for stream_worker in (*started, worker):
            self.heartbeats[stream_worker.name] = _heartbeat_of(stream_worker.status)
            stream_worker.start()
        self._on_restart(cam_id)

    async def stop(self, cam_id: str, reason: str) -> None:
        """Stop one camera's worker(s): its open event ends with `reason`, its segment is closed."""
        workers = [w for w in (self.workers.pop(cam_id, None), self.record_workers.pop(cam_id, None)) if w]
        for stream_worker in workers:
            self.heartbeats.pop(stream_worker.name, None)
            stream_worker.stop()
        for stream_worker in workers:
            await asyncio.to_thread(stream_worker.join, JOIN_S)
        for stream_worker in workers:
            if isinstance(stream_worker, CameraWorker):
                stream_worker.close_events(reason)
        await asyncio.to_thread(self._recordings.retire, cam_id)
        self.statuses.pop(cam_id, None)
        self._on_restart(cam_id)

    def list_disabled(self) -> None:
        """After a reload: statuses of removed cameras go, disabled ones say so."""
        cameras = self._config().cameras
        for cam_id in [c for c in self.statuses if c not in cameras]:
            self.statuses.pop(cam_id)
        for cam_id, cam in cameras.items():
            if not cam.enabled:
                self.statuses[cam_id] = CameraStatus(state=CameraState.DISABLED)

    async def stop_all(self, deadline: float) -> None:
        """Shutdown: every worker stops by `deadline` (monotonic) less the time the rest
        needs, every open event ends, every open segment is closed."""
        every = [*self.workers.values(), *self.record_workers.values()]
        for stream_worker in every:
            stream_worker.stop()
        for stream_worker in every:
            await asyncio.to_thread(stream_worker.join, max(0.1, min(JOIN_S, deadline - time.monotonic() - 4)))
        for worker in self.workers.values():
            worker.close_events("shutdown")
        await asyncio.to_thread(self._recordings.finish_segments)

    # -- commands ------------------------------------------------------------------------
    def set_detect(self, camera: str, on: bool, topic: str) -> None:
        """detect/set: raises ValueError for a camera that has no running worker."""
        worker = self.workers.get(camera)
        if worker is None:
            raise ValueError(f"no enabled camera {camera[:64]!r}")
        worker.set_detect(on)
        if on:
            self._detect_off.pop(camera, None)
        else:
            self._detect_off[camera] = (worker, self._clock(), topic)

    def detect_reasons(self) -> dict[str, str]:
        """Cameras whose detection a detect/set OFF turned off, and why (health's `detect`).

        A retained OFF is delivered again at every (re)connect, so it survives restarts: say so.
        A camera restarted since (a reload) has a new worker with detection on."""
        reasons = {}
        for camera, (worker, at, topic) in self._detect_off.items():
            if self.workers.get(camera) is worker:
                when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at))
                reasons[camera] = (
                    f"turned off by {topic} OFF at {when} (a retained OFF applies again at every start; "
                    "publish ON to turn it back on)"
                )
        return reasons

    # -- what the reports read -------------------------------------------------------------
    def recording_errors(self) -> dict[str, str | None]:
        """Cameras whose separate recording stream is not streaming, and why."""
        return {
            cam: worker.status.error
            for cam, worker in self.record_workers.items()
            if worker.status.state is not CameraState.STREAMING
        }

    def request_tiles(self, cameras: Iterable[str]) -> None:
        for cam_id in cameras:
            worker = self.workers.get(cam_id)
            if worker is not None:
                worker.request_tile()

    def tiles(self) -> dict[str, Frame | None]:
        return {cam: worker.tile for cam, worker in self.workers.items()}

    @property
    def tile_cpu_s(self) -> float:
        return sum(w.tile_cpu_s for w in self.workers.values())


def _heartbeat_of(status: CameraStatus) -> Callable[[], float | None]:
    """Reads `status`'s heartbeat when called (the worker thread keeps it current)."""
    return lambda: status.heartbeat_monotonic
