"""Generate deterministic synthetic H.264 test scenes with known ground truth.

`walkers`: a textured street with mild sensor noise, people-sized figures crossing
at walking speed with idle spells in between; `static`: the same street, nobody;
`quietbusy` (benchmarks): still for the first half, then a steady stream of walkers
(one starts every 3 s, both directions), so each loop has one known onset of motion.
Each clip gets `<name>.labels.csv` (frame,time_s,label as in the shared clips: 1 while
a figure is in view, else 0) and a `<name>.json` with its parameters, so an unchanged
clip is not made again. Encoded like an IP camera: H.264 main profile, yuv420p, no
B-frames, a fixed 2 s GOP, one slice per frame, pts = frame number in 1/fps.
Run with the project's virtualenv:  python scripts/make_clips.py --out DIR
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

KINDS = ("walkers", "static")
# Made only when asked for by name (not by the default ensure_clips): benchmark scenes.
EXTRA_KINDS = ("quietbusy",)
ALL_KINDS = KINDS + EXTRA_KINDS
# Bump when the same parameters should give a different clip: cached clips are then made again.
VERSION = 2
# (start, end, direction) of each figure's crossing as fractions of the clip; for 60 s:
# idle 0-8 s, one walker 8-16 s, idle 16-30 s, two walkers 30-40 s, idle 40-60 s.
# Each crossing takes 8 s (a 640 px frame at ~85 px/s, a brisk walk at this scale).
WALKERS = [(8 / 60, 16 / 60, 1), (30 / 60, 38 / 60, 1), (32 / 60, 40 / 60, -1)]
# quietbusy: nobody for the first half; from then on a walker starts every 1/20 of the
# clip (3 s of 60), alternating directions, each crossing taking 8/60 of it; the ones
# still walking when the clip ends are cut off there (the loop restarts empty).
QUIETBUSY = [(0.5 + k / 20, 0.5 + k / 20 + 8 / 60, 1 if k % 2 == 0 else -1) for k in range(10)]
NOISE_SIGMA = 2.0  # grey levels of sensor noise on the luma, before compression
# A daytime IP camera's temporal noise reduction leaves little noise for the encoder:
# a still view costs a few hundred bytes per P-frame, as on real cameras, not ~8 KB.
NOISE_SIGMA_BY_KIND = {"quietbusy": 0.6}
BODY_RGB, HEAD_RGB = (40, 50, 160), (150, 170, 200)  # a blue coat and a pale head
# x264 runs a fixed number of frame threads: with the default (sliced threads, one per
# CPU) the bytes and the slice count would depend on the machine.
X264_THREADS = 4

Fps = int | Fraction | str


def as_fps(fps: Fps) -> Fraction:
    """5, '25/2' or Fraction(30000, 1001) -> a positive Fraction."""
    value = Fraction(fps)
    if value <= 0:
        raise ValueError(f"fps must be positive, not {fps!r}")
    return value


def fps_json(fps: Fps) -> int | str:
    """How the `<name>.json` sidecar records a rate: 5, or '25/2' when fractional."""
    value = as_fps(fps)
    return value.numerator if value.denominator == 1 else f"{value.numerator}/{value.denominator}"


def _rgb_to_yuv(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """BT.601 limited range, as a camera's encoder input (what swscale does by default)."""
    r, g, b = (rgb[..., i].astype(np.float32) for i in range(3))
    y = 16 + (65.481 * r + 128.553 * g + 24.966 * b) / 255
    u = 128 + (-37.797 * r - 74.203 * g + 112.0 * b) / 255
    v = 128 + (112.0 * r - 93.786 * g - 18.214 * b) / 255
    return y, u, v


def _subsample(chroma: np.ndarray) -> np.ndarray:
    """4:2:0 chroma plane: the mean of each 2x2 block."""
    h, w = chroma.shape
    return np.rint(chroma.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))).astype(np.uint8)


def _yuv_colour(rgb: tuple[int, int, int]) -> tuple[int, int, int]:
    y, u, v = _rgb_to_yuv(np.array(rgb, np.float32))
    return int(round(float(y))), int(round(float(u))), int(round(float(v)))


