"""`python -m edge.evaluation [CLIP.mp4 ...] [--shared] [--synthetic] [--check]
[--every-frame] [--spans] [--idle]`: score the motion detector and two baselines on
labelled clips, strictly (edge.evaluation.metrics): only the frames the daemon's frame
pipeline (edge.pipeline) analyses, 5 fps by the clip's timestamps, each with its own
label; events judged where they start. Prints a table per clip and overall. `--check` then prints one
PASS/FAIL line per target of issue 14 for nvr-edge and exits 1 if any fails.
`--idle` instead scores the daemon's idle mode: each clip decoded packet by packet as
the camera worker does, with idle mode off and after 10 s and 2 s of quiet."""

from __future__ import annotations

import argparse
import io
import itertools
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

import cv2
import numpy as np

from edge.config import MotionConfig
from edge.evaluation.baselines import Cropped, FrameDifference, FrigateStyle
from edge.evaluation.clips import ClipError, LabelledClip, Polygon, load_clip
from edge.evaluation.metrics import SPAN_GRACE_S, Detector, Score, evaluate
from edge.evaluation.stream import encode_luma, evaluate_stream, played_twice
from edge.evaluation.synthetic import synthetic_clips
from edge.motion import MotionDetector

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "clips"
OURS = "nvr-edge"


def _ours(roi: Polygon | None) -> Detector:
    # The region of interest is the detector's zone, as a user would configure `zones`.
    return MotionDetector(MotionConfig(), zones=[list(map(list, roi))] if roi else ())


def _baseline(make: Callable[[], Detector]) -> Callable[[Polygon | None], Detector]:
    # Baselines have no zones: they see the region of interest cropped out (baselines.Cropped).
    return lambda roi: Cropped(make(), roi) if roi else make()


DETECTORS: dict[str, Callable[[Polygon | None], Detector]] = {
    OURS: _ours,
    "frigate-style": _baseline(FrigateStyle),
    "frame-diff": _baseline(FrameDifference),
}

# Issue 14's targets, judged by --check on nvr-edge.
MAX_FALSE_FRAME_SHARE = 0.05  # per negative-only clip
MIN_RECALL = 0.95
MIN_F1 = 0.90


def _load(path: Path) -> LabelledClip:
    try:
        return load_clip(path)
    except ClipError as exc:
        raise SystemExit(f"edge.evaluation: {exc}") from None


def clip_files(paths: list[Path], shared: bool) -> list[Path]:
    if shared and not SHARED.is_dir():
        raise SystemExit(f"--shared: {SHARED} is not here")
    return [*paths, *(sorted(SHARED.glob("*.mp4")) if shared else [])]


def gather(paths: list[Path], shared: bool, synthetic: bool) -> Iterable[LabelledClip]:
    """The clips: the files, each loaded and checked now (a refused one stops the run
    before anything is scored), then the synthetic set, generated one clip at a time as
    it is used (all at once would not fit in memory)."""
    files = [_load(p) for p in clip_files(paths, shared)]
    return itertools.chain(files, synthetic_clips() if synthetic else ())


def fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def false_frames(s: Score) -> str:
    share = s.false_frame_share
    return "-" if share is None else f"{s.fp}/{s.negatives} ({100 * share:.1f} %)"


def latency(s: Score) -> str:
    worst = s.worst_latency
    return "-" if worst is None else f"{worst:.2f} s"


HEADER = (
    "| clip | detector | precision | recall | F1 | false frames | spans found | worst latency | "
    "false events | false/h | ms/frame |\n|---|---|---|---|---|---|---|---|---|---|---|"
)


def row(name: str, detector: str, s: Score) -> str:
    spans = f"{s.spans_found}/{s.spans}" if s.spans else "-"
    return (
        f"| {name} | {detector} | {fmt(s.precision)} | {fmt(s.recall)} | {fmt(s.f1)} | {false_frames(s)} | "
        f"{spans} | {latency(s)} | {s.false_events} | {s.false_events_per_hour:.1f} | {s.ms_per_frame:.3f} |"
    )


EVERY_HEADER = (
    "Every-frame view (a second view, not the measurement: each analysed frame's verdict held over the "
    "frames until the next analysed one, every frame scored):\n\n"
    "| clip | detector | analysed P | analysed R | analysed F1 | every-frame P | every-frame R | every-frame F1 |\n"
    "|---|---|---|---|---|---|---|---|"
)


def every_row(name: str, detector: str, s: Score) -> str:
    return (
        f"| {name} | {detector} | {fmt(s.precision)} | {fmt(s.recall)} | {fmt(s.f1)} | "
        f"{fmt(s.every_precision)} | {fmt(s.every_recall)} | {fmt(s.every_f1)} |"
    )


def span_cell(s: Score, k: int) -> str:
    lat = s.latencies[k]
    if lat is None:
        return "missed"
    return f"{lat:.2f} s" if lat <= SPAN_GRACE_S + 1e-6 else f"late {lat:.2f} s"


