"""What footage exists for a camera and a time range: times as people type them, the
recorded ranges and the gaps between them, and what to say when there is nothing. Pure.

Segments follow each other exactly while a camera streams (each starts where the last
ended, edge.recorder); anything more than GAP_S between two is a gap: the camera was
down, the stream jumped, or the disk refused writes.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time

from edge.durations import in_words
from edge.index import Segment

GAP_S = 0.25  # less than this between two segments is clock rounding, not a gap
EXIT_OK, EXIT_FAILED, EXIT_BAD = 0, 1, 2  # `nvr-edge export` and its child process (SPEC 5)
_CLOCK = re.compile(r"(\d{1,2}):(\d{2})(?::(\d{2}(?:\.\d+)?))?")
_EPOCH = re.compile(r"\d{9,11}(\.\d+)?")


def parse_time(text: str, today: date | None = None) -> float:
    """Epoch seconds from ISO 8601 (with or without a zone; without: the box's local
    time, as segment names are), `HH:MM[:SS]` for today (local), or epoch seconds.

    Raises ValueError with one line saying what is accepted."""
    value = text.strip()
    clock = _CLOCK.fullmatch(value)
    try:
        if clock is not None:
            hour, minute, second = int(clock[1]), int(clock[2]), float(clock[3] or 0)
            day = today or date.today()
            whole = int(second)
            moment = datetime.combine(day, time(hour, minute, whole, int(round((second - whole) * 1e6))))
            return moment.timestamp()
        if _EPOCH.fullmatch(value):
            return float(value)
        moment = datetime.fromisoformat(value.replace("z", "Z"))
    except ValueError:
        pass
    else:
        return moment.timestamp()  # naive: local time
    raise ValueError(
        f"{text!r} is not a time: use ISO 8601 (2026-11-28T15:59:50, optionally with +01:00 or Z), "
        "HH:MM[:SS] for today, or epoch seconds"
    )


def local_iso(t: float) -> str:
    """The box's local time with its UTC offset, to the millisecond."""
    return datetime.fromtimestamp(t).astimezone().isoformat(timespec="milliseconds")


def short_time(t: float) -> str:
    """For one-line messages: `2026-11-28 15:59:50`, local."""
    return datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M:%S")


@dataclass(frozen=True, slots=True)
class Gap:
    start: float
    end: float

    @property
    def seconds(self) -> float:
        return self.end - self.start

    def as_dict(self, origin: float | None = None) -> dict[str, object]:
        doc: dict[str, object] = {
            "from": round(self.start, 3),
            "to": round(self.end, 3),
            "from_local": local_iso(self.start),
            "to_local": local_iso(self.end),
            "seconds": round(self.seconds, 3),
        }
        if origin is not None:
            doc["at_s"] = round(self.start - origin, 3)  # where it is in the exported file's timeline
        return doc


@dataclass(frozen=True, slots=True)
class Range:
    """A run of segments with no gap between them."""

    start: float
    end: float
    segments: int
    bytes: int

    def as_dict(self) -> dict[str, object]:
        return {
            "from": round(self.start, 3),
            "to": round(self.end, 3),
            "from_local": local_iso(self.start),
            "to_local": local_iso(self.end),
            "segments": self.segments,
            "bytes": self.bytes,
        }


@dataclass(frozen=True)
class Plan:
    """The segments an export of [start, end) reads, and the gaps between them."""

    camera: str
    start: float
    end: float
    segments: list[Segment] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not self.segments

    @property
    def gaps(self) -> list[Gap]:
        return gaps_between(self.segments)

    @property
    def ranges(self) -> list[Range]:
        return ranges_of(self.segments)


def plan(camera: str, start: float, end: float, segments: Sequence[Segment]) -> Plan:
    """The segments of `camera` that overlap [start, end), oldest first."""
    chosen = sorted((s for s in segments if s.camera == camera and s.end > start and s.start < end),
                    key=lambda s: s.start)  # fmt: skip
    return Plan(camera, start, end, chosen)


def gaps_between(segments: Sequence[Segment]) -> list[Gap]:
    return [
        Gap(before.end, after.start)
        for before, after in zip(segments, segments[1:], strict=False)
        if after.start - before.end > GAP_S
    ]


def ranges_of(segments: Sequence[Segment]) -> list[Range]:
    runs: list[list[Segment]] = []
    for seg in segments:
        if runs and seg.start - runs[-1][-1].end <= GAP_S:
            runs[-1].append(seg)
        else:
            runs.append([seg])
    return [Range(run[0].start, max(s.end for s in run), len(run), sum(s.bytes for s in run)) for run in runs]


def nothing_recorded(camera: str, start: float, end: float, before: Segment | None, after: Segment | None) -> str:
    """One line for an empty range, saying what exists nearest (the `export` exit-1 line)."""
    head = f"nothing recorded of {camera} from {short_time(start)} to {short_time(end)}"
    if before is None and after is None:
        return f"{head}; there is no footage of {camera} on this box"
    near = []
    if before is not None:
        near.append(f"before it, footage ends at {short_time(before.end)} ({in_words(start - before.end)} earlier)")
    if after is not None:
        near.append(f"after it, footage starts at {short_time(after.start)} ({in_words(after.start - end)} later)")
    return f"{head}; nearest: " + "; ".join(near)
