"""`nvr-edge export`: one MP4 (and its JSON manifest) of a camera's footage, on the box.

Exit codes (SPEC 5): 0 written; 1 nothing recorded in the range, a segment failed its
hash, or the export could not be completed (the file is then not left behind);
2 bad arguments (a time that does not parse, an unknown camera, an existing file).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from edge.footage import EXIT_BAD, EXIT_FAILED, EXIT_OK, short_time

if TYPE_CHECKING:
    from edge.index import IndexReader

PROGRESS_EVERY_S = 0.25


def add_parser(sub: argparse._SubParsersAction, default_config: str) -> None:
    cmd = sub.add_parser(
        "export",
        help="write one MP4 of a camera's footage (a time range or an event) and its JSON manifest",
        description="Stitch a camera's recorded segments into one MP4 without re-encoding, checking each "
        "against the SHA-256 it was recorded with; FILE.json beside it says what went in. "
        "Exit 0 written, 1 nothing recorded or a segment fails its hash, 2 bad arguments.",
    )
    cmd.add_argument("--config", default=default_config, help="config file (default: $NVR_EDGE_CONFIG or the system's)")
    cmd.add_argument("--camera", help="camera id")
    cmd.add_argument(
        "--from", dest="start", metavar="T", help="ISO 8601 (local time without a zone) or HH:MM[:SS] today"
    )
    cmd.add_argument("--to", dest="end", metavar="T", help="as --from")
    cmd.add_argument(
        "--event", metavar="EVENT_ID", help="an event's footage, pre-roll to post-roll (instead of a range)"
    )
    cmd.add_argument(
        "-o", "--output", metavar="FILE", help="the MP4 to write; - for stdout (default: a name from the range)"
    )
    cmd.add_argument(
        "--json", metavar="FILE", help="where the manifest goes (default: FILE.json; none with -o - unless given)"
    )
    cmd.add_argument(
        "--allow-mismatch",
        action="store_true",
        help="export segments whose SHA-256 does not match the index anyway, and record it in the JSON",
    )


class Progress:
    """One self-overwriting line on a terminal (nothing when stderr is not one)."""

    def __init__(self, camera: str, stream: TextIO = sys.stderr) -> None:
        self._camera = camera
        self._stream = stream
        self._on = stream.isatty()
        self._last = 0.0
        self._shown = False

    def __call__(self, done: int, total: int, written: int) -> None:
        now = time.monotonic()
        if not self._on or (now - self._last < PROGRESS_EVERY_S and done < total):
            return
        self._last = now
        self._shown = True
        self._stream.write(f"\rexporting {self._camera}: {done}/{total} segments, {written / 1e6:.0f} MB ")
        self._stream.flush()

    def end(self) -> None:
        if self._shown:
            self._stream.write("\n")
            self._stream.flush()


def _arguments(args: argparse.Namespace) -> str | None:
    """Why the arguments cannot work, or None."""
    if args.event:
        if args.camera or args.start or args.end:
            return "give either --event or --camera with --from and --to, not both"
        return None
    if not (args.camera and args.start and args.end):
        return "give --camera, --from and --to (or --event)"
    return None


def _default_name(camera: str, start: float, end: float, event: str | None) -> str:
    if event:
        return f"{event}.mp4"
    first, last = time.localtime(start), time.localtime(end)
    return f"{camera}-{time.strftime('%Y%m%d-%H%M%S', first)}-{time.strftime('%H%M%S', last)}.mp4"


def _summary(doc: dict[str, Any], where: str, out: TextIO) -> None:
    actual, file = doc["actual"], doc["file"]
    print(
        f"wrote {where}: {actual['seconds']:.1f} s of {doc['camera']} from {short_time(actual['from'])} "
        f"to {short_time(actual['to'])}, {file['bytes'] / 1e6:.1f} MB, SHA-256 {file['sha256']}",
        file=out,
    )
    for gap in doc["gaps"]:
        print(
            f"gap: {short_time(gap['from'])} to {short_time(gap['to'])} ({gap['seconds']:.1f} s, at "
            f"{gap['at_s']:.1f} s in the file): {gap['reason']}",
            file=out,
        )
    requested = doc["requested"]
    if actual["from"] > requested["from"] + 0.5:
        print(
            f"nothing recorded before {short_time(actual['from'])} (asked from {short_time(requested['from'])})",
            file=out,
        )
    if actual["to"] < requested["to"] - 0.5:
        print(f"nothing recorded after {short_time(actual['to'])} (asked to {short_time(requested['to'])})", file=out)
    for skipped in doc["skipped"]:
        print(f"left out: {skipped['path']}: {skipped['reason']}", file=out)
    unhashed = [s for s in doc["segments"] if s["sha256"] is None]
    if unhashed:
        print(
            f"{len(unhashed)} segment(s) have no recorded hash (recorded before nvr-edge kept hashes): not checked",
            file=out,
        )
    for seg in doc["segments"]:
        if seg["check"] == "mismatch":
            print(f"MISMATCH allowed in: {seg['path']} (recorded {seg['sha256']}, now {seg['sha256_found']})", file=out)


def run(args: argparse.Namespace, load: Callable[[str], Any]) -> int:
    """The `export` command."""
    problem = _arguments(args)
    if problem is not None:
        print(f"export: {problem}", file=sys.stderr)
        return EXIT_BAD
    config = load(args.config)
    if config is None:
        return EXIT_BAD
    from edge.index import IndexReader  # here: --help and --version load no PyAV

    data_dir: Path = config.box.data_dir
    try:
        reader = IndexReader(data_dir / "index.sqlite")
    except (FileNotFoundError, OSError) as exc:
        print(f"export: {exc}", file=sys.stderr)
        return EXIT_FAILED
    try:
        return _export(args, config, reader)
    finally:
        reader.close()


def _export(args: argparse.Namespace, config: Any, reader: IndexReader) -> int:
    from edge.export import Exporter, ExportError, event_range, export_to_file, plan_from_index
    from edge.footage import parse_time
    from edge.leases import Lease

    try:
        if args.event:
            camera, start, end = event_range(reader, args.event, config.events.pre_roll, config.events.post_roll)
        else:
            camera = args.camera
            start, end = parse_time(args.start), parse_time(args.end)
            if end <= start:
                print(f"export: --to ({short_time(end)}) must be after --from ({short_time(start)})", file=sys.stderr)
                return EXIT_BAD
            if camera not in config.cameras and camera not in reader.cameras():
                print(f"export: no camera {camera!r} in the config or the recordings", file=sys.stderr)
                return EXIT_BAD
    except ValueError as exc:
        print(f"export: {exc}", file=sys.stderr)
        return EXIT_BAD
    except ExportError as exc:
        print(f"export: {exc}", file=sys.stderr)
        return EXIT_FAILED
    to_stdout = args.output == "-"
    output = None if to_stdout else Path(args.output or _default_name(camera, start, end, args.event))
    if output is not None and output.exists():
        print(f"export: {output} exists: choose another name or remove it", file=sys.stderr)
        return EXIT_BAD
    manifest = Path(args.json) if args.json else (None if output is None else output.with_name(output.name + ".json"))
    cam = config.cameras.get(camera)
    progress = Progress(camera)
    try:
        plan = plan_from_index(reader, camera, start, end)
        with Lease(config.box.data_dir, (s.path for s in plan.segments)) as lease:
            exporter = Exporter(
                plan,
                config.box.data_dir / "recordings",
                allow_mismatch=args.allow_mismatch,
                lease=lease,
                progress=progress,
            )
            doc = export_to_file(
                exporter, output, manifest, box=config.box.id, event=args.event, share=cam.share if cam else None
            )
    except ExportError as exc:
        progress.end()
        print(f"export: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except OSError as exc:  # the output's disk is full, the pipe closed, ...
        progress.end()
        print(f"export: writing the output failed ({exc.strerror or exc}): nothing was kept", file=sys.stderr)
        return EXIT_FAILED
    progress.end()
    _summary(doc, "stdout" if output is None else str(output), sys.stderr if to_stdout else sys.stdout)
    if manifest is not None:
        print(f"manifest: {manifest}", file=sys.stderr if to_stdout else sys.stdout)
    return EXIT_OK
