"""Idle mode (edge.idle, edge.source.IdleDecoder): the controller's decisions, slice
types read from real packets, and a real generated clip (still, then walkers) decoded
through the daemon's decoder: idle while still, awake at the walker's first frame, and
every frame after the wake identical to a full decode."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import av
import numpy as np
import pytest

from edge.backlog import Backlog
from edge.bitstream import h264_slice_kind
from edge.camera import CameraWorker
from edge.config import CameraConfig, EventConfig, MotionConfig
from edge.evaluation.stream import encode_luma, evaluate_stream, played_twice
from edge.health import camera_stats
from edge.idle import (
    KEYFRAME_EVERY_S,
    MIN_SAMPLES,
    MIN_SAMPLES_FIRST,
    REST,
    WAKE_MIN_BYTES,
    Action,
    IdleController,
    SizeBaseline,
    SizeTrust,
)
from edge.motion import MotionDetector
from edge.source import CATCH_UP_S, IdleDecoder, luma_view, select_streams
from harness.clips import ensure_clips

GOP = 10
FPS = 5.0


def earned() -> SizeTrust:
    """A camera whose packet sizes announced its last motion onset: idle mode is allowed."""
    trust = SizeTrust()
    trust.onset(True)
    return trust


def feed_still(
    ctl: IdleController, start: float, seconds: float, size: int = 100, first: int = 300, kind: str | None = "P"
) -> float:
    """A still scene's packets (a keyframe every GOP, the first P after it bigger); returns the end time."""
    n = int(seconds * FPS)
    t = start
    for k in range(n):
        t = start + k / FPS
        pos = k % GOP
        ctl.packet(t, 20000 if pos == 0 else first if pos == 1 else size + k % 7, pos == 0, None if pos == 0 else kind)
    return t


def test_goes_idle_only_after_idle_after_quiet_and_a_learnt_baseline() -> None:
    ctl = IdleController(idle_after=10, now=0.0, trust=earned())
    t = feed_still(ctl, 0.0, 10.0)  # up to 9.8 s
    assert not ctl.idle  # 10 s have not passed
    assert ctl.packet(t + 0.2, 20000, True) is Action.KEYFRAME  # the keyframe at 10 s
    assert ctl.idle
    assert ctl.packet(t + 0.4, 300, False, "P") is Action.HOLD  # the first P: its own class, as usual
    assert ctl.packet(t + 0.6, 103, False, "P") is Action.HOLD


def onset(ctl: IdleController, start: float, sizes: list[int]) -> float:
    """Something moves for len(sizes) frames: P-frames of these sizes, each analysed as motion."""
    t = start
    for k, size in enumerate(sizes):
        t = start + k / FPS
        ctl.packet(t, size, False, "P")
        ctl.analysed(t, True)
    return t


def test_idle_is_earned_by_sizes_that_announced_an_onset() -> None:
    ctl = IdleController(idle_after=5, now=0.0)
    t = feed_still(ctl, 0.0, 10.0)
    assert ctl.packet(t + 0.2, 20000, True) is Action.DECODE and not ctl.idle  # no onset seen yet
    # A walker comes in: the P-frames grow several-fold as the detector sees it.
    t = onset(ctl, t + 0.4, [600, 800, 900, 700])
    assert ctl.trust.trusted and (ctl.trust.announced, ctl.trust.missed) == (1, 0)
    t = feed_still(ctl, t + 0.2, 6.0)
    assert ctl.packet(t + 0.2, 20000, True) is Action.KEYFRAME and ctl.idle


def test_sizes_that_miss_an_onset_keep_it_awake() -> None:
    """A constant bitrate with a noisy sensor: the P-frames keep their size when the
    detector sees someone. Sizes say nothing there: never idle."""
    ctl = IdleController(idle_after=5, now=0.0)
    t = feed_still(ctl, 0.0, 10.0)
    t = onset(ctl, t + 0.2, [103, 101, 105, 99, 102, 100, 104])  # motion, sizes as when still
    t = feed_still(ctl, t + 0.2, 20.0)
    assert ctl.packet(t + 0.2, 20000, True) is Action.DECODE and not ctl.idle
    assert not ctl.trust.trusted and (ctl.trust.announced, ctl.trust.missed) == (0, 1)


