"""Quiet mode: a camera that is awake (idle mode off) decodes more cheaply while nothing happens.

After `quiet_after` seconds without motion, and with no event open, a camera is quiet:
its decoder skips the H.264 deblocking filter (switched at its next keyframe), which
saves a part of every frame's decoding. Every frame is still analysed. The first motion
wakes it: the decoder is rebuilt with the filter from the last keyframe (the packets
since are decoded again, edge.source.IdleDecoder), so every frame after the one that
showed motion, the frames an event is made of and its thumbnail, is exact again.

Why it is safe to approximate while quiet: without deblocking a decoded picture drifts
from the encoder's by a few grey levels at block edges until the next keyframe; the
detector compares pictures decoded the same way.

Analysing fewer frames while quiet was tried and left out (docs/PERFORMANCE.md): on a
still view the detector costs little more than any gate that could tell when to look.

Pure logic on a clock (seconds, any clock that does not step back); the decoder
(edge.source.IdleDecoder) does what it says.
"""

from __future__ import annotations

QUIET_AFTER_S = 6.0  # the default events.end_after (5 s) has passed: no event is open


class QuietPolicy:
    """One per camera connection: `frame` for every decoded frame, `analysed` with every
    motion result, `event` when the camera's event opens or ends, `wake` when idle mode
    wakes. `full_decode` says which decoder the camera should use."""

    def __init__(self, quiet_after: float = QUIET_AFTER_S, now: float | None = None) -> None:
        self.quiet_after = quiet_after
        self.quiet = False
        self.wakes = 0
        self._active = now  # last motion or wake (None: from the first frame): quiet comes quiet_after later
        self._event_open = False

    @property
    def full_decode(self) -> bool:
        """Decode with the deblocking filter (awake), or without it (quiet)."""
        return not self.quiet

    def frame(self, t: float) -> None:
        """A decoded frame arrived at `t`: the camera turns quiet once it has been still long enough."""
        if self._active is None:
            self._active = t
        if not self.quiet and not self._event_open and self.quiet_after > 0 and t - self._active >= self.quiet_after:
            self.quiet = True

    def analysed(self, t: float, motion: bool) -> bool:
        """A motion result; True when it woke the camera."""
        if not motion:
            return False
        woke = self.quiet
        self.wake(t)
        return woke

    def event(self, open_: bool) -> None:
        """The camera's event opened or ended: quiet never starts while one is open."""
        self._event_open = open_

    def wake(self, t: float) -> None:
        """Awake from `t` (motion, idle mode waking) for at least quiet_after."""
        if self.quiet:
            self.wakes += 1
        self.quiet = False
        self._active = t if self._active is None else max(self._active, t)
