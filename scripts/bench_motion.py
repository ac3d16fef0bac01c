"""Motion detector cost per analysed frame, as a camera worker pays it.

Frames are prepared up front (a textured scene, gaussian noise, a person-sized block
walking across, a lights-on step half-way), handed over as non-contiguous views like
PyAV's padded luma plane, and only `MotionDetector.process` is timed. Reports wall
time and this thread's CPU time per frame (median and 95th percentile); the budget
is 24 cameras x 5 fps on 2 cores, i.e. well under 1 ms per frame.

`--gap MS` sleeps between frames as a camera worker does (200 ms at 5 fps): the same
work then costs several times more CPU on these shared machines (caches and predictors
gone cold while the thread slept), which is what the daemon pays in bench_cameras.py.

  .venv/bin/python scripts/bench_motion.py                 # 640x360
  .venv/bin/python scripts/bench_motion.py --frames 200 --gap 200
  .venv/bin/python scripts/bench_motion.py --size 1920x1080 --frames 1000
  .venv/bin/python scripts/bench_motion.py --frames 150 --gap 200 --batch 12
  .venv/bin/python scripts/bench_motion.py --frames 200 --gap 200 --stack 24

`--batch N`: N cameras' detectors, each with its own state, analyse their frames back
to back after each gap, as one analysis thread shared by all cameras would (a batch
every 0.1 s: about 12 cameras at 5 fps); figures per camera-frame. Tried in the daemon
(docs/PERFORMANCE.md): the gain measured here did not show in the 24-camera run.

`--stack N` measures what analysing N cameras as one image would cost: N copies of the
frame stacked vertically, analysed at N times the detection height, so every OpenCV
pass covers all N at once (its call overhead and cold start paid once, not N times);
the figures are then per camera-frame. Measurements for batched designs, not what the
daemon does (each camera's worker analyses its own frames).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edge.config import MotionConfig  # noqa: E402
from edge.motion import MotionDetector  # noqa: E402


def frames(width: int, height: int, count: int, seed: int = 0) -> list[np.ndarray]:
    """Noisy textured scene with a walker; strided views into a padded buffer."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    base = 60 + 80 * (xx / width) + 40 * np.sin(yy / (height / 10))
    block = max(4, height // 18)
    texture = rng.integers(-25, 25, (height // block + 1, width // block + 1)).repeat(block, 0).repeat(block, 1)
    scene = np.clip(base + texture[:height, :width], 0, 255).astype(np.float32)
    pw, ph = max(4, width // 32), max(8, height // 7)  # ~20x50 on 640x360
    out = []
    for i in range(count):
        img = scene + (60 if i >= count // 2 else 0)
        img = img + rng.normal(0, 5, img.shape)
        x = int((i * width / 60) % (width - pw))
        img[height // 2 : height // 2 + ph, x : x + pw] = 230
        padded = np.zeros((height, width + 32), np.uint8)
        padded[:, :width] = np.clip(img, 0, 255)
        out.append(padded[:, :width])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="640x360", help="input WIDTHxHEIGHT (default 640x360)")
    parser.add_argument("--frames", type=int, default=2000)
    parser.add_argument("--sensitivity", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="cv2.setNumThreads (a worker shares 2 cores)")
    parser.add_argument("--gap", type=float, default=0.0, help="ms to sleep before each frame (a worker's pace)")
    parser.add_argument("--stack", type=int, default=1, help="analyse N cameras' frames stacked as one image")
    parser.add_argument("--batch", type=int, default=1, help="N cameras' detectors analyse back to back per gap")
    args = parser.parse_args()
    if args.stack < 1 or args.batch < 1:
        parser.error("--stack and --batch must be at least 1")
    if args.stack > 1 and args.batch > 1:
        parser.error("--stack and --batch measure two different designs: give one")
    width, height = (int(v) for v in args.size.lower().split("x"))
    cv2.setNumThreads(args.threads)
    data = frames(width, height, args.frames)
    config = MotionConfig(sensitivity=args.sensitivity)
    if args.stack > 1:
        data = [np.vstack([f] * args.stack) for f in data]
        # Past the config's 720 px limit on purpose: N detection-size images, one above the other.
        # min_area is a share of the image: of one camera's, as when it is analysed alone.
        update = {"frame_height": config.frame_height * args.stack, "min_area": config.min_area / args.stack}
        config = config.model_copy(update=update)
    detectors = [MotionDetector(config) for _ in range(args.batch)]
    for det in detectors:
        for i, f in enumerate(data[:20]):  # first-call allocations out of the figures
            det.process(f, i / 5)
        det.reset()
    per = args.stack * args.batch  # camera-frames per timed step
    wall, cpu, motion = [], [], 0
    for i, f in enumerate(data):
        if args.gap:
            time.sleep(args.gap / 1000)
        w0, c0 = time.perf_counter(), time.thread_time()
        results = [det.process(f, i / 5) for det in detectors]
        cpu.append(time.thread_time() - c0)
        wall.append(time.perf_counter() - w0)
        motion += results[0].motion

    def ms(values: list[float], q: float) -> float:
        return 1000 * sorted(values)[min(len(values) - 1, int(q * len(values)))] / per

    analysed_w, analysed_h = detectors[0]._size
    print(
        f"{width}x{height} -> {analysed_w}x{analysed_h}, {len(data)} frames, cv2 threads {args.threads}, "
        f"gap {args.gap:g} ms"
        + (f", {args.stack} cameras stacked, per camera-frame" if args.stack > 1 else "")
        + (f", {args.batch} cameras back to back, per camera-frame" if args.batch > 1 else "")
        + ": "
        f"wall {1000 * statistics.fmean(wall) / per:.3f} ms/frame mean, {ms(wall, 0.5):.3f} median, "
        f"{ms(wall, 0.95):.3f} p95; thread CPU {1000 * statistics.fmean(cpu) / per:.3f} ms/frame mean; "
        f"motion on {motion}/{len(data)} frames"
    )


if __name__ == "__main__":
    main()