def test_camera_stats_say_whether_idle_mode_is_allowed() -> None:
    """Operators see why a camera never idles: `idle_allowed` stays false until its sizes announce an onset."""
    camera = CameraConfig(url="rtsp://127.0.0.1:9/x", motion=MotionConfig(idle_after=5))
    worker = CameraWorker("cam", camera, "box", EventConfig(), lambda _o: None)
    pipeline = worker._pipeline  # writes the worker's own status
    ctl = pipeline.connect(0.0)  # as in _serve
    t = feed_still(ctl, 0.0, 10.0)
    pipeline.sync_idle()
    assert camera_stats(worker.status, 5.0, 5.0, t)["idle_allowed"] is False
    onset(ctl, t + 0.2, [600, 800, 900, 700])
    pipeline.sync_idle()
    assert camera_stats(worker.status, 5.0, 5.0, t)["idle_allowed"] is True


def test_an_onset_before_the_still_sizes_are_learnt_is_not_judged() -> None:
    ctl = IdleController(idle_after=5, now=0.0)
    onset(ctl, 0.4, [103, 101, 105, 99, 102, 100, 104])
    assert (ctl.trust.announced, ctl.trust.missed) == (0, 0)


def test_stray_big_packets_do_not_announce_an_onset() -> None:
    """Rate control at a constant bitrate lets the odd packet through big; a walker makes several."""
    ctl = IdleController(idle_after=5, now=0.0)
    t = feed_still(ctl, 0.0, 10.0)
    t = onset(ctl, t + 0.2, [900, 100, 104, 900, 99, 102, 100])
    assert not ctl.trust.trusted and ctl.trust.missed == 1


def test_without_a_baseline_it_stays_awake() -> None:
    ctl = IdleController(idle_after=1, now=0.0, trust=earned())
    # Only keyframes and a couple of P-frames: nothing to judge sizes against.
    for k in range(20):
        assert ctl.packet(k * 2.0, 20000, True) is Action.DECODE
        ctl.packet(k * 2.0 + 0.2, 100, False, "P")
    assert not ctl.idle


def test_a_noisy_view_never_goes_idle() -> None:
    """P-frames at 40 % of a keyframe are mostly noise: a person would not show in the sizes."""
    ctl = IdleController(idle_after=5, now=0.0, trust=earned())
    t = feed_still(ctl, 0.0, 60, size=8000, first=9000)
    assert ctl.packet(t + 0.2, 20000, True) is Action.DECODE
    assert not ctl.idle


def test_zero_idle_after_never_idles() -> None:
    ctl = IdleController(idle_after=0, now=0.0, trust=earned())
    t = feed_still(ctl, 0.0, 60)
    assert ctl.packet(t + 0.2, 20000, True) is Action.DECODE
    assert not ctl.idle


def test_motion_keeps_it_awake_and_its_big_packets_are_not_learnt() -> None:
    ctl = IdleController(idle_after=5, now=0.0, trust=earned())
    t = feed_still(ctl, 0.0, 12)  # idle from 10 s, every class's still sizes learnt
    for k in range(50):  # 10 s of motion: packets are big, analysed frames say so
        now = t + 0.2 * (k + 1)
        key = (k + 1) % GOP == 0
        expected = Action.WAKE if k == 0 else Action.DECODE
        assert ctl.packet(now, 5000, key, None if key else "P") is expected
        ctl.analysed(now, True)
    assert not ctl.idle and ctl.trust.trusted  # the sizes announced it: still trusted
    t = feed_still(ctl, now + 0.2, 6)  # quiet again: idle at the keyframe after 5 s
    assert ctl.packet(t + 0.2, 20000, True) is Action.KEYFRAME
    # The threshold comes from still packets only: 5000-byte motion packets would have lifted it.
    assert ctl.packet(t + 0.4, 300, False, "P") is Action.HOLD
    assert ctl.packet(t + 0.6, 100 + 2 * WAKE_MIN_BYTES, False, "P") is Action.WAKE


def test_a_big_packet_wakes_it_and_it_stays_awake_for_idle_after() -> None:
    ctl = IdleController(idle_after=10, now=0.0, trust=earned())
    t = feed_still(ctl, 0.0, 10.0)
    ctl.packet(t + 0.2, 20000, True)
    assert ctl.idle
    assert ctl.packet(t + 0.4, 300, False, "P") is Action.HOLD
    assert ctl.packet(t + 0.6, 900, False, "P") is Action.WAKE
    assert not ctl.idle and ctl.wakes == 1
    assert ctl.last_wake is not None and ctl.last_wake.reason == "size" and ctl.last_wake.size == 900
    # Quiet again, but the wake counts as a sign of life: not idle before 10 s more.
    t2 = feed_still(ctl, t + 0.8, 9.0)
    assert ctl.packet(t2 + 0.2, 20000, True) is Action.DECODE
    t3 = feed_still(ctl, t2 + 0.4, 2.0)
    assert ctl.packet(t3 + 0.2, 20000, True) is Action.KEYFRAME


