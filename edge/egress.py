"""The one door out of the box: every MQTT message the daemon sends passes through here.

`share` is a resident's consent (SPEC 2): `full` lets everything of a camera out,
`events` its event JSON, motion state and discovery entities but never an image,
`none` nothing but its state in stats and health. Each message is typed where it is
made (edge/messages.py: the camera it is about and its kind), so the rule is one lookup
of (the camera's share, the message's kind); a camera never configured counts as
`none`. Box messages (health, stats, the mosaic, the box's discovery entity) name no
camera: the mosaic is composed only from tiles `images_allowed` says yes to
(edge/mosaic.py), stats and health carry cameras' states, which every share allows.

A refusal is a bug somewhere upstream: it is logged (the first time for each reason,
then every hundredth) and counted in stats. Shares are remembered per camera id across
reloads, so a removed camera's last outputs keep its last known consent. The scan of
everything a test run published (tests/consent.py) checks this rule from outside.
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping
from concurrent.futures import Future
from typing import Protocol

from edge.config import CameraConfig
from edge.logs import get_logger
from edge.messages import Kind, Outgoing
from edge.outbox import Outbox

FULL, EVENTS, NONE = "full", "events", "none"
_IMAGE_MAGIC = (b"\xff\xd8\xff", b"\x89PNG", b"GIF8")
# What may leave the box of a camera with each share.
_CAMERA_KINDS: dict[str, frozenset[Kind]] = {
    FULL: frozenset({Kind.EVENT, Kind.UPDATE, Kind.THUMBNAIL, Kind.SNAPSHOT, Kind.MOTION, Kind.DISCOVERY}),
    EVENTS: frozenset({Kind.EVENT, Kind.UPDATE, Kind.MOTION, Kind.DISCOVERY}),
    NONE: frozenset(),
}
# What may leave the box naming no camera.
_BOX_KINDS = frozenset({Kind.HEALTH, Kind.REPLY, Kind.STATS, Kind.MOSAIC, Kind.DISCOVERY})


def is_image(payload: bytes) -> bool:
    """Whether the bytes are a picture in a format a viewer would open."""
    return payload.startswith(_IMAGE_MAGIC) or (payload[:4] == b"RIFF" and payload[8:12] == b"WEBP")


def refusal(shares: Mapping[str, str], camera: str | None, kind: Kind) -> str | None:
    """Why a message of `kind` about `camera` must not leave the box under `shares`, or None."""
    if camera is None:
        return None if kind in _BOX_KINDS else f"{kind} that names no camera"
    share = shares.get(camera, NONE)
    return None if kind in _CAMERA_KINDS.get(share, frozenset()) else f"{kind} of camera {camera!r} (share {share})"


class _Link(Protocol):
    def wake(self) -> None: ...
    def publish_volatile(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> Awaitable[bool]: ...


class Egress:
    """Knows each camera's `share` and lets out only what it allows.

    Owner: the event loop; a purge checks messages on the outbox's writer, with a copy."""

    def __init__(self, outbox: Outbox, link: _Link, shares: Mapping[str, str]) -> None:
        self._outbox = outbox
        self._link = link
        self._shares: dict[str, str] = {}
        self._log = get_logger(component="egress")
        self._refusals: dict[str, int] = {}
        self.refused = 0
        self.update(shares)

    # -- policy ----------------------------------------------------------------------
    def update(self, shares: Mapping[str, str]) -> None:
        """Take the cameras' `share` from a (re)loaded config; cameras not in it keep their last one."""
        self._shares.update(shares)

    def share(self, camera: str) -> str:
        """The camera's share; a camera never configured counts as `none`."""
        return self._shares.get(camera, NONE)

    def images_allowed(self, camera: str) -> bool:
        return self.share(camera) == FULL

    def may_name(self, camera: str) -> bool:
        """Whether messages other than stats and health may mention the camera."""
        return self.share(camera) != NONE

    def refusal(self, message: Outgoing) -> str | None:
        """Why the message must not leave the box, or None when it may."""
        return refusal(self._shares, message.camera, message.kind)

    def allows(self, message: Outgoing) -> bool:
        return self.refusal(message) is None

    def _refuse(self, topic: str, reason: str) -> bool:
        self.refused += 1
        seen = self._refusals.get(reason, 0) + 1
        self._refusals[reason] = seen
        if seen == 1 or seen % 100 == 0:
            self._log.warning("egress_refused", topic=topic[:200], reason=reason, times=seen)
        return False

    # -- the ways out ------------------------------------------------------------------
    def put(self, message: Outgoing) -> bool:
        """Durable publish through the outbox, if allowed (queued: the outbox's writer commits it)."""
        reason = self.refusal(message)
        if reason is not None:
            return self._refuse(message.topic, reason)
        self._outbox.put(message)
        self._link.wake()
        return True

    async def publish_volatile(self, message: Outgoing) -> bool:
        """Publish now if connected (stats, mosaic), if allowed."""
        reason = self.refusal(message)
        if reason is not None:
            return self._refuse(message.topic, reason)
        return await self._link.publish_volatile(message.topic, message.payload, qos=message.qos, retain=message.retain)

    def purge(self) -> Future[int]:
        """Drop queued messages the current shares refuse (consent withdrawn while they
        waited for the broker, e.g. during an outage); resolves to how many. The outbox's
        writer runs the check over its queue, against the shares as they are now."""
        shares = dict(self._shares)  # a copy: reloads cannot change it while the writer reads it
        purged = self._outbox.purge(lambda camera, kind: refusal(shares, camera, kind) is None)
        purged.add_done_callback(self._log_purge)
        return purged

    def _log_purge(self, purged: Future[int]) -> None:
        if not purged.cancelled() and purged.exception() is None and purged.result():
            self._log.warning("egress_purged_outbox", messages=purged.result())


def shares_of(cameras: Mapping[str, CameraConfig]) -> dict[str, str]:
    """{camera id: share} of a config's cameras."""
    return {cam_id: cam.share for cam_id, cam in cameras.items()}
