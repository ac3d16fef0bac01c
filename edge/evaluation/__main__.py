"""`python -m edge.evaluation [CLIP.mp4 ...] [--shared] [--synthetic]`: score the motion
detector and two baselines on labelled clips; prints a table per clip and overall."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2

from edge.config import MotionConfig
from edge.evaluation.baselines import FrameDifference, FrigateStyle
from edge.evaluation.clips import LabelledClip, load_clip
from edge.evaluation.metrics import Score, evaluate
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edge.evaluation", description=__doc__)
    parser.add_argument("clips", nargs="*", type=Path, help="MP4 files with <name>.labels.csv beside them")
    parser.add_argument("--shared", action="store_true", help="the labelled clips in ../shared/clips")
    parser.add_argument("--synthetic", action="store_true", help="the generated hard cases")
    parser.add_argument("--detectors", default=",".join(DETECTORS), help="comma-separated subset")
    args = parser.parse_args(argv)
    cv2.setNumThreads(1)  # as in the daemon: one camera's work per thread, no nested pools
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
