"""Quiet mode (edge.quiet, edge.source.IdleDecoder): the change gate on arrays, the
policy on a clock, and a real generated clip (still, then walkers) decoded through the
daemon's decoder: without deblocking and at the quiet rate while still, awake at the
walker's first frame, and every frame handed over from then on exact."""

from __future__ import annotations

import csv
from pathlib import Path

import av
import numpy as np
import pytest

from edge.idle import IdleController
from edge.quiet import GATE_MIN_LEVELS, ChangeGate, QuietPolicy, Verdict
from edge.source import IdleDecoder, luma_view, select_streams
from harness.clips import ensure_clips

FPS = 5.0


def scene(rng: np.random.Generator, noise: float = 3.0) -> np.ndarray:
    """A textured 640x360 view with sensor noise, as a padded view like PyAV's plane."""
    yy, xx = np.mgrid[0:360, 0:640]
    base = 60 + 80 * (xx / 640) + 30 * np.sin(yy / 17.0)
    padded = np.zeros((360, 672), np.uint8)
    padded[:, :640] = np.clip(base + rng.normal(0, noise, base.shape), 0, 255)
    return padded[:, :640]


def test_gate_ignores_noise_and_global_light_and_sees_a_person() -> None:
    rng = np.random.default_rng(1)
    gate = ChangeGate()
    gate.reference(gate.grid(scene(rng)))
    assert not any(gate.changed(gate.grid(scene(rng))) for _ in range(20)), "sensor noise woke it"
    brighter = np.clip(scene(rng).astype(np.int16) + 12, 0, 255).astype(np.uint8)
    assert not gate.changed(gate.grid(brighter)), "a whole-frame change is light, not an object"
    person = scene(rng)
    person[150:200, 300:320] = np.clip(person[150:200, 300:320].astype(np.int16) + 12, 0, 255)  # 20x50 px, +12
    assert gate.changed(gate.grid(person))


def test_gate_learns_a_noisy_cell_but_never_goes_blind() -> None:
    rng = np.random.default_rng(2)
    gate = ChangeGate()
    still = scene(rng, noise=1.0)
    gate.reference(gate.grid(still))
    flicker = still.copy()
    for k in range(30):  # one patch (two cells) flickers by 5 levels: learnt as that cells' noise
        flicker[:20, :20] = np.clip(still[:20, :20].astype(np.int16) + (5 if k % 2 else 0), 0, 255)
        gate.changed(gate.grid(flicker))
    assert not gate.changed(gate.grid(flicker))
    walker = flicker.copy()
    walker[:20, :20] = np.clip(still[:20, :20].astype(np.int16) + 9, 0, 255)  # 9 levels: over any learnt noise
    assert gate.changed(gate.grid(walker))


def test_gate_without_a_reference_or_with_another_shape_says_changed() -> None:
    gate = ChangeGate()
    rng = np.random.default_rng(3)
    assert gate.changed(gate.grid(scene(rng)))
    gate.reference(gate.grid(scene(rng)))
    assert gate.changed(gate.grid(np.full((480, 640), 100, np.uint8)))  # 4:3 now: another grid
    assert GATE_MIN_LEVELS > 0


def run(policy: QuietPolicy, start: float, seconds: float, frame: np.ndarray) -> list[tuple[float, Verdict]]:
    out = []
    for k in range(int(seconds * FPS)):
        t = start + k / FPS
        out.append((t, policy.frame(t, frame)))
    return out


def test_policy_quiet_after_quiet_after_seconds_then_at_its_rate() -> None:
    frame = scene(np.random.default_rng(4), noise=0.0)
    policy = QuietPolicy(quiet_after=6.0, fps=2.0)
    verdicts = run(policy, 0.0, 12.0, frame)
    awake = [v for t, v in verdicts if t < 6.0]
    assert awake == [Verdict.ANALYSE] * len(awake) and policy.quiet and not policy.full_decode
    quiet = [t for t, v in verdicts if t >= 6.0 and v is Verdict.ANALYSE]
    assert len(quiet) <= 2 * 6 + 1 and all(b - a >= 0.45 for a, b in zip(quiet, quiet[1:], strict=False))
    assert {v for t, v in verdicts if t >= 6.0} == {Verdict.ANALYSE, Verdict.HOLD}


