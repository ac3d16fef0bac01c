"""The status service: health (on request and on every change of its status, SPEC 3.5),
stats every `mqtt.stats_interval` (SPEC 3.4) and the mosaic every `mosaic.interval`.

It reads the cameras' statuses, the recordings, the outbox and the link; it writes
nothing but messages (through the publisher) and the latest mosaic for the page.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from edge.cameras import Cameras
from edge.config import Config
from edge.egress import Egress
from edge.health import STARTING_GRACE_S, RateMeter, disk_check, health, offline_health, reserve_warning, stats
from edge.logs import get_logger
from edge.messages import Messages
from edge.mosaic import MosaicCost, make_jpeg, tiles_for
from edge.mqtt import MqttLink
from edge.outbox import Outbox
from edge.publisher import Publisher
from edge.recordings import Recordings
from edge.status import CameraState

HEALTH_POLL_S = 1.0


class Reporter:
    """Owns what the box says about itself: the last health status sent, the mosaic.

    Owner: the event loop; the mosaic is encoded in a worker thread from a copy of the tiles."""

    def __init__(
        self,
        config: Callable[[], Config],
        cameras: Cameras,
        recordings: Recordings,
        outbox: Outbox,
        link: MqttLink,
        publisher: Publisher,
        monotonic: Callable[[], float] = time.monotonic,
        web_requests: Callable[[], int] | None = None,
    ) -> None:
        self._config = config
        self._cameras = cameras
        self._recordings = recordings
        self._outbox = outbox
        self._link = link
        self._publisher = publisher
        self._egress: Egress = publisher.egress
        self._messages: Messages = publisher.messages
        self._monotonic = monotonic
        self._started = monotonic()
        self._meter = RateMeter()
        self._last_health_status: str | None = None
        self._log = get_logger(component="reporter", box=config().box.id)
        self.web_requests = web_requests
        self.stopping = False  # from here on the retained health says offline (issue 18)
        self.mosaic: tuple[bytes, float] | None = None  # the latest JPEG and when it was made
        self.mosaic_cost = MosaicCost()

    async def run(self) -> None:
        async with asyncio.TaskGroup() as group:
            group.create_task(self._health_watch(), name="health")
            group.create_task(self._stats_loop(), name="stats")
            if self._config().mosaic.interval > 0:
                group.create_task(self._mosaic_loop(), name="mosaic")

    # -- health ------------------------------------------------------------------------------
    def health(self, request_id: str | None) -> dict[str, Any]:
        config = self._config()
        statuses = self._cameras.statuses
        disk = self._recordings.problem() or disk_check(config.box.data_dir)
        if self.stopping:
            return offline_health([c for c, st in statuses.items() if st.state is not CameraState.DISABLED], disk)
        reserve = reserve_warning(
            config.box.data_dir, config.recording.min_free_bytes, self._recordings.retention.used_bytes
        )
        connected = self._link.connected.is_set()
        return health(
            request_id,
            statuses,
            connected,
            disk,
            self._cameras.detect_reasons(),
            {"disk": reserve} if reserve else {},
            mqtt_starting=not connected and self._link.connects == 0 and self._uptime() < STARTING_GRACE_S,
            recording_errors=self._cameras.recording_errors(),
        )

    def _uptime(self) -> float:
        return self._monotonic() - self._started

    def publish_health(self, request_id: str | None) -> None:
        """Health now: the retained one, or (with an id) a request's own answer."""
        report = self.health(request_id)
        if self.stopping:
            report["id"] = request_id
        self._last_health_status = str(report["status"])
        self._publisher.send(self._messages.health(report, reply=request_id is not None))

    async def _health_watch(self) -> None:
        """Publish health whenever its status changes (SPEC 3.5)."""
        while True:
            status = str(self.health(None)["status"])
            if status != self._last_health_status and not self.stopping:
                self._log.info("health_changed", status=status, previous=self._last_health_status)
                self.publish_health(None)
            await asyncio.sleep(HEALTH_POLL_S)

    # -- stats ---------------------------------------------------------------------------------
    def stats_snapshot(self) -> dict[str, Any]:
        statuses = self._cameras.statuses
        return stats(
            self._started,
            self._meter,
            statuses,
            recording=self._recordings.stats(),
            per_camera={cam: self._recordings.camera_stats(cam) for cam in statuses},
            outbox={
                "pending": self._outbox.pending,
                "bytes": self._outbox.pending_bytes,
                "dropped": self._outbox.dropped,
            },
        ) | {
            "egress": {"refused": self._egress.refused},
            "mqtt": self._link.stats(),
            "mosaic": self.mosaic_cost.as_dict() | {"tile_cpu_s": round(self._cameras.tile_cpu_s, 4)},
            **({"web": {"requests": self.web_requests()}} if self.web_requests is not None else {}),
        }

    async def _stats_loop(self) -> None:
        while True:
            await asyncio.sleep(self._config().mqtt.stats_interval)
            try:
                message = self._messages.stats(self.stats_snapshot())
            except Exception:  # noqa: BLE001 - a bug in one figure must not end stats for good
                self._log.exception("stats_failed")
                continue
            await self._publisher.publish_volatile(message)

    # -- the mosaic ------------------------------------------------------------------------------
    async def _mosaic_loop(self) -> None:
        """Every `mosaic.interval`: ask the workers for a fresh tile, a moment later compose
        the grid from what they have and the cameras' states now, publish it retained."""
        interval = self._config().mosaic.interval
        lead = min(1.0, interval / 2)  # time the workers get to grab a tile (a frame at 1 fps)
        loop = asyncio.get_running_loop()
        due = loop.time() + interval  # a fixed rate: the work does not push the next one later
        while True:
            await asyncio.sleep(max(0.0, due - lead - loop.time()))
            self._cameras.request_tiles(c for c in self._cameras.workers if self._egress.images_allowed(c))
            await asyncio.sleep(max(0.0, due - loop.time()))
            due += interval
            if due < loop.time() + lead:  # fell behind (a blocked loop): start afresh
                due = loop.time() + interval
            await self._make_mosaic()

    async def _make_mosaic(self) -> None:
        config = self._config()
        states = {cam: (st.state.value, st.error) for cam, st in self._cameras.statuses.items()}
        tiles = tiles_for(config.cameras, states, self._cameras.tiles(), self._egress)
        try:
            limit = self._link.payload_limit(self._messages.topics.mosaic)  # the broker's limit (edge/jpeg.py)
            page, fitted = await asyncio.to_thread(make_jpeg, tiles, config.box.id, self.mosaic_cost, limit)
        except Exception:  # noqa: BLE001 - a bad tile must not end the mosaic for good
            self._log.exception("mosaic_failed")
            return
        self.mosaic = (page, time.time())
        if fitted is not None:  # None: cannot fit the broker's limit, counted in stats.mqtt.images_too_large
            await self._publisher.publish_volatile(self._messages.mosaic(fitted))
