"""The supervisor: composes the box's services from the config and runs them until a signal.

Data flows one way: camera workers (threads, edge/cameras.py) -> publisher (the outputs
queue, the event life, the egress: edge/publisher.py) -> outbox (its writer thread) ->
MQTT link. Commands (edge/commands.py) arrive through the link; health, stats and the
mosaic (edge/reporter.py) read the cameras' statuses. Each service runs in this
TaskGroup; a service that fails is logged and the others keep serving.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

from edge.api import FootageApi
from edge.cameras import Cameras
from edge.commands import Commands
from edge.config import Config, read_token_file
from edge.discovery import status_topic
from edge.egress import Egress, shares_of
from edge.logs import get_logger
from edge.messages import Messages
from edge.mqtt import MqttLink
from edge.notify import Notifier
from edge.outbox import Outbox
from edge.publisher import Publisher
from edge.recordings import Recordings
from edge.reloader import Reloader
from edge.reporter import Reporter
from edge.topics import Topics
from edge.watchdog import LoopMonitor, Watchdog, heartbeat_probe
from edge.web import ScreenData, ScreenServer

SHUTDOWN_BUDGET_S = 8.0  # SPEC: exit within 10 s of SIGTERM
# A worker is never silent this long: its longest wait is one RTSP open or read timeout
# (10 s each); backing off, it beats every second.
WORKER_MAX_SILENCE_S = 25.0
LOOP_MAX_LAG_S = 10.0  # a loop blocked longer breaks the 10 s stop promise: withhold the systemd watchdog


class Daemon:
    """One box: its services, wired together; SIGTERM stops it, SIGHUP reloads it (edge/reloader.py)."""

    def __init__(self, config: Config, reload: Callable[[], Config] | None = None) -> None:
        """`reload` reads the configuration file again (SIGHUP); it raises ConfigError."""
        self.config = config
        self._stop, self._reloads = asyncio.Event(), set[asyncio.Task[None]]()
        self._log = get_logger(box=config.box.id)
        config.box.data_dir.mkdir(parents=True, exist_ok=True)
        current, topics = (lambda: self.config), Topics(config.mqtt.topic_prefix, config.box.id)
        self.outbox = Outbox(config.box.data_dir / "outbox.sqlite", config.outbox.max_bytes)
        self.recordings = Recordings(config)
        ha = config.homeassistant
        self.link = MqttLink(
            config.mqtt,
            config.mqtt.client_id or f"nvr-edge-{config.box.id}",
            topics,
            self.outbox,
            on_command=lambda topic, payload: self.commands.handle(topic, payload),
            on_connect=lambda: self.publisher.republish(),
            subscriptions=(status_topic(ha),) if ha.discovery else (),
        )
        egress = Egress(self.outbox, self.link, shares_of(config.cameras))
        self.publisher = Publisher(config, Messages(topics), egress, self.outbox, self.recordings)
        self.cameras = Cameras(current, self.recordings, self.publisher.sink, on_restart=self.publisher.motion_off)
        self.reporter = Reporter(current, self.cameras, self.recordings, self.outbox, self.link, self.publisher)
        self.commands = Commands(
            current, topics, self.publisher.send, self.reporter.publish_health, self.cameras.set_detect
        )
        self.reloader = Reloader(reload, current, self._adopt, self.cameras, self.commands)
        self.api = _footage_api(config, current, self._log)
        self.web = _screen(config, current, self.cameras, self.publisher, self.reporter, self.api)
        if (web := self.web) is not None:
            self.reporter.web_requests = lambda: web.requests
        # systemd (edge/notify.py, edge/watchdog.py): silent without NOTIFY_SOCKET / WATCHDOG_USEC.
        self.notifier = Notifier.from_env()
        self.loop_monitor = LoopMonitor(LOOP_MAX_LAG_S)
        workers = heartbeat_probe(self.cameras.heartbeats, WORKER_MAX_SILENCE_S)
        probes = {"event_loop": self.loop_monitor.probe, "camera_workers": workers}
        self.watchdog = Watchdog.from_env(self.notifier, probes)

    def request_stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop)
        loop.add_signal_handler(signal.SIGHUP, self._on_sighup)
        self.publisher.bind(loop)
        swept = await asyncio.to_thread(self.recordings.start)
        await self.publisher.recover()  # before any camera starts: old ends go first
        for cam_id in self.config.cameras:
            self.cameras.start(cam_id)
        self.commands.send_discovery("startup")
        self._log.info("daemon_started", cameras=len(self.cameras.workers), outbox_pending=self.outbox.pending, **swept)
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(_logged(coro, name, self._log), name=name) for name, coro in self._services()]
            self.notifier.ready(f"{len(self.cameras.workers)} camera(s) started")
            try:
                await self._stop.wait()
                await self._shutdown()
            finally:
                for task in tasks:
                    task.cancel()
        self._log.info("daemon_stopped", outbox_pending=self.outbox.pending)
        await asyncio.to_thread(self.outbox.close)  # writes what is queued: never on the loop
        await asyncio.to_thread(self.recordings.close)  # the index's writer commits what is queued

    def _services(self) -> Iterator[tuple[str, Coroutine[Any, Any, None]]]:
        yield "mqtt", self.link.run()
        yield "publisher", self.publisher.run()
        yield "reporter", self.reporter.run()
        if self.web is not None:
            yield "web", self.web.run()
        if self.watchdog.enabled:  # none when systemd asked for no watchdog
            yield "loop-monitor", self.loop_monitor.run()
            yield "watchdog", self.watchdog.run()

    async def _shutdown(self) -> None:
        """SPEC: every started event ends, offline health before the `offline` status, within 10 s."""
        self.notifier.stopping()
        self._log.info("daemon_stopping")
        self.reporter.stopping = True  # cameras going down now is no news: no more health changes
        deadline = time.monotonic() + SHUTDOWN_BUDGET_S
        await self.cameras.stop_all(deadline)
        await self.publisher.drain()
        self.reporter.publish_health(None)  # the retained health must not keep saying the cameras stream
        await self.link.flush(max(0.5, deadline - time.monotonic() - 1.0))
        await self.link.stop()
        if self.api is not None:
            await self.api.close()

    def _on_sighup(self) -> None:
        task = asyncio.get_running_loop().create_task(self.reloader.reload(), name="reload")
        self._reloads.add(task)
        task.add_done_callback(self._reloads.discard)

    def _adopt(self, config: Config) -> None:
        """A reload's config becomes the running one (edge/reloader.py)."""
        self.config = config
        self.publisher.reconfigure(config)


