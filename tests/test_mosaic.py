"""The mosaic and privacy masks: tiles drawn as the camera's state and share say, masks
black in every image; end to end, a JPEG with a tile per camera on `P/mosaic` every
interval, a camera taken down shows as down in the next one, and a masked walker
raises no event while an unmasked one does, its thumbnail black where the mask is."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import av
import cv2
import numpy as np

from edge.config import CameraConfig
from edge.mosaic import BAR_H, TILE_H, TILE_W, Tile, TileGrabber, compose, grid, mosaic_size, tile_rect, tiles_for
from harness.broker import Mosquitto
from harness.camsim import CameraSimulator
from harness.daemon import DaemonProcess, write_config
from harness.mqtt_capture import MqttCapture, Received

P = "nvr/box-1"
WALKER_BAND = [[0, 0.2], [1, 0.2], [1, 0.85], [0, 0.85]]  # the walkers of the generated clip: y 0.33..0.72
TOP_BAND = [[0, 0], [1, 0], [1, 0.25], [0, 0.25]]


def _frame(width: int = 640, height: int = 360, value: int = 180) -> av.VideoFrame:
    rng = np.random.default_rng(1)
    image = np.clip(rng.normal(value, 30, (height, width, 3)), 0, 255).astype(np.uint8)
    return av.VideoFrame.from_ndarray(image, format="bgr24").reformat(format="yuv420p")


def _decode(payload: bytes) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(payload, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None, "not a JPEG"
    return image


def _picture(mosaic: np.ndarray, index: int, count: int) -> np.ndarray:
    x, y, _w, _h = tile_rect(index, count)
    return mosaic[y : y + TILE_H, x : x + TILE_W]


def _bar(mosaic: np.ndarray, index: int, count: int) -> np.ndarray:
    """The right end of the tile's label bar, where no text is."""
    x, y, _w, _h = tile_rect(index, count)
    return mosaic[y + TILE_H + 4 : y + TILE_H + BAR_H - 4, x + TILE_W - 40 : x + TILE_W - 8]