def _background(width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """A colour street (RGB float): gradients, a road band and blocky texture, not flat."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    luma = 70 + 60 * (xx / width) + 25 * np.sin(yy / (height / 9))
    luma[int(height * 0.55) : int(height * 0.85)] -= 25  # the road
    block = max(4, height // 24)
    texture = rng.integers(-18, 18, (height // block + 1, width // block + 1)).astype(np.float32)
    luma += texture.repeat(block, 0).repeat(block, 1)[:height, :width]
    rgb = np.stack([luma * 0.95, luma, luma * 1.05], axis=-1)
    return np.clip(rgb, 0, 255)


def figure_boxes(kind: str, n: int, total: int, width: int, height: int) -> list[tuple[int, int, int, int]]:
    """(x, y, w, h) of each figure in frame n of `total`; x may lie partly outside the frame."""
    schedule = {"walkers": WALKERS, "quietbusy": QUIETBUSY}.get(kind)
    if schedule is None:
        return []
    fw, fh = max(4, height // 9), max(8, height // 3)
    boxes = []
    for start, end, direction in schedule:
        a, b = start * total, end * total
        if a <= n < b:
            progress = (n - a) / (b - a)
            x = -fw + progress * (width + fw) if direction > 0 else width - progress * (width + fw)
            y = int(height * 0.5) + (fh // 6 if direction < 0 else 0)
            boxes.append((int(x), y - fh // 2, fw, fh))
    return boxes


def _in_view(boxes: list[tuple[int, int, int, int]], width: int) -> bool:
    return any(min(width, x + w) > max(0, x) for x, _, w, _ in boxes)


class _Noise:
    """Gaussian sensor noise from a small bank of noise fields, each frame a random
    window of a random field: fresh-looking noise per frame at a fraction of the cost."""

    MARGIN = 32

    def __init__(
        self, width: int, height: int, rng: np.random.Generator, fields: int = 8, sigma: float = NOISE_SIGMA
    ) -> None:
        shape = (fields, height + self.MARGIN, width + self.MARGIN)
        self._bank = np.clip(np.rint(rng.normal(0, sigma, shape)), -127, 127).astype(np.int8)
        self._rng, self._w, self._h = rng, width, height

    def next(self) -> np.ndarray:
        k, dy, dx = self._rng.integers(0, (len(self._bank), self.MARGIN + 1, self.MARGIN + 1))
        return self._bank[k, dy : dy + self._h, dx : dx + self._w]


def make_clip(
    path: Path, kind: str, width: int = 640, height: int = 360, fps: Fps = 5, seconds: float = 60, seed: int = 0
) -> Path:
    """Encode one clip and its labels CSV. fps may be fractional ('25/2'); width and height must be even."""
    if kind not in ALL_KINDS:
        raise ValueError(f"unknown clip kind {kind!r}, expected one of {ALL_KINDS}")
    if width % 2 or height % 2 or width < 16 or height < 16:
        raise ValueError(f"width and height must be even and >= 16, not {width}x{height}")
    rate = as_fps(fps)
    rng = np.random.default_rng(seed)
    bg_y, bg_u, bg_v = _rgb_to_yuv(_background(width, height, rng))
    bg_y = np.rint(bg_y).astype(np.int16)
    bg_u, bg_v = _subsample(bg_u), _subsample(bg_v)
    body, head = _yuv_colour(BODY_RGB), _yuv_colour(HEAD_RGB)
    noise = _Noise(width, height, rng, sigma=NOISE_SIGMA_BY_KIND.get(kind, NOISE_SIGMA))
    total = int(round(seconds * rate))
    gop = max(1, int(round(2 * rate)))

    path.parent.mkdir(parents=True, exist_ok=True)
    # Not *.mp4: a simulator serving this folder must not pick up a half-written clip.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{time.monotonic_ns()}.tmp")
    labels = ["frame,time_s,label"]
    planes = np.empty((height * 3 // 2, width), np.uint8)  # yuv420p: Y, then U, then V
    u_plane = planes[height : height + height // 4].reshape(height // 2, width // 2)
    v_plane = planes[height + height // 4 :].reshape(height // 2, width // 2)
    try:
        with av.open(str(tmp), "w", format="mp4", options={"movflags": "+faststart"}) as out:
            stream = out.add_stream("libx264", rate=rate)
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            stream.time_base = 1 / rate
            stream.codec_context.thread_type = "FRAME"
            stream.codec_context.thread_count = X264_THREADS
            stream.options = {
                "bf": "0",
                "g": str(gop),
                "keyint_min": str(gop),
                "sc_threshold": "0",
                "preset": "veryfast",
                "crf": "23",
                "profile": "main",
            }
            for n in range(total):
                y = bg_y.copy()
                u_plane[:], v_plane[:] = bg_u, bg_v
                boxes = figure_boxes(kind, n, total, width, height)
                for x, top, w, h in boxes:
                    x0, x1 = max(0, x), min(width, x + w)
                    if x1 <= x0:
                        continue
                    for colour, (r0, r1) in ((body, (top, top + h)), (head, (top, top + h // 5))):
                        y[r0:r1, x0:x1] = colour[0]
                        u_plane[r0 // 2 : (r1 + 1) // 2, x0 // 2 : (x1 + 1) // 2] = colour[1]
                        v_plane[r0 // 2 : (r1 + 1) // 2, x0 // 2 : (x1 + 1) // 2] = colour[2]
                y += noise.next()
                np.clip(y, 0, 255, out=y)
                planes[:height] = y
                frame = av.VideoFrame.from_ndarray(planes, format="yuv420p")
                frame.pts = n
                frame.time_base = 1 / rate
                out.mux(stream.encode(frame))
                labels.append(f"{n},{float(n / rate):.6f},{1 if _in_view(boxes, width) else 0}")
            out.mux(stream.encode(None))
        _write_atomic(path.with_suffix(".labels.csv"), "\n".join(labels) + "\n")
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _write_atomic(path: Path, text: str) -> None:
    """Readers (other test sessions) see the old file or the new one, never half of one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{time.monotonic_ns()}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


def clip_params(kind: str, **params: object) -> dict[str, object]:
    """The parameter record kept in `<name>.json`; a clip is remade when it differs."""
    wanted: dict[str, object] = {"kind": kind, "width": 640, "height": 360, "fps": 5, "seconds": 60, "seed": 0}
    unknown = set(params) - set(wanted)
    if unknown:
        raise TypeError(f"unknown clip parameters {sorted(unknown)}")
    wanted.update(params)
    wanted["fps"] = fps_json(wanted["fps"])  # type: ignore[arg-type]
    wanted["version"] = VERSION
    return wanted


def ensure_clips(out_dir: Path, kinds: tuple[str, ...] = KINDS, **params: object) -> dict[str, Path]:
    """Make each kind once per parameter set (`<kind>.mp4` in out_dir); returns {kind: path}."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    made = {}
    for kind in kinds:
        wanted = clip_params(kind, **params)
        path = out_dir / f"{kind}.mp4"
        meta = path.with_suffix(".json")
        try:
            current = json.loads(meta.read_text())
        except (OSError, ValueError):
            current = None
        if not (path.exists() and path.with_suffix(".labels.csv").exists() and current == wanted):
            args = {k: v for k, v in wanted.items() if k not in ("kind", "version")}
            make_clip(path, kind, **args)  # type: ignore[arg-type]
            _write_atomic(meta, json.dumps(wanted))
        made[kind] = path
    return made


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=360)
    parser.add_argument("--fps", default="5", help="frames per second, e.g. 5, 15 or 25/2")
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--kinds", default=",".join(KINDS), help=f"comma-separated, of {', '.join(ALL_KINDS)}")
    args = parser.parse_args()
    kinds = tuple(k for k in args.kinds.split(",") if k)
    try:
        fps = fps_json(args.fps)
        bad = [k for k in kinds if k not in ALL_KINDS]
        if bad or not kinds:
            raise ValueError(f"unknown kinds {bad}, expected some of {', '.join(ALL_KINDS)}")
        made = ensure_clips(
            args.out, kinds, width=args.width, height=args.height, fps=fps, seconds=args.seconds, seed=args.seed
        )
    except ValueError as exc:
        print(f"make_clips: {exc}", file=sys.stderr)
        return 2
    for kind, path in made.items():
        print(f"{kind}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
