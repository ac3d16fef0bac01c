"""Labelled clips: video files decoded the way the camera worker decodes, plus labels."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from edge.camera import luma_view
from edge.source import decode, select_streams


@dataclass
class LabelledClip:
    name: str
    fps: float
    frames: list[np.ndarray]  # luma planes (copies: the decoder reuses its buffers)
    labels: np.ndarray  # int8 per frame: 1 motion, 0 none, -1 ignore


def read_labels(path: Path) -> np.ndarray:
    with path.open() as handle:
        return np.array([int(row["label"]) for row in csv.DictReader(handle)], dtype=np.int8)


def decode_luma(path: Path) -> Iterator[tuple[float, np.ndarray]]:
    """(time, luma) per frame, through the daemon's own decode path."""
    with av.open(str(path)) as container:
        video, _ = select_streams(container)
        for packet in container.demux(video):
            for frame in decode(packet):
                t = float(frame.pts * video.time_base) if frame.pts is not None else 0.0
                yield t, luma_view(frame).copy()


def load_clip(path: Path) -> LabelledClip:
    frames = [luma for _, luma in decode_luma(path)]
    labels = read_labels(path.with_suffix(".labels.csv"))
    with av.open(str(path)) as container:
        fps = float(container.streams.video[0].average_rate or 25)
    n = min(len(frames), len(labels))
    return LabelledClip(path.stem, fps, frames[:n], labels[:n])
