"""Recording for all cameras: one recorder per camera, the index, retention, and the
`recordings` list of each event (SPEC 3.1: segments covering pre-roll to post-roll).

A read-only, full or broken disk never stops the daemon (events still reach the
district): recording pauses, health says why (`checks.disk`), the log says it once,
and recording resumes by itself when the disk takes writes again. When the index
cannot even be opened at start (read-only data_dir), it is retried every few seconds.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import dataclass, field

from edge.config import Config, MaxResolution
from edge.health import disk_check, read_only
from edge.index import RecordingIndex
from edge.leases import leased
from edge.logs import get_logger
from edge.recorder import SegmentRecorder, describe_write_error
from edge.retention import Retention

RECORDINGS = "recordings"
ERROR_WINDOW_S = 60.0  # a disk fault with no failure reported for this long has passed
REMIND_S = 600.0  # a fault that lasts is logged again this often, with its count
STORAGE_RETRY_S = 5.0
DISK = "disk"  # fault key for the box's disk; other keys are camera ids


@dataclass
class _Fault:
    reason: str
    since: float
    last_failure: float
    failures: int = 1
    logged: bool = True


class WriteFaults:
    """Turns a stream of write failures into a few log lines: one when writing starts to
    fail, a reminder every REMIND_S while it lasts, one when it works again.

    Disk faults (full, read-only, I/O error) are one fault for the box, whichever camera
    hits them; other errors are the camera's own. Called from the recorder and retention
    threads, so guarded by a lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._active: dict[str, _Fault] = {}
        self._last_onset: dict[str, tuple[str, float]] = {}  # key -> (reason, when logged)
        self._log = get_logger(component="recordings")

    def failed(self, camera: str | None, exc: BaseException) -> None:
        reason, disk = describe_write_error(exc)
        key = DISK if disk or camera is None else camera
        now = time.time()
        with self._lock:
            fault = self._active.get(key)
            if fault is None or fault.reason != reason:
                self._onset(key, reason, exc, now)
                return
            fault.failures += 1
            fault.last_failure = now
            if now - max(fault.since, self._last_onset.get(key, ("", 0.0))[1]) >= REMIND_S:
                self._last_onset[key] = (reason, now)
                self._log.warning(
                    _event(key, "still_failing"),
                    **_who(key),
                    reason=reason,
                    failures=fault.failures,
                    since_s=round(now - fault.since),
                )

    def _onset(self, key: str, reason: str, exc: BaseException, now: float) -> None:
        """Log a new fault, unless the same one was logged less than REMIND_S ago (flapping)."""
        last_reason, last_at = self._last_onset.get(key, ("", 0.0))
        logged = reason != last_reason or now - last_at >= REMIND_S
        self._active[key] = _Fault(reason, now, now, logged=logged)
        if logged:
            self._last_onset[key] = (reason, now)
            self._log.error(_event(key, "failed"), **_who(key), reason=reason, error=str(exc)[:300])

    def succeeded(self, camera: str | None) -> None:
        """A segment was written and indexed (or storage opened): the disk works."""
        now = time.time()
        with self._lock:
            for key in (DISK, camera):
                if key is None:
                    continue
                fault = self._active.pop(key, None)
                if fault is not None and fault.logged:
                    self._log.info(
                        _event(key, "recovered"),
                        **_who(key),
                        reason=fault.reason,
                        failures=fault.failures,
                        after_s=round(now - fault.since, 1),
                    )

    def disk_problem(self) -> str | None:
        """The disk fault of the last ERROR_WINDOW_S, if writing has not worked since."""
        with self._lock:
            fault = self._active.get(DISK)
            if fault is None or time.time() - fault.last_failure > ERROR_WINDOW_S:
                return None
            return fault.reason


def _event(key: str, what: str) -> str:
    return f"disk_write_{what}" if key == DISK else f"recording_write_{what}"


def _who(key: str) -> dict[str, str]:
    return {} if key == DISK else {"camera": key}


@dataclass
class _PendingLink:
    camera: str
    event_id: str
    event_time: float
    t0: float
    t1: float
    expires: float


