"""Index and retention without a camera: deletion order, event protection, crash sweep."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from edge.index import RecordingIndex
from edge.retention import Retention


def make_segment(root: Path, index: RecordingIndex, camera: str, start: float, size: int = 1000) -> str:
    stamp = time.localtime(start)
    rel = f"{camera}/{time.strftime('%Y-%m-%d', stamp)}/{time.strftime('%H-%M-%S', stamp)}.mp4"
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\0" * size)
    index.add(camera, rel, start, start + 10, size)
    return rel


@pytest.fixture
def store(tmp_path: Path) -> tuple[Path, RecordingIndex]:
    return tmp_path / "recordings", RecordingIndex(tmp_path / "index.sqlite")


def test_oldest_plain_footage_goes_first_event_footage_last(store: tuple[Path, RecordingIndex]) -> None:
    root, index = store
    t0 = time.time() - 3600
    rels = [make_segment(root, index, "cam", t0 + 10 * i) for i in range(6)]
    index.link_event("cam", "cam-1", t0 + 5, t0, t0 + 15).result()  # protects the two oldest
    retention = Retention(root, index, max_bytes=3000, min_free_bytes=0, event_protect_s=86400)
    assert retention.enforce() == 3
    kept = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.mp4"))
    assert kept == sorted([rels[0], rels[1], rels[5]])
    assert index.totals()[0] == 3000


def test_event_footage_past_its_protection_counts_as_plain(store: tuple[Path, RecordingIndex]) -> None:
    root, index = store
    t0 = time.time() - 3600
    rels = [make_segment(root, index, "cam", t0 + 10 * i) for i in range(4)]
    index.link_event("cam", "cam-1", t0 + 5, t0, t0 + 5).result()
    retention = Retention(root, index, max_bytes=3000, min_free_bytes=0, event_protect_s=60)
    retention.enforce()
    assert not (root / rels[0]).exists() and (root / rels[1]).exists()


def test_sweep_makes_index_and_files_agree(store: tuple[Path, RecordingIndex], clips: dict[str, Path]) -> None:
    root, index = store
    t0 = time.time() - 600
    gone = make_segment(root, index, "cam", t0)
    (root / gone).unlink()  # a row whose file is missing
    half_deleted = make_segment(root, index, "cam", t0 + 10)
    seg_id = next(i for i, p, _ in index.all_rows() if p == half_deleted)
    index.mark_deleting(seg_id)  # crash between mark and unlink
    kept = make_segment(root, index, "cam", t0 + 20)
    # A segment the crash left unindexed (playable), and a broken file.
    playable = root / "cam" / time.strftime("%Y-%m-%d/%H-%M-%S.mp4", time.localtime(t0 + 30))
    shutil.copy(clips["walkers"], playable)
    broken = root / "cam" / time.strftime("%Y-%m-%d/%H-%M-%S.mp4", time.localtime(t0 + 40))
    broken.write_bytes(b"not a video")
    retention = Retention(root, index, max_bytes=10**12, min_free_bytes=0, event_protect_s=0)
    counts = retention.sweep()
    assert counts == {"finished_deletions": 1, "dropped_rows": 1, "indexed_files": 1, "removed_files": 1}
    assert sorted(p for _, p, _ in index.all_rows()) == sorted([kept, playable.relative_to(root).as_posix()])
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*.mp4")) == sorted(
        p for _, p, _ in index.all_rows()
    )
    # The re-indexed file's length comes from its packets (the generated clip is 60 s).
    reindexed = next(s for s in index.deletion_order(0, time.time()) if s.path != kept)
    assert reindexed.end - reindexed.start == pytest.approx(60, abs=0.5)
