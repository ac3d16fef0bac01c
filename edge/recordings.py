"""Recording for all cameras: one recorder per camera, the index, retention, and the
`recordings` list of each event (SPEC 3.1: segments covering pre-roll to post-roll)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from edge.config import Config
from edge.index import RecordingIndex
from edge.recorder import SegmentRecorder
from edge.retention import Retention

RECORDINGS = "recordings"
ERROR_WINDOW_S = 60.0


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
    """Owns the index and retention; hands each camera worker its recorder."""

    config: Config
    recorders: dict[str, SegmentRecorder] = field(default_factory=dict)

    def __post_init__(self) -> None:
        data_dir = self.config.box.data_dir
        self.dir = data_dir / RECORDINGS
        self.dir.mkdir(parents=True, exist_ok=True)
        self.index = RecordingIndex(data_dir / "index.sqlite")
        rec = self.config.recording
        self.retention = Retention(
            self.dir, self.index, rec.max_bytes, rec.min_free_bytes, rec.event_protect_hours * 3600, self.open_bytes
        )
        self._pending: list[_PendingLink] = []

    def start(self) -> dict[str, int]:
        """Sweep what a crash left, bring usage within budget, start the retention thread."""
        counts = self.retention.sweep()
        self.retention.enforce()
        self.retention.start()
        return counts

    def recorder_for(self, camera: str) -> SegmentRecorder:
        recorder = SegmentRecorder(
            camera,
            self.dir,
            self.index,
            self.config.recording.segment_seconds,
            on_segment=self._segment_done,
            on_disk_full=self.retention.wake,
        )
        self.recorders[camera] = recorder
        return recorder

    def _segment_done(self) -> None:
        self.retention.wake()

    def open_bytes(self) -> int:
        return sum(r.open_bytes() for r in self.recorders.values())

    # -- events ----------------------------------------------------------------------------
    def covering(self, camera: str, t0: float, t1: float) -> list[str]:
        """Paths (relative to recordings/) of the segments overlapping [t0, t1], the open one included."""
        paths = self.index.paths_between(camera, t0, t1)
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
        size, oldest = self.index.totals()
        used = size + self.open_bytes()
        return {
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
        """Why recording cannot write right now, if it cannot."""
        now = time.time()
        for recorder in self.recorders.values():
            st = recorder.stats
            if st.last_error_time > st.last_segment_time and now - st.last_error_time < ERROR_WINDOW_S:
                return f"recording cannot write: {st.last_error}"
        return None

    def finish_segments(self) -> None:
        """Close every open segment (shutdown): each is fsynced and indexed."""
        for recorder in self.recorders.values():
            recorder.close()

    def close(self) -> None:
        self.retention.stop()
        self.index.close()
