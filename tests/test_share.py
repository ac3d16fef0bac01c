"""Residents' consent (`share`): the egress refuses what a camera's share forbids, and a
real daemon run with a `full`, an `events` and a `none` camera lets out nothing else."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.egress import Egress, is_image
from edge.messages import Messages
from edge.mosaic import TILE_H, mosaic_size, tile_rect
from edge.outbox import Outbox
from edge.topics import Topics
from harness.broker import Mosquitto
from harness.camsim import CameraSimulator
from harness.daemon import DaemonProcess, run_cli, write_config
from harness.mqtt_capture import MqttCapture, Received
from tests.consent import ConsentScan, assert_consent_kept
from tests.test_mosaic import flat_share

P = "nvr/box-1"
JPEG = cv2.imencode(".jpg", np.full((8, 8, 3), 200, np.uint8))[1].tobytes()
T = Topics("nvr", "box-1")
M = Messages(T)
SHARES = {"gate": "none", "gate-1": "full", "lane": "events"}


class _Link:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes]] = []

    def wake(self) -> None:
        pass

    async def publish_volatile(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> bool:
        self.sent.append((topic, payload))
        return True


@pytest.fixture
def egress(tmp_path: Path) -> Egress:
    return Egress(Outbox(tmp_path / "outbox.sqlite"), _Link(), SHARES)


def _event(camera: str, event_id: str | None = None) -> bytes:
    return json.dumps({"id": event_id or f"{camera}-1764345600123", "camera": camera, "type": "start"}).encode()


def _start(camera: str) -> dict[str, object]:
    return json.loads(_event(camera))


# -- the egress: one lookup of (the camera's share, the message's kind) ------------------
TYPED_ALLOWED = [
    M.snapshot("gate-1", JPEG),
    M.thumbnail("gate-1", "gate-1-1764345600123", JPEG),
    M.motion("lane", True),
    M.event(_start("lane")),
    M.event(_start("gate-1")),
    M.health({"checks": {"cameras": {"gate": "ok"}}}),
    M.stats({"cameras": {"gate": {"state": "streaming"}}}),
    M.mosaic(JPEG),
    Messages.discovery("homeassistant/sensor/nvr-edge-box-1/lane_state/config", b"{}", "lane"),
    Messages.discovery("homeassistant/sensor/nvr-edge-box-1/health/config", b"{}", None),
]
TYPED_REFUSED = [
    M.snapshot("lane", JPEG),  # share events: never an image
    M.thumbnail("lane", "lane-1764345600123", JPEG),
    M.snapshot("gate", JPEG),
    M.thumbnail("gate", "gate-1764345600123", JPEG),
    M.thumbnail("nosuch", "nosuch-1764345600123", JPEG),  # unknown camera: no consent
    M.motion("gate", False),  # share none: not even its motion
    M.event(_start("gate")),
    M.event(_start("nosuch")),
    Messages.discovery("homeassistant/sensor/nvr-edge-box-1/gate_state/config", b"{}", "gate"),
]


@pytest.mark.parametrize("message", TYPED_ALLOWED, ids=lambda m: m.topic)
def test_egress_lets_out_what_the_shares_allow(egress: Egress, message) -> None:
    assert egress.refusal(message) is None


@pytest.mark.parametrize("message", TYPED_REFUSED, ids=lambda m: m.topic)
def test_egress_refuses_what_a_share_forbids(egress: Egress, message) -> None:
    assert egress.refusal(message) is not None
    assert egress.put(message) is False
    assert asyncio.run(egress.publish_volatile(message)) is False
    assert egress.refused == 2


def test_a_camera_kind_without_a_camera_is_refused(egress: Egress) -> None:
    from dataclasses import replace

    assert egress.refusal(replace(M.snapshot("gate-1", JPEG), camera=None)) is not None


def test_nothing_refused_reaches_the_outbox_and_withdrawn_consent_purges_it(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox.sqlite")
    egress = Egress(outbox, _Link(), {"gate-1": "full", "lane": "full"})
    assert egress.put(M.thumbnail("lane", "lane-1764345600123", JPEG))
    assert egress.put(M.snapshot("lane", JPEG))
    assert egress.put(M.event(_start("lane")))
    assert egress.put(M.snapshot("gate-1", JPEG))
    assert outbox.pending == 4
    # The installer changes lane to `events` while the broker is away: its images stay home.
    egress.update({"lane": "events"})
    assert egress.purge().result() == 2
    assert sorted(m.topic for m in outbox.peek(10)) == sorted([T.events, T.snapshot("gate-1")])
    # ... then to `none`: its event goes too; a camera no longer in the config keeps its last share.
    egress.update({"lane": "none"})
    assert egress.purge().result() == 1
    egress.update({})
    assert egress.share("lane") == "none" and egress.share("gate-1") == "full"
    assert [m.topic for m in outbox.peek(10)] == [T.snapshot("gate-1")]


# -- the test-side scan (tests/consent.py): what reached a broker, read from outside -------
SCANNED_ALLOWED = [
    (T.snapshot("gate-1"), JPEG),
    (T.thumbnail("gate-1-1764345600123"), JPEG),
    (T.motion("lane"), b"ON"),
    (T.events, _event("lane")),
    (T.events, _event("gate-1")),  # "gate-1" is not camera "gate"
    (T.stats, b'{"cameras":{"gate":{"state":"streaming"}}}'),
    (T.health, b'{"checks":{"cameras":{"gate":"ok"}}}'),
    (T.mosaic, JPEG),
    (T.status, b"online"),
    ("homeassistant/sensor/nvr-edge-box-1/lane_state/config", b'{"name":"Back gate state","x":"cameras[\'lane\']"}'),
    ("homeassistant/sensor/nvr-edge-box-1/gate_state/config", b""),  # deleting an entity discloses nothing
]
SCANNED_REFUSED = [
    (T.snapshot("lane"), JPEG),
    (T.thumbnail("lane-1764345600123"), JPEG),
    (T.snapshot("gate"), JPEG),
    (T.thumbnail("gate-1764345600123"), JPEG),
    (T.thumbnail("nosuch-1764345600123"), JPEG),
    (T.motion("gate"), b"OFF"),
    (T.events, _event("gate")),
    (T.events, _event("nosuch")),
    (T.events, b"not json"),
    (T.stats, JPEG),  # images only where images go
    (f"{P}/cameras/gate-1/motion", JPEG),
    ("somewhere/else", b"\x89PNG\r\n\x1a\n...."),
    ("homeassistant/image/nvr-edge-box-1/x/config", b'{"image_topic":"nvr/box-1/cameras/gate/snapshot"}'),
    ("homeassistant/sensor/nvr-edge-box-1/x/config", b'{"value_template":"{{ value_json.cameras[\'gate\'].fps_in }}"}'),
    (T.events, json.dumps({"camera": "gate-1", "note": "gate-1764345600123"}).encode()),  # an event id of gate
]


@pytest.mark.parametrize(("topic", "payload"), SCANNED_ALLOWED)
def test_the_scan_passes_what_the_shares_allow(topic: str, payload: bytes) -> None:
    assert ConsentScan(P, SHARES).refusal(topic, payload) is None


@pytest.mark.parametrize(("topic", "payload"), SCANNED_REFUSED)
def test_the_scan_catches_what_a_share_forbids(topic: str, payload: bytes) -> None:
    assert ConsentScan(P, SHARES).refusal(topic, payload) is not None


def test_is_image_knows_the_formats_by_their_bytes() -> None:
    assert is_image(JPEG)
    assert is_image(cv2.imencode(".png", np.zeros((4, 4), np.uint8))[1].tobytes())
    assert is_image(b"RIFF\x00\x00\x00\x00WEBPVP8 ")
    assert not is_image(b'{"a": 1}') and not is_image(b"")


# ----------------------------------------------------------------------------------
# The real daemon: everything it publishes in a run, checked against the shares
# ----------------------------------------------------------------------------------


def _about(message: Received, camera: str) -> bool:
    """Whether a message is about `camera` by its topic or its JSON payload."""
    if f"/cameras/{camera}/" in message.topic or f"/events/{camera}-" in message.topic:
        return True
    if message.topic == f"{P}/events":
        return json.loads(message.payload)["camera"] == camera
    return False


def test_a_run_lets_out_nothing_a_share_forbids(tmp_path: Path, broker: Mosquitto, cameras: CameraSimulator) -> None:
    """Three cameras on the same moving scene (`full`, `events`, `none`), every way out used:
    events, thumbnails, snapshot, motion, stats, health (asked for), Home Assistant
    discovery and the mosaic. Every message on the broker is then checked."""
    url = cameras.urls["moving"]
    config = write_config(
        tmp_path / "edge.yaml",
        box_id="box-1",
        data_dir=tmp_path / "data",
        mqtt_port=broker.port,
        cameras={
            "open": {"url": url, "share": "full"},
            "lane": {"url": url, "share": "events"},
            "hidden": {"url": url, "share": "none", "name": "Garden"},
        },
        stats_interval=1.0,
        extra={
            "events": {"end_after": 2.0, "update_interval": 1.0},
            "homeassistant": {"discovery": True},
            "mosaic": {"interval": 2},
        },
    )
    with MqttCapture(broker.host, broker.port, ("#",)) as capture:
        daemon = DaemonProcess(config).start()
        try:
            for camera in ("open", "lane"):
                capture.wait_for(
                    lambda m, c=camera: (
                        m.topic == f"{P}/events"
                        and json.loads(m.payload)["camera"] == c
                        and json.loads(m.payload)["type"] == "end"
                    ),
                    timeout=90,
                )
            assert run_cli("health", "--config", str(config), "--timeout", "10").returncode == 0
            capture.wait_for(lambda m: m.topic == f"{P}/mosaic", timeout=10, count=2)
        finally:
            assert daemon.stop() == 0, daemon.log_text()[-3000:]
    messages = capture.snapshot()
    assert_consent_kept(P, {"open": "full", "lane": "events", "hidden": "none"}, messages)
    topics = {m.topic for m in messages}
    assert {f"{P}/stats", f"{P}/health", f"{P}/mosaic"} <= topics
    assert any(t.startswith("homeassistant/") for t in topics)

    # share none: no message about it, no mention of it at all, outside stats and health.
    for message in messages:
        if message.topic in (f"{P}/stats", f"{P}/health"):
            continue
        assert "hidden" not in message.topic
        assert b"hidden" not in message.payload and b"Garden" not in message.payload, message.topic
    stats = [json.loads(m.payload) for m in messages if m.topic == f"{P}/stats"]
    assert stats[-1]["cameras"]["hidden"]["state"] == "streaming"  # its state is allowed, there
    assert stats[-1]["egress"]["refused"] == 0  # no code path even tried to leak

    # share events: its events, no image of it anywhere.
    lane_events = [json.loads(m.payload) for m in messages if m.topic == f"{P}/events" and _about(m, "lane")]
    assert lane_events and not any(e["thumbnail"] for e in lane_events)
    assert not [m for m in messages if _about(m, "lane") and is_image(m.payload)]

    # share full: events with thumbnails and the snapshot.
    open_events = [json.loads(m.payload) for m in messages if m.topic == f"{P}/events" and _about(m, "open")]
    assert any(e["thumbnail"] for e in open_events)
    assert [m for m in messages if m.topic == f"{P}/cameras/open/snapshot" and is_image(m.payload)]

    # Every image on the broker is the full camera's or the mosaic.
    for message in messages:
        if is_image(message.payload):
            assert _about(message, "open") or message.topic == f"{P}/mosaic", message.topic

    # In the mosaic only the full camera's tile is a picture; the others say "private".
    last = [m for m in messages if m.topic == f"{P}/mosaic"][-1]
    mosaic = cv2.imdecode(np.frombuffer(last.payload, np.uint8), cv2.IMREAD_COLOR)
    assert mosaic.shape[:2] == mosaic_size(3)[::-1]
    tiles = [mosaic[y : y + TILE_H, x : x + w] for x, y, w, _h in (tile_rect(i, 3) for i in range(3))]
    assert flat_share(tiles[0]) < 0.3
    assert flat_share(tiles[1]) > 0.8 and flat_share(tiles[2]) > 0.8
