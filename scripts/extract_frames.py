"""Make the real frames shipped in edge/evaluation/data/ (run once; the outputs are committed).

    .venv/bin/python scripts/extract_frames.py --clips ../shared/clips --vtest PATH/TO/vtest.avi

`vtest.avi` comes from Debian's opencv-doc package:
    apt-get download opencv-doc && dpkg -x opencv-doc_4.6.0+dfsg-12_all.deb x
    -> x/usr/share/doc/opencv-doc/examples/data/vtest.avi
Every output is 8-bit grey (BT.601 luma through cv2.cvtColor). See edge/evaluation/data/README.md
for each file's source, licence and attribution.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

OUT = Path(__file__).resolve().parents[1] / "edge" / "evaluation" / "data"
SIZE = (640, 360)  # width, height of the scene frames


def read_grey(path: Path, wanted: set[int] | None = None) -> dict[int, np.ndarray]:
    """Frames of a video as grey images, by frame number (all of them when `wanted` is None)."""
    cap = cv2.VideoCapture(str(path))
    out: dict[int, np.ndarray] = {}
    i = 0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        if wanted is None or i in wanted:
            out[i] = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        i += 1
    cap.release()
    return out


def to_scene(grey: np.ndarray) -> np.ndarray:
    """A 16:9 centre crop scaled to 640x360 (INTER_AREA: no aliasing)."""
    h, w = grey.shape
    ch = min(h, round(w * 9 / 16))
    top = (h - ch) // 2
    return cv2.resize(grey[top : top + ch], SIZE, interpolation=cv2.INTER_AREA)


def street(vtest: Path) -> np.ndarray:
    """vtest.avi (768x576) has people in every frame: the median of every 4th frame is the empty street."""
    frames = read_grey(vtest)
    median = np.median(np.stack([frames[i] for i in sorted(frames)[::4]]), axis=0).astype(np.uint8)
    return to_scene(median)


def lot(clips: Path) -> np.ndarray:
    """parking-cars.mp4 frame 150: the empty lot (labelled 0), 768x432 scaled to 640x360."""
    return to_scene(read_grey(clips / "parking-cars.mp4", {150})[150])


def room(clips: Path) -> np.ndarray:
    """office-people.mp4 frame 20: the empty room (labelled 0), a white wall for headlights at night."""
    return to_scene(read_grey(clips / "office-people.mp4", {20})[20])


def foliage(clips: Path) -> np.ndarray:
    """tree-window.mp4 frame 60 (tree only), columns 45-264: leaves without the window frame or the flare."""
    return read_grey(clips / "tree-window.mp4", {60})[60][:, 45:265].copy()


def main() -> None:
    parser = argparse.ArgumentParser(description="Make the real frames shipped in edge/evaluation/data/.")
    parser.add_argument("--clips", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "clips")
    parser.add_argument("--vtest", type=Path, required=True)
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    jpeg = [cv2.IMWRITE_JPEG_QUALITY, 90]
    cv2.imwrite(str(OUT / "street.jpg"), street(args.vtest), jpeg)
    cv2.imwrite(str(OUT / "lot.jpg"), lot(args.clips), jpeg)
    cv2.imwrite(str(OUT / "room.jpg"), room(args.clips), jpeg)
    cv2.imwrite(str(OUT / "foliage.png"), foliage(args.clips))
    for path in sorted(OUT.glob("*.*g")):
        print(path.name, path.stat().st_size)


if __name__ == "__main__":
    main()
