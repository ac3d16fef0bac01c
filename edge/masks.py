"""Polygons in normalised frame coordinates -> pixel masks (privacy masks, zones)."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np


def polygon_mask(polygons: Sequence[Sequence[Sequence[float]]], width: int, height: int) -> np.ndarray:
    """Boolean HxW array, True inside any polygon; points are [x, y] in 0..1."""
    canvas = np.zeros((height, width), np.uint8)
    shapes = [
        np.array([[round(x * (width - 1)), round(y * (height - 1))] for x, y in poly], np.int32)
        for poly in polygons
        if len(poly) >= 3
    ]
    if shapes:
        cv2.fillPoly(canvas, shapes, 1)
    return canvas.astype(bool)