async def _logged(service: Coroutine[Any, Any, None], name: str, log: Any) -> None:
    """A service that fails is one log line; the others keep serving (and the stop promise holds)."""
    try:
        await service
    except Exception:  # noqa: BLE001
        log.exception("service_failed", service=name)


def _footage_api(config: Config, current: Callable[[], Config], log: Any) -> FootageApi | None:
    """The district's footage API (edge/api.py), with `web.token_file` only."""
    if config.web.token_file is None:
        return None
    try:
        token = read_token_file(config.web.token_file)
    except (ValueError, OSError) as exc:  # check-config passed at start: the file changed since
        log.error("api_disabled", reason=str(exc) if isinstance(exc, ValueError) else exc.strerror)
        return None
    return FootageApi(
        box=config.box.id,
        data_dir=config.box.data_dir,
        token=token,
        max_export_seconds=config.web.max_export_seconds,
        cameras=lambda: current().cameras,
        events=lambda: current().events,
    )


def _screen(
    config: Config,
    current: Callable[[], Config],
    cameras: Cameras,
    publisher: Publisher,
    reporter: Reporter,
    api: FootageApi | None,
) -> ScreenServer | None:
    """The centre's screen (edge/web.py), with `web.listen` only."""
    if not config.web.listen:
        return None
    data = ScreenData(
        box=config.box.id,
        mosaic_interval=config.mosaic.interval,
        cameras=lambda: current().cameras,
        statuses=cameras.statuses,
        last_events=publisher.life.last_events,
        consent=publisher.egress,
        mosaic=lambda: reporter.mosaic,
    )
    return ScreenServer(config.web.listen, data, api=api, tls=config.web.tls)