def span_table(results: dict[str, dict[str, Score]], names: list[str]) -> None:
    """One row per labelled span: each detector's start latency (from the span's first frame)."""
    print(f"\nPer span: start latency (0: an event was already open or started up to {SPAN_GRACE_S:g} s early)\n")
    print(f"| clip | span starts | {' | '.join(names)} |")
    print(f"|---|---|{'---|' * len(names)}")
    for clip, scores in results.items():
        first = scores[names[0]]
        for k, at in enumerate(first.span_times):
            print(f"| {clip} | {at:.2f} s | {' | '.join(span_cell(scores[d], k) for d in names)} |")


def check(results: dict[str, dict[str, Score]], baselines: list[str]) -> list[tuple[bool, str]]:
    """Issue 14's targets for nvr-edge: (passed, line) each."""
    ours = {clip: scores[OURS] for clip, scores in results.items()}
    total = Score()
    for s in ours.values():
        total.add(s)
    verdicts = []

    # (a) negatives: no false event anywhere, few false frames on negative-only clips.
    with_false = [f"{clip} {s.false_events}" for clip, s in ours.items() if s.false_events]
    negative_only = {clip: s for clip, s in ours.items() if not s.positives and s.negatives}
    shares = {clip: s.false_frame_share or 0.0 for clip, s in negative_only.items()}
    worst = max(shares, key=lambda c: shares[c]) if shares else None
    over = [f"{c} {100 * v:.1f} %" for c, v in shares.items() if v > MAX_FALSE_FRAME_SHARE]
    ok = total.false_events == 0 and not over
    line = f"(a) negatives: {total.false_events} false events in total (target 0)"
    line += f" [{', '.join(with_false)}]" if with_false else ""
    if worst is not None:
        line += (
            f"; false frames on negative-only clips: worst {100 * shares[worst]:.1f} % ({worst}), "
            f"{len(over)}/{len(shares)} clips over {100 * MAX_FALSE_FRAME_SHARE:.0f} %"
        )
        line += f" [{', '.join(over)}]" if over else ""
    verdicts.append((ok, line))

    # (b) every span found within 1 s.
    missed = [
        f"{clip} {at:.1f} s" + ("" if lat is None else f" (late {lat:.1f} s)")
        for clip, s in ours.items()
        for at, lat in zip(s.span_times, s.latencies, strict=True)
        if lat is None or lat > SPAN_GRACE_S + 1e-6
    ]
    line = f"(b) spans found within {SPAN_GRACE_S:g} s: {total.spans_found}/{total.spans}"
    line += f", worst latency {latency(total)}" + (f" [missed: {', '.join(missed)}]" if missed else "")
    verdicts.append((total.spans_found == total.spans, line))

    # (c) frame recall on the clips with positives (pooled over their analysed frames).
    recall = total.recall
    verdicts.append(
        (
            recall is not None and recall >= MIN_RECALL,
            f"(c) analysed-frame recall on clips with positives: {fmt(recall)} (target >= {MIN_RECALL:.2f})",
        )
    )

    # (d) overall analysed-frame F1.
    f1 = total.f1
    verdicts.append(
        (f1 is not None and f1 >= MIN_F1, f"(d) overall analysed-frame F1: {fmt(f1)} (target >= {MIN_F1:.2f})")
    )

    # (e) better than both baselines on every clip with negatives.
    judged, lost = 0, dict[str, list[str]]()
    for clip, scores in results.items():
        s = scores[OURS]
        if not s.negatives:
            continue
        judged += 1
        for name in baselines:
            b = scores[name]
            if s.positives:  # F1, higher; a tie only at a perfect 1.0
                mine, theirs = s.f1 or 0.0, b.f1 or 0.0
                if not (mine > theirs or mine == theirs == 1.0):
                    lost.setdefault(clip, []).append(f"F1 {mine:.3f} vs {name} {theirs:.3f}")
            elif not (s.fp < b.fp or s.fp == b.fp == 0):  # false frames, fewer; a tie only at 0
                lost.setdefault(clip, []).append(f"false frames {s.fp} vs {name} {b.fp}")
    line = f"(e) better than both baselines on clips with negatives: {judged - len(lost)}/{judged} clips"
    if lost:
        line += " [not on: " + "; ".join(f"{clip} {', '.join(why)}" for clip, why in lost.items()) + "]"
    verdicts.append((not lost, line))
    return verdicts


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
        f"| {name} | {setting} | {fmt(s.precision)} | {fmt(s.recall)} | {false_frames(s)} | {spans} | "
        f"{latency(s)} | {s.false_events} | {100 * decoded:.0f} % | {s.withheld} | {wakes} |"
    )


def idle_sources(clip: LabelledClip, path: Path | None) -> list[tuple[str, Path | io.BytesIO, np.ndarray]]:
    """The streams idle mode is scored on for one clip: (name, video, labels)."""
    sources: list[tuple[str, Path | io.BytesIO, np.ndarray]] = [
        (clip.name, path if path is not None else encode_luma(clip.frames, clip.fps), clip.labels)
    ]
    # The stress test: each clip played twice, each time after 20 s of its still opening,
    # re-encoded as a camera would send it, so idle mode (earned in the first playing) is
    # on when the motion starts again; and the same at a constant bitrate with sensor
    # noise, where packet sizes may not show motion and then idle mode must not engage
    # (edge.idle.SizeTrust).
    twice = played_twice(clip.frames, clip.labels, clip.fps)
    if twice is not None:
        frames, labels = twice
        sources.append((f"{clip.name} twice", encode_luma(frames, clip.fps), labels))
        kbps = cbr_kbps(frames[0].shape, clip.fps)
        noisy = encode_luma(frames, clip.fps, kbps=kbps, grain=CBR_GRAIN)
        sources.append((f"{clip.name} twice, CBR + noise", noisy, labels))
    return sources


