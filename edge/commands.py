"""The commands service: what arrives over MQTT (SPEC 3: health requests, detect/set;
Home Assistant's status when discovery is on) and the discovery configs it answers with.

Whatever a client publishes, `handle` never raises: an exception there would take the
MQTT link down with it. A bad command is one log line (rate-limited: they come from
outside, thousands a second if someone wants), the payload itself is never logged.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Protocol

from edge.config import Config
from edge.discovery import OFFLINE, ONLINE, discovery_messages, status_topic
from edge.logs import get_logger
from edge.messages import Messages, Outgoing
from edge.mqtt import MAX_COMMAND_BYTES
from edge.ratelog import COMMAND_BURST, INTERVAL_S, RateLimitedLog
from edge.topics import Topics

MAX_REQUEST_ID_CHARS = 200


class _Send(Protocol):
    def __call__(self, message: Outgoing) -> bool: ...


class Commands:
    """Acts on the command topics and owns the discovery configs sent so far.

    Owner: the event loop (the MQTT link calls `handle` from its receive task)."""

    def __init__(
        self,
        config: Callable[[], Config],
        topics: Topics,
        send: _Send,
        answer_health: Callable[[str | None], None],
        set_detect: Callable[[str, bool, str], None],
        log_interval_s: float = INTERVAL_S,
    ) -> None:
        """`answer_health(request id)` publishes health; `set_detect(camera, on, topic)`
        raises ValueError for a camera that has no running worker; `log_interval_s`: the
        rate limit's window for bad-command lines."""
        self._config = config
        self._topics = topics
        self._send = send
        self._answer_health = answer_health
        self._set_detect = set_detect
        ha = config().homeassistant
        # Home Assistant's status topic is listened to only with discovery on.
        self.ha_status = status_topic(ha) if ha.discovery else None
        self._discovery_sent: set[str] = set()
        self._log = get_logger(component="commands", box=config().box.id)
        self._command_log = RateLimitedLog(self._log, burst=COMMAND_BURST, interval_s=log_interval_s)

    @property
    def subscriptions(self) -> tuple[str, ...]:
        """Topics to listen to besides the command topics."""
        return (self.ha_status,) if self.ha_status else ()

    async def handle(self, topic: str, payload: bytes) -> None:
        """Act on the documented command topics only; anything malformed is one log line."""
        try:
            if len(payload) > MAX_COMMAND_BYTES:
                raise ValueError(f"payload of {len(payload)} bytes is too large")
            if topic == self._topics.cmd_health:
                self._answer_health(parse_health_request(payload))
                return
            if topic == self.ha_status:
                self._on_homeassistant_status(payload)
                return
            camera = self._topics.detect_set_camera(topic)
            if camera is not None:
                self._set_detect(camera, _on_off(payload), topic)
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
            self.send_discovery("homeassistant_online")
        elif text != OFFLINE:
            raise ValueError("Home Assistant status must be online or offline")

    def send_discovery(self, reason: str) -> None:
        """Retained discovery configs through the outbox; an entity gone since the last send is
        deleted (an empty retained config), so a reload that removes a camera removes its entities."""
        if self.ha_status is None:
            return
        messages = discovery_messages(self._config(), self._topics)
        # Deleting an entity (an empty config) withdraws, never discloses: it names no camera.
        for topic in sorted(self._discovery_sent - {m.topic for m in messages}):
            self._send(Messages.discovery(topic, b"", None))
        for message in messages:
            self._send(message)
        self._discovery_sent = {m.topic for m in messages}
        self._log.info("discovery_sent", reason=reason, entities=len(messages))


def _on_off(payload: bytes) -> bool:
    text = payload.decode("utf-8", errors="replace").strip().upper()
    if text not in ("ON", "OFF"):
        raise ValueError("payload must be ON or OFF")
    return text == "ON"


def parse_health_request(payload: bytes) -> str | None:
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
