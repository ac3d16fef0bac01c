"""Home Assistant MQTT discovery: payloads carry the fields Home Assistant requires and
point at topics the daemon publishes; the real daemon sends them retained and again
when Home Assistant announces `online`."""

from __future__ import annotations

import json
import re
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from edge.config import ConfigError, parse_config
from edge.discovery import CAMERA_STATES, HEALTH_STATES, discovery_messages, status_topic
from edge.health import RateMeter, health, stats
from edge.status import CameraState, CameraStatus
from edge.topics import Topics
from harness.broker import Mosquitto
from harness.camsim import CameraSimulator
from harness.daemon import DaemonProcess, write_config
from harness.mqtt_capture import MqttCapture, Received
from tests.consent import assert_consent_kept

# Home Assistant's own pattern for discovery topics (homeassistant/components/mqtt/discovery.py).
HA_TOPIC = re.compile(r"(?P<component>\w+)/(?:(?P<node_id>[a-zA-Z0-9_-]+)/)?(?P<object_id>[a-zA-Z0-9_-]+)/config")
# What a template may be here: a path into the JSON payload, optionally rendered as JSON.
TEMPLATE = re.compile(r"\{\{ value_json((?:\.\w+|\['[\w-]+'\])*)( \| tojson)? \}\}")
SNAPSHOT_JPEG = b"\xff\xd8\xff\xe0 a jpeg"

CAMERAS = {
    "gate-1": {"url": "rtsp://u:p@10.0.0.1/a", "name": "Main gate"},  # share full
    "lane-2": {"url": "rtsp://u:p@10.0.0.2/a", "share": "events"},
    "yard-3": {"url": "rtsp://u:p@10.0.0.3/a", "share": "none", "name": "Private yard"},
    "park-4": {"url": "rtsp://u:p@10.0.0.4/a", "enabled": False},
}


def _config(box: str = "box-1", cameras: dict[str, dict[str, Any]] | None = None, **ha: Any):
    doc = {
        "box": {"id": box},
        "mqtt": {"stats_interval": 2},
        "cameras": CAMERAS if cameras is None else cameras,
        "homeassistant": {"discovery": True, **ha},
    }
    return parse_config(json.dumps(doc))


def _messages(config) -> dict[str, dict[str, Any]]:
    topics = Topics(config.mqtt.topic_prefix, config.box.id)
    return {m.topic: json.loads(m.payload) for m in discovery_messages(config, topics)}


def _resolve(template: str, payload: dict[str, Any]) -> Any:
    """Render one of our templates the way Home Assistant would, for the paths they use."""
    match = TEMPLATE.fullmatch(template)
    assert match, template
    value: Any = payload
    for name, key in re.findall(r"\.(\w+)|\['([\w-]+)'\]", match.group(1)):
        value = value[name or key]
    return json.dumps(value) if match.group(2) else value


def _published_topics(config) -> set[str]:
    """Every topic the daemon publishes for this config (edge/topics.py, SPEC section 3)."""
    topics = Topics(config.mqtt.topic_prefix, config.box.id)
    per_camera = {t for cam in config.cameras for t in (topics.motion(cam), topics.snapshot(cam))}
    return {topics.status, topics.stats, topics.health, topics.mosaic, topics.events} | per_camera


# ----------------------------------------------------------------------------------
# The payloads
# ----------------------------------------------------------------------------------


def test_every_config_has_what_home_assistant_requires() -> None:
    config = _config()
    topics = Topics("nvr", "box-1")
    messages = _messages(config)
    assert messages
    for topic, payload in messages.items():
        match = HA_TOPIC.fullmatch(topic.removeprefix("homeassistant/"))
        assert topic.startswith("homeassistant/") and match, topic
        assert match["node_id"] == "nvr-edge-box-1"
        assert payload["unique_id"] and payload["name"]
        device = payload["device"]
        assert device["identifiers"] == ["nvr-edge-box-1"] and device["name"] and device["sw_version"]
        # Availability: the daemon's retained status with its Last Will.
        assert payload["availability_topic"] == topics.status
        assert (payload["payload_available"], payload["payload_not_available"]) == ("online", "offline")
        component = match["component"]
        if component == "binary_sensor":
            assert payload["device_class"] == "motion"
            assert (payload["payload_on"], payload["payload_off"]) == ("ON", "OFF")
            assert payload["state_topic"] == topics.motion(payload["unique_id"].split("_")[2])
        elif component == "sensor":
            assert payload["state_topic"] in (topics.stats, topics.health)
            assert TEMPLATE.fullmatch(payload["value_template"])
            if payload.get("device_class") == "enum":
                assert payload["options"]
        elif component == "image":
            assert payload["image_topic"].endswith("/snapshot") and payload["content_type"] == "image/jpeg"
            assert "url_topic" not in payload  # Home Assistant takes one or the other
        else:
            pytest.fail(f"unexpected component {component}")
    # One device for the whole box: every entity names the same one.
    assert len({json.dumps(p["device"], sort_keys=True) for p in messages.values()}) == 1


