"""The mosaic: one JPEG grid of every enabled camera's latest frame, for `P/mosaic` and the
centre's screen.

Cheap enough to leave on for 24 cameras: a camera worker converts a frame to a small
colour tile (one swscale call) only when the mosaic asked for one,
once per `mosaic.interval`, with the camera's privacy masks blacked out right there, so
no unmasked copy is ever kept. Composing and encoding the grid happens once per interval.

Each tile is labelled with the camera's name, state and the frame's time. A camera that
is not streaming is a grey tile with its state and error under a red bar; a camera
whose `share` is `events` is a "private" tile with its name and state; a `share: none`
camera is an anonymous "private" tile (SPEC: nothing about it but its state in stats
and health). Which cameras may show a picture is the egress's word, not the caller's.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import av
import cv2
import numpy as np
from av.video.reformatter import VideoReformatter

from edge import jpeg
from edge.config import CameraConfig
from edge.masks import polygon_mask

TILE_W, TILE_H = 320, 180  # the picture; 16:9, other shapes are letterboxed
BAR_H = 40  # the label under it
HEADER_H = 28  # box id and time across the top
JPEG_QUALITY = 75
FONT = cv2.FONT_HERSHEY_SIMPLEX

# BGR
BLACK = (0, 0, 0)
WHITE = (255, 255, 255)
GREY = (96, 96, 96)
PRIVATE = (48, 40, 40)
BAR_OK = (32, 32, 32)
BAR_DOWN = (0, 0, 200)  # red: reconnecting, failed
BAR_WAIT = (0, 110, 170)  # amber: starting, no frame yet
DOWN_STATES = frozenset({"reconnecting", "failed"})


def grid(count: int) -> tuple[int, int]:
    """(columns, rows) for `count` tiles: wider than high, as a screen is (24 -> 6 x 4)."""
    if count <= 0:
        return 1, 1
    cols = min(count, math.ceil(math.sqrt(count * 1.5)))
    return cols, math.ceil(count / cols)


def tile_rect(index: int, count: int) -> tuple[int, int, int, int]:
    """(x, y, w, h) of tile `index` (picture and label bar) in a mosaic of `count` tiles."""
    cols, _rows = grid(count)
    row, col = divmod(index, cols)
    return col * TILE_W, HEADER_H + row * (TILE_H + BAR_H), TILE_W, TILE_H + BAR_H


def mosaic_size(count: int) -> tuple[int, int]:
    """(width, height) in pixels."""
    cols, rows = grid(count)
    return cols * TILE_W, HEADER_H + rows * (TILE_H + BAR_H)


@dataclass(frozen=True, slots=True)
class Frame:
    """A camera's latest tile picture (BGR, masks applied) and when it was decoded (epoch s)."""

    image: np.ndarray
    time: float


class TileGrabber:
    """Turns a decoded frame into a tile picture; one per camera worker, used in its thread."""

    def __init__(self, masks: Sequence[Sequence[Sequence[float]]] = ()) -> None:
        self._masks = [list(map(list, poly)) for poly in masks]
        self._reformatter = VideoReformatter()
        self._mask_cache: tuple[tuple[int, int], np.ndarray] | None = None

    def grab(self, frame: av.VideoFrame) -> Frame:
        scale = min(TILE_W / frame.width, TILE_H / frame.height)
        width = max(2, round(frame.width * scale / 2) * 2)
        height = max(2, round(frame.height * scale / 2) * 2)
        image = self._reformatter.reformat(frame, width=width, height=height, format="bgr24").to_ndarray()
        if self._masks:
            if self._mask_cache is None or self._mask_cache[0] != (width, height):
                self._mask_cache = ((width, height), polygon_mask(self._masks, width, height))
            image[self._mask_cache[1]] = 0
        return Frame(image, time.time())


@dataclass(frozen=True, slots=True)
class Tile:
    """What one tile shows. `name` None: an anonymous private tile (share none)."""

    name: str | None
    state: str
    error: str | None = None
    frame: Frame | None = None
    private: bool = False


class Consent(Protocol):
    """What the mosaic asks the egress (edge/egress.py)."""

    def images_allowed(self, camera: str) -> bool: ...
    def may_name(self, camera: str) -> bool: ...


def tiles_for(
    cameras: Mapping[str, CameraConfig],
    states: Mapping[str, tuple[str, str | None]],
    frames: Mapping[str, Frame | None],
    consent: Consent,
) -> list[Tile]:
    """One tile per enabled camera, in config order. `states`: camera -> (state, error);
    `frames`: camera -> its latest tile picture. A picture is used only where `consent`
    allows images; a camera it may not name gets an anonymous private tile."""
    tiles = []
    for cam_id, cam in cameras.items():
        if not cam.enabled:
            continue
        state, error = states.get(cam_id, ("starting", None))
        if not consent.may_name(cam_id):
            tiles.append(Tile(None, "private", private=True))
            continue
        images = consent.images_allowed(cam_id)
        frame = frames.get(cam_id) if images else None
        tiles.append(Tile(cam.name or cam_id, state, error, frame, private=not images))
    return tiles


def _ascii(text: str) -> str:
    """Hershey fonts draw ASCII only."""
    return text.encode("ascii", errors="replace").decode()


def _fit(text: str, scale: float, width: int, thickness: int = 1) -> str:
    text = _ascii(text)
    while text and cv2.getTextSize(text, FONT, scale, thickness)[0][0] > width:
        text = text[:-2] + "~" if len(text) > 2 else ""
    return text