@dataclass
class Recordings:
    """Owns the index and retention; hands each camera worker its recorder.

    Owner: the event loop (and its helper threads, one call at a time). `recorders` is
    replaced, never changed in place (copy on write), so the retention thread, which
    sums the open segments' bytes, always iterates a whole dict."""

    config: Config
    recorders: dict[str, SegmentRecorder] = field(default_factory=dict)

    def __post_init__(self) -> None:
        data_dir = self.config.box.data_dir
        self.dir = data_dir / RECORDINGS
        self.faults = WriteFaults()
        self.index = RecordingIndex(data_dir / "index.sqlite", connect=False)
        rec = self.config.recording
        self.retention = Retention(
            self.dir,
            self.index,
            rec.max_bytes,
            rec.min_free_bytes,
            rec.event_protect_hours * 3600,
            self.open_bytes,
            on_error=lambda exc: self.faults.failed(None, exc),
            prepare=self._storage_ready,
            leased=lambda: leased(data_dir),  # segments exports are reading (edge.leases)
        )
        self._pending: list[_PendingLink] = []
        self._ready = threading.Event()  # recordings/ and the index are open
        self._next_open_try = 0.0

    def start(self) -> dict[str, int]:
        """Sweep what a crash left, bring usage within budget, start the retention thread.

        On a disk that cannot be written the daemon starts anyway, without recording;
        the retention thread opens the storage once the disk takes writes."""
        counts = self._open_storage()
        self.retention.start()
        return counts

    def _open_storage(self) -> dict[str, int]:
        """Open recordings/ and the index, then sweep; {} (fault reported) if the disk refuses."""
        self._next_open_try = time.monotonic() + STORAGE_RETRY_S
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            self.index.open()
        except (OSError, sqlite3.Error) as exc:
            self.faults.failed(None, exc)
            return {}
        counts = self.retention.sweep(skip=self._is_open_segment)
        try:
            self.retention.enforce()
        except (OSError, sqlite3.Error) as exc:
            self.faults.failed(None, exc)
        self._ready.set()
        self.faults.succeeded(None)
        return counts

    def _storage_ready(self) -> bool:
        """Retention's hook, on its thread: retry opening the storage until it works."""
        if not self._ready.is_set() and time.monotonic() >= self._next_open_try:
            self._open_storage()
        return self._ready.is_set()

    def _is_open_segment(self, relpath: str) -> bool:
        return any(r.current is not None and r.current.relpath == relpath for r in self.recorders.values())

    def recorder_for(self, camera: str) -> SegmentRecorder:
        recorder = SegmentRecorder(
            camera,
            self.dir,
            self.index,
            self.config.recording.segment_seconds,
            on_segment=lambda: self._segment_done(camera),
            on_disk_full=self.retention.disk_full,
            on_error=lambda exc: self.faults.failed(camera, exc),
            ready=self._ready.is_set,
            max_size=self._max_size(camera),
        )
        self.recorders = {**self.recorders, camera: recorder}
        return recorder

    def _max_size(self, camera: str) -> tuple[int, int]:
        """The camera's max_resolution.record as configured at start (a camera added by a
        reload gets the default here: its worker may pass its own, edge.camera.RecordWorker)."""
        cam = self.config.cameras.get(camera)
        return cam.max_resolution.record if cam is not None else MaxResolution().record

    def retire(self, camera: str) -> None:
        """A camera was removed or reconfigured (reload): close and forget its recorder."""
        recorder = self.recorders.get(camera)
        self.recorders = {cam: rec for cam, rec in self.recorders.items() if cam != camera}
        if recorder is not None:
            recorder.close()

    def _segment_done(self, camera: str) -> None:
        self.faults.succeeded(camera)
        self.retention.wake()

    def open_bytes(self) -> int:
        return sum(r.open_bytes() for r in self.recorders.values())

    # -- events ----------------------------------------------------------------------------
    def covering(self, camera: str, t0: float, t1: float) -> list[str]:
        """Paths (relative to recordings/) of the segments overlapping [t0, t1], the open one included."""
        try:
            paths = self.index.paths_between(camera, t0, t1)
        except sqlite3.Error:  # index not open (read-only disk): the event still goes out
            paths = []
        recorder = self.recorders.get(camera)
        current = recorder.current if recorder is not None else None
        if current is not None and current.start <= t1 and current.relpath not in paths:
            paths.append(current.relpath)
        return paths

    def protect(self, camera: str, event_id: str, event_time: float, t0: float, t1: float) -> None:
        """Mark the segments covering [t0, t1] as event footage, also those still being written."""
        self.index.link_event(camera, event_id, event_time, t0, t1)
        wait = 3 * self.config.recording.segment_seconds
        self._pending.append(_PendingLink(camera, event_id, event_time, t0, t1, time.time() + wait))

    def tick(self) -> None:
        """Re-apply event links once the segments that were open have been indexed."""
        now = time.time()
        for link in self._pending:
            self.index.link_event(link.camera, link.event_id, link.event_time, link.t0, link.t1)
        self._pending = [p for p in self._pending if p.expires > now]

    # -- stats and health --------------------------------------------------------------------
    def stats(self) -> dict[str, object]:
        try:
            size, oldest = self.index.totals()
        except sqlite3.Error:
            size, oldest = 0, None
        used = size + self.open_bytes()
        return {
            "disk": self.problem() or disk_check(self.config.box.data_dir),
            "bytes_used": used,
            "bytes_budget": self.config.recording.max_bytes,
            "oldest_time": None if oldest is None else round(oldest, 3),
            "free_bytes": self.retention.free_bytes(),
            "deleted_segments": self.retention.deleted_segments,
            "disk_full_events": sum(r.stats.disk_full for r in self.recorders.values()),
            "write_errors": sum(r.stats.errors for r in self.recorders.values()),
        }

    def camera_stats(self, camera: str) -> dict[str, object]:
        recorder = self.recorders.get(camera)
        if recorder is None:
            return {}
        return {
            "bytes_written": recorder.stats.bytes_written,
            "segments_written": recorder.stats.segments,
            "recording_error": recorder.stats.last_error,
        }

    def problem(self) -> str | None:
        """Why recording cannot write right now, if it cannot (health's `checks.disk`)."""
        if read_only(self.config.box.data_dir):
            return "recording cannot write: read-only file system"
        reason = self.faults.disk_problem()
        if reason is None and not self._ready.is_set():
            reason = "recordings index not open yet"
        return None if reason is None else f"recording cannot write: {reason}"

    def finish_segments(self) -> None:
        """Close every open segment (shutdown): each is fsynced and indexed."""
        for recorder in self.recorders.values():
            recorder.close()

    def close(self) -> None:
        self.retention.stop()
        self.index.close()