def test_share_decides_which_entities_exist() -> None:
    messages = _messages(_config())
    objects = {HA_TOPIC.fullmatch(t.removeprefix("homeassistant/"))["object_id"] for t in messages}
    assert objects == {
        "health",
        "gate-1_motion", "gate-1_state", "gate-1_fps", "gate-1_snapshot",  # full
        "lane-2_motion", "lane-2_state", "lane-2_fps",  # events: no image of it leaves the box
    }  # fmt: skip
    # share: none - not even its id or name is published; a disabled camera publishes nothing to point at.
    everything = json.dumps(messages)
    for absent in ("yard-3", "Private yard", "park-4"):
        assert absent not in everything
    names = {p["name"] for p in messages.values()}
    assert {"Main gate motion", "Main gate snapshot", "lane-2 state", "lane-2 fps"} <= names


def test_unique_ids_are_unique_and_stable() -> None:
    first = _messages(_config())
    ids = [p["unique_id"] for p in first.values()]
    assert len(ids) == len(set(ids))
    # Stable: the same config, cameras listed in another order, or a camera added, keeps every id and topic.
    again = _messages(_config(cameras=dict(reversed(list(CAMERAS.items())))))
    more = _messages(_config(cameras={**CAMERAS, "new-5": {"url": "rtsp://h/x"}}))
    assert again == first
    assert {t: p["unique_id"] for t, p in more.items() if t in first} == {t: p["unique_id"] for t, p in first.items()}
    assert len(more) == len(first) + 4
    # Another box: no id and no discovery topic shared (two boxes are two devices).
    other = _messages(_config(box="box-2"))
    assert not {p["unique_id"] for p in other.values()} & set(ids)
    assert not set(other) & set(first)


def test_every_topic_pointed_at_is_published_and_templates_read_real_payloads() -> None:
    config = _config()
    published = _published_topics(config)
    messages = _messages(config)
    pointed = {value for p in messages.values() for key, value in p.items() if key.endswith("_topic")}
    assert pointed <= published, pointed - published
    # The templates against the daemon's own stats and health builders (edge/health.py).
    statuses = {
        "gate-1": CameraStatus(state=CameraState.STREAMING, frames_in=50, started_monotonic=time.monotonic() - 10),
        "lane-2": CameraStatus(state=CameraState.FAILED, error="authentication failed (401)"),
        "yard-3": CameraStatus(state=CameraState.STREAMING),
        "park-4": CameraStatus(state=CameraState.DISABLED),
    }
    stats_payload = json.loads(json.dumps(stats(time.monotonic(), RateMeter(), statuses, {}, {})))
    health_payload = json.loads(json.dumps(health(None, statuses, True, "ok")))
    stats_topic = Topics("nvr", "box-1").stats
    values = {}
    for topic, payload in messages.items():
        source = stats_payload if payload.get("state_topic") == stats_topic else health_payload
        if "value_template" in payload:
            values[topic.split("/")[-2]] = _resolve(payload["value_template"], source)
        if "json_attributes_template" in payload:
            assert isinstance(json.loads(_resolve(payload["json_attributes_template"], source)), dict)
    assert values["gate-1_state"] == "streaming" and values["lane-2_state"] == "failed"
    assert values["gate-1_fps"] == pytest.approx(5.0, rel=0.05) and values["lane-2_fps"] == 0
    assert values["health"] == health_payload["status"] == "degraded"
    assert set(CAMERA_STATES) == {s.value for s in CameraState}
    assert set(HEALTH_STATES) == {"ok", "degraded", "failed", "starting", "offline"}
    for topic, payload in messages.items():
        if payload.get("device_class") == "enum":
            assert values[topic.split("/")[-2]] in payload["options"]


def test_prefix_and_default_off() -> None:
    assert parse_config("box: {id: a}\n").homeassistant.discovery is False
    config = _config(prefix="ha/discovery")
    assert status_topic(config.homeassistant) == "ha/discovery/status"
    assert all(t.startswith("ha/discovery/") and t.endswith("/config") for t in _messages(config))
    with pytest.raises(ConfigError) as bad:
        parse_config("box: {id: a}\nhomeassistant:\n  prefix: ha/#\n")
    assert bad.value.problems == [
        "homeassistant.prefix: must be a plain topic (not empty; no +, #, or leading/trailing /) (line 3)"
    ]


# ----------------------------------------------------------------------------------
# The real daemon and a real broker
# ----------------------------------------------------------------------------------

P = "nvr/box-1"


def _configs(capture: MqttCapture, retained: bool | None = None) -> list[Received]:
    return capture.matching(
        lambda m: m.topic.startswith("homeassistant/") and m.topic.endswith("/config")
        and (retained is None or m.retain is retained)
    )  # fmt: skip