def _wrap(text: str, scale: float, width: int, lines: int) -> list[str]:
    out: list[str] = []
    words = _ascii(text).split()
    while words and len(out) < lines:
        line = words.pop(0)
        while words and cv2.getTextSize(f"{line} {words[0]}", FONT, scale, 1)[0][0] <= width:
            line += " " + words.pop(0)
        out.append(_fit(line, scale, width))
    return out


def _paint(view: np.ndarray, colour: tuple[int, int, int]) -> None:
    """Fill a view of the mosaic with one colour (cv2: NumPy broadcasting a colour into
    a strided view is several times slower; docs/PERFORMANCE.md "Measured facts")."""
    cv2.rectangle(view, (0, 0), (view.shape[1] - 1, view.shape[0] - 1), colour, -1)


def _centred(canvas: np.ndarray, text: str, cy: int, scale: float, thickness: int = 1) -> None:
    text = _fit(text, scale, canvas.shape[1] - 12, thickness)
    (w, h), _ = cv2.getTextSize(text, FONT, scale, thickness)
    cv2.putText(canvas, text, ((canvas.shape[1] - w) // 2, cy + h // 2), FONT, scale, WHITE, thickness, cv2.LINE_AA)


def _clock(t: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(t))


def draw_tile(canvas: np.ndarray, tile: Tile) -> None:
    """Draw `tile` into `canvas` (a TILE_H + BAR_H by TILE_W view of the mosaic)."""
    picture, bar = canvas[:TILE_H], canvas[TILE_H:]
    down = tile.state in DOWN_STATES
    if tile.private:
        _paint(picture, PRIVATE)
        _centred(picture, "private", TILE_H // 2, 1.0, 2)
    elif down or tile.frame is None:
        _paint(picture, GREY)
        _centred(picture, tile.state, TILE_H // 3, 0.9, 2)
        detail = tile.error if down and tile.error else "waiting for a frame" if not down else ""
        for i, line in enumerate(_wrap(detail, 0.45, TILE_W - 16, 3)):
            cv2.putText(picture, line, (8, TILE_H // 2 + 12 + 18 * i), FONT, 0.45, WHITE, 1, cv2.LINE_AA)
    else:
        image = tile.frame.image
        h, w = image.shape[:2]
        if (h, w) != (TILE_H, TILE_W):
            _paint(picture, BLACK)
        y, x = (TILE_H - h) // 2, (TILE_W - w) // 2
        picture[y : y + h, x : x + w] = image
    if tile.name is None:
        _paint(bar, BAR_OK)
        return
    _paint(bar, BAR_DOWN if down else BAR_OK if tile.state == "streaming" else BAR_WAIT)
    cv2.putText(bar, _fit(tile.name, 0.5, TILE_W - 12), (6, 16), FONT, 0.5, WHITE, 1, cv2.LINE_AA)
    status = tile.state
    if tile.frame is not None and not tile.private:
        status += f"  {'last frame ' if down else ''}{_clock(tile.frame.time)}"
    cv2.putText(bar, _fit(status, 0.45, TILE_W - 12), (6, 34), FONT, 0.45, WHITE, 1, cv2.LINE_AA)
    cv2.rectangle(canvas, (0, 0), (TILE_W - 1, TILE_H + BAR_H - 1), BLACK, 1)


def compose(tiles: Sequence[Tile], title: str, now: float | None = None) -> np.ndarray:
    """The mosaic picture (BGR): a header line, then one tile per entry, in order."""
    width, height = mosaic_size(len(tiles))
    canvas = np.full((height, width, 3), 16, np.uint8)
    header = f"{title}  {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(now or time.time()))}"
    cv2.putText(canvas, _fit(header, 0.6, width - 12), (6, 20), FONT, 0.6, WHITE, 1, cv2.LINE_AA)
    for index, tile in enumerate(tiles):
        x, y, w, h = tile_rect(index, len(tiles))
        draw_tile(canvas[y : y + h, x : x + w], tile)
    return canvas


def encode(image: np.ndarray, quality: int = JPEG_QUALITY) -> bytes:
    return jpeg.encode(image, quality)


@dataclass
class MosaicCost:
    """CPU seconds spent on the mosaic, for stats and the benchmark."""

    made: int = 0
    compose_cpu_s: float = 0.0
    bytes: int = 0

    def as_dict(self) -> dict[str, object]:
        return {"made": self.made, "compose_cpu_s": round(self.compose_cpu_s, 4), "bytes": self.bytes}


def make_jpeg(
    tiles: Sequence[Tile], title: str, cost: MosaicCost, max_bytes: int | None = None
) -> tuple[bytes, bytes | None]:
    """Compose and encode: the page's JPEG, and the one for MQTT under `max_bytes` (the
    broker's limit: lower quality, then smaller; the same bytes when they fit, None when
    nothing fits). The centre's screen keeps the full quality. Adds the CPU time it took
    (this thread's) to `cost`; `cost.bytes` is what the broker gets."""
    started = time.thread_time()
    image = compose(tiles, title)
    page = jpeg.encode(image, JPEG_QUALITY)
    fitted = jpeg.encode_under(image, JPEG_QUALITY, max_bytes, encoded=page)
    cost.compose_cpu_s += time.thread_time() - started
    cost.made += 1
    cost.bytes = len(fitted or b"")
    return page, fitted
