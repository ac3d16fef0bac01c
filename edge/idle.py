"""Idle mode: a camera that has been still for a while decodes only its keyframes and
watches the sizes of the packets in between; at the first sign of change it decodes in
full again, starting with the packets it held back, so nothing is missed.

Why it works: an encoder spends bits on what changed. A still view costs a P-frame a
few hundred bytes (noise and re-quantisation); a person walking in costs several times
that, from the first frame they are in. So a P-frame much bigger than the still
scene's usual size for its class (P or B, and its position after the keyframe) is reason to
look. A keyframe is decoded and analysed anyway every KEYFRAME_EVERY_S (every GOP on
cameras with long GOPs), which keeps the detector's background current and catches
slow or small changes the sizes miss. Not every keyframe: on a still view a keyframe
costs about as much to decode as the rest of its GOP together (docs/PERFORMANCE.md
"Idle mode"), so analysing each one would leave idle mode at half the cost of full
decoding; a skipped keyframe is held like the packets after it. Waking is cheap
and often wrong (a gust, a cloud); sleeping through a person is not: every threshold
here leans towards waking.

Held packets, not the decoder's `skip_frame`: packets since the last keyframe are kept
(not decoded) so that on waking they are decoded in order and the decoder's
references are right from the very next frame; `skip_frame = "NONKEY"` would make the
decoder drop them, and full decoding could only restart at the next keyframe, up to a
GOP later.

Idle mode is earned, camera by camera: the sizes must have announced the motion the
detector saw. At a constant bitrate with a noisy sensor the encoder's rate control
holds every P-frame at the same size and spends the bits on noise; a person walking in
changes the quantiser, not the size (measured: 640x360 at 500 kbit/s, still and busy
P-frames both ~7.6 kB), so sizes there say nothing and an idle camera would sleep
through the person until its next analysed keyframe (6 s late in the benchmark). So
while awake, every motion onset the detector reports is checked against the sizes
around it (`SizeTrust`): idle mode is allowed only once the last onset was announced
by them, and a keyframe that shows motion the sizes missed withdraws it again.

Pure logic, no PyAV: the decoder (edge.source.IdleDecoder) feeds it packet sizes and
does what it says; the frame pipeline (edge.pipeline) feeds it motion results.
"""

from __future__ import annotations

import statistics
from collections import deque
from dataclasses import dataclass
from enum import Enum

# A non-key packet may be motion when it is bigger than the still scene's median size
# for its class by WAKE_MADS median absolute deviations or WAKE_RATIO times, whichever
# comes first: a noisy view (big, steady P-frames) wakes on the deviations, a clean one
# on the ratio. Never for less than WAKE_MIN_BYTES over the median: tiny packets jitter.
WAKE_RATIO = 2.0
WAKE_MADS = 6.0
WAKE_MIN_BYTES = 96
MIN_SAMPLES = 16  # still-scene sizes of a class needed before judging that class
MIN_SAMPLES_FIRST = 4  # ...of an early position after the keyframe (one per GOP: learnt slowly)
REST = 4  # positions 1-3 after a keyframe are classes of their own; 4 and later share one
WINDOW = 128  # still-scene sizes kept per kind
# A class's threshold (two medians over WINDOW sizes) is recomputed after this
# many newly learnt sizes, not after every packet: an idle camera learns from each one.
REFRESH_EVERY = 16
KEYFRAME_EVERY_S = 6.0  # while idle, a keyframe is analysed when the last analysed one is this old
QUIET_LEARN_S = 2.0  # sizes are learnt as "still" only this long after the last motion
MAX_HELD = 600  # packets held for the catch-up; more (a very long GOP) and the oldest go
# A still view whose P-frames cost more than this share of a keyframe is mostly sensor
# noise (night, cheap sensor, no noise reduction): a person adds too little to show in
# the sizes, so such a camera never goes idle. Real daytime views measured 0.5-9 %;
# noise-heavy generated scenes 23-63 %.
NOISY_SHARE = 0.15
# A motion onset (motion after ONSET_QUIET_S without) is announced by the sizes when at
# least ANNOUNCE_PACKETS packets within ONSET_WINDOW_S of it were over their thresholds.
# Measured (320x180 at 5 fps, walkers coming in): a variable-rate stream has 4 of the 6
# packets from the onset on over; a constant-bitrate noisy one has a stray packet over
# every 2-4 s (rate control around keyframes), at times two within a window, never three.
ONSET_QUIET_S = 2.0
ONSET_WINDOW_S = 1.0
ANNOUNCE_PACKETS = 3