def test_daemon_sends_discovery_retained_and_again_when_home_assistant_comes_online(
    tmp_path: Path, broker: Mosquitto, cameras: CameraSimulator
) -> None:
    cams = {
        "moving": {"url": cameras.urls["moving"], "name": "Front gate"},
        "still": {"url": cameras.urls["still"], "share": "events"},
        "hidden": {"url": cameras.urls["still"], "share": "none"},
    }
    config_path = write_config(
        tmp_path / "edge.yaml",
        box_id="box-1",
        data_dir=tmp_path / "data",
        mqtt_port=broker.port,
        cameras=cams,
        stats_interval=1.0,
        extra={"homeassistant": {"discovery": True}},
    )
    expected = _messages(parse_config(config_path.read_text()))
    assert len(expected) == 1 + 4 + 3
    with MqttCapture(broker.host, broker.port, ("homeassistant/#", f"{P}/#")) as capture:
        daemon = DaemonProcess(config_path).start()
        try:
            capture.wait_for(lambda m: m.topic.endswith("/config"), timeout=30, count=len(expected))
            # Retained: a Home Assistant that subscribes later gets every config from the broker.
            with MqttCapture(broker.host, broker.port, ("homeassistant/#",)) as late:
                retained = late.wait_for(lambda m: m.retain, timeout=10, count=len(expected))
            assert {m.topic: json.loads(m.payload) for m in retained} == expected
            # The state each entity reads arrives: availability, motion, health, stats.
            capture.wait_for(lambda m: m.topic == f"{P}/status" and m.text == "online", timeout=10)
            stats_msg = capture.wait_for(
                lambda m: (
                    m.topic == f"{P}/stats" and json.loads(m.payload)["cameras"]["moving"]["state"] == "streaming"
                ),
                timeout=30,
            )[-1]
            health_msg = capture.wait_for(lambda m: m.topic == f"{P}/health", timeout=10)[-1]
            for payload in expected.values():
                state_topic = payload.get("state_topic")
                if state_topic and state_topic.endswith("/motion"):
                    assert capture.on_topic(state_topic)[-1].text in (payload["payload_on"], payload["payload_off"])
                elif state_topic:
                    source = json.loads((stats_msg if state_topic == f"{P}/stats" else health_msg).payload)
                    value = _resolve(payload["value_template"], source)
                    assert value in payload["options"] if "options" in payload else isinstance(value, float | int)
            sent_at_start = len(_configs(capture))
            assert sent_at_start == len(expected)

            # Home Assistant restarts: its Last Will, something odd, then its birth message.
            capture.publish("homeassistant/status", b"offline")
            capture.publish("homeassistant/status", b"maybe")
            capture.publish("homeassistant/status", b"online")
            again = capture.wait_for(lambda m: m.topic.endswith("/config"), timeout=15, count=2 * len(expected))
            assert {m.topic: json.loads(m.payload) for m in again[len(expected) :]} == expected
            daemon.wait_log("discovery_sent", timeout=5, reason="homeassistant_online")

            # A reload that removes a camera deletes its entities (an empty retained config).
            write_config(
                config_path,
                box_id="box-1",
                data_dir=tmp_path / "data",
                mqtt_port=broker.port,
                cameras={k: v for k, v in cams.items() if k != "still"},
                stats_interval=1.0,
                extra={"homeassistant": {"discovery": True}},
            )
            daemon.proc.send_signal(signal.SIGHUP)
            gone = {t for t, p in expected.items() if p["unique_id"].startswith("nvr-edge_box-1_still_")}
            assert len(gone) == 3
            emptied = capture.wait_for(lambda m: m.topic in gone and m.payload == b"", timeout=15, count=3)
            assert {m.topic for m in emptied} == gone
            assert daemon.alive
        finally:
            assert daemon.stop() == 0, daemon.log_text()[-3000:]
    lines = daemon.logs()
    sent = [line for line in lines if line.get("event") == "discovery_sent"]
    assert [line["reason"] for line in sent] == ["startup", "homeassistant_online", "reloaded"]
    ignored = [line for line in lines if line.get("event") == "command_ignored"]
    assert len(ignored) == 1 and ignored[0]["topic"] == "homeassistant/status", ignored  # "maybe"; "offline" is quiet
    assert "hidden" not in json.dumps([json.loads(m.payload) for m in _configs(capture) if m.payload])
    # `still` was removed by the reload: it keeps its last share (events) for what it left behind.
    assert_consent_kept(P, {"moving": "full", "still": "events", "hidden": "none"}, capture.snapshot())


def test_no_discovery_unless_enabled(tmp_path: Path, broker: Mosquitto) -> None:
    config_path = write_config(
        tmp_path / "edge.yaml", box_id="box-1", data_dir=tmp_path / "data", mqtt_port=broker.port, cameras={}
    )
    with MqttCapture(broker.host, broker.port, ("homeassistant/#", f"{P}/#")) as capture:
        with DaemonProcess(config_path) as daemon:
            capture.wait_for(lambda m: m.topic == f"{P}/status" and m.text == "online", timeout=30)
            capture.publish("homeassistant/status", b"online")  # not listened to: no reply, no log line
            capture.publish(f"{P}/cmd/health", b"")  # a round trip through the daemon after it
            capture.wait_for(lambda m: m.topic == f"{P}/health", timeout=10)
        assert not [
            m for m in capture.snapshot() if m.topic.startswith("homeassistant/") and m.topic != "homeassistant/status"
        ]
    assert not [line for line in daemon.logs() if line.get("event") in ("discovery_sent", "command_ignored")]
