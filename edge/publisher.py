"""The publisher service: camera outputs -> event life -> egress -> outbox, and the
retained state the broker must hold again after every reconnect.

The workers' outputs arrive through `sink` (any thread) on one asyncio queue, so they
are handled on the loop in the order each camera made them. Everything that leaves the
box is sent through `send` (durable) or `publish_volatile` (stats, mosaic).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Protocol

from edge.config import Config
from edge.egress import Egress, shares_of
from edge.event_life import EventLife, Recordings
from edge.logs import get_logger
from edge.messages import Kind, Messages, Outgoing
from edge.outbox import Outbox
from edge.pipeline import CameraOutput

TICK_S = 0.5  # post-roll releases, pending footage links and the open-event heartbeat


class Recorded(Recordings, Protocol):
    """The recordings as the publisher uses them: event footage, and its pending links."""

    def tick(self) -> None: ...


class Publisher:
    """Owns the outputs queue, the event life and the retained state.

    Owner: the event loop; worker threads only call `sink` (it hands the item to the loop)."""

    def __init__(
        self,
        config: Config,
        messages: Messages,
        egress: Egress,
        outbox: Outbox,
        recordings: Recorded,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.messages = messages
        self.egress = egress
        self._outbox = outbox
        self._recordings = recordings
        self._log = get_logger(component="publisher", box=config.box.id)
        self.life = EventLife(config, messages, egress, recordings, clock, self._log)
        self._outputs: asyncio.Queue[CameraOutput] = asyncio.Queue()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._retained: dict[str, Outgoing] = {}

    def sink(self, item: CameraOutput) -> None:
        """For the worker threads: the output joins the loop's queue (after `bind`)."""
        assert self._loop is not None, "bind() the publisher to the loop first"
        self._loop.call_soon_threadsafe(self._outputs.put_nowait, item)

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    async def recover(self) -> None:
        """At start, before any camera: end the events a crash left open, drop what consent forbids now."""
        self.send_all(self.life.recover(await self._outbox.open_events_async()))
        self.egress.purge()

    def reconfigure(self, config: Config) -> None:
        """A reload: new shares (queued messages they forbid are dropped), new event rules."""
        self.life.reconfigure(config)
        self.egress.update(shares_of(config.cameras))
        self.egress.purge()

    # -- the ways out ------------------------------------------------------------------------
    def send(self, message: Outgoing) -> bool:
        """Through the egress to the outbox; retained state is remembered for re-publication
        on every reconnect (a health reply as the retained health it also is)."""
        if not self.egress.put(message):
            return False
        if message.retain:
            reply = message.kind is Kind.REPLY
            self._retained[message.topic] = replace(message, kind=Kind.HEALTH) if reply else message
        return True

    def send_all(self, messages: Iterable[Outgoing]) -> None:
        for message in messages:
            self.send(message)

    async def publish_volatile(self, message: Outgoing) -> bool:
        return await self.egress.publish_volatile(message)

    def motion_off(self, camera: str) -> None:
        """A camera (re)started or stopped: a crash or its last event may have left ON retained."""
        if self.egress.may_name(camera):
            self.send(self.messages.motion(camera, False))

    def republish(self) -> None:
        """On every (re)connect: the retained state again, as far as consent still allows."""
        for topic, message in list(self._retained.items()):
            if not self.egress.allows(message):  # a reload took the consent back
                del self._retained[topic]
                continue
            self.egress.put(message)

    # -- the loops ---------------------------------------------------------------------------
    async def run(self) -> None:
        async with asyncio.TaskGroup() as group:
            group.create_task(self._consume(), name="outputs")
            group.create_task(self._tick(), name="tick")

    async def _consume(self) -> None:
        while True:
            item = await self._outputs.get()
            self._handle(item)

    def _handle(self, item: CameraOutput) -> None:
        try:
            self.send_all(self.life.take(item))
        except Exception:  # noqa: BLE001 - one bad output must not stop the others
            self._log.exception("output_failed", camera=item.camera)

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(TICK_S)
            try:
                self.send_all(self.life.release())
                self._recordings.tick()
                for camera, at in self.life.heartbeats().items():
                    self._outbox.touch_open(camera, at)
            except Exception:  # noqa: BLE001 - e.g. a full disk under the index; retried next tick
                self._log.exception("tick_failed")

    async def drain(self) -> None:
        """Shutdown, after the workers stopped: every output delivered, every held one released."""
        await asyncio.sleep(0)  # let call_soon_threadsafe deliveries land
        while not self._outputs.empty():
            self._handle(self._outputs.get_nowait())
        self.send_all(self.life.release(force=True))
