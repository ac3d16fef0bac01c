"""The idle-mode path of the evaluation: a clip decoded packet by packet through the
daemon's own IdleDecoder (edge.source) and frame pipeline (edge.pipeline: its throttle
and idle policy, edge.idle), so keyframes-only decoding, held packets and packet-size
wake-ups are scored exactly as they run.

Scored with the rules of edge.evaluation.metrics: the frames the pipeline's throttle
picks among the frames the decoder hands over, each with its own label, and events
judged strictly. A frame that idle mode kept from the detector
(held back and never analysed) and that the schedule would have picked is scored as
"no motion": the daemon raised nothing there. Time is the clip's: `idle_after` and the
detection rate apply to the stream's timestamps (a packet "arrives" at its decoding
time, and a frame is stamped with its own presentation time).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from edge.config import EventConfig
from edge.evaluation.metrics import Detector, Run, Score, clip_pipeline, score_run
from edge.pipeline import Moment
from edge.schedule import DetectSchedule
from edge.source import IdleDecoder, select_streams

GOP_S = 2.0  # generated clips: a keyframe every 2 s, no B-frames, like an IP camera's stream


def evaluate_stream(
    source: Path | io.BytesIO,
    labels: np.ndarray,
    fps: float,
    detector: Detector,
    idle_after: float,
    detect_fps: float = 5.0,
    events: EventConfig | None = None,
    times: Sequence[float] | np.ndarray | None = None,
) -> tuple[Score, int]:
    """Score `detector` on the video in `source` decoded as the camera worker decodes it,
    with idle mode after `idle_after` seconds without motion (0: off). Frame i of the
    stream is the one at time `times[i]` (default i / fps). Returns the score (with
    frames decoded / total and the frames withheld) and how many times idle mode was woken."""
    pipeline = clip_pipeline(detector, detect_fps, events, idle_after)
    n = len(labels)
    stamps = np.arange(n, dtype=np.float64) / fps if times is None else np.asarray(times, np.float64)
    score, run = Score(), Run()
    seen = np.zeros(n, bool)  # handed over by the decoder (analysed or not due)
    with av.open(source, "r") as container:
        video, _ = select_streams(container)
        idle = pipeline.connect(0.0)
        decoder = IdleDecoder(video, idle)
        now = 0.0
        for packet in container.demux(video):
            if not packet.size:
                continue
            if packet.dts is not None:
                now = float(packet.dts * packet.time_base)
            frames = decoder.feed(packet, now)
            score.frames_total += 1
            for frame, at in decoder.timed(frames, now):
                i = _frame_index(stamps, float(frame.time)) if frame.time is not None else len(run.analysed)
                if i >= n:
                    continue
                seen[i] = True
                score.detect_calls += run.fed(i, pipeline.feed(frame, Moment(at, float(stamps[i]))))
        score.frames_decoded = decoder.decoded
    run.withheld = withheld_frames(stamps, seen, run.analysed, detect_fps)
    return score_run(score, labels, fps, run, stamps), idle.wakes


def _frame_index(stamps: np.ndarray, t: float) -> int:
    """The frame whose timestamp is nearest `t`."""
    k = int(np.searchsorted(stamps, t))
    if k > 0 and (k == len(stamps) or t - stamps[k - 1] <= stamps[k] - t):
        return k - 1
    return k


def withheld_frames(stamps: np.ndarray, seen: np.ndarray, analysed: list[int], detect_fps: float) -> list[int]:
    """Frames the decoder never handed over (idle mode held them back) that the
    schedule would have picked, going through the clip in time order. Frames after the
    last one handed over are left out: a decoder with B-frames keeps the last pictures
    until it is flushed, which a live stream never is (nor is this one)."""
    schedule = DetectSchedule(detect_fps)
    done = set(analysed)
    withheld: list[int] = []
    handed = np.flatnonzero(seen)
    for i, t in enumerate(stamps[: handed[-1] + 1 if len(handed) else 0]):
        if i in done:
            schedule.mark(float(t))
        elif not seen[i] and schedule.take(float(t)):
            withheld.append(i)
    return withheld


def encode_luma(
    frames: Sequence[np.ndarray], fps: float, kbps: int | None = None, grain: float = 0.0, seed: int = 0
) -> io.BytesIO:
    """Grey frames as an in-memory H.264 MP4, encoded like a camera's stream (GOP 2 s,
    no B-frames), so generated hard cases go through the packet path too. `kbps`: at
    that constant bitrate; `grain`: with that much sensor noise added (uniform, +-grain
    grey levels, new every frame), which a constant-bitrate encoder spends its bits on."""
    out = io.BytesIO()
    rate = Fraction(fps).limit_denominator(1001)
    h, w = frames[0].shape
    rng = np.random.default_rng(seed)
    with av.open(out, "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=rate)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.time_base = 1 / rate
        gop = str(max(1, round(GOP_S * fps)))
        options: dict[str, object] = {"bf": "0", "g": gop, "keyint_min": gop, "sc_threshold": "0", "preset": "veryfast"}
        if kbps is not None:
            cap = f"{kbps}k"
            options |= {"b": cap, "minrate": cap, "maxrate": cap, "bufsize": cap}
        stream.options = options
        # One encoder thread: x264 with several gives a different stream every run, and the
        # idle evaluation must score the same packets every time it is run.
        stream.codec_context.thread_count = 1
        planes = np.full((h * 3 // 2, w), 128, np.uint8)
        for k, luma in enumerate(frames):
            if grain:
                noise = rng.integers(-int(grain), int(grain) + 1, luma.shape, dtype=np.int16)
                planes[:h] = np.clip(luma + noise, 0, 255)
            else:
                planes[:h] = luma
            frame = av.VideoFrame.from_ndarray(planes, format="yuv420p")
            frame.pts = k
            frame.time_base = 1 / rate
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    out.seek(0)
    return out


def played_twice(
    frames: Sequence[np.ndarray], labels: np.ndarray, fps: float, seconds: float = 20.0
) -> tuple[list[np.ndarray], np.ndarray] | None:
    """`seconds` of the clip's still opening, the clip, the still opening again, the clip
    again. In the first still stretch the camera learns its still packet sizes; in the
    first playing it earns idle mode (its sizes announce the motion the detector sees,
    edge.idle.SizeTrust) or does not; in the second still stretch idle mode engages; the
    second playing scores what happens when something moves while idle. The still
    opening (frames before the first motion, at least 1 s of label 0) is played forwards
    and backwards in turn so the view never jumps. None without such an opening or without motion."""
    still = 0
    while still < len(labels) and labels[still] == 0:
        still += 1
    if still < fps or still == len(labels):
        return None
    forth = list(frames[:still])
    gap: list[np.ndarray] = []
    while len(gap) < seconds * fps:
        gap += forth if len(gap) // still % 2 == 0 else forth[::-1]
    gap = gap[: int(seconds * fps)]
    quiet = np.zeros(len(gap), labels.dtype)
    return gap + list(frames) + gap + list(frames), np.concatenate([quiet, labels, quiet, labels])
