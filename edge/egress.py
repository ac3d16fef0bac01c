"""The one door out of the box: every MQTT message the daemon sends passes through here.

`share` is a resident's consent (SPEC 2): `full` lets everything of a camera out,
`events` its event JSON and motion state but never an image, `none` nothing but its
state in stats and health. Checking that where each message is made would leave it to
every future code path to remember; so the outbox puts (events, thumbnails, snapshots,
motion, health, discovery) and the volatile publishes (stats, mosaic) all go through
`Egress`, which looks at the finished message itself, topic and payload, and refuses:

- an image (by topic, or by its bytes: JPEG, PNG, GIF, WebP) unless it is the snapshot
  or an event thumbnail of a `full` camera, or the mosaic (composed only from cameras
  `images_allowed` says yes to, edge/mosaic.py);
- anything naming a `none` camera (as a topic level, in a JSON payload, or one of its
  event ids), except stats and health;
- event JSON or camera topics of a camera it was never told about.

A refusal is a bug somewhere upstream: it is logged (the first time for each reason,
then every hundredth) and counted in stats. Shares are remembered per camera id across
reloads, so a removed camera's last outputs keep its last known consent.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import Future
from typing import Protocol

from edge.config import CameraConfig
from edge.logs import get_logger
from edge.outbox import Kind, Outbox
from edge.topics import Topics

FULL, EVENTS, NONE = "full", "events", "none"
_IMAGE_MAGIC = (b"\xff\xd8\xff", b"\x89PNG", b"GIF8")
_EVENT_ID = re.compile(r"(.+)-\d+")  # edge.events: f"{camera}-{start ms}"


def is_image(payload: bytes) -> bool:
    """Whether the bytes are a picture in a format a viewer would open."""
    return payload.startswith(_IMAGE_MAGIC) or (payload[:4] == b"RIFF" and payload[8:12] == b"WEBP")


class _Link(Protocol):
    def wake(self) -> None: ...
    def publish_volatile(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> Awaitable[bool]: ...


class Egress:
    """Knows each camera's `share` and lets out only what it allows.

    Owner: the event loop; a purge checks messages on the outbox's writer, with a copy."""

    def __init__(self, topics: Topics, outbox: Outbox, link: _Link, shares: Mapping[str, str]) -> None:
        self._topics = topics
        self._outbox = outbox
        self._link = link
        self._base = topics.base + "/"
        self._shares: dict[str, str] = {}
        self._hidden: re.Pattern[str] | None = None
        self._log = get_logger(component="egress")
        self._refusals: dict[str, int] = {}
        self.refused = 0
        self.update(shares)

    # -- policy ----------------------------------------------------------------------
    def update(self, shares: Mapping[str, str]) -> None:
        """Take the cameras' `share` from a (re)loaded config; cameras not in it keep their last one."""
        self._shares.update(shares)
        hidden = sorted((cam for cam, share in self._shares.items() if share == NONE), key=len, reverse=True)
        # A camera id where an id stands: a topic level, a JSON string or key, a template's
        # ['<cam>'], a whole payload; or one of its event ids (<cam>-<ms>). Not a word in
        # free text ("Back gate" does not name camera `gate`), nor part of a longer id (gate-10).
        self._hidden = (
            re.compile(
                r"(?:^|(?<=[/'\"\[]))(?:" + "|".join(map(re.escape, hidden)) + r")(?:-\d{10,})?(?=[/'\"\]]|$)",
                re.MULTILINE,
            )
            if hidden
            else None
        )

    def share(self, camera: str) -> str:
        """The camera's share; a camera never configured counts as `none`."""
        return self._shares.get(camera, NONE)

    def images_allowed(self, camera: str) -> bool:
        return self.share(camera) == FULL

    def may_name(self, camera: str) -> bool:
        """Whether messages other than stats and health may mention the camera."""
        return self.share(camera) != NONE

    def refusal(self, topic: str, payload: bytes) -> str | None:
        """Why the message must not leave the box, or None when it may."""
        rel = topic[len(self._base) :] if topic.startswith(self._base) else None
        image = is_image(payload)
        if rel in ("stats", "health", "status"):
            return "an image on a state topic" if image else None
        if rel == "mosaic":
            return None if image or not payload else "the mosaic must be an image"
        camera, image_topic = self._camera_of(rel)
        if image_topic:
            if camera is None or not self.images_allowed(camera):
                return f"an image of camera {camera!r} (share {self.share(camera or '')})"
        elif image:
            return "an image on a topic that carries none"
        if camera is not None and not self.may_name(camera):
            return f"camera {camera!r} has share none"
        if rel == "events":
            try:
                named = json.loads(payload).get("camera")
            except (ValueError, AttributeError):
                return "event that is not a JSON object"
            if not isinstance(named, str) or named not in self._shares:
                return f"event of unknown camera {str(named)[:64]!r}"
            if not self.may_name(named):
                return f"camera {named!r} has share none"
        if not image and self._hidden is not None:
            text = (rel if rel is not None else topic) + "\n" + payload.decode("utf-8", errors="replace")
            found = self._hidden.search(text)
            if found:
                return f"names camera {found.group(0)!r} which has share none"
        return None

    def _camera_of(self, rel: str | None) -> tuple[str | None, bool]:
        """(camera the topic is about, whether the topic carries an image)."""
        if rel is None:
            return None, False
        parts = rel.split("/")
        if len(parts) >= 3 and parts[0] == "cameras":
            return parts[1], len(parts) == 3 and parts[2] == "snapshot"
        if len(parts) == 3 and parts[0] == "events" and parts[2] == "thumbnail":
            match = _EVENT_ID.fullmatch(parts[1])
            return (match.group(1) if match else None), True
        return None, False

    def allows(self, topic: str, payload: bytes) -> bool:
        return self.refusal(topic, payload) is None

    def _refuse(self, topic: str, reason: str) -> bool:
        self.refused += 1
        seen = self._refusals.get(reason, 0) + 1
        self._refusals[reason] = seen
        if seen == 1 or seen % 100 == 0:
            self._log.warning("egress_refused", topic=topic[:200], reason=reason, times=seen)
        return False

    # -- the ways out ------------------------------------------------------------------
    def put(self, topic: str, payload: bytes, qos: int, retain: bool, kind: Kind) -> bool:
        """Durable publish through the outbox, if allowed (queued: the outbox's writer commits it)."""
        reason = self.refusal(topic, payload)
        if reason is not None:
            return self._refuse(topic, reason)
        self._outbox.put(topic, payload, qos, retain, kind)
        self._link.wake()
        return True

    def put_event(
        self, topic: str, event: dict[str, object], kind: Kind, on_stored: Callable[[], None] | None = None
    ) -> bool:
        """An event message through the outbox (which also tracks it as open or closed), if
        allowed; `on_stored` runs on the outbox's writer once it is committed."""
        data = json.dumps(event, separators=(",", ":"), allow_nan=False).encode()
        reason = self.refusal(topic, data)
        if reason is not None:
            return self._refuse(topic, reason)
        self._outbox.put_event(topic, event, kind, on_stored)
        self._link.wake()
        return True

    async def publish_volatile(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> bool:
        """Publish now if connected (stats, mosaic), if allowed."""
        reason = self.refusal(topic, payload)
        if reason is not None:
            return self._refuse(topic, reason)
        return await self._link.publish_volatile(topic, payload, qos=qos, retain=retain)

    def purge(self) -> Future[int]:
        """Drop queued messages the current shares refuse (consent withdrawn while they
        waited for the broker, e.g. during an outage); resolves to how many. The outbox's
        writer runs the check over its queue, against the shares as they are now."""
        policy = Egress(self._topics, self._outbox, self._link, self._shares)  # a copy: reloads cannot change it
        purged = self._outbox.purge(policy.allows)
        purged.add_done_callback(self._log_purge)
        return purged

    def _log_purge(self, purged: Future[int]) -> None:
        if not purged.cancelled() and purged.exception() is None and purged.result():
            self._log.warning("egress_purged_outbox", messages=purged.result())


def shares_of(cameras: Mapping[str, CameraConfig]) -> dict[str, str]:
    """{camera id: share} of a config's cameras."""
    return {cam_id: cam.share for cam_id, cam in cameras.items()}
