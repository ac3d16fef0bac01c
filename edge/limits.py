"""What a camera's stream may claim before it is decoded: picture size, decoder memory,
and how often it may change format.

A decoder allocates its pictures from the stream's SPS, so one hostile camera could
take the box's memory (figures: README, "What the fault suite covers"). Each stream
is checked against its `max_resolution` when it is opened (the size FFmpeg's probe
found, the SPS in the SDP), at every parameter set it sends (read from the bytes,
before the decoder sees them) and at every decoded picture, and refused (state
`failed`, the reason in `error`) when larger. A camera that keeps switching
resolution is held back for a while, longer each time: each switch costs a segment.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass

import av

from edge.bitstream import SpsInfo, parameter_sets, parse_sps, starts_with_sps
from edge.source import SourceError

# Decoder memory allowed per stream, in pictures of its max_resolution: the pictures a
# stream's SPS makes the decoder keep (references + the current one) at its own size
# must fit in that. 8: any stream up to max_resolution with up to 7 reference frames
# (cameras use 1-4), a smaller one with more.
PICTURE_BUDGET = 8

SWITCHES = 3  # this many resolution changes...
SWITCH_WINDOW_S = 60.0  # ...within this long hold the stream back
HOLD_S = (30.0, 300.0)  # first hold, doubling up to this
CALM_S = 600.0  # a stream that did not trip for this long starts again from the first hold


@dataclass(frozen=True, slots=True)
class SizeLimit:
    """The largest picture a stream may have, either way round (portrait 'corridor' views
    are a rotated landscape sensor), and the config key that sets it, for the error."""

    width: int
    height: int
    key: str  # e.g. "max_resolution.detect"

    @property
    def max_pixels(self) -> int:
        return self.width * self.height

    def fits(self, width: int, height: int) -> bool:
        short, long = sorted((width, height))
        return short <= min(self.width, self.height) and long <= max(self.width, self.height)

    def check(self, width: int, height: int, what: str = "picture") -> None:
        """Raise (fatal) when `width`x`height` is larger than the limit; 0 means unknown."""
        if width > 0 and height > 0 and not self.fits(width, height):
            raise SourceError(
                f"{what} {width}x{height} is larger than {self.key} {self.width}x{self.height}: refused", fatal=True
            )

    def check_sps(self, info: SpsInfo) -> None:
        """Size, then the decoder memory its reference frames would take."""
        self.check(info.width, info.height, "SPS claims a picture of")
        if info.pictures * info.width * info.height > PICTURE_BUDGET * self.max_pixels:
            raise SourceError(
                f"SPS claims {info.refs} reference frames at {info.width}x{info.height}: more decoder memory than "
                f"{self.key} {self.width}x{self.height} allows ({PICTURE_BUDGET} pictures): refused",
                fatal=True,
            )


class SwitchGuard:
    """Counts a stream's resolution changes; too many in a row hold it back, longer each time.

    Kept by the worker across reconnects: a camera that flaps after every reconnect
    waits 30 s, then 60 s, ... up to 5 min, until it has been calm for CALM_S."""

    def __init__(self) -> None:
        self._switches: deque[float] = deque(maxlen=SWITCHES)
        self._trips = 0
        self._last_trip = -CALM_S

    def switched(self, now: float, old: tuple[int, int], new: tuple[int, int]) -> None:
        """One resolution change; raises the hold (a SourceError with `retry_in`) when it is one too many."""
        self._switches.append(now)
        if len(self._switches) < SWITCHES or now - self._switches[0] > SWITCH_WINDOW_S:
            return
        self._switches.clear()
        self._trips = 1 if now - self._last_trip > CALM_S else self._trips + 1
        self._last_trip = now
        hold = min(HOLD_S[1], HOLD_S[0] * 2 ** (self._trips - 1))
        raise SourceError(
            f"resolution changed {SWITCHES} times within {SWITCH_WINDOW_S:.0f} s "
            f"({old[0]}x{old[1]} -> {new[0]}x{new[1]}): held for {hold:.0f} s",
            fatal=True,
            retry_in=hold,
        )


class FormatGuard:
    """One worker's checks on its stream's format: `opened` once per connection, `packet`
    on every video packet before it is decoded or recorded, `frame` on every decoded picture."""

    def __init__(self, limit: SizeLimit) -> None:
        self.limit = limit
        self.switches = SwitchGuard()
        self._codec = ""
        self._params: tuple[bytes, ...] = ()
        self._size: tuple[int, int] | None = None

    def opened(self, video: av.VideoStream) -> None:
        """Check what the probe and the SDP say; bound what the decoder may allocate."""
        ctx = video.codec_context
        self._codec, self._params, self._size = ctx.name, (), None
        self.limit.check(ctx.width, ctx.height)
        for nal in parameter_sets(ctx.extradata or b"", self._codec):
            info = parse_sps(nal, self._codec)
            if info is not None:
                self.limit.check_sps(info)
        ctx.options = {**ctx.options, "max_pixels": str(self.limit.max_pixels)}

    def packet(self, packet: av.Packet) -> None:
        """Check the parameter sets a packet carries (keyframes, or any packet starting with an SPS)."""
        head = bytes(memoryview(packet)[:8])
        if not packet.is_keyframe and not starts_with_sps(head, self._codec):
            return
        params = parameter_sets(bytes(packet), self._codec)
        if not params or params == self._params:
            return
        self._params = params
        for nal in params:
            info = parse_sps(nal, self._codec)
            if info is None:
                continue
            self.limit.check_sps(info)
            size = (info.width, info.height)
            old, self._size = self._size, size
            if old is not None and old != size:
                self.switches.switched(time.monotonic(), old, size)

    def frame(self, width: int, height: int) -> None:
        """A decoded picture (the decoder may know a size the parameter sets did not say)."""
        self.limit.check(width, height)
