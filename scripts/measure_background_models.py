"""Measure multimodal per-pixel backgrounds against nvr-edge's own use of one (edge.looks),
with issue 14's strict evaluation (edge.evaluation).

    .venv/bin/python scripts/measure_background_models.py --shared --synthetic

Variants:
- `nvr-edge`: the detector as shipped: a blob in an area that keeps moving, made of looks its
  pixels have had before (OpenCV's MOG2 at half the analysis size), is not an object;
- `nvr-edge, no looks`: the same detector without that question (the step before it);
- `nvr-edge, knn looks`: the question asked of OpenCV's KNN (sample consensus, like ViBe) instead;
- `nvr-edge, mog2 pixel gate`: no question per blob; instead every moving pixel must also be
  MOG2 foreground (full analysis size): the model vetoes pixels, not blobs;
- `mog2 alone`, `knn alone`: the model's foreground, despeckled, blobs over `motion.min_area`
  are motion (per-pixel detectors with no travel test, like the baselines).
Prints the table per clip, the overall rows, then each model's cost per frame at the
analysis size and at half of it. Results and the decision are in docs/MOTION.md.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edge.config import MotionConfig  # noqa: E402
from edge.evaluation.__main__ import HEADER, gather, row  # noqa: E402
from edge.evaluation.baselines import boxes_result  # noqa: E402
from edge.evaluation.metrics import Detector, Score, evaluate  # noqa: E402
from edge.looks import VAR_THRESHOLD, PixelLooks  # noqa: E402
from edge.motion import MotionDetector, MotionResult  # noqa: E402
from edge.tracks import Blob  # noqa: E402

HISTORY_FRAMES = 150  # the models' own memory where they run alone: 30 s at 5 fps, as edge.looks.TAU_S
_KERNEL = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))
Model = Callable[[], Any]  # a cv2.BackgroundSubtractor factory
MODELS: dict[str, Model] = {
    "mog2": lambda: cv2.createBackgroundSubtractorMOG2(HISTORY_FRAMES, VAR_THRESHOLD, False),
    "knn": lambda: cv2.createBackgroundSubtractorKNN(HISTORY_FRAMES, 400.0, False),
}
Zones = list[list[list[float]]]


def analysis_frame(luma: np.ndarray, height: int) -> np.ndarray:
    h, w = luma.shape[:2]
    return cv2.medianBlur(cv2.resize(luma, (round(w * height / h), height), interpolation=cv2.INTER_AREA), 3)


class Alone:
    """The model's foreground is the verdict: despeckle, dilate, blobs of min_area."""

    def __init__(self, make: Model, config: MotionConfig) -> None:
        self._model = make()
        self._height = config.frame_height
        self._min_area = config.min_area

    def process(self, luma: np.ndarray, t: float) -> MotionResult:
        fg = self._model.apply(analysis_frame(luma, self._height))
        blobs = cv2.dilate(cv2.morphologyEx(fg, cv2.MORPH_OPEN, _KERNEL), _KERNEL)
        boxes = [
            cv2.boundingRect(c)
            for c in cv2.findContours(blobs, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)[0]
            if cv2.contourArea(c) >= self._min_area * blobs.size
        ]
        return boxes_result(boxes, blobs.shape)


class NoLooks(MotionDetector):
    """nvr-edge without the question to edge.looks."""

    def _alternating(self, blob: Blob, blobs: np.ndarray) -> bool:
        return False


class KnnLooks(PixelLooks):
    """edge.looks with KNN sample consensus in place of MOG2."""

    def _new_model(self) -> Any:
        return cv2.createBackgroundSubtractorKNN(1, 400.0, False)


class WithKnnLooks(MotionDetector):
    def __init__(self, config: MotionConfig, zones: Zones) -> None:
        super().__init__(config, zones=zones)
        self._looks = KnnLooks()


class PixelGate(NoLooks):
    """nvr-edge whose moving pixels must also be MOG2 foreground (full analysis size)."""

    def __init__(self, config: MotionConfig, zones: Zones) -> None:
        super().__init__(config, zones=zones)
        self._gate = MODELS["mog2"]()
        self._fg: np.ndarray | None = None

    def process(self, luma: np.ndarray, t: float) -> MotionResult:
        self._fg = self._gate.apply(analysis_frame(luma, self._cfg.frame_height))
        return super().process(luma, t)

    def _objects(
        self, blobs: np.ndarray, fresh: np.ndarray, frame: np.ndarray, bg: np.ndarray, usable: np.ndarray
    ) -> tuple[list[Blob], bool]:
        assert self._fg is not None
        gated = cv2.bitwise_and(blobs, cv2.dilate(self._fg, _KERNEL))  # the blobs were dilated once too
        return super()._objects(gated, fresh, frame, bg, usable)


def variants() -> dict[str, Callable[[Zones], Detector]]:
    config = MotionConfig()
    return {
        "nvr-edge": lambda zones: MotionDetector(config, zones=zones),
        "nvr-edge, no looks": lambda zones: NoLooks(config, zones=zones),
        "nvr-edge, knn looks": lambda zones: WithKnnLooks(config, zones),
        "nvr-edge, mog2 pixel gate": lambda zones: PixelGate(config, zones),
        "mog2 alone": lambda zones: Alone(MODELS["mog2"], config),
        "knn alone": lambda zones: Alone(MODELS["knn"], config),
    }


def model_cost(make: Model, frames: list[np.ndarray], height: int) -> float:
    """Thread CPU ms per frame of the model's apply alone, on frames `height` px high."""
    small = [analysis_frame(f, height) for f in frames]
    model = make()
    began = time.thread_time()
    for frame in small:
        model.apply(frame)
    return 1000 * (time.thread_time() - began) / len(small)


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--shared", action="store_true", help="the labelled clips in ../shared/clips")
    parser.add_argument("--synthetic", action="store_true", help="the generated hard cases")
    parser.add_argument("--only", default="", help="comma-separated variants (default: all)")
    args = parser.parse_args()
    if not (args.shared or args.synthetic):
        parser.error("choose --shared and/or --synthetic")
    cv2.setNumThreads(1)
    made = {k: v for k, v in variants().items() if not args.only or k in args.only.split(",")}
    totals = {name: Score() for name in made}
    sample: list[np.ndarray] = []
    print(HEADER)
    for clip in gather([], args.shared, args.synthetic):
        zones = [list(map(list, clip.roi))] if clip.roi else []
        if not sample:
            sample = list(itertools.islice(clip.frames, 300))
        for name, make in made.items():
            score = evaluate(clip.frames, clip.labels, clip.fps, make(zones), times=clip.frame_times)
            totals[name].add(score)
            print(row(clip.name, name, score), flush=True)
    for name, total in totals.items():
        print(row("**all**", name, total))
    height = MotionConfig().frame_height
    for name, make in MODELS.items():
        full, half = model_cost(make, sample, height), model_cost(make, sample, height // 2)
        print(f"{name}: {full:.3f} ms per frame at {height} px high, {half:.3f} ms at {height // 2} (thread CPU)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