def test_while_idle_a_keyframe_is_analysed_only_every_keyframe_every_s() -> None:
    ctl = IdleController(idle_after=10, now=0.0, trust=earned())
    t = feed_still(ctl, 0.0, 10.0)
    assert ctl.packet(t + 0.2, 20000, True) is Action.KEYFRAME  # idle from here: analysed
    actions = []
    for k in range(1, 8):  # the next seven keyframes, one GOP (2 s) apart, P-frames between
        start = t + 0.2 + k * GOP / FPS
        feed_still(ctl, start - (GOP - 1) / FPS, (GOP - 1) / FPS)
        actions.append((round(k * GOP / FPS, 1), ctl.packet(start, 20000, True)))
    analysed = [at for at, action in actions if action is Action.KEYFRAME]
    assert all(action in (Action.KEYFRAME, Action.HOLD) for _, action in actions) and ctl.idle
    # Held at 2 and 4 s after the last analysed one, analysed at 6 s, and so on.
    assert analysed == [KEYFRAME_EVERY_S, 2 * KEYFRAME_EVERY_S], actions


def test_a_held_keyframe_restarts_what_is_held() -> None:
    """On waking, decoding restarts from the last keyframe, analysed or held: the packets
    before a held keyframe are not needed and are dropped."""

    class Packet:
        def __init__(self, size: int, key: bool) -> None:
            self.size, self.is_keyframe = size, key

    ctl = IdleController(idle_after=10, now=0.0, trust=earned())
    t = feed_still(ctl, 0.0, 10.0, kind=None)  # the fake packets below carry no slice header
    ctl.packet(t + 0.2, 20000, True)
    decoder = IdleDecoder.__new__(IdleDecoder)  # the holding logic only: no codec involved
    decoder.idle, decoder.held, decoder.decoded, decoder._copy, decoder._h264 = ctl, [], 0, False, False
    decoder.recent = []
    held = [Packet(300, False)] + [Packet(100, False) for _ in range(2)]
    for n, packet in enumerate(held):
        assert decoder.feed(packet, t + 0.4 + 0.2 * n) == [] and decoder.action is Action.HOLD  # type: ignore[arg-type]
    key = Packet(20000, True)
    assert decoder.feed(key, t + 2.2) == [] and decoder.action is Action.HOLD  # type: ignore[arg-type]
    assert [packet for packet, _ in decoder.held] == [key]


def test_motion_seen_on_a_keyframe_wakes_it() -> None:
    ctl = IdleController(idle_after=10, now=0.0, trust=earned())
    t = feed_still(ctl, 0.0, 10.0)
    assert ctl.packet(t + 0.2, 20000, True) is Action.KEYFRAME
    ctl.analysed(t + 0.2, True)
    assert not ctl.idle and ctl.last_wake is not None and ctl.last_wake.reason == "motion"
    assert ctl.packet(t + 0.4, 300, False, "P") is Action.DECODE
    # The sizes slept through it: idle mode is withdrawn until they announce an onset again.
    assert not ctl.trust.trusted and ctl.trust.missed == 1
    t = feed_still(ctl, t + 0.6, 12.0)
    assert ctl.packet(t + 0.2, 20000, True) is Action.DECODE and not ctl.idle


def test_rate_control_after_a_keyframe_does_not_wake_it() -> None:
    """At a constant bitrate the first P-frames after a keyframe are 2-3x the rest (seen
    in an x264 CBR encode of a still scene): each position is judged on its own sizes."""
    ctl = IdleController(idle_after=10, now=0.0, trust=earned())
    after_key = {1: 1600, 2: 1500, 3: 1200}  # then ~600

    def gop(start: float, rest: int = 600) -> list[Action]:
        actions = [ctl.packet(start, 25000, True)]
        for pos in range(1, GOP):
            size = after_key.get(pos, rest) + 10 * (pos % 3)
            actions.append(ctl.packet(start + pos / FPS, size, False, "P"))
        return actions

    t = 0.0
    while not ctl.idle and t < 30:
        gop(t)
        t += GOP / FPS
    assert ctl.idle and t <= 12.0, "a still CBR stream should go idle like any other"
    for _ in range(5):  # ten seconds of still GOPs: never woken by the big early P-frames
        assert Action.WAKE not in gop(t)
        t += GOP / FPS
    assert ctl.wakes == 0
    # Something moves: a late P-frame three times its usual size wakes it.
    assert gop(t, rest=1800)[REST] is Action.WAKE


