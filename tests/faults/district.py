"""Set-up shared by the delivery fault tests: walkers cameras, a persistent broker and a
district subscriber with a persistent session (it misses nothing while either is down)."""

from __future__ import annotations

from pathlib import Path

from harness.broker import Mosquitto
from harness.daemon import write_config
from harness.delivery import received
from harness.mqtt_capture import MqttCapture

P = "nvr/box-1"
FAST_EVENTS = {"events": {"end_after": 2.0, "update_interval": 2.0}}


def district(tmp_path: Path, urls: dict[str, str]) -> tuple[Mosquitto, Path, MqttCapture]:
    """A started persistent broker, a daemon config for `urls`, a connected district subscriber."""
    broker = Mosquitto(persistent=True)
    broker.start()
    config = write_config(
        tmp_path / "edge.yaml",
        box_id="box-1",
        data_dir=tmp_path / "data",
        mqtt_port=broker.port,
        cameras={name: {"url": url} for name, url in urls.items()},
        extra=FAST_EVENTS,
    )
    capture = MqttCapture(broker.host, broker.port, (f"{P}/#",), client_id="district-1").start()
    return broker, config, capture


def events(capture: MqttCapture) -> list[dict]:
    """Every event the district received so far, in arrival order."""
    return received(m.payload for m in capture.on_topic(f"{P}/events"))
