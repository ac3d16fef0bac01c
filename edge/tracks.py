"""Blob tracks over time: motion counts only once a blob has travelled. Pure, no I/O.

Swaying foliage, a flag, a curtain or a spider web move *in place*: their blobs flicker,
split and merge around a fixed spot. People and vehicles *travel*. Each analysed
frame's blobs are linked to the tracks of the frames before (nearest centre within a
gate that grows with the blob and the time since it was last seen); a track is
confirmed once its centre has moved from where it was first seen by a distance that
grows with its size, along a path that mostly goes one way. Only confirmed tracks are motion.
A blob that appears where nothing has moved lately (`Blob.calm`) counts at once, provisionally:
it has nothing to be mistaken for there, and its travel is judged like any other's at MIN_AGE_S.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

# A track unseen this long is gone (a walker hidden behind a post for longer starts anew).
TRACK_LOST_S = 1.0
# Where a travelling object was last seen is remembered this long: a person who stood
# still (and so left no blob) and walks on is the same person, not a new blob to judge.
STOPPED_S = 10.0
# Linking: a blob continues a track when its centre is within GATE_SIZE x the larger of
# the two blobs' sides (plus GATE_MIN_PX) of where the track was last seen.
GATE_MIN_PX, GATE_SIZE = 3.0, 1.0
# Confirmation: net travel from the first centre of at least TRAVEL_MIN_PX and
# TRAVEL_SIZE x the blob's typical side, and larger than the path's own jitter.
TRAVEL_MIN_PX, TRAVEL_SIZE = 2.5, 0.35
MIN_AGE_S = 0.35  # followed this long (3 sightings at 5 fps) ...
FAST_AGE_S = 0.15  # ... or this long when it travelled twice the distance (a car)
STRAIGHTNESS = 0.6  # net travel over path length: 1 for a straight walk, ~0.5 or less for a sway
IN_PLACE_S = 1.5  # a walker is confirmed well within this; a blob still here unconfirmed is moving in place
HISTORY = 12  # sightings kept per track: enough for ~2 s at 5 fps
# Where a travelling object should be next: its last box moved on by its last step and
# grown by EXPECT_GROW x its size plus GATE_MIN_PX, for EXPECT_S after it was last seen,
# once it has been followed for EXPECT_AFTER_S (three steps at 5 fps) and is still travelling.
EXPECT_S, EXPECT_GROW, EXPECT_AFTER_S = 0.6, 0.25, 0.6


@dataclass(frozen=True, slots=True)
class Blob:
    """A moving region in analysis pixels: bounding box, pixel count and centre."""

    x: int
    y: int
    w: int
    h: int
    pixels: float
    cx: float
    cy: float
    border: tuple[int, int] = (0, 0)  # per axis: -1 touches the low border, 1 the high, 0 neither or both
    calm: bool = False  # nothing moved where it is lately: no foliage or flag to mistake it for

    @classmethod
    def at(
        cls,
        box: tuple[int, int, int, int],
        pixels: float,
        centre: tuple[float, float],
        view: tuple[int, int],
        calm: bool = False,
    ) -> Blob:
        x, y, w, h = box
        return cls(x, y, w, h, pixels, centre[0], centre[1], (_side(x, w, view[0]), _side(y, h, view[1])), calm)

    @property
    def window(self) -> tuple[slice, slice]:
        """Its box as (rows, columns) slices of the analysis frame."""
        return slice(self.y, self.y + self.h), slice(self.x, self.x + self.w)

    def where(self, border: tuple[int, int]) -> tuple[float, float]:
        """Its position for a track that began touching `border`: a person walking in from
        the edge grows out of it, and only the edge away from that border shows how far
        they have come (their centre moves at half their speed)."""
        return (_along(self.x, self.w, self.cx, border[0]), _along(self.y, self.h, self.cy, border[1]))


def _side(start: int, length: int, size: int) -> int:
    low, high = start <= 0, start + length >= size
    return -1 if low and not high else 1 if high and not low else 0


def _along(start: int, length: int, centre: float, side: int) -> float:
    return float(start + length) if side < 0 else float(start) if side > 0 else centre


@dataclass(slots=True)
class Track:
    """One object's sightings; `confirmed` once it has travelled (never unset)."""

    first_t: float
    last_t: float
    last: Blob
    border: tuple[int, int] = (0, 0)  # of its first sighting: how its position is measured
    sightings: int = 1
    confirmed: bool = False
    provisional: bool = False  # confirmed only for being calm: judged by its travel at MIN_AGE_S
    path: list[tuple[float, float]] = field(default_factory=list)
    velocity: tuple[float, float] = (0.0, 0.0)  # of its centre over its last step, analysis pixels per second
    travelling: bool = False  # its kept path (3 sightings or more) passes the travel test now

    def size(self) -> float:
        """Typical side of the blob: sqrt of its pixel count (a person's box is mostly them)."""
        return math.sqrt(max(1.0, self.last.pixels))


