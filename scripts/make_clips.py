"""Generate deterministic synthetic H.264 test scenes with known ground truth.

`walkers`: a textured street with mild sensor noise, people-sized figures crossing
at walking speed with idle spells in between; `static`: the same street, nobody.
Each clip gets `<name>.labels.csv` (frame,time_s,label as in the shared clips) and a
`<name>.json` with its parameters, so an unchanged clip is not made again.
Run with the project's virtualenv: python scripts/make_clips.py --out DIR
"""

from __future__ import annotations

import argparse
import json
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

# (start, end) of each figure's crossing as fractions of the clip, for 60 s:
# idle 0-8 s, one walker 8-16 s, idle 16-30 s, two walkers 30-40 s, idle 40-60 s.
WALKERS = [(8 / 60, 16 / 60, 1), (30 / 60, 40 / 60, 1), (31 / 60, 39 / 60, -1)]


def _background(width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """A colour street: gradients, a road band and blocky texture (not flat)."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    luma = 70 + 60 * (xx / width) + 25 * np.sin(yy / (height / 9))
    luma[int(height * 0.55) : int(height * 0.85)] -= 25  # the road
    block = max(4, height // 24)
    texture = rng.integers(-18, 18, (height // block + 1, width // block + 1)).astype(np.float32)
    luma += texture.repeat(block, 0).repeat(block, 1)[:height, :width]
    rgb = np.stack([luma * 0.95, luma, luma * 1.05], axis=-1)
    return np.clip(rgb, 0, 255)


def _figure_boxes(kind: str, n: int, total: int, width: int, height: int) -> list[tuple[int, int, int, int]]:
    if kind != "walkers":
        return []
    fw, fh = max(4, height // 9), max(8, height // 3)
    boxes = []
    for start, end, direction in WALKERS:
        a, b = start * total, end * total
        if a <= n < b:
            progress = (n - a) / (b - a)
            x = -fw + progress * (width + fw) if direction > 0 else width - progress * (width + fw)
            y = int(height * 0.5) + (fh // 6 if direction < 0 else 0)
            boxes.append((int(x), y - fh // 2, fw, fh))
    return boxes


def make_clip(
    path: Path, kind: str, width: int = 640, height: int = 360, fps: int = 5, seconds: float = 60, seed: int = 0
) -> Path:
    """Encode one clip and its labels; GOP of 2 s, no B-frames (like IP cameras)."""
    rng = np.random.default_rng(seed)
    bg = _background(width, height, rng)
    total = int(round(seconds * fps))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.mp4")
    labels = ["frame,time_s,label"]
    with av.open(str(tmp), "w", options={"movflags": "+faststart"}) as out:
        stream = out.add_stream("libx264", rate=Fraction(fps))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.time_base = Fraction(1, fps)
        gop = 2 * fps
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
            img = bg + rng.normal(0, 2.0, (height, width, 1)).astype(np.float32)
            boxes = _figure_boxes(kind, n, total, width, height)
            for x, y, w, h in boxes:
                x0, x1 = max(0, x), min(width, x + w)
                if x1 > x0:
                    img[y : y + h, x0:x1] = (40, 50, 160)  # a figure in a red-ish coat
                    img[y : y + h // 5, x0:x1] = (150, 170, 200)  # head
            frame = av.VideoFrame.from_ndarray(np.clip(img, 0, 255).astype(np.uint8), format="rgb24")
            frame.pts = n
            frame.time_base = Fraction(1, fps)
            out.mux(stream.encode(frame))
            visible = any(min(width, x + w) > max(0, x) for x, _, w, _ in boxes)
            labels.append(f"{n},{n / fps:.6f},{1 if visible else 0}")
        out.mux(stream.encode(None))
    tmp.replace(path)
    path.with_suffix(".labels.csv").write_text("\n".join(labels) + "\n")
    return path


def ensure_clips(out_dir: Path, kinds: tuple[str, ...] = ("walkers", "static"), **params: float) -> dict[str, Path]:
    """Make each kind once per parameter set; returns {kind: path}."""
    out_dir.mkdir(parents=True, exist_ok=True)
    made = {}
    for kind in kinds:
        wanted = {"kind": kind, "width": 640, "height": 360, "fps": 5, "seconds": 60, "seed": 0, "version": 1}
        wanted.update(params)
        path = out_dir / f"{kind}.mp4"
        meta = path.with_suffix(".json")
        if not (path.exists() and meta.exists() and json.loads(meta.read_text()) == wanted):
            args = {k: v for k, v in wanted.items() if k not in ("kind", "version")}
            make_clip(path, kind, **args)
            meta.write_text(json.dumps(wanted))
        made[kind] = path
    return made


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=360)
    parser.add_argument("--fps", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--kinds", default="walkers,static")
    args = parser.parse_args()
    made = ensure_clips(
        args.out, tuple(args.kinds.split(",")), width=args.width, height=args.height, fps=args.fps, seconds=args.seconds
    )
    for kind, path in made.items():
        print(f"{kind}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
