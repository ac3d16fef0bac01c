"""Leases: the segments a running export is reading, which retention must not delete.

An export may run in another process (the `export` command, or the daemon's export
child), so a lease is a small file, `<data_dir>/leases/<pid>-<n>.json`, naming the
segments (paths relative to recordings/). Retention reads the folder each round
(usually empty) and skips leased segments, except when the disk is full: then a
recording outranks an export, which finds its segment gone and fails with a clear error.

A lease whose process is gone, or that was not refreshed for LEASE_STALE_S (a hung
exporter, a reused pid), no longer counts and is removed by the next reader.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import time
from collections.abc import Iterable
from pathlib import Path

LEASES = "leases"
LEASE_STALE_S = 600.0  # an exporter refreshes its lease at least every REFRESH_S
REFRESH_S = 30.0
_counter = itertools.count()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: it exists
        return True
    return True


class Lease:
    """Held by one export while it reads; a context manager that removes its file."""

    def __init__(self, data_dir: Path, paths: Iterable[str]) -> None:
        folder = data_dir / LEASES
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / f"{os.getpid()}-{next(_counter)}-{time.monotonic_ns()}.json"
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"pid": os.getpid(), "paths": sorted(set(paths))}))
        tmp.replace(self.path)
        self._refreshed = time.monotonic()

    def refresh(self) -> None:
        """Keep the lease fresh (cheap to call often: touches the file every REFRESH_S)."""
        now = time.monotonic()
        if now - self._refreshed >= REFRESH_S:
            self._refreshed = now
            with contextlib.suppress(OSError):
                os.utime(self.path)

    def release(self) -> None:
        with contextlib.suppress(OSError):
            self.path.unlink()

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def leased(data_dir: Path) -> set[str]:
    """Every segment path a live lease names; stale leases are removed on the way."""
    folder = data_dir / LEASES
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return set()
    held: set[str] = set()
    now = time.time()
    for entry in entries:
        if not entry.name.endswith(".json"):
            continue
        try:
            fresh = now - entry.stat().st_mtime < LEASE_STALE_S
            data = json.loads(Path(entry.path).read_text())
            pid, paths = int(data["pid"]), data["paths"]
        except (OSError, ValueError, KeyError, TypeError):
            continue  # being written or unreadable: the writer renames it into place whole
        if fresh and _alive(pid):
            held.update(str(p) for p in paths)
        else:
            with contextlib.suppress(OSError):
                os.unlink(entry.path)
    return held