def idle_table(paths: list[Path], shared: bool, synthetic: bool) -> None:
    """Recall and spans found with idle mode off and on, over the same packets."""
    files = clip_files(paths, shared)
    loaded = [(_load(p), p) for p in files]  # every file checked before anything is scored
    generated = ((clip, None) for clip in (synthetic_clips() if synthetic else ()))
    print(
        "| clip | idle mode | precision | recall | false frames | spans found | worst latency | false events | "
        "decoded | withheld | wakes |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    totals = {setting: (Score(), [0]) for setting in IDLE_SETTINGS}
    for clip, path in itertools.chain(loaded, generated):
        for name, source, labels in idle_sources(clip, path):
            # The file itself is timed by its own timestamps; re-encodes at frame / fps.
            times = clip.times if source is path else None
            for setting in IDLE_SETTINGS:
                if isinstance(source, io.BytesIO):
                    source.seek(0)
                score, wakes = evaluate_stream(source, labels, clip.fps, _ours(clip.roi), setting, times=times)
                totals[setting][0].add(score)
                totals[setting][1][0] += wakes
                print(idle_row(name, setting, score, wakes), flush=True)
    for setting, (total, woken) in totals.items():
        print(idle_row("**all**", setting, total, woken[0]))
    print(
        "\nwithheld: frames the 5 fps schedule would analyse that idle mode kept from the detector "
        "(scored as no motion)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edge.evaluation", description=__doc__)
    parser.add_argument("clips", nargs="*", type=Path, help="MP4 files with <name>.labels.csv beside them")
    parser.add_argument("--shared", action="store_true", help="the labelled clips in ../shared/clips")
    parser.add_argument("--synthetic", action="store_true", help="the generated hard cases")
    parser.add_argument("--detectors", default=",".join(DETECTORS), help="comma-separated subset")
    parser.add_argument("--check", action="store_true", help="judge issue 14's targets; exit 1 if one fails")
    parser.add_argument(
        "--every-frame", action="store_true", help="also print the every-frame view (verdicts held between analyses)"
    )
    parser.add_argument("--spans", action="store_true", help="also print each span's start latency")
    parser.add_argument("--idle", action="store_true", help="score idle mode (off, 10 s, 2 s) instead of detectors")
    args = parser.parse_args(argv)
    cv2.setNumThreads(1)  # as in the daemon: one camera's work per thread, no nested pools
    if not (args.clips or args.shared or args.synthetic):
        parser.error("no clips: name files, or use --shared / --synthetic")
    if args.idle:
        if args.check or args.every_frame or args.spans:
            parser.error("--idle scores idle mode only: no --check, --every-frame or --spans")
        idle_table(args.clips, args.shared, args.synthetic)
        return 0
    names = args.detectors.split(",")
    unknown = [n for n in names if n not in DETECTORS]
    if unknown:
        parser.error(f"unknown detector(s) {', '.join(unknown)}: choose from {', '.join(DETECTORS)}")
    if args.check and set(names) != set(DETECTORS):
        parser.error(f"--check compares {OURS} with both baselines: run all of {', '.join(DETECTORS)}")
    clips = gather(args.clips, args.shared, args.synthetic)
    print(HEADER)
    totals = {d: Score() for d in names}
    real = {d: Score() for d in names}
    results: dict[str, dict[str, Score]] = {}
    for clip in clips:
        results[clip.name] = {}
        for detector in names:
            score = evaluate(clip.frames, clip.labels, clip.fps, DETECTORS[detector](clip.roi), times=clip.frame_times)
            results[clip.name][detector] = score
            totals[detector].add(score)
            if not clip.name.startswith("synthetic/"):
                real[detector].add(score)
            print(row(clip.name, detector, score), flush=True)
    for detector in names:
        if real[detector].detect_calls and real[detector].detect_calls != totals[detector].detect_calls:
            print(row("**real clips**", detector, real[detector]))
    for detector in names:
        print(row("**all**", detector, totals[detector]))
    if args.every_frame:
        print()
        print(EVERY_HEADER)
        for clip_name, scores in results.items():
            for detector in names:
                print(every_row(clip_name, detector, scores[detector]))
        for detector in names:
            print(every_row("**all**", detector, totals[detector]))
    if args.spans:
        span_table(results, names)
    if args.check:
        print()
        verdicts = check(results, [n for n in names if n != OURS])
        for ok, line in verdicts:
            print(f"{'PASS' if ok else 'FAIL'} {line}")
        return 0 if all(ok for ok, _ in verdicts) else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