def flat_share(tile: np.ndarray) -> float:
    """The share of the tile's pixels that have its most common colour (JPEG noise aside):
    near 1 for a plain tile with a word on it, near 0 for a picture."""
    pixels = (tile.reshape(-1, 3) // 8).astype(np.int32)
    keys = pixels[:, 0] * 1024 + pixels[:, 1] * 32 + pixels[:, 2]
    return float(np.bincount(keys).max() / len(keys))


def _red(bar: np.ndarray) -> bool:
    b, g, r = np.median(bar.reshape(-1, 3), axis=0)
    return r > 150 and g < 70 and b < 70


# ----------------------------------------------------------------------------------
# Pure parts
# ----------------------------------------------------------------------------------


def test_grid_is_wider_than_high_and_tiles_do_not_overlap() -> None:
    assert grid(1) == (1, 1) and grid(2) == (2, 1) and grid(24) == (6, 4)
    for count in (1, 2, 3, 5, 24, 30):
        cols, rows = grid(count)
        assert cols * rows >= count and cols >= rows
        width, height = mosaic_size(count)
        rects = [tile_rect(i, count) for i in range(count)]
        assert len(set(rects)) == count
        assert all(x + w <= width and y + h <= height for x, y, w, h in rects)


def test_tiles_show_the_picture_the_state_or_private() -> None:
    picture = TileGrabber().grab(_frame())
    tiles = [
        Tile("Front gate", "streaming", frame=picture),
        Tile("Lane", "reconnecting", error="could not connect"),
        Tile("Shop", "streaming", private=True),
        Tile(None, "private", private=True),
    ]
    mosaic = compose(tiles, "box-1")
    assert mosaic.shape[:2] == mosaic_size(4)[::-1]
    live, down, shop, anonymous = (_picture(mosaic, i, 4) for i in range(4))
    assert live.std() > 20  # the frame
    assert np.abs(down.astype(int) - 96).mean() < 20 and _red(_bar(mosaic, 1, 4))  # grey, red bar
    assert not _red(_bar(mosaic, 0, 4)) and not _red(_bar(mosaic, 2, 4))
    assert flat_share(live) < 0.1
    for private in (shop, anonymous):
        assert flat_share(private) > 0.8  # one colour and the word "private": no picture
    # The anonymous tile's bar carries no name: one flat colour.
    x, y, w, h = tile_rect(3, 4)
    assert mosaic[y + TILE_H + 1 : y + h - 1, x + 1 : x + w - 1].std() < 1


def test_the_grab_blacks_out_privacy_masks() -> None:
    tile = TileGrabber([TOP_BAND]).grab(_frame())
    h = tile.image.shape[0]
    assert tile.image.shape[:2] == (TILE_H, TILE_W)
    assert tile.image[: int(h * 0.24)].max() == 0
    assert tile.image[int(h * 0.27) :].mean() > 100
    # Another shape is letterboxed into the tile, the mask still in frame coordinates.
    square = TileGrabber([TOP_BAND]).grab(_frame(480, 480))
    assert square.image.shape[:2] == (TILE_H, TILE_H)
    assert square.image[: int(TILE_H * 0.24)].max() == 0


class _Consent:
    def __init__(self, shares: dict[str, str]) -> None:
        self.shares = shares

    def images_allowed(self, camera: str) -> bool:
        return self.shares[camera] == "full"

    def may_name(self, camera: str) -> bool:
        return self.shares[camera] != "none"


def test_tiles_for_asks_the_consent_and_skips_disabled_cameras() -> None:
    url = "rtsp://10.0.0.1/a"
    cameras = {
        "a": CameraConfig(url=url, name="Front"),
        "b": CameraConfig(url=url, share="events"),
        "c": CameraConfig(url=url, share="none", name="Secret garden"),
        "d": CameraConfig(url=url, enabled=False),
    }
    frame = TileGrabber().grab(_frame())
    frames = {"a": frame, "b": frame, "c": frame}
    states = {"a": ("streaming", None), "b": ("failed", "authentication failed (401)"), "c": ("streaming", None)}
    tiles = tiles_for(cameras, states, frames, _Consent({"a": "full", "b": "events", "c": "none", "d": "full"}))
    assert tiles == [
        Tile("Front", "streaming", None, frame),
        Tile("b", "failed", "authentication failed (401)", None, private=True),
        Tile(None, "private", private=True),
    ]


# ----------------------------------------------------------------------------------
# The real daemon
# ----------------------------------------------------------------------------------


def _mosaics(capture: MqttCapture) -> list[Received]:
    return capture.on_topic(f"{P}/mosaic")


def test_mosaic_every_interval_down_camera_and_privacy_masks(
    tmp_path: Path, broker: Mosquitto, cameras: CameraSimulator, clips: dict[str, Path]
) -> None:
    interval = 2.0
    with CameraSimulator({"spare": clips["static"]}) as spare:
        config = write_config(
            tmp_path / "edge.yaml",
            box_id="box-1",
            data_dir=tmp_path / "data",
            mqtt_port=broker.port,
            cameras={
                "open": {"url": cameras.urls["moving"], "privacy_masks": [TOP_BAND]},
                "masked": {"url": cameras.urls["moving"], "privacy_masks": [WALKER_BAND]},
                "spare": {"url": spare.urls["spare"]},
            },
            stats_interval=1.0,
            extra={"events": {"end_after": 2.0}, "mosaic": {"interval": interval}},
        )
        with MqttCapture(broker.host, broker.port, (f"{P}/#",)) as capture, DaemonProcess(config) as daemon:
            # All three streaming, each tile showing its picture.
            first = capture.wait_for(
                lambda m: m.topic == f"{P}/mosaic" and _all_live(_decode(m.payload)),
                timeout=40,
            )[-1]
            assert first.qos == 0  # retained: see the newcomer below (a live subscriber gets retain=0)
            with MqttCapture(broker.host, broker.port, (f"{P}/mosaic",)) as late:  # retained: a newcomer gets one
                assert late.wait_for(lambda m: m.retain, timeout=5)
            image = _decode(first.payload)
            assert image.shape[:2] == mosaic_size(3)[::-1]
            masked = _picture(image, 1, 3)
            assert masked[int(TILE_H * 0.25) : int(TILE_H * 0.8)].mean() < 8  # the walkers' band: black
            assert masked[: int(TILE_H * 0.15)].mean() > 40  # the rest is the scene
            assert _picture(image, 0, 3)[: int(TILE_H * 0.2)].mean() < 8

            # The spare camera goes down: the next mosaic shows it.
            spare.stop()
            noticed = capture.wait_for(
                lambda m: m.topic == f"{P}/stats" and json.loads(m.payload)["cameras"]["spare"]["state"] != "streaming",
                timeout=15,
            )[0].at
            after = capture.wait_for(lambda m: m.topic == f"{P}/mosaic" and m.at > noticed + 0.2, timeout=10)[0]
            assert after.at - noticed <= interval + 1.0
            down = _decode(after.payload)
            assert _red(_bar(down, 2, 3)) and not _red(_bar(down, 0, 3))
            assert np.abs(_picture(down, 2, 3).astype(int) - 96).mean() < 20  # grey, with state and error

            # Motion outside the mask: an event whose thumbnail is black where the mask is.
            end = capture.wait_for(
                lambda m: m.topic == f"{P}/events" and json.loads(m.payload)["type"] == "end", timeout=90
            )[0]
            event = json.loads(end.payload)
            assert event["camera"] == "open"
            start = next(
                json.loads(m.payload)
                for m in capture.on_topic(f"{P}/events")
                if json.loads(m.payload)["id"] == event["id"] and json.loads(m.payload)["type"] == "start"
            )
            assert start["thumbnail"]
            thumb = _decode(
                capture.wait_for(lambda m: m.topic == f"{P}/events/{event['id']}/thumbnail", timeout=5)[0].payload
            )
            h = thumb.shape[0]
            assert thumb[: int(h * 0.23)].mean() < 8 and thumb[int(h * 0.3) :].mean() > 40
        stamps = [m.at for m in _mosaics(capture)]
    # The same walkers crossed the masked camera's view: no event there, its motion never ON.
    events = [json.loads(m.payload) for m in capture.on_topic(f"{P}/events")]
    assert [e for e in events if e["camera"] == "masked"] == []
    assert "ON" not in [m.text for m in capture.on_topic(f"{P}/cameras/masked/motion")]
    gaps = [b - a for a, b in zip(stamps, stamps[1:], strict=False)]
    assert len(gaps) >= 5 and abs(statistics.median(gaps) - interval) < 0.5, gaps
    assert daemon.logs() and not [line for line in daemon.logs() if line.get("event") == "mosaic_failed"]


def _all_live(image: np.ndarray) -> bool:
    """Every tile shows its scene (the bottom of the frame, which no mask covers): bright
    and textured there, not the plain grey tile of a camera whose first picture has not
    been grabbed yet (also brighter than 40; it passed for live once in CI)."""
    bottoms = [_picture(image, i, 3)[int(TILE_H * 0.88) :] for i in range(3)]
    return all(bottom.mean() > 40 and flat_share(bottom) < 0.5 for bottom in bottoms)
