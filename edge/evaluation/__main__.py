"""`python -m edge.evaluation [CLIP.mp4 ...] [--shared] [--synthetic] [--idle]`: score the
motion detector and two baselines on labelled clips; prints a table per clip and
overall. `--idle` instead scores the daemon's idle mode: each clip decoded packet by
packet as the camera worker does, with idle mode off and after 10 s and 2 s of quiet."""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import cv2
import numpy as np

from edge.config import MotionConfig
from edge.evaluation.baselines import FrameDifference, FrigateStyle
from edge.evaluation.clips import LabelledClip, load_clip
from edge.evaluation.metrics import Score, evaluate
from edge.evaluation.stream import encode_luma, evaluate_stream, played_twice
from edge.evaluation.synthetic import synthetic_clips
from edge.motion import MotionDetector

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "clips"
DETECTORS = {
    "nvr-edge": lambda: MotionDetector(MotionConfig()),
    "frigate-style": FrigateStyle,
    "frame-diff": FrameDifference,
}


def gather(paths: list[Path], shared: bool, synthetic: bool) -> list[LabelledClip]:
    clips = [load_clip(p) for p in paths]
    if shared:
        if not SHARED.is_dir():
            raise SystemExit(f"--shared: {SHARED} is not here")
        clips += [load_clip(p) for p in sorted(SHARED.glob("*.mp4"))]
    if synthetic:
        clips += synthetic_clips()
    return clips


def row(name: str, detector: str, s: Score) -> str:
    spans = f"{s.spans_found}/{s.spans}" if s.spans else "-"
    return (
        f"| {name} | {detector} | {s.precision:.3f} | {s.recall:.3f} | {s.f1:.3f} | {spans} | "
        f"{s.false_events} | {s.false_events_per_hour:.1f} | {s.ms_per_frame:.3f} |"
    )


IDLE_SETTINGS = (0.0, 10.0, 2.0)  # idle_after: off, the default, a stress setting
CBR_GRAIN = 6  # grey levels of sensor noise in the constant-bitrate variant


def cbr_kbps(shape: tuple[int, ...], fps: float) -> int:
    """A sub-stream's constant bitrate scaled to the clip: 512 kbit/s at 640x360 and 5 fps."""
    return max(32, round(512 * shape[0] * shape[1] / (640 * 360) * fps / 5))


def idle_row(name: str, idle_after: float, s: Score, wakes: int) -> str:
    spans = f"{s.spans_found}/{s.spans}" if s.spans else "-"
    setting = "off" if not idle_after else f"{idle_after:g} s"
    decoded = s.frames_decoded / s.frames_total if s.frames_total else 1.0
    return (
        f"| {name} | {setting} | {s.precision:.3f} | {s.recall:.3f} | {spans} | {s.false_events} | "
        f"{100 * decoded:.0f} % | {wakes} |"
    )


def idle_table(paths: list[Path], shared: bool, synthetic: bool) -> None:
    """Recall and spans found with idle mode off and on, over the same packets."""
    files = [*paths, *(sorted(SHARED.glob("*.mp4")) if shared and SHARED.is_dir() else [])]
    clips = [load_clip(p) for p in files]
    sources: list[tuple[str, Path | io.BytesIO, np.ndarray, float]] = [
        (clip.name, path, clip.labels, clip.fps) for clip, path in zip(clips, files, strict=True)
    ]
    if synthetic:
        generated = synthetic_clips()
        clips += generated
        sources += [(c.name, encode_luma(c.frames, c.fps), c.labels, c.fps) for c in generated]
    # The stress test: each clip played twice, each time after 20 s of its still opening,
    # re-encoded as a camera would send it, so idle mode (earned in the first playing) is
    # on when the motion starts again; and the same at a constant bitrate with sensor
    # noise, where packet sizes may not show motion and then idle mode must not engage
    # (edge.idle.SizeTrust).
    for clip in clips:
        twice = played_twice(clip.frames, clip.labels, clip.fps)
        if twice is not None:
            frames, labels = twice
            sources.append((f"{clip.name} twice", encode_luma(frames, clip.fps), labels, clip.fps))
            kbps = cbr_kbps(frames[0].shape, clip.fps)
            noisy = encode_luma(frames, clip.fps, kbps=kbps, grain=CBR_GRAIN)
            sources.append((f"{clip.name} twice, CBR + noise", noisy, labels, clip.fps))
    print("| clip | idle mode | precision | recall | spans found | false events | decoded | wakes |")
    print("|---|---|---|---|---|---|---|---|")
    totals = {setting: (Score(), [0]) for setting in IDLE_SETTINGS}
    for name, source, labels, fps in sources:
        for setting in IDLE_SETTINGS:
            if isinstance(source, io.BytesIO):
                source.seek(0)
            score, wakes = evaluate_stream(source, labels, fps, MotionDetector(MotionConfig()), setting)
            totals[setting][0].add(score)
            totals[setting][1][0] += wakes
            print(idle_row(name, setting, score, wakes))
    for setting, (score, wakes) in totals.items():
        print(idle_row("**all**", setting, score, wakes[0]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edge.evaluation", description=__doc__)
    parser.add_argument("clips", nargs="*", type=Path, help="MP4 files with <name>.labels.csv beside them")
    parser.add_argument("--shared", action="store_true", help="the labelled clips in ../shared/clips")
    parser.add_argument("--synthetic", action="store_true", help="the generated hard cases")
    parser.add_argument("--detectors", default=",".join(DETECTORS), help="comma-separated subset")
    parser.add_argument("--idle", action="store_true", help="score idle mode (off, 10 s, 2 s) instead of detectors")
    args = parser.parse_args(argv)
    cv2.setNumThreads(1)  # as in the daemon: one camera's work per thread, no nested pools
    if args.idle:
        if not (args.clips or args.shared or args.synthetic):
            parser.error("no clips: name files, or use --shared / --synthetic")
        idle_table(args.clips, args.shared, args.synthetic)
        return 0
    clips = gather(args.clips, args.shared, args.synthetic)
    if not clips:
        parser.error("no clips: name files, or use --shared / --synthetic")
    names = args.detectors.split(",")
    print("| clip | detector | precision | recall | F1 | spans found | false events | false/h | ms/frame |")
    print("|---|---|---|---|---|---|---|---|---|")
    totals = {d: Score() for d in names}
    real = {d: Score() for d in names}
    for clip in clips:
        for detector in names:
            score = evaluate(clip.frames, clip.labels, clip.fps, DETECTORS[detector]())
            totals[detector].add(score)
            if not clip.name.startswith("synthetic/"):
                real[detector].add(score)
            print(row(clip.name, detector, score))
    for detector in names:
        if real[detector].detect_calls and real[detector].detect_calls != totals[detector].detect_calls:
            print(row("**real clips**", detector, real[detector]))
    for detector in names:
        print(row("**all**", detector, totals[detector]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