def test_a_packet_of_an_unknown_kind_wakes_it() -> None:
    ctl = IdleController(idle_after=10, now=0.0, trust=earned())
    t = feed_still(ctl, 0.0, 10.0)
    ctl.packet(t + 0.2, 20000, True)
    assert ctl.packet(t + 0.4, 300, False, "P") is Action.HOLD
    assert ctl.packet(t + 0.6, 50, False, "B") is Action.WAKE  # never seen a still B-frame: look


def test_baseline_threshold_needs_samples_and_rises_with_noise() -> None:
    base = SizeBaseline()
    key = ("P", REST)
    for _ in range(MIN_SAMPLES - 1):
        base.learn(key, 1000)
    assert base.threshold(key) is None
    base.learn(key, 1000)
    assert base.threshold(key) == 1000 + WAKE_MIN_BYTES  # no spread: only the byte floor
    noisy = ("P", 1)
    for k in range(MIN_SAMPLES_FIRST):
        base.learn(noisy, 1000 + 100 * (k % 2))
    threshold = base.threshold(noisy)
    assert threshold is not None and threshold > 1000 + WAKE_MIN_BYTES


def test_slice_kind_annex_b_and_length_prefixed() -> None:
    # first_mb_in_slice = 0 ('1'), slice_type = 0 (P, '1'), 5 (P, '00110') or 1 (B, '010').
    p_slice, b_slice, i_slice = b"\x41\xc0", b"\x01\xa0", b"\x65\xb8"  # P, B, and IDR with slice_type 2 (I)
    assert h264_slice_kind(b"\x00\x00\x00\x01\x09\xf0" + b"\x00\x00\x01" + p_slice + b"\x00" * 8) == "P"
    assert h264_slice_kind(b"\x00\x00\x01" + b_slice + b"\x00" * 8) == "B"
    assert h264_slice_kind(b"\x00\x00\x01" + i_slice + b"\x00" * 8) == "I"
    # MP4 style: a 4-byte length of 0x11b starts with 00 00 01, like a start code.
    unit = p_slice + bytes(0x11B - len(p_slice))
    assert h264_slice_kind(b"\x00\x00\x01\x1b" + unit) == "P"
    assert h264_slice_kind(b"\x00\x00\x00\x05\x06\x05\x01\x00\x80") is None  # only an SEI: no slice


@pytest.fixture(scope="module")
def clip() -> Path:
    """Generated camera-like clip: nobody for 21 s, then walkers (make_clips `quietbusy`)."""
    # 42 s: the walkers come in at frame 106, half-way through a GOP, so packets are held then.
    return ensure_clips(kinds=("quietbusy",), width=320, height=180, fps=5, seconds=42)["quietbusy"]


def onset_frame(clip: Path) -> int:
    with clip.with_suffix(".labels.csv").open() as handle:
        labels = [int(row["label"]) for row in csv.DictReader(handle)]
    return labels.index(1)


def full_decode(clip: Path) -> dict[int, np.ndarray]:
    with av.open(str(clip)) as container:
        video, _ = select_streams(container)
        return {f.pts: luma_view(f).copy() for p in container.demux(video) for f in p.decode()}


def test_real_packets_idle_while_still_and_awake_at_the_first_moving_frame(clip: Path) -> None:
    onset = onset_frame(clip)
    reference = full_decode(clip)
    ctl = IdleController(idle_after=5, now=0.0, trust=earned())  # this camera's sizes have announced motion before
    detector = MotionDetector(MotionConfig())
    held, idle_at, woke_at, first_motion, caught_up = 0, None, None, None, 0
    with av.open(str(clip)) as container:
        video, _ = select_streams(container)
        decoder = IdleDecoder(video, ctl)
        for packet in container.demux(video):
            if not packet.size:
                continue
            n = round(float(packet.pts * packet.time_base) * FPS)
            frames = decoder.feed(packet, n / FPS)
            held += decoder.action is Action.HOLD
            if ctl.idle and idle_at is None:
                idle_at = n
            if decoder.action is Action.WAKE and woke_at is None and n > onset - 5:
                woke_at = n
                # The catch-up: the held frames of the last second, oldest first, with their arrivals.
                times = [at for _, at in decoder.recent]
                assert decoder.recent and times == sorted(times), "no held frames handed over on waking"
                assert all(n / FPS - CATCH_UP_S <= at < n / FPS for at in times)
                caught_up = len(times)
            for frame, _ in decoder.timed(frames, n / FPS):
                luma = luma_view(frame)
                # Whatever was held back, what is decoded is exactly what a full decode gives.
                assert np.array_equal(luma, reference[frame.pts]), f"frame {frame.pts} differs"
                k = round(float(frame.time) * FPS)
                result = detector.process(luma, k / FPS)
                decoder.analysed(k / FPS, result.motion)
                if result.motion and first_motion is None:
                    first_motion = k
    # Sizes are learnt from 2 s in; the first-P class needs 4 GOPs: idle at the 10 s keyframe.
    assert idle_at is not None and idle_at <= 12 * FPS, "idle mode did not engage in the still half"
    assert held >= 40, "while idle, packets between keyframes were decoded"
    assert woke_at is not None and onset <= woke_at <= onset + 1, f"woke at {woke_at}, walker in from {onset}"
    assert first_motion is not None and first_motion <= onset + 2
    assert caught_up >= 1
    assert decoder.decoded < 0.8 * len(reference)


