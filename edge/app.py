"""The supervisor: builds the pipeline from the config and runs it until a signal.

Data flows one way: camera workers (threads) -> outputs queue (asyncio) -> outbox
(SQLite) -> MQTT link. Stats and health are read from the workers' status objects.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any

from edge.api import FootageApi
from edge.camera import (
    CameraOutput,
    CameraState,
    CameraStatus,
    CameraWorker,
    RecordWorker,
    StreamWorker,
)
from edge.config import CameraConfig, Config, ConfigError, read_token_file
from edge.discovery import OFFLINE, ONLINE, discovery_messages, status_topic
from edge.egress import Egress, shares_of
from edge.event_life import EventLife
from edge.health import STARTING_GRACE_S, RateMeter, disk_check, health, offline_health, reserve_warning, stats
from edge.logs import get_logger
from edge.messages import Kind, Messages, Outgoing
from edge.mosaic import MosaicCost, make_jpeg, tiles_for
from edge.mqtt import MAX_COMMAND_BYTES, MqttLink
from edge.notify import Notifier
from edge.outbox import Outbox
from edge.ratelog import COMMAND_BURST, RateLimitedLog
from edge.recordings import Recordings
from edge.reload import plan_reload
from edge.topics import Topics
from edge.watchdog import LoopMonitor, Watchdog, heartbeat_probe
from edge.web import ScreenData, ScreenServer

SHUTDOWN_BUDGET_S = 8.0  # SPEC: exit within 10 s of SIGTERM
HEALTH_POLL_S = 1.0
MAX_REQUEST_ID_CHARS = 200
# A worker is never silent this long: its longest wait is one RTSP open or read timeout
# (10 s each); backing off, it beats every second.
WORKER_MAX_SILENCE_S = 25.0
LOOP_MAX_LAG_S = 10.0  # a loop blocked longer breaks the 10 s stop promise: withhold the systemd watchdog


class Daemon:
    """Owns the workers, the outbox and the MQTT link for one box."""

    def __init__(self, config: Config, reload: Callable[[], Config] | None = None) -> None:
        """`reload` reads the configuration file again (SIGHUP); it raises ConfigError."""
        self.config = config
        self._reload_source = reload
        self._reload_lock = asyncio.Lock()
        self._sink: Callable[[CameraOutput], None] = lambda _item: None
        self._camera_configs: dict[str, CameraConfig] = {}  # every camera started: outputs outlive a removal
        self.topics = Topics(config.mqtt.topic_prefix, config.box.id)
        self.messages = Messages(self.topics)
        self._log = get_logger(box=config.box.id)
        # Bad commands come from outside, thousands a second if someone wants: their lines are rate-limited.
        self._command_log = RateLimitedLog(self._log, burst=COMMAND_BURST)
        # Per camera turned off by detect/set OFF: the worker it was sent to and when (health says so).
        self._detect_off: dict[str, tuple[CameraWorker, float, str]] = {}
        self._started = time.monotonic()
        self._meter = RateMeter()
        self._stop = asyncio.Event()
        self._outputs: asyncio.Queue[CameraOutput] = asyncio.Queue()
        self._retained: dict[str, Outgoing] = {}
        self._last_health_status: str | None = None
        self._stopping = False  # from here on the retained health says offline (issue 18)
        # Home Assistant discovery (edge/discovery.py): its status topic is listened to only when on.
        ha = config.homeassistant
        self._ha_status = status_topic(ha) if ha.discovery else None
        self._discovery_sent: set[str] = set()
        data_dir = config.box.data_dir
        data_dir.mkdir(parents=True, exist_ok=True)
        self.outbox = Outbox(data_dir / "outbox.sqlite", config.outbox.max_bytes)
        self.link = MqttLink(
            config.mqtt,
            config.mqtt.client_id or f"nvr-edge-{config.box.id}",
            self.topics,
            self.outbox,
            on_command=self._on_command,
            on_connect=self._republish_retained,
            subscriptions=(self._ha_status,) if self._ha_status else (),
        )
        # Every outgoing message passes the egress (edge/egress.py): it enforces each camera's `share`.
        self.egress = Egress(self.outbox, self.link, shares_of(config.cameras))
        # The mosaic (edge/mosaic.py) and the centre's screen (edge/web.py).
        self.mosaic: tuple[bytes, float] | None = None  # the latest JPEG and when it was made
        self.mosaic_cost = MosaicCost()
        self.recordings = Recordings(config)
        self.workers: dict[str, CameraWorker] = {}
        self.record_workers: dict[str, RecordWorker] = {}
        self.statuses: dict[str, CameraStatus] = {}
        # An event's life from the workers' outputs to its messages (edge/event_life.py).
        self.life = EventLife(config, self.messages, self.egress, self.recordings, time.time, self._log)
        self.api: FootageApi | None = None  # the footage API (edge/api.py), with web.token_file
        self.web = (
            ScreenServer(
                config.web.listen,
                ScreenData(
                    box=config.box.id,
                    mosaic_interval=config.mosaic.interval,
                    cameras=lambda: self.config.cameras,
                    statuses=self.statuses,
                    last_events=self.life.last_events,
                    consent=self.egress,
                    mosaic=lambda: self.mosaic,
                ),
                api=self._footage_api(config),
                tls=config.web.tls,
            )
            if config.web.listen
            else None
        )
        # systemd (edge/notify.py, edge/watchdog.py): silent without NOTIFY_SOCKET / WATCHDOG_USEC.
        self.notifier = Notifier.from_env()
        self.loop_monitor = LoopMonitor(LOOP_MAX_LAG_S)
        # Worker name -> its last sign of life; kept in step with the workers (reloads too).
        self._heartbeats: dict[str, Callable[[], float | None]] = {}
        self.watchdog = Watchdog.from_env(
            self.notifier,
            {
                "event_loop": self.loop_monitor.probe,
                "camera_workers": heartbeat_probe(self._heartbeats, WORKER_MAX_SILENCE_S),
            },
        )

    def _footage_api(self, config: Config) -> FootageApi | None:
        """The district's footage API (edge/api.py), with `web.token_file` only."""
        if config.web.token_file is None:
            return None
        try:
            token = read_token_file(config.web.token_file)
        except (ValueError, OSError) as exc:  # check-config passed at start: the file changed since
            self._log.error("api_disabled", reason=str(exc) if isinstance(exc, ValueError) else exc.strerror)
            return None
        self.api = FootageApi(
            box=config.box.id,
            data_dir=config.box.data_dir,
            token=token,
            max_export_seconds=config.web.max_export_seconds,
            cameras=lambda: self.config.cameras,
            events=lambda: self.config.events,
        )
        return self.api

    # -- lifecycle ---------------------------------------------------------------
    def request_stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop)
        reloads: set[asyncio.Task[None]] = set()

        def on_sighup() -> None:
            task = loop.create_task(self.reload(), name="reload")
            reloads.add(task)
            task.add_done_callback(reloads.discard)

        loop.add_signal_handler(signal.SIGHUP, on_sighup)

        def sink(item: CameraOutput) -> None:
            loop.call_soon_threadsafe(self._outputs.put_nowait, item)

        self._sink = sink
        swept = await asyncio.to_thread(self.recordings.start)
        self._send_all(self.life.recover(await self.outbox.open_events_async()))
        self.egress.purge()
        for cam_id in self.config.cameras:
            self._start_camera(cam_id)
        self._send_discovery("startup")
        self._log.info("daemon_started", cameras=len(self.workers), outbox_pending=self.outbox.pending, **swept)

        tasks = [
            asyncio.create_task(self.link.run(), name="mqtt"),
            asyncio.create_task(self._consume_outputs(), name="outputs"),
            asyncio.create_task(self._stats_loop(), name="stats"),
            asyncio.create_task(self._health_watch(), name="health"),
            asyncio.create_task(self._tick_loop(), name="tick"),
            *self._systemd_tasks(),
        ]
        if self.config.mosaic.interval > 0:
            tasks.append(asyncio.create_task(self._mosaic_loop(), name="mosaic"))
        if self.web is not None:
            tasks.append(asyncio.create_task(self.web.run(), name="web"))
        self.notifier.ready(f"{len(self.workers)} camera(s) started")
        await self._stop.wait()
        await self._shutdown(tasks)

    async def _shutdown(self, tasks: list[asyncio.Task[None]]) -> None:
        self.notifier.stopping()
        self._log.info("daemon_stopping")
        self._stopping = True  # cameras going down now is no news: no more health changes
        deadline = time.monotonic() + SHUTDOWN_BUDGET_S
        for stream_worker in self._all_workers():
            stream_worker.stop()
        for stream_worker in self._all_workers():
            await asyncio.to_thread(stream_worker.join, max(0.1, min(3.0, deadline - time.monotonic() - 4)))
        for worker in self.workers.values():
            worker.close_events("shutdown")
        await asyncio.to_thread(self.recordings.finish_segments)
        await asyncio.sleep(0)  # let call_soon_threadsafe deliveries land
        self._drain_outputs()
        self._send_all(self.life.release(force=True))
        # Before `offline`: the retained health must not keep saying the cameras stream (roll-call).
        self._publish_health(None)
        await self.link.flush(max(0.5, deadline - time.monotonic() - 1.0))
        await self.link.stop()
        if self.api is not None:
            await self.api.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._log.info("daemon_stopped", outbox_pending=self.outbox.pending)
        await asyncio.to_thread(self.outbox.close)  # writes what is queued: never on the loop
        await asyncio.to_thread(self.recordings.close)  # the index's writer commits what is queued

    # -- cameras: start, stop, reload ------------------------------------------------
    def _start_camera(self, cam_id: str) -> None:
        """Build and start the worker(s) of one camera (or list it as disabled)."""
        cam = self.config.cameras[cam_id]
        if not cam.enabled:
            self.statuses[cam_id] = CameraStatus(state=CameraState.DISABLED)
            return
        self._camera_configs[cam_id] = cam
        recorder = self.recordings.recorder_for(cam_id)
        separate = cam.detect_url is not None and cam.detect_url != cam.url
        started: list[StreamWorker] = []
        if separate:
            self.record_workers[cam_id] = RecordWorker(cam_id, cam.url, recorder, max_size=cam.max_resolution.record)
            started.append(self.record_workers[cam_id])
        worker = CameraWorker(
            cam_id, cam, self.config.box.id, self.config.events, self._sink, recorder=None if separate else recorder
        )
        self.workers[cam_id] = worker
        self.statuses[cam_id] = worker.status
        if self.egress.may_name(cam_id):
            self._send(self.messages.motion(cam_id, False))  # a crash may have left ON retained
        for stream_worker in (*started, worker):
            self._heartbeats[stream_worker.name] = _heartbeat_of(stream_worker.status)
            stream_worker.start()

    async def _stop_camera(self, cam_id: str, reason: str) -> None:
        """Stop one camera's worker(s): its open event ends with `reason`, its segment is closed."""
        workers = [w for w in (self.workers.pop(cam_id, None), self.record_workers.pop(cam_id, None)) if w]
        for stream_worker in workers:
            self._heartbeats.pop(stream_worker.name, None)
            stream_worker.stop()
        for stream_worker in workers:
            await asyncio.to_thread(stream_worker.join, 3.0)
        for stream_worker in workers:
            if isinstance(stream_worker, CameraWorker):
                stream_worker.close_events(reason)
        await asyncio.to_thread(self.recordings.retire, cam_id)
        self.statuses.pop(cam_id, None)
        if self.egress.may_name(cam_id):
            self._send(self.messages.motion(cam_id, False))

    async def reload(self) -> None:
        """SIGHUP: read the file again and apply what changed to the cameras concerned only.

        An invalid file changes nothing: one log line per problem, the running config stays."""
        if self._reload_source is None:
            self._log.warning("reload_ignored", reason="no configuration file to read")
            return
        async with self._reload_lock:
            try:
                loaded = await asyncio.to_thread(self._reload_source)
            except ConfigError as exc:
                for problem in exc.problems:
                    self._log.error("reload_rejected", problem=problem)
                return
            plan = plan_reload(self.config, loaded)
            if plan.needs_restart:
                self._log.warning("reload_needs_restart", sections=list(plan.needs_restart))
            for cam_id in plan.stop:
                await self._stop_camera(cam_id, "reconfigured")
            self.config = plan.config
            self.life.reconfigure(self.config)
            self.egress.update(shares_of(self.config.cameras))
            self.egress.purge()
            for cam_id in list(self.statuses):
                if cam_id not in self.config.cameras:
                    self.statuses.pop(cam_id)  # a disabled camera that was removed
            for cam_id in plan.start:
                self._start_camera(cam_id)
            for cam_id, cam in self.config.cameras.items():
                if not cam.enabled:
                    self.statuses[cam_id] = CameraStatus(state=CameraState.DISABLED)
            self._send_discovery("reloaded")
            self._log.info("reloaded", stopped=list(plan.stop), started=list(plan.start), cameras=len(self.workers))

    def _systemd_tasks(self) -> list[asyncio.Task[None]]:
        """The watchdog and the loop monitor its probe reads; none when systemd asked for no watchdog."""
        if not self.watchdog.enabled:
            return []
        return [
            asyncio.create_task(self.loop_monitor.run(), name="loop-monitor"),
            asyncio.create_task(self.watchdog.run(), name="watchdog"),
        ]

    def _all_workers(self) -> list[StreamWorker]:
        return [*self.workers.values(), *self.record_workers.values()]

    # -- camera outputs -> outbox --------------------------------------------------
    async def _consume_outputs(self) -> None:
        while True:
            item = await self._outputs.get()
            try:
                self._handle_output(item)
            except Exception:  # noqa: BLE001 - one bad output must not stop the others
                self._log.exception("output_failed", camera=item.camera)

    def _drain_outputs(self) -> None:
        while not self._outputs.empty():
            self._handle_output(self._outputs.get_nowait())

    def _handle_output(self, item: CameraOutput) -> None:
        """Publish now, or hold behind an `end` still waiting for its post-roll (edge/event_life.py)."""
        self._send_all(self.life.take(item))

    def _send_all(self, messages: Iterable[Outgoing]) -> None:
        for message in messages:
            self._send(message)

    def _send(self, message: Outgoing) -> bool:
        """Through the egress to the outbox; retained state is remembered for re-publication
        on every reconnect (a health reply as the retained health it also is)."""
        if not self.egress.put(message):
            return False
        if message.retain:
            reply = message.kind is Kind.REPLY
            self._retained[message.topic] = replace(message, kind=Kind.HEALTH) if reply else message
        return True

    def _republish_retained(self) -> None:
        for topic, message in list(self._retained.items()):
            if not self.egress.allows(message):  # a reload took the consent back
                del self._retained[topic]
                continue
            self.egress.put(message)
        self.link.wake()

    # -- commands ----------------------------------------------------------------
    async def _on_command(self, topic: str, payload: bytes) -> None:
        """Act on the documented command topics only; anything malformed is one log line.

        Whatever a client publishes, this never raises: an exception here would take the
        MQTT link down with it (the payload itself is never logged)."""
        try:
            if len(payload) > MAX_COMMAND_BYTES:
                raise ValueError(f"payload of {len(payload)} bytes is too large")
            if topic == self.topics.cmd_health:
                self._publish_health(_parse_health_request(payload))
                return
            if topic == self._ha_status:
                self._on_homeassistant_status(payload)
                return
            camera = self.topics.detect_set_camera(topic)
            if camera is not None:
                self._set_detect(camera, payload, topic)
                return
            raise ValueError("not a command topic")
        except ValueError as exc:
            self._command_log.warning("command_ignored", topic=topic[:200], bytes=len(payload), error=str(exc))
        except Exception:  # noqa: BLE001 - a bug in a command must not stop the daemon serving
            self._command_log.exception("command_failed", topic=topic[:200], bytes=len(payload))

    def _on_homeassistant_status(self, payload: bytes) -> None:
        """Home Assistant's birth (`online`) after it restarts: send the discovery configs again.

        `offline` is its Last Will, expected and ignored; anything else is a bad command."""
        text = payload.decode("utf-8", errors="replace").strip()
        if text == ONLINE:
            self._send_discovery("homeassistant_online")
        elif text != OFFLINE:
            raise ValueError("Home Assistant status must be online or offline")

    def _send_discovery(self, reason: str) -> None:
        """Retained discovery configs through the outbox; an entity gone since the last send is
        deleted (an empty retained config), so a reload that removes a camera removes its entities."""
        if self._ha_status is None:
            return
        messages = discovery_messages(self.config, self.topics)
        # Deleting an entity (an empty config) withdraws, never discloses: it names no camera.
        for topic in sorted(self._discovery_sent - {m.topic for m in messages}):
            self._send(Messages.discovery(topic, b"", None))
        self._send_all(messages)
        self._discovery_sent = {m.topic for m in messages}
        self._log.info("discovery_sent", reason=reason, entities=len(messages))

    def _set_detect(self, camera: str, payload: bytes, topic: str) -> None:
        worker = self.workers.get(camera)
        if worker is None:
            raise ValueError(f"no enabled camera {camera[:64]!r}")
        text = payload.decode("utf-8", errors="replace").strip().upper()
        if text not in ("ON", "OFF"):
            raise ValueError("payload must be ON or OFF")
        worker.set_detect(text == "ON")
        if text == "ON":
            self._detect_off.pop(camera, None)
        else:
            self._detect_off[camera] = (worker, time.time(), topic)

    def _detect_reasons(self) -> dict[str, str]:
        """Cameras whose detection a detect/set OFF turned off, and why (health's `detect`).

        A retained OFF is delivered again at every (re)connect, so it survives restarts: say so.
        A camera restarted since (a reload) has a new worker with detection on."""
        reasons = {}
        for camera, (worker, at, topic) in self._detect_off.items():
            if self.workers.get(camera) is worker:
                when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at))
                reasons[camera] = (
                    f"turned off by {topic} OFF at {when} (a retained OFF applies again at every start; "
                    "publish ON to turn it back on)"
                )
        return reasons

    # -- stats and health ----------------------------------------------------------
    def _health(self, request_id: str | None) -> dict[str, Any]:
        disk = self.recordings.problem() or disk_check(self.config.box.data_dir)
        if self._stopping:
            return offline_health([c for c, st in self.statuses.items() if st.state is not CameraState.DISABLED], disk)
        rec = self.config.recording
        reserve = reserve_warning(self.config.box.data_dir, rec.min_free_bytes, self.recordings.retention.used_bytes)
        warnings = {"disk": reserve} if reserve else {}
        connected = self.link.connected.is_set()
        return health(
            request_id,
            self.statuses,
            connected,
            disk,
            self._detect_reasons(),
            warnings,
            mqtt_starting=not connected and self.link.connects == 0 and self._uptime() < STARTING_GRACE_S,
            recording_errors={
                cam: worker.status.error
                for cam, worker in self.record_workers.items()
                if worker.status.state is not CameraState.STREAMING
            },
        )

    def _uptime(self) -> float:
        return time.monotonic() - self._started

    async def _tick_loop(self) -> None:
        while True:
            await asyncio.sleep(0.5)
            try:
                self._send_all(self.life.release())
                self.recordings.tick()
                for camera, at in self.life.heartbeats().items():
                    self.outbox.touch_open(camera, at)
            except Exception:  # noqa: BLE001 - e.g. a full disk under the index; retried next tick
                self._log.exception("tick_failed")

    def _publish_health(self, request_id: str | None) -> None:
        report = self._health(request_id)
        if self._stopping:
            report["id"] = request_id
        self._last_health_status = str(report["status"])
        self._send(self.messages.health(report, reply=request_id is not None))  # each request its own answer

    async def _health_watch(self) -> None:
        """Publish health whenever its status changes (SPEC 3.5)."""
        while True:
            status = str(self._health(None)["status"])
            if status != self._last_health_status and not self._stopping:
                self._log.info("health_changed", status=status, previous=self._last_health_status)
                self._publish_health(None)
            await asyncio.sleep(HEALTH_POLL_S)

    def stats_snapshot(self) -> dict[str, Any]:
        return stats(
            self._started,
            self._meter,
            self.statuses,
            recording=self.recordings.stats(),
            per_camera={cam: self.recordings.camera_stats(cam) for cam in self.statuses},
            outbox={"pending": self.outbox.pending, "bytes": self.outbox.pending_bytes, "dropped": self.outbox.dropped},
        ) | {
            "egress": {"refused": self.egress.refused},
            "mqtt": self.link.stats(),
            "mosaic": self.mosaic_cost.as_dict()
            | {"tile_cpu_s": round(sum(w.tile_cpu_s for w in self.workers.values()), 4)},
            **({"web": {"requests": self.web.requests}} if self.web is not None else {}),
        }

    async def _stats_loop(self) -> None:
        interval = self.config.mqtt.stats_interval
        while True:
            await asyncio.sleep(interval)
            try:
                message = self.messages.stats(self.stats_snapshot())
            except Exception:  # noqa: BLE001 - a bug in one figure must not end stats for good
                self._log.exception("stats_failed")
                continue
            await self.egress.publish_volatile(message)

    async def _mosaic_loop(self) -> None:
        """Every `mosaic.interval`: ask the workers for a fresh tile, a moment later compose
        the grid from what they have and the cameras' states now, publish it retained."""
        interval = self.config.mosaic.interval
        lead = min(1.0, interval / 2)  # time the workers get to grab a tile (a frame at 1 fps)
        loop = asyncio.get_running_loop()
        due = loop.time() + interval  # a fixed rate: the work does not push the next one later
        while True:
            await asyncio.sleep(max(0.0, due - lead - loop.time()))
            for cam_id, worker in self.workers.items():
                if self.egress.images_allowed(cam_id):
                    worker.request_tile()
            await asyncio.sleep(max(0.0, due - loop.time()))
            due += interval
            if due < loop.time() + lead:  # fell behind (a blocked loop): start afresh
                due = loop.time() + interval
            states = {cam: (st.state.value, st.error) for cam, st in self.statuses.items()}
            frames = {cam: worker.tile for cam, worker in self.workers.items()}
            tiles = tiles_for(self.config.cameras, states, frames, self.egress)
            try:
                limit = self.link.payload_limit(self.topics.mosaic)  # the broker's limit (edge/jpeg.py)
                page, fitted = await asyncio.to_thread(make_jpeg, tiles, self.config.box.id, self.mosaic_cost, limit)
            except Exception:  # noqa: BLE001 - a bad tile must not end the mosaic for good
                self._log.exception("mosaic_failed")
                continue
            self.mosaic = (page, time.time())
            if fitted is not None:  # None: cannot fit the broker's limit, counted in stats.mqtt.images_too_large
                await self.egress.publish_volatile(self.messages.mosaic(fitted))


def _heartbeat_of(status: CameraStatus) -> Callable[[], float | None]:
    """Reads `status`'s heartbeat when called (the worker thread keeps it current)."""
    return lambda: status.heartbeat_monotonic


def _parse_health_request(payload: bytes) -> str | None:
    """`{"id": "<string>"}`, `{}` or empty -> the id to echo (SPEC 3); anything else raises ValueError.

    The id is echoed exactly or not at all: a cut or converted id would match no request."""
    if not payload.strip():
        return None
    try:
        data = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:  # deep nesting: RecursionError
        raise ValueError("health request is not JSON") from exc
    if not isinstance(data, dict) or not set(data) <= {"id"}:
        raise ValueError('health request must be {"id": "<string>"}')
    request_id = data.get("id")
    if request_id is None:
        return None
    if not isinstance(request_id, str):
        raise ValueError("health request id must be a string")
    if len(request_id) > MAX_REQUEST_ID_CHARS:
        raise ValueError(f"health request id is longer than {MAX_REQUEST_ID_CHARS} characters")
    if not request_id.isprintable():  # e.g. a lone surrogate, JSON "\ud800": not text
        raise ValueError("health request id must be printable text: no control characters or lone surrogates")
    return request_id