class Action(Enum):
    DECODE = "decode"  # awake: decode and analyse as usual
    KEYFRAME = "keyframe"  # idle: decode and analyse this keyframe; drop what was held
    HOLD = "hold"  # idle: keep the packet undecoded (a keyframe: drop what was held before it)
    WAKE = "wake"  # idle -> awake: decode the held packets (the last second's analysed too), then this one


@dataclass(frozen=True, slots=True)
class Wake:
    """Why idle mode ended: 'size' (a big packet), 'motion' (a keyframe showed motion)."""

    reason: str
    size: int = 0
    threshold: float = 0.0


Class = tuple[str | None, int]  # (slice kind, position after the keyframe: 1 .. REST)


def position_class(kind: str | None, since_key: int) -> Class:
    """The size class of a packet `since_key` packets after its keyframe (-1: none seen yet)."""
    return kind, since_key if 1 <= since_key < REST else REST


class SizeBaseline:
    """Recent still-scene packet sizes per class: the slice kind, and the position after
    the keyframe (the first REST - 1 separately, then the rest together). Encoders'
    rate control makes the first P-frames after a keyframe bigger, more so at a
    constant bitrate (measured: 2-3x the rest for the first three); judged against the
    rest, they would wake the camera every GOP."""

    def __init__(self) -> None:
        self._sizes: dict[Class, deque[int]] = {}
        self._cache: dict[Class, float | None] = {}
        self._learnt: dict[Class, int] = {}  # sizes learnt since the threshold was computed
        self._keys: deque[int] = deque(maxlen=8)

    def learn(self, key: Class, size: int) -> None:
        self._sizes.setdefault(key, deque(maxlen=WINDOW)).append(size)
        learnt = self._learnt.get(key, 0) + 1
        if learnt >= REFRESH_EVERY or self._cache.get(key) is None:
            self._cache.pop(key, None)
            learnt = 0
        self._learnt[key] = learnt

    def learn_key(self, size: int) -> None:
        """A still scene's keyframe size: the yardstick for how noisy its P-frames are."""
        self._keys.append(size)

    @staticmethod
    def _needed(key: Class) -> int:
        return MIN_SAMPLES if key[1] == REST else MIN_SAMPLES_FIRST  # an early position comes once a GOP

    def ready(self) -> bool:
        """Enough is known to go idle, and the sizes can be trusted: every class of the
        most common kind seen so far has its samples, the first after the keyframe and
        the rest among them (an unknown class wakes the camera), and the view is not
        mostly noise (NOISY_SHARE, judged on the rest: furthest from the keyframe)."""
        if not self._sizes or len(self._keys) < 2:
            return False
        counts: dict[str | None, int] = {}
        for (kind, _), sizes in self._sizes.items():
            counts[kind] = counts.get(kind, 0) + len(sizes)
        kind = max(counts, key=lambda k: counts[k])
        classes = {key: sizes for key, sizes in self._sizes.items() if key[0] == kind}
        if (kind, 1) not in classes or (kind, REST) not in classes:
            return False  # too short a GOP to tell the rest from the first (and little to save)
        if any(len(sizes) < self._needed(key) for key, sizes in classes.items()):
            return False
        return statistics.median(classes[kind, REST]) <= NOISY_SHARE * statistics.median(self._keys)

    def threshold(self, key: Class) -> float | None:
        """Bytes above which a packet of this class may be motion; None = not known yet (wake)."""
        if key not in self._cache:
            sizes = self._sizes.get(key)
            if sizes is None or len(sizes) < self._needed(key):
                self._cache[key] = None
            else:
                median = statistics.median(sizes)
                mad = statistics.median(abs(s - median) for s in sizes)
                self._cache[key] = max(min(WAKE_RATIO * median, median + WAKE_MADS * mad), median + WAKE_MIN_BYTES)
        return self._cache[key]