def clip_frames(clip: Path) -> tuple[list[np.ndarray], np.ndarray]:
    with clip.with_suffix(".labels.csv").open() as handle:
        labels = np.array([int(row["label"]) for row in csv.DictReader(handle)], np.int8)
    return [luma for _, luma in sorted(full_decode(clip).items())], labels


def analyse_stream(source: io.BytesIO, ctl: IdleController) -> int:
    """Decode and analyse `source` as the camera worker does; returns the packets seen while idle."""
    detector = MotionDetector(MotionConfig())
    idle_packets = 0
    with av.open(source) as container:
        video, _ = select_streams(container)
        decoder = IdleDecoder(video, ctl)
        for packet in container.demux(video):
            if packet.size:
                now = float(packet.dts * packet.time_base)
                for frame, at in decoder.timed(decoder.feed(packet, now), now):
                    decoder.analysed(at, detector.process(luma_view(frame), at).motion)
                idle_packets += ctl.idle
    return idle_packets


def test_real_packets_earn_idle_mode_only_where_sizes_show_the_walkers(clip: Path) -> None:
    """The same frames as a camera's variable-rate stream and at a constant bitrate with
    sensor noise: only the first announces the walkers in its sizes and may go idle."""
    frames, _ = clip_frames(clip)
    variable, constant = IdleController(5, 0.0), IdleController(5, 0.0)
    analyse_stream(encode_luma(frames, FPS), variable)
    assert (variable.trust.announced, variable.trust.missed) == (1, 0) and variable.trust.trusted
    assert analyse_stream(encode_luma(frames, FPS, kbps=128, grain=6), constant) == 0
    assert (constant.trust.announced, constant.trust.missed) == (0, 1) and not constant.trust.trusted


def test_evaluation_recall_is_the_same_with_idle_mode(clip: Path) -> None:
    """Played twice, each time after a still stretch: idle mode is earned in the first
    playing, engages in the second still stretch, and the walkers of the second playing
    are found as with idle mode off."""
    twice = played_twice(*clip_frames(clip), FPS)
    assert twice is not None
    frames, labels = twice
    source = encode_luma(frames, FPS)
    off, _ = evaluate_stream(source, labels, FPS, MotionDetector(MotionConfig()), idle_after=0)
    source.seek(0)
    on, wakes = evaluate_stream(source, labels, FPS, MotionDetector(MotionConfig()), idle_after=5)
    assert off.frames_decoded == off.frames_total
    assert on.frames_decoded < 0.8 * on.frames_total and wakes >= 1
    assert on.spans_found == off.spans_found == on.spans == 2
    assert on.recall >= off.recall - 0.01


def test_backlog_skips_only_frames_later_than_the_limit_behind_the_stream() -> None:
    backlog = Backlog(limit=1.0)
    # Keeping up: 5 fps arriving 0.3 s after their stream time, with jitter.
    stale = [backlog.stale(100.3 + k / 5 + 0.05 * (k % 3), k / 5) for k in range(50)]
    assert not any(stale)
    # The worker stalls for 3 s, then reads the waiting frames at once: the old ones are stale.
    t = 100.3 + 50 / 5 + 3.0
    burst = [backlog.stale(t + 0.001 * k, (50 + k) / 5) for k in range(15)]
    assert burst[:9] == [True] * 9 and not any(burst[11:])


def test_backlog_a_clock_jump_is_not_a_backlog() -> None:
    backlog = Backlog(limit=1.0)
    for k in range(20):
        assert not backlog.stale(10 + k / 5, 500 + k / 5)
    # The camera rebooted: its clock starts again from 0 (offset jumps up by ~500 s).
    assert not backlog.stale(14.2, 0.0)
    assert not backlog.stale(14.4, 0.2)
