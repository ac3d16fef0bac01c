"""Quiet mode (edge.quiet, edge.source.IdleDecoder): the policy on a clock, and a real
generated clip (still, then walkers) decoded through the daemon's decoder: without
deblocking while still, every frame still analysed, and from the walker's first frame
on (its picture included) every frame exact."""

from __future__ import annotations

import csv
from pathlib import Path

import av
import numpy as np
import pytest

from edge.idle import IdleController
from edge.quiet import QuietPolicy
from edge.source import IdleDecoder, luma_view, select_streams
from harness.clips import ensure_clips

FPS = 5.0


def frames(policy: QuietPolicy, start: float, seconds: float) -> None:
    for k in range(int(seconds * FPS)):
        policy.frame(start + k / FPS)


def test_quiet_after_quiet_after_seconds_without_motion() -> None:
    policy = QuietPolicy(quiet_after=6.0)
    frames(policy, 0.0, 5.8)
    assert not policy.quiet and policy.full_decode
    frames(policy, 6.0, 0.2)
    assert policy.quiet and not policy.full_decode


def test_never_quiet_with_an_event_open_or_quiet_after_zero() -> None:
    policy = QuietPolicy(quiet_after=6.0)
    policy.event(True)
    frames(policy, 0.0, 20.0)
    assert not policy.quiet
    policy.event(False)
    frames(policy, 20.0, 0.2)
    assert policy.quiet
    off = QuietPolicy(quiet_after=0)
    frames(off, 0.0, 20.0)
    assert not off.quiet


def test_motion_wakes_it_and_it_stays_awake_for_quiet_after() -> None:
    policy = QuietPolicy(quiet_after=6.0, now=0.0)
    frames(policy, 0.0, 8.0)
    assert policy.quiet
    assert not policy.analysed(8.0, False) and policy.quiet
    assert policy.analysed(8.2, True) and not policy.quiet and policy.wakes == 1
    assert not policy.analysed(8.4, True)  # already awake
    frames(policy, 8.6, 5.4)
    assert not policy.quiet
    frames(policy, 14.4, 0.2)
    assert policy.quiet


@pytest.fixture(scope="module")
def clip() -> Path:
    """Generated camera-like clip: nobody for 21 s, then walkers (make_clips `quietbusy`)."""
    return ensure_clips(kinds=("quietbusy",), width=320, height=180, fps=5, seconds=42)["quietbusy"]


def test_real_packets_without_deblocking_while_still_exact_from_the_walker_on(clip: Path) -> None:
    with clip.with_suffix(".labels.csv").open() as handle:
        onset = [int(row["label"]) for row in csv.DictReader(handle)].index(1)
    with av.open(str(clip)) as container:
        video, _ = select_streams(container)
        reference = {f.pts: luma_view(f).copy() for p in container.demux(video) for f in p.decode()}
    handed: list[tuple[int, bool, bool]] = []  # frame number, exact, decoded while quiet
    pictures: list[tuple[int, bool]] = []  # the frame analysed() gives back for pictures: exact?
    with av.open(str(clip)) as container:
        video, _ = select_streams(container)
        decoder = IdleDecoder(video, IdleController(0, 0.0), quiet=QuietPolicy(quiet_after=6.0))
        for packet in container.demux(video):
            if not packet.size:
                continue
            n = round(float(packet.pts * packet.time_base) * FPS)
            for frame, at in decoder.timed(decoder.feed(packet, n / FPS), n / FPS):
                k = round(float(frame.time) * FPS)
                handed.append((k, np.array_equal(luma_view(frame), reference[frame.pts]), decoder.quiet.quiet))
                picture = decoder.analysed(at, onset <= k, frame)  # the detector's verdict, as the labels have it
                assert picture is not None
                pictures.append((k, np.array_equal(luma_view(picture), reference[picture.pts])))
    assert len(handed) == len(reference), "a frame was not analysed"
    assert any(not exact for k, exact, quiet in handed if quiet), "deblocking was not skipped while quiet"
    assert all(exact for k, exact, quiet in handed if k < 6 * FPS), "not quiet yet, but not exact"
    assert not any(quiet for k, _, quiet in handed if k > onset), "motion did not wake it"
    assert all(exact for k, exact, _ in handed if k > onset), "a frame after the wake is not the exact one"
    assert all(exact for k, exact in pictures if k >= onset), "the waking frame's picture is not the exact one"
    assert decoder.quiet.wakes == 1