def test_policy_never_quiet_with_an_event_open_or_quiet_after_zero() -> None:
    frame = scene(np.random.default_rng(5), noise=0.0)
    policy = QuietPolicy(quiet_after=6.0)
    policy.event(True)
    assert {v for _, v in run(policy, 0.0, 20.0, frame)} == {Verdict.ANALYSE}
    policy.event(False)
    run(policy, 20.0, 1.0, frame)
    assert policy.quiet
    off = QuietPolicy(quiet_after=0)
    assert {v for _, v in run(off, 0.0, 20.0, frame)} == {Verdict.ANALYSE} and not off.quiet


def test_policy_wakes_on_change_and_on_motion_and_stays_awake() -> None:
    rng = np.random.default_rng(6)
    frame = scene(rng, noise=0.0)
    policy = QuietPolicy(quiet_after=6.0)
    run(policy, 0.0, 8.0, frame)
    assert policy.quiet
    moved = frame.copy()
    moved[100:160, 200:230] = 250
    assert policy.frame(8.0, moved) is Verdict.WAKE and not policy.quiet and policy.full_decode
    assert {v for t, v in run(policy, 8.2, 5.6, moved)} == {Verdict.ANALYSE}  # awake for quiet_after
    run(policy, 13.8, 2.0, moved)
    assert policy.quiet
    assert not policy.analysed(16.0, False)
    assert policy.analysed(16.2, True) and not policy.quiet and policy.wakes == 2
    assert not policy.analysed(16.4, True)  # already awake


@pytest.fixture(scope="module")
def clip() -> Path:
    """Generated camera-like clip: nobody for 21 s, then walkers (make_clips `quietbusy`)."""
    return ensure_clips(kinds=("quietbusy",), width=320, height=180, fps=5, seconds=42)["quietbusy"]


def test_real_packets_quiet_while_still_exact_from_the_walker_on(clip: Path) -> None:
    with clip.with_suffix(".labels.csv").open() as handle:
        onset = [int(row["label"]) for row in csv.DictReader(handle)].index(1)
    with av.open(str(clip)) as container:
        video, _ = select_streams(container)
        reference = {f.pts: luma_view(f).copy() for p in container.demux(video) for f in p.decode()}
    handed: list[tuple[int, bool, bool]] = []  # frame number, exact, handed while quiet
    woke_at = None
    with av.open(str(clip)) as container:
        video, _ = select_streams(container)
        decoder = IdleDecoder(video, IdleController(0, 0.0), quiet=QuietPolicy(quiet_after=6.0))
        for packet in container.demux(video):
            if not packet.size:
                continue
            n = round(float(packet.pts * packet.time_base) * FPS)
            quiet = decoder.quiet.quiet
            for frame, at in decoder.timed(decoder.feed(packet, n / FPS), n / FPS):
                k = round(float(frame.time) * FPS)
                handed.append((k, np.array_equal(luma_view(frame), reference[frame.pts]), decoder.quiet.quiet))
                decoder.analysed(at, onset <= k)  # the detector's verdict, as the labels have it
            if quiet and not decoder.quiet.quiet and woke_at is None:
                woke_at = n
    frames = [k for k, _, _ in handed]
    assert frames == sorted(frames) and len(set(frames)) == len(frames), "handed out of order or twice"
    assert len(handed) + decoder.quiet_held == len(reference), "every decoded frame is handed or counted as held"
    still = [k for k in frames if 8 * FPS <= k < onset]
    assert len(still) <= 0.45 * (onset - 8 * FPS), "while quiet, more than the quiet rate was analysed"
    assert any(not exact for k, exact, quiet in handed if k < onset and quiet), "deblocking was not skipped"
    assert woke_at is not None and onset <= woke_at <= onset + 1, f"woke at {woke_at}, walker in from {onset}"
    assert onset in frames, "the walker's first frame was not analysed"
    assert all(exact for k, exact, _ in handed if k >= onset), "a frame after the wake is not the exact one"
    assert decoder.quiet.wakes >= 1
