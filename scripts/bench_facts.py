"""The small measured facts the code's comments point to (docs/PERFORMANCE.md "Measured
facts"), measured again on this machine: each line is a choice in the code and the
alternative it was chosen over, in microseconds per call (median of repeated runs).

    .venv/bin/python scripts/bench_facts.py
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from fractions import Fraction

import av
import cv2
import numpy as np
from av.video.reformatter import VideoReformatter

REPEATS = 200


def micros(work: Callable[[], object], repeats: int = REPEATS) -> float:
    """Median wall time of one call, in microseconds."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e6


def frame_640x360() -> av.VideoFrame:
    rng = np.random.default_rng(0)
    planes = rng.integers(0, 255, (540, 640), dtype=np.uint8)
    frame = av.VideoFrame.from_ndarray(planes, format="yuv420p")
    frame.pts, frame.time_base = 0, Fraction(1, 15)
    return frame


def main() -> None:
    cv2.setNumThreads(1)
    luma = np.random.default_rng(1).integers(0, 255, (360, 640), dtype=np.uint8)
    rows = [
        (
            "motion: 640x360 -> 213x120 in one INTER_AREA step (3x)",
            micros(lambda: cv2.resize(luma, (213, 120), interpolation=cv2.INTER_AREA)),
        ),
        (
            "motion: the same as an exact 2x INTER_AREA step, then bilinear (edge.motion)",
            micros(
                lambda: cv2.resize(
                    cv2.resize(luma, (320, 180), interpolation=cv2.INTER_AREA),
                    (213, 120),
                    interpolation=cv2.INTER_LINEAR,
                )
            ),
        ),
        (
            "motion: outer contours of a 178x100 blob mask (edge.motion)",
            micros(lambda: cv2.findContours(_blobs(), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)),
        ),
        ("motion: labelling every pixel of the same mask", micros(lambda: cv2.connectedComponentsWithStats(_blobs()))),
    ]
    frame = frame_640x360()
    reused = VideoReformatter()
    rows += [
        (
            "thumbnail/tile: 640x360 yuv420p -> 320x180 bgr24, converter reused (edge.thumbnail)",
            micros(lambda: reused.reformat(frame, width=320, height=180, format="bgr24").to_ndarray()),
        ),
        (
            "thumbnail/tile: the same with a fresh converter per frame",
            micros(lambda: VideoReformatter().reformat(frame, width=320, height=180, format="bgr24").to_ndarray()),
        ),
    ]
    grid = np.zeros((1080, 1920, 3), np.uint8)
    view = grid[100:280, 300:620]
    rows += [
        (
            "mosaic: fill a 320x180 tile of the grid with cv2.rectangle (edge.mosaic)",
            micros(lambda: cv2.rectangle(view, (0, 0), (319, 179), (40, 40, 40), -1)),
        ),
        (
            "mosaic: the same by NumPy broadcasting into the strided view",
            micros(lambda: view.__setitem__(slice(None), (40, 40, 40))),
        ),
    ]
    width = max(len(name) for name, _ in rows)
    for name, us in rows:
        print(f"{name:<{width}}  {us:8.1f} us")


def _blobs() -> np.ndarray:
    mask = np.zeros((100, 178), np.uint8)
    for k in range(6):
        cv2.circle(mask, (20 + 25 * k, 30 + 8 * k), 6 + k, 255, -1)
    return mask


if __name__ == "__main__":
    main()