class SizeTrust:
    """Whether this camera's packet sizes announce the motion its detector sees: idle mode
    bets on it. Kept by the frame pipeline across connections and re-checked at every
    onset, so a camera whose stream changes (a new bitrate setting, night noise) loses
    it at the first onset the sizes miss."""

    def __init__(self) -> None:
        self.trusted = False
        self.announced = 0  # onsets the sizes announced
        self.missed = 0  # onsets they did not (seen awake, or woken by a keyframe instead)

    def onset(self, announced: bool) -> None:
        self.trusted = announced
        if announced:
            self.announced += 1
        else:
            self.missed += 1


class IdleController:
    """One per camera connection (a new connection starts awake, with no sizes learnt;
    `trust` is the camera's own and outlives connections).

    The worker calls `packet` for each video packet and does what it answers, and
    `analysed` with each motion result. Times are monotonic seconds."""

    def __init__(self, idle_after: float, now: float, trust: SizeTrust | None = None) -> None:
        self.idle_after = idle_after
        self.idle = False
        self.last_wake: Wake | None = None
        self.wakes = 0
        self.trust = trust if trust is not None else SizeTrust()
        self._last_motion = now  # motion or a wake: what keeps the camera awake
        self._last_seen = float("-inf")  # the detector's last motion (onsets are judged from it)
        self._since_key = -1  # packets since the last keyframe; -1 before the first
        self._key_analysed = float("-inf")  # when the last keyframe was analysed while idle
        self._baseline = SizeBaseline()
        # Packets that had a threshold to be judged by: (arrival, over it), for the onset check.
        self._sized: deque[tuple[float, bool]] = deque(maxlen=64)
        self._onset: float | None = None  # an onset waiting for its verdict

    def analysed(self, now: float, motion: bool) -> None:
        """A motion result: motion keeps the camera awake, and wakes an idle one (a keyframe
        showed it: the sizes missed it). An onset seen awake is checked against the sizes."""
        if not motion:
            return
        if self.idle:
            self.trust.onset(False)
            self._wake(Wake("motion"))
        elif now - self._last_seen >= ONSET_QUIET_S and self._onset is None:
            self._onset = now
            self._judge_onset(now)
        self._last_motion = self._last_seen = now

    def _judge_onset(self, now: float) -> None:
        """Announced: enough packets over their thresholds around the onset; missed: the
        window after it ended without them. No verdict when too few packets around it
        could be judged (the still sizes not learnt yet, just after connecting)."""
        onset = self._onset
        if onset is None:
            return
        around = [over for at, over in self._sized if abs(at - onset) <= ONSET_WINDOW_S]
        if sum(around) >= ANNOUNCE_PACKETS:
            self.trust.onset(True)
            self._onset = None
        elif now - onset > ONSET_WINDOW_S:
            if len(around) >= ANNOUNCE_PACKETS:
                self.trust.onset(False)
            self._onset = None

    def packet(self, now: float, size: int, key: bool, kind: str | None = None) -> Action:
        """What to do with this video packet of `size` bytes (`kind`: 'P', 'B', 'I' or None,
        from edge.bitstream.h264_slice_kind)."""
        if key:
            self._since_key = 0
            if not self.idle and now - self._last_motion >= QUIET_LEARN_S:
                self._baseline.learn_key(size)
            if not self.idle:
                if self.idle_after <= 0 or now - self._last_motion < self.idle_after:
                    return Action.DECODE
                self.idle = self.trust.trusted and self._baseline.ready()
                if not self.idle:
                    return Action.DECODE
            elif now - self._key_analysed < KEYFRAME_EVERY_S:
                return Action.HOLD
            self._key_analysed = now
            return Action.KEYFRAME
        if self._since_key >= 0:
            self._since_key += 1
        cls = position_class(kind, self._since_key)
        if not self.idle:
            threshold = self._baseline.threshold(cls)
            if threshold is not None:
                self._sized.append((now, size > threshold))
            self._judge_onset(now)
            if now - self._last_motion >= QUIET_LEARN_S:
                self._baseline.learn(cls, size)
            return Action.DECODE
        if self._since_key < 0:
            return Action.HOLD  # nothing decodable before the first keyframe anyway
        threshold = self._baseline.threshold(cls)
        if threshold is None or size > threshold:
            self._sized.append((now, True))
            self._wake(Wake("size", size, threshold or 0.0))
            self._last_motion = now  # stay awake at least idle_after: it may be the start of something
            return Action.WAKE
        self._baseline.learn(cls, size)
        return Action.HOLD

    def _wake(self, why: Wake) -> None:
        self.idle = False
        self.last_wake = why
        self.wakes += 1
