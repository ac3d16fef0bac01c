"""Ring-buffer retention: keep `recordings/` within its byte budget and the disk's reserve.

Deletion order (SPEC 4): oldest first, footage of events after plain footage (event
footage older than `event_protect` counts as plain). Deleting follows the index's
crash rule: mark, unlink, fsync the directory, drop the row. The start-up sweep
makes files and index agree after a crash. A segment a running export holds a lease
on (edge.leases) is skipped, unless a write has just failed for want of space.

A read-only or broken disk never stops the thread and never logs per segment: each
failure goes to `on_error` (which rate-limits), and deletion waits for the next round.
"""

from __future__ import annotations

import contextlib
import hashlib
import shutil
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

import av

from edge.index import RecordingIndex
from edge.logs import get_logger
from edge.recorder import fsync_path


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


class Retention:
    """Deletes the oldest footage to keep within budget.

    Owner: its own thread (the `retention` thread), which alone deletes. Recorder threads
    and the loop only call `wake` and `disk_full` (events); any thread may read the counters."""

    def __init__(
        self,
        recordings_dir: Path,
        index: RecordingIndex,
        max_bytes: int,
        min_free_bytes: int,
        event_protect_s: float,
        open_bytes: Callable[[], int] = lambda: 0,
        on_error: Callable[[BaseException], None] = lambda exc: None,
        prepare: Callable[[], bool] = lambda: True,
        leased: Callable[[], set[str]] = set,
    ) -> None:
        self._dir = recordings_dir
        self._index = index
        self._max = max_bytes
        self._reserve = min_free_bytes
        self._protect = event_protect_s
        self._open_bytes = open_bytes
        self._on_error = on_error
        self._prepare = prepare  # False: storage not usable yet, skip this round
        self._leased = leased  # paths running exports are reading (edge.leases)
        self._leased_warned = False
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._log = get_logger(component="retention")
        self.deleted_segments = 0
        self.deleted_bytes = 0
        self._unindexed_deletions: set[int] = set()  # unlinked, but the row could not be dropped yet
        self._disk_full = threading.Event()  # a write hit ENOSPC: free footage even below the reserve
        self._thread = threading.Thread(target=self._loop, name="retention", daemon=True)

    # -- accounting ------------------------------------------------------------------
    def used_bytes(self) -> int:
        return self._index.totals()[0] + self._open_bytes()

    def free_bytes(self) -> int:
        try:
            return shutil.disk_usage(self._dir).free
        except OSError:
            return 0

    def _over(self) -> bool:
        return self._disk_full.is_set() or self.used_bytes() > self._max or self.free_bytes() < self._reserve

    # -- deletion ----------------------------------------------------------------------
    def enforce(self) -> int:
        """Delete the first segments in deletion order until within budget and reserve."""
        deleted = 0
        self._retry_unindexed()
        while self._over():
            leased = self._leased()
            limit = 16 + len(self._unindexed_deletions) + len(leased)
            batch = self._index.deletion_order(self._protect, time.time(), limit=limit)
            batch = [seg for seg in batch if seg.id not in self._unindexed_deletions]
            if not self._disk_full.is_set():
                batch = [seg for seg in batch if seg.path not in leased]
            if not batch:
                self._disk_full.clear()  # nothing left to free: recording waits for space
                break
            for seg in batch:
                if seg.path in leased:
                    self._warn_leased(seg.path)
                if not self._delete(seg.id, seg.path):
                    self.deleted_segments += deleted
                    return deleted  # the disk refuses deletions: nothing more to do this round
                deleted += 1
                self.deleted_bytes += seg.bytes
                self._disk_full.clear()
                if not self._over():
                    break
        self.deleted_segments += deleted
        return deleted

    def _warn_leased(self, path: str) -> None:
        """The disk is full and the oldest segment is being exported: recording wins (said once)."""
        if not self._leased_warned:
            self._leased_warned = True
            self._log.warning("retention_deleted_exported_segment", path=path, reason="disk full")

    def _retry_unindexed(self) -> None:
        for segment_id in list(self._unindexed_deletions):
            try:
                self._index.remove(segment_id)
            except sqlite3.Error:
                return
            self._unindexed_deletions.discard(segment_id)

    def _delete(self, segment_id: int, relpath: str) -> bool:
        """Crash-safe deletion of one segment; False if the file could not be unlinked."""
        try:
            self._index.mark_deleting(segment_id)
        except sqlite3.Error as exc:
            # The disk is too full even for the mark: unlink anyway, or nothing could ever
            # be freed. The row then names a missing file until the next sweep drops it.
            self._on_error(exc)
        path = self._dir / relpath
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:  # read-only or broken disk: keep the row, counted, for a later round
            self._on_error(exc)
            with contextlib.suppress(sqlite3.Error):
                self._index.unmark_deleting(segment_id)
            return False
        try:
            fsync_path(path.parent)
            if not any(path.parent.iterdir()):
                path.parent.rmdir()
        except OSError:
            pass
        try:
            self._index.remove(segment_id)
        except sqlite3.Error as exc:
            self._on_error(exc)
            self._unindexed_deletions.add(segment_id)
        return True

    # -- start-up sweep ----------------------------------------------------------------
    def sweep(self, skip: Callable[[str], bool] = lambda relpath: False) -> dict[str, int]:
        """Finish interrupted deletions, drop rows without files, index or remove unknown files
        (but not those `skip` names: segments being written). A disk error ends it early."""
        counts = {"finished_deletions": 0, "dropped_rows": 0, "indexed_files": 0, "removed_files": 0}
        try:
            self._sweep(counts, skip)
        except (OSError, sqlite3.Error) as exc:
            self._on_error(exc)
        if any(counts.values()):
            self._log.info("recordings_swept", **counts)
        return counts

    def _sweep(self, counts: dict[str, int], skip: Callable[[str], bool]) -> None:
        known = set()
        for segment_id, relpath, deleting in self._index.all_rows():
            path = self._dir / relpath
            if deleting:
                if not self._delete(segment_id, relpath):
                    return
                counts["finished_deletions"] += 1
            elif not path.exists():
                self._index.remove(segment_id)
                counts["dropped_rows"] += 1
            else:
                known.add(relpath)
        if self._dir.exists():
            for path in sorted(self._dir.glob("*/*/*")):
                relpath = path.relative_to(self._dir).as_posix()
                if relpath in known or skip(relpath) or not path.is_file():
                    continue
                if path.suffix == ".mp4" and self._index_unknown(path, relpath):
                    counts["indexed_files"] += 1
                else:
                    path.unlink(missing_ok=True)
                    counts["removed_files"] += 1

    def _index_unknown(self, path: Path, relpath: str) -> bool:
        """A segment a crash left unindexed: keep it if it plays, timed by its name and length."""
        camera, day, name = relpath.split("/")
        try:
            start = time.mktime(time.strptime(f"{day} {name[:8]}", "%Y-%m-%d %H-%M-%S"))
        except ValueError:
            return False
        try:
            digest = _file_sha256(path)  # what the crash left: the hash vouches from now on
            with av.open(str(path)) as container:
                stream = container.streams.video[0]
                first = last = None
                for packet in container.demux(stream):
                    if packet.dts is None:
                        continue
                    first = packet.dts if first is None else first
                    last = packet.dts + (packet.duration or 0)
        except (av.error.FFmpegError, IndexError, OSError):
            return False
        if first is None or last is None:
            return False
        fsync_path(path)
        assert stream.time_base is not None  # libavformat gives every stream of an opened input one
        end = start + (last - first) * float(stream.time_base)
        self._index.add(camera, relpath, start, end, path.stat().st_size, digest)
        return True

    # -- background thread -------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def disk_full(self) -> None:
        """A write failed with ENOSPC: free the oldest segment now, whatever the reserve says."""
        self._disk_full.set()
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(5)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(1.0)
            self._wake.clear()
            try:
                if self._prepare():
                    self.enforce()
            except (OSError, sqlite3.Error) as exc:  # e.g. the index unreadable on a failing disk
                self._on_error(exc)
            except Exception:  # noqa: BLE001 - retention must outlive any one bad file
                self._log.exception("retention_failed")
