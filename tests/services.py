"""The daemon's services built in-process, wired as edge/app.py wires them, for tests
that would otherwise start a whole daemon process only to reach one service."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge.cameras import Cameras
from edge.commands import Commands
from edge.config import Config, parse_config
from edge.egress import Egress, shares_of
from edge.messages import Messages
from edge.mqtt import MqttLink
from edge.outbox import Outbox
from edge.publisher import Publisher
from edge.recordings import Recordings
from edge.reporter import Reporter
from edge.topics import Topics

P = "nvr/box-1"
NOWHERE = "rtsp://127.0.0.1:9/none"  # refused at once: the worker runs, reconnecting


def box_config(tmp_path: Path, port: int, cameras: dict[str, str], extra: str = "") -> Config:
    lines = "\n".join(f'  {cam}: {{url: "{url}"}}' for cam, url in cameras.items())
    return parse_config(
        f"box: {{id: box-1, data_dir: {tmp_path / 'data'}}}\n"
        f"mqtt: {{host: 127.0.0.1, port: {port}, stats_interval: 1}}\n"
        f"cameras:\n{lines}\n{extra}"
    )


@dataclass
class Box:
    """The services of one box, wired as edge/app.py wires them."""

    outbox: Outbox
    link: MqttLink
    publisher: Publisher
    cameras: Cameras
    reporter: Reporter
    commands: Commands


def build_box(config: Config, monotonic: Callable[[], float] = time.monotonic, log_interval_s: float = 30.0) -> Box:
    topics = Topics("nvr", config.box.id)
    recordings = Recordings(config)
    outbox = Outbox(config.box.data_dir / "outbox.sqlite")
    box: dict[str, Any] = {}
    link = MqttLink(config.mqtt, "in-process", topics, outbox, lambda t, p: box["commands"].handle(t, p), lambda: None)
    publisher = Publisher(config, Messages(topics), Egress(outbox, link, shares_of(config.cameras)), outbox, recordings)
    cameras = Cameras(lambda: config, recordings, publisher.sink, on_restart=publisher.motion_off)
    reporter = Reporter(lambda: config, cameras, recordings, outbox, link, publisher, monotonic=monotonic)
    box["commands"] = Commands(
        lambda: config, topics, publisher.send, reporter.publish_health, cameras.set_detect, log_interval_s
    )
    return Box(outbox, link, publisher, cameras, reporter, box["commands"])


async def until(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def serving(box: Box, body: Callable[[], Awaitable[None]], reports: bool = False) -> None:
    """Run the link and the publisher (`reports`: the status service too) around `body`;
    stop the box cleanly after it."""
    box.publisher.bind(asyncio.get_running_loop())
    services = [box.link.run(), box.publisher.run(), *([box.reporter.run()] if reports else [])]
    tasks = [asyncio.create_task(service) for service in services]
    try:
        await asyncio.wait_for(box.link.connected.wait(), 10)
        await body()
    finally:
        await box.cameras.stop_all(time.monotonic() + 5)
        await box.link.stop()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.to_thread(box.outbox.close)
