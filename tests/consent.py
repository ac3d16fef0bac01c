"""The consent check from outside: scans every message a test run's broker received and
says which ones let out an image or an event of a camera against its `share` (SPEC 2).

The daemon types its messages where it makes them and its egress decides by lookup
(edge/egress.py); this scan reads only what reached the broker, topics and payloads, so
a message typed wrongly at its source is caught here.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping

from harness.mqtt_capture import Received

FULL, NONE = "full", "none"
_IMAGE_MAGIC = (b"\xff\xd8\xff", b"\x89PNG", b"GIF8")
_EVENT_ID = re.compile(r"(.+)-\d+")  # edge.events: f"{camera}-{start ms}"


def is_image(payload: bytes) -> bool:
    return payload.startswith(_IMAGE_MAGIC) or (payload[:4] == b"RIFF" and payload[8:12] == b"WEBP")


class ConsentScan:
    """The shares of one run and the base topic `P` its box publishes under."""

    def __init__(self, base: str, shares: Mapping[str, str]) -> None:
        self._base = base + "/"
        self._shares = dict(shares)
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

    def _share(self, camera: str) -> str:
        return self._shares.get(camera, NONE)

    def refusal(self, topic: str, payload: bytes) -> str | None:
        """Why the message should never have left the box, or None."""
        rel = topic[len(self._base) :] if topic.startswith(self._base) else None
        image = is_image(payload)
        if rel in ("stats", "health", "status"):
            return "an image on a state topic" if image else None
        if rel == "mosaic":
            return None if image or not payload else "the mosaic must be an image"
        camera, image_topic = self._camera_of(rel)
        if image_topic:
            if camera is None or self._share(camera) != FULL:
                return f"an image of camera {camera!r} (share {self._share(camera or '')})"
        elif image:
            return "an image on a topic that carries none"
        if camera is not None and self._share(camera) == NONE:
            return f"camera {camera!r} has share none"
        if rel == "events":
            try:
                named = json.loads(payload).get("camera")
            except (ValueError, AttributeError):
                return "event that is not a JSON object"
            if not isinstance(named, str) or named not in self._shares:
                return f"event of unknown camera {str(named)[:64]!r}"
            if self._share(named) == NONE:
                return f"camera {named!r} has share none"
        if not image and self._hidden is not None and payload:
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

    def leaks(self, messages: Iterable[Received]) -> list[str]:
        """`topic: reason` of every received message the shares forbid."""
        return [f"{m.topic}: {reason}" for m in messages if (reason := self.refusal(m.topic, m.payload)) is not None]


def assert_consent_kept(base: str, shares: Mapping[str, str], messages: Iterable[Received]) -> None:
    """No message the broker received let out what a camera's share forbids."""
    leaks = ConsentScan(base, shares).leaks(messages)
    assert leaks == [], leaks
