"""Outgoing MQTT messages, typed where they are made and carried as they are to the outbox.

A message says which camera it is about and what it is (`Kind`), so the egress decides
by looking those up against the camera's `share` (SPEC 2) instead of reading topics and
payloads, and the outbox stores what it is told. `Messages` builds each one on its
SPEC 3 topic with its SPEC 3 QoS and retain flag; payloads are encoded once, here.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from edge.topics import Topics


class Kind(StrEnum):
    """What a message carries: the egress's rule and the outbox's drop order follow from it."""

    EVENT = "event"  # event JSON, start or end (SPEC 3.1)
    UPDATE = "update"  # event JSON, update
    THUMBNAIL = "thumbnail"  # an event's JPEG
    SNAPSHOT = "snapshot"  # a camera's latest thumbnail, retained
    MOTION = "motion"  # ON / OFF, retained
    DISCOVERY = "discovery"  # a Home Assistant config, retained (a camera's, or the box's)
    HEALTH = "health"  # retained health (SPEC 3.5)
    REPLY = "reply"  # health answering a request with an id: each its own message
    STATS = "stats"  # volatile (SPEC 3.4)
    MOSAIC = "mosaic"  # volatile, retained; composed of the tiles consent allows


@dataclass(frozen=True, slots=True)
class EventMark:
    """What an event message does to the outbox's open-events table."""

    id: str
    ended: bool


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One message on its way out. `camera` None: about the box, not one camera.

    Immutable: made on the event loop, read by the outbox's writer thread (which runs `on_stored`)."""

    kind: Kind
    topic: str
    payload: bytes
    camera: str | None = None
    qos: int = 1
    retain: bool = False
    event: EventMark | None = None  # event JSON only
    on_stored: Callable[[], None] | None = None  # run on the outbox's writer once committed


def to_json(data: Mapping[str, object]) -> bytes:
    """Compact JSON, NaN refused (SPEC 3: payloads are JSON)."""
    return json.dumps(data, separators=(",", ":"), allow_nan=False).encode()


@dataclass(frozen=True, slots=True)
class Messages:
    """Builds every message the daemon sends, on the box's topics."""

    topics: Topics

    def event(self, payload: Mapping[str, object], on_stored: Callable[[], None] | None = None) -> Outgoing:
        """A SPEC 3.1 event object (its `camera`, `id` and `type` say whose, which and what)."""
        kind = Kind.UPDATE if payload["type"] == "update" else Kind.EVENT
        mark = EventMark(str(payload["id"]), ended=payload["type"] == "end")
        camera = str(payload["camera"])
        return Outgoing(kind, self.topics.events, to_json(payload), camera, event=mark, on_stored=on_stored)

    def thumbnail(self, camera: str, event_id: str, jpeg: bytes) -> Outgoing:
        return Outgoing(Kind.THUMBNAIL, self.topics.thumbnail(event_id), jpeg, camera)

    def snapshot(self, camera: str, jpeg: bytes) -> Outgoing:
        return Outgoing(Kind.SNAPSHOT, self.topics.snapshot(camera), jpeg, camera, retain=True)

    def motion(self, camera: str, on: bool) -> Outgoing:
        return Outgoing(Kind.MOTION, self.topics.motion(camera), b"ON" if on else b"OFF", camera, retain=True)

    def health(self, report: Mapping[str, object], reply: bool = False) -> Outgoing:
        """The retained health; `reply`: an answer to a request with an id (never coalesced)."""
        return Outgoing(Kind.REPLY if reply else Kind.HEALTH, self.topics.health, to_json(report), retain=True)

    def stats(self, report: Mapping[str, object]) -> Outgoing:
        return Outgoing(Kind.STATS, self.topics.stats, to_json(report), qos=0)

    def mosaic(self, jpeg: bytes) -> Outgoing:
        return Outgoing(Kind.MOSAIC, self.topics.mosaic, jpeg, qos=0, retain=True)

    @staticmethod
    def discovery(topic: str, payload: bytes, camera: str | None) -> Outgoing:
        """A Home Assistant config (empty: delete the entity); `camera` None for the box's own."""
        return Outgoing(Kind.DISCOVERY, topic, payload, camera, retain=True)