class Tracker:
    """One per detector; fed every analysed frame's blobs in time order (one thread)."""

    def __init__(self) -> None:
        self.tracks: list[Track] = []
        self.stopped: list[Track] = []  # confirmed tracks no longer seen, for STOPPED_S

    def reset(self) -> None:
        self.tracks.clear()
        self.stopped.clear()

    def expected(self, t: float) -> list[tuple[int, int, int, int]]:
        """Boxes (x0, y0, x1, y1) where objects that are travelling should be at `t`. The
        detector compares every pixel there exactly, so a walker in front of foliage is
        not forgiven as a swaying leaf. Only tracks that still pass the travel test over
        their kept path lend this: a flag's wave, once confirmed, stops when it turns."""
        boxes = []
        for track in self.tracks:
            dt = t - track.last_t
            if not (track.confirmed and not track.provisional and 0 < dt <= EXPECT_S):
                continue
            if t - track.first_t < EXPECT_AFTER_S or not track.travelling:
                continue
            b, (vx, vy) = track.last, track.velocity
            grow = GATE_MIN_PX + EXPECT_GROW * track.size()
            x, y = b.x + vx * dt - grow, b.y + vy * dt - grow
            boxes.append((int(x), int(y), int(x + b.w + 2 * grow) + 1, int(y + b.h + 2 * grow) + 1))
        return boxes

    def update(self, blobs: list[Blob], t: float) -> list[tuple[Blob, Track]]:
        """Link `blobs` (seen at `t`) to tracks; returns each blob with its track."""
        lost = [tr for tr in self.tracks if t - tr.last_t > TRACK_LOST_S]
        self.tracks = [tr for tr in self.tracks if t - tr.last_t <= TRACK_LOST_S]
        self.stopped = [tr for tr in self.stopped if t - tr.last_t <= STOPPED_S]
        self.stopped += [tr for tr in lost if tr.confirmed and not tr.provisional]
        free = list(self.tracks)
        linked: list[tuple[Blob, Track]] = []
        # Big blobs choose first: a person should not lose its track to a leaf beside it.
        for blob in sorted(blobs, key=lambda b: -b.pixels):
            track = _nearest(blob, free, t)
            if track is None:
                track = Track(t, t, blob, blob.border, path=[blob.where(blob.border)])
                known = [other for other in self.tracks if other.confirmed and not other.provisional] + self.stopped
                track.confirmed = any(_part_of(blob, other) for other in known)
                if blob.calm and not track.confirmed:
                    track.confirmed = track.provisional = True
                self.tracks.append(track)
            else:
                free.remove(track)
                _extend(track, blob, t)
            linked.append((blob, track))
        return linked


def _nearest(blob: Blob, tracks: list[Track], t: float) -> Track | None:
    best, best_d = None, math.inf
    for track in tracks:
        if track.last_t >= t:
            continue
        prev = track.last
        gate = GATE_MIN_PX + GATE_SIZE * max(blob.w, blob.h, prev.w, prev.h)
        d = math.hypot(blob.cx - prev.cx, blob.cy - prev.cy)
        if d <= gate and d < best_d:
            best, best_d = track, d
    return best


def _part_of(blob: Blob, track: Track) -> bool:
    """A new blob inside (or at the gate of) a travelling object's last box is part of it:
    a person whose blob split in two, or who was hidden for a moment, is not re-judged."""
    prev = track.last
    gate = GATE_MIN_PX + GATE_SIZE * max(prev.w, prev.h) / 2
    return prev.x - gate <= blob.cx <= prev.x + prev.w + gate and prev.y - gate <= blob.cy <= prev.y + prev.h + gate


def _extend(track: Track, blob: Blob, t: float) -> None:
    if t > track.last_t:
        dt = t - track.last_t
        track.velocity = ((blob.cx - track.last.cx) / dt, (blob.cy - track.last.cy) / dt)
    track.last, track.last_t = blob, t
    track.sightings += 1
    track.path.append(blob.where(track.border))
    del track.path[:-HISTORY]
    track.travelling = len(track.path) >= 3 and _travelled(track, 1.0)
    age = t - track.first_t
    if (track.provisional or not track.confirmed) and age >= FAST_AGE_S:
        # Fast travel confirms early; a blob that has flickered in place for a while
        # (unconfirmed after IN_PLACE_S) must travel twice as far: it is foliage until shown otherwise.
        # A provisional track that has not travelled by MIN_AGE_S is judged like any other.
        travelled = _travelled(track, 1.0 if MIN_AGE_S <= age <= IN_PLACE_S else 2.0)
        if travelled or age >= MIN_AGE_S:
            track.confirmed, track.provisional = travelled, False


def _travelled(track: Track, factor: float) -> bool:
    """Net travel over the kept path beyond the size-scaled distance, along a path that
    mostly goes one way: an oscillating blob's path is long for the ground it gains
    (it turns back), a walker's is about as long as its net travel."""
    path = track.path
    (x0, y0), (x1, y1) = path[0], path[-1]
    net = math.hypot(x1 - x0, y1 - y0)
    if net < factor * max(TRAVEL_MIN_PX, TRAVEL_SIZE * track.size()):
        return False
    return _straightness(path) >= STRAIGHTNESS


def _straightness(path: list[tuple[float, float]]) -> float:
    """Net travel over path length: 1 for a straight walk, near 0 for a zig-zag."""
    (x0, y0), (x1, y1) = path[0], path[-1]
    length = sum(math.hypot(bx - ax, by - ay) for (ax, ay), (bx, by) in zip(path, path[1:], strict=False))
    return math.hypot(x1 - x0, y1 - y0) / length if length else 0.0
