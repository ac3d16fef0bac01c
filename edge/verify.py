"""`nvr-edge verify`: every segment of the ring buffer against the SHA-256 it was recorded with.

Prints one line per segment that does not match (or is gone, or cannot be read), then a
summary; exit 0 when all match, 1 otherwise (SPEC 5). Segments from before hashes were
kept are counted, not failed: there is nothing to check them against. A segment that
retention deletes while it is being checked is not a problem either.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from edge.index import IndexReader, Segment

EXIT_OK, EXIT_MISMATCH, EXIT_BAD = 0, 1, 2
CHUNK = 1 << 20


def add_parser(sub: argparse._SubParsersAction, default_config: str) -> None:
    cmd = sub.add_parser(
        "verify",
        help="check every recorded segment against its SHA-256",
        description="Check every segment of the ring buffer against the SHA-256 taken while it was written. "
        "Exit 0 all match, 1 some do not (each is printed).",
    )
    cmd.add_argument("--config", default=default_config, help="config file (default: $NVR_EDGE_CONFIG or the system's)")
    cmd.add_argument("--camera", help="only this camera")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass
class Report:
    checked: int = 0
    bytes: int = 0
    unhashed: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.problems


def verify(
    reader: IndexReader,
    recordings: Path,
    camera: str | None = None,
    on_segment: Callable[[int, int], None] | None = None,
) -> Report:
    """Hash every indexed segment (of `camera`) and compare; problems are one line each."""
    report = Report()
    segments = reader.all_segments(camera)
    for n, seg in enumerate(segments):
        problem = _check(reader, recordings, seg, report)
        if problem is not None:
            report.problems.append(problem)
        if on_segment is not None:
            on_segment(n + 1, len(segments))
    return report


def _check(reader: IndexReader, recordings: Path, seg: Segment, report: Report) -> str | None:
    path = recordings / seg.path
    try:
        found = file_sha256(path)
    except FileNotFoundError:
        if not reader.still_indexed(seg.id):
            return None  # retention deleted it meanwhile
        return f"MISSING {seg.path}: in the index, not on disk"
    except OSError as exc:
        return f"UNREADABLE {seg.path}: {exc.strerror or exc}"
    report.checked += 1
    report.bytes += seg.bytes
    if seg.sha256 is None:
        report.unhashed += 1
        return None
    if found != seg.sha256:
        return f"MISMATCH {seg.path}: recorded {seg.sha256}, now {found}"
    return None


def run(args: argparse.Namespace, load: Callable[[str], Any]) -> int:
    """The `verify` command."""
    config = load(args.config)
    if config is None:
        return EXIT_BAD
    try:
        reader = IndexReader(config.box.data_dir / "index.sqlite")
    except (FileNotFoundError, OSError) as exc:
        print(f"verify: {exc}", file=sys.stderr)
        return EXIT_MISMATCH
    progress = _progress(sys.stderr) if sys.stderr.isatty() else None
    started = time.monotonic()
    try:
        report = verify(reader, config.box.data_dir / "recordings", args.camera, progress)
    finally:
        reader.close()
        if progress is not None:
            sys.stderr.write("\n")
    for line in report.problems:
        print(line)
    scope = f"of {args.camera} " if args.camera else ""
    took = time.monotonic() - started
    print(
        f"checked {report.checked} segments {scope}({report.bytes / 1e9:.2f} GB) in {took:.0f} s: "
        f"{len(report.problems)} problem(s), {report.unhashed} without a hash (recorded before nvr-edge kept hashes)"
    )
    return EXIT_OK if report.clean else EXIT_MISMATCH


def _progress(tty: TextIO) -> Callable[[int, int], None]:
    last = [0.0]

    def show(done: int, total: int) -> None:
        now = time.monotonic()
        if now - last[0] >= 0.25 or done == total:
            last[0] = now
            tty.write(f"\rverifying: {done}/{total} segments ")
            tty.flush()

    return show
