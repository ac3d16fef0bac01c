"""The MQTT link: one connection to the district broker, driven by the asyncio loop.

aiomqtt (paho-mqtt underneath, on the loop's own sockets, no thread) is used because
its publish() awaits the broker's PUBACK, which is what the durable outbox needs:
a row is deleted only once the broker has the message. On every (re)connect the
link publishes `online` (the Last Will says `offline`), re-subscribes to the command
topics and replays the outbox from its oldest row.

A broker that refuses the box (wrong password, a certificate the CA file does not
vouch for) will not change its mind in a second: those failures are logged as one
error line per attempt that names the setting to check, and retried slowly, the way
a camera's wrong password is.

A broker that refuses one message (too large for it) must not stop the others: a
refusal is read from the PUBACK reason code (MQTT 5), or inferred when the connection
drops right after the same message REFUSAL_STRIKES times in a row (MQTT 3.1.1 has no
reason codes, and a broker's packet size limit just closes the connection). The
message is then given up (`Outbox.refuse`), or, a JPEG, re-encoded smaller; the limit
the link keeps images under (`mqtt.max_message_bytes`) is lowered to below what was
refused; each refusal is one log line and counted in stats.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import ssl
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiomqtt
import paho.mqtt.client as paho
from aiomqtt.exceptions import MqttConnectError
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from edge import jpeg
from edge.backoff import Backoff
from edge.config import MqttConfig, password_file_too_open
from edge.logs import get_logger
from edge.messages import Kind
from edge.outbox import Message, Outbox
from edge.topics import Topics

CommandHandler = Callable[[str, bytes], Awaitable[None]]

_BATCH = 32  # QoS 1 messages in flight at once: keeps a slow uplink busy
_PUBLISH_TIMEOUT = 20.0
MAX_COMMAND_BYTES = 4096
_AUTH_REFUSED = {4, 5, 134, 135}  # CONNACK: bad user name or password / not authorised (3.1.1 and 5 codes)
PACKET_TOO_LARGE = 149  # MQTT 5 reason code 0x95
REFUSAL_STRIKES = 3  # disconnects in a row right after the same message: the broker refuses it
STRIKE_WINDOW_S = 5.0  # "right after": a broker refusing a packet closes the connection at once
HEADER_BYTES = 64  # fixed header, topic length, packet id, MQTT 5 properties: above topic + payload
LEARN_FACTOR = 0.75  # a refused size S: the link's limit becomes S * this (a few steps reach any limit)
MIN_LIMIT = 4096  # the smallest limit learned (the config's minimum too)


def _read_packet_too_large_in_puback() -> None:
    """mosquitto answers a too-large PUBLISH with PUBACK 0x95, a code MQTT 5 lists for
    CONNACK and DISCONNECT only: paho then calls the PUBACK malformed and drops the
    connection. Let paho read it, so the refusal is one message, not a reconnect."""
    types = ReasonCode.names.get(PACKET_TOO_LARGE, {}).get("Packet too large")
    if types is not None and PacketTypes.PUBACK not in types:
        types.append(PacketTypes.PUBACK)


_read_packet_too_large_in_puback()


class _Client(aiomqtt.Client):
    """aiomqtt's client, plus the broker's PUBACK reason code (MQTT 5), which aiomqtt drops."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._refusals: dict[int, int] = {}  # mid -> reason code >= 0x80, until publish_checked reads it

    def _on_publish(self, client: paho.Client, userdata: Any, mid: int, reason_code: Any, properties: Any) -> None:
        code = int(getattr(reason_code, "value", reason_code) or 0)
        if code >= 0x80:
            self._refusals[mid] = code
        super()._on_publish(client, userdata, mid, reason_code, properties)

    async def publish_checked(self, topic: str, payload: bytes, qos: int, retain: bool, timeout: float) -> int:
        """Publish and wait for the broker (QoS 1); its reason code: >= 0x80 refused, else
        accepted (always 0 on MQTT 3.1.1 and for QoS 0). aiomqtt's publish, keeping the mid."""
        info = self._client.publish(topic, payload, qos, retain)
        if info.rc != paho.MQTT_ERR_SUCCESS:
            raise aiomqtt.MqttCodeError(info.rc, "Could not publish message")
        if not info.is_published():
            confirmation = asyncio.Event()
            with self._pending_call(info.mid, confirmation, self._pending_publishes):
                await self._wait_for(confirmation.wait(), timeout=timeout)
        return self._refusals.pop(info.mid, 0)


def _up_to_first_image(batch: list[Message]) -> list[Message]:
    """The batch cut after its first thumbnail: were the broker to refuse it, the event
    behind it is still queued and can say it has no thumbnail."""
    for index, message in enumerate(batch):
        if message.kind is Kind.THUMBNAIL:
            return batch[: index + 1]
    return batch


@dataclass(frozen=True, slots=True)
class _Sent:
    """A message on its way: an outbox row (`message`) or a volatile publish (`topic`)."""

    key: tuple[str, object]
    size: int
    at: float
    topic: str
    message: Message | None = None


def refusal(exc: aiomqtt.MqttError) -> tuple[str, str] | None:
    """(log event, message) when the broker refused us for a reason only a config fix cures.

    The message names the setting to check; it never holds the password (aiomqtt's
    texts carry only the reason code or the TLS library's verdict)."""
    if isinstance(exc, aiomqtt.MqttCodeError):
        if not isinstance(exc, MqttConnectError):
            return None  # a publish or subscribe error code: 4 and 5 mean other things there
        rc = getattr(exc.rc, "value", exc.rc)
        if rc in _AUTH_REFUSED:
            return (
                "mqtt_not_authorised",
                f"the broker refused the credentials ({exc}): check mqtt.username and mqtt.password_file",
            )
        return None
    text = str(exc)
    if "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text:
        reason = text.split("certificate verify failed:", 1)[-1].split("(_ssl.c", 1)[0].strip(" :") or text
        return (
            "mqtt_tls_failed",
            f"TLS verification of the broker failed ({reason}): check mqtt.tls.ca_file, "
            "and that mqtt.host is a name the broker's certificate carries",
        )
    return None


class MqttLink:
    """Owns the broker connection; the rest of the daemon talks to the outbox.

    Owner: the event loop; nothing else touches it (the outbox it drains has its own writer)."""

    def __init__(
        self,
        config: MqttConfig,
        client_id: str,
        topics: Topics,
        outbox: Outbox,
        on_command: CommandHandler,
        on_connect: Callable[[], None] | None = None,
        subscriptions: tuple[str, ...] = (),
        protocol: aiomqtt.ProtocolVersion = aiomqtt.ProtocolVersion.V311,
    ) -> None:
        """`subscriptions`: topics listened to besides the command topics; their messages go to `on_command`."""
        self._cfg = config
        self._client_id = client_id
        self._topics = topics
        self._outbox = outbox
        self._on_command = on_command
        self._on_connect = on_connect
        self._subscriptions = subscriptions
        self._client: _Client | None = None
        self._wake = asyncio.Event()
        self._stopping = False
        self._log = get_logger(component="mqtt", broker=f"{config.host}:{config.port}")
        self._protocol = protocol
        self.connected = asyncio.Event()
        self.connects = 0
        # Refused messages (see the module notes).
        self.max_message_bytes = config.max_message_bytes  # lowered below each size the broker refused
        self.refused = 0
        self._largest_accepted = 0  # bytes of the largest message the broker acknowledged: size was not it
        self._in_flight: dict[tuple[str, object], _Sent] = {}  # sent, not answered yet
        self._volatile: deque[_Sent] = deque(maxlen=8)  # the last QoS 0 publishes: no answer ever comes
        self._suspect: tuple[str, object] | None = None
        self._strikes = 0

    def wake(self) -> None:
        """New rows are in the outbox."""
        self._wake.set()

    @staticmethod
    def client_for(
        config: MqttConfig,
        client_id: str,
        will: aiomqtt.Will | None,
        protocol: aiomqtt.ProtocolVersion = aiomqtt.ProtocolVersion.V311,
    ) -> _Client:
        """An aiomqtt client with the config's auth and TLS (also used by the CLI)."""
        tls_context = None
        if config.tls is not None:
            tls = config.tls
            tls_context = ssl.create_default_context(cafile=str(tls.ca_file) if tls.ca_file else None)
            if tls.cert_file:
                tls_context.load_cert_chain(str(tls.cert_file), str(tls.key_file) if tls.key_file else None)
        client = _Client(
            config.host,
            config.port,
            username=config.username,
            password=config.read_password(),
            identifier=client_id,
            keepalive=config.keepalive,
            timeout=10,
            tls_context=tls_context,
            will=will,
            protocol=protocol,
        )
        # The outbox drain keeps a batch in flight on purpose (a slow uplink stays busy):
        # that is not worth aiomqtt's "pending publish calls" warning.
        client.pending_calls_threshold = 2 * _BATCH
        return client

    def _make_client(self) -> _Client:
        will = aiomqtt.Will(self._topics.status, b"offline", qos=1, retain=True)
        return self.client_for(self._cfg, self._client_id, will, self._protocol)

    def payload_limit(self, topic: str) -> int:
        """The largest payload to send on `topic` now: the broker's limit less the topic and header."""
        return max(0, self.max_message_bytes - len(topic.encode()) - HEADER_BYTES)

    def stats(self) -> dict[str, int]:
        """For `stats.mqtt` (an addition to SPEC 3.4)."""
        return {
            "connects": self.connects,
            "max_message_bytes": self.max_message_bytes,
            "refused": self.refused,
            "images_shrunk": jpeg.COUNTER.shrunk,
            "images_too_large": jpeg.COUNTER.too_large,
        }

    async def run(self) -> None:
        """Connect, serve, reconnect with backoff and jitter, until stop()."""
        self._warn_open_password_file()
        backoff = Backoff(0.5, 30.0)
        refused_backoff = Backoff(10.0, 300.0)  # a refusal is retried slowly: the broker may ban the address
        while not self._stopping:
            try:
                async with self._make_client() as client:
                    self._client = client
                    backoff.reset()
                    refused_backoff.reset()
                    await self._serve(client)
            except aiomqtt.MqttError as exc:
                if self._stopping:
                    break
                self._after_disconnect()
                refused = refusal(exc)
                if refused is not None:
                    delay = refused_backoff.next_delay()
                    self._log.error(refused[0], error=refused[1], retry_in_s=round(delay, 1))
                else:
                    delay = backoff.next_delay()
                    self._log.warning("mqtt_disconnected", error=str(exc), retry_in_s=round(delay, 1))
                await asyncio.sleep(delay)
            except (OSError, ValueError, sqlite3.Error) as exc:  # TLS files, outbox disk: retry, never die
                if self._stopping:
                    break
                delay = backoff.next_delay()
                self._log.error("mqtt_link_error", error=str(exc), retry_in_s=round(delay, 1))
                await asyncio.sleep(delay)
            finally:
                self._client = None
                self.connected.clear()
                self._in_flight.clear()

    def _warn_open_password_file(self) -> None:
        """Once at start: a password every user of the box can read is worth a warning."""
        path = self._cfg.password_file
        if path is not None and password_file_too_open(path):
            self._log.warning("mqtt_password_file_readable", path=str(path), hint="every user can read it: chmod o-r")

    async def _serve(self, client: _Client) -> None:
        await client.publish(self._topics.status, b"online", qos=1, retain=True)
        await client.subscribe(self._topics.cmd_health, qos=1)
        await client.subscribe(self._topics.detect_set_filter, qos=1)
        for topic in self._subscriptions:
            await client.subscribe(topic, qos=1)
        self.connects += 1
        self.connected.set()
        self._log.info("mqtt_connected", connects=self.connects)
        if self._on_connect is not None:
            self._on_connect()
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._drain(client))
                group.create_task(self._receive(client))
        except* aiomqtt.MqttError as errors:
            raise errors.exceptions[0] from None
        except* (OSError, ValueError, sqlite3.Error) as errors:
            raise errors.exceptions[0] from None

    async def _receive(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            payload = message.payload if isinstance(message.payload, bytes | bytearray) else b""
            await self._on_command(str(message.topic), bytes(payload))

    async def _drain(self, client: _Client) -> None:
        """Publish outbox rows oldest first; delete each once acknowledged (or refused)."""
        while True:
            batch = await self._outbox.peek_async(_BATCH)
            if not batch:
                self._wake.clear()
                if not await self._outbox.peek_async(1):
                    await self._wake.wait()
                continue
            batch = _up_to_first_image(batch)
            fitted = [await self._fitted(m) for m in batch]
            payloads = [p for p in fitted if p is not None]
            if len(payloads) < len(fitted):
                continue  # a thumbnail given up: its queued event now says so, peek it afresh
            sendable = list(zip(batch, payloads, strict=True))
            results = await asyncio.gather(*(self._send(client, m, p) for m, p in sendable), return_exceptions=True)
            acked = [(m.seq, len(p)) for (m, p), r in zip(sendable, results, strict=True) if r == 0]
            self._outbox.ack([seq for seq, _size in acked])
            self._largest_accepted = max([self._largest_accepted, *(size for _seq, size in acked)])
            for (message, payload), result in zip(sendable, results, strict=True):
                if isinstance(result, int) and result >= 0x80:
                    reason = f"PUBACK reason code {result}"
                    self._refused(message.topic, message, len(payload), reason, result == PACKET_TOO_LARGE)
            failure = next((r for r in results if isinstance(r, BaseException)), None)
            if failure is not None:
                self._log.warning("mqtt_publish_failed", error=str(failure), pending=self._outbox.pending)
                raise aiomqtt.MqttError(f"publish failed: {failure}")

    async def _send(self, client: _Client, message: Message, payload: bytes) -> int:
        """Publish one outbox row; the broker's reason code. Unanswered, it stays in flight:
        a suspect if the connection drops now."""
        sent = _Sent(("row", message.seq), len(payload), time.monotonic(), message.topic, message)
        self._in_flight[sent.key] = sent
        code = await client.publish_checked(
            message.topic, payload, message.qos, message.retain, timeout=_PUBLISH_TIMEOUT
        )
        self._in_flight.pop(sent.key, None)
        return code

    async def _fitted(self, message: Message) -> bytes | None:
        """The payload to send: a JPEG over the limit re-encoded under it (in a thread), or
        None when it cannot be made to fit (the row is then given up)."""
        limit = self.payload_limit(message.topic)
        if len(message.payload) <= limit or not jpeg.is_jpeg(message.payload):
            return message.payload  # anything else is small (events, state) or not ours to change
        smaller = await asyncio.to_thread(jpeg.fit, message.payload, limit)
        if smaller is None:
            self._give_up(message, len(message.payload), f"larger than the limit of {limit} bytes")
        return smaller

    def _refused(self, topic: str, message: Message | None, size: int, reason: str, too_large: bool) -> None:
        """The broker refused a message of `size` bytes on `topic` (`message`: an outbox row):
        lower the limit if it was its size, then shrink it (a JPEG, on its next send) or give it up."""
        self.refused += 1
        if too_large:
            self.max_message_bytes = max(MIN_LIMIT, min(self.max_message_bytes, int(size * LEARN_FACTOR)))
        shrinkable = (
            message is not None
            and too_large
            and jpeg.is_jpeg(message.payload)
            and self.payload_limit(message.topic) < size
        )
        action = "shrink" if shrinkable else "give up" if message is not None else "smaller" if too_large else "none"
        self._log.warning(
            "mqtt_message_refused",
            topic=topic[:200],
            bytes=size,
            reason=reason,
            action=action,
            max_message_bytes=self.max_message_bytes,
            hint="set mqtt.max_message_bytes to the broker's limit" if too_large else None,
        )
        if message is not None and not shrinkable:
            self._outbox.refuse(message)

    def _give_up(self, message: Message, size: int, reason: str) -> None:
        self.refused += 1
        self._log.warning(
            "mqtt_message_refused", topic=message.topic[:200], bytes=size, reason=reason, action="give up"
        )
        self._outbox.refuse(message)

    def _after_disconnect(self) -> None:
        """The connection dropped: if right after sending a message, the same one REFUSAL_STRIKES
        times in a row, the broker refuses it (a packet size limit gives no reason code)."""
        now = time.monotonic()
        recent = [s for s in (*self._in_flight.values(), *self._volatile) if now - s.at <= STRIKE_WINDOW_S]
        self._in_flight.clear()
        self._volatile.clear()
        if not recent:
            self._suspect, self._strikes = None, 0
            return
        suspect = max(recent, key=lambda s: (s.size, -s.at))  # a size limit: the largest is the culprit
        self._strikes = self._strikes + 1 if suspect.key == self._suspect else 1
        self._suspect = suspect.key
        if self._strikes >= REFUSAL_STRIKES:
            self._suspect, self._strikes = None, 0
            reason = f"the broker closed the connection right after it {REFUSAL_STRIKES} times in a row"
            too_large = suspect.size > self._largest_accepted  # else size was not it: give that one up only
            self._refused(suspect.topic, suspect.message, suspect.size, reason, too_large)

    async def publish_volatile(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> bool:
        """Publish now if connected (stats, mosaic); dropped otherwise: they are superseded."""
        client = self._client
        if client is None or not self.connected.is_set():
            return False
        self._volatile.append(_Sent(("topic", topic), len(payload), time.monotonic(), topic=topic))
        try:
            code = await client.publish_checked(topic, payload, qos, retain, timeout=5)
        except aiomqtt.MqttError:
            return False
        if code >= 0x80:
            self._refused(topic, None, len(payload), f"PUBACK reason code {code}", code == PACKET_TOO_LARGE)
            return False
        return True

    async def flush(self, timeout: float) -> bool:
        """Wait until the outbox is empty (True) or `timeout` passes (False)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self._outbox.pending:
            if loop.time() >= deadline:
                return False
            await asyncio.sleep(0.05)
        return True

    async def stop(self) -> None:
        """Publish `offline` (retained) and disconnect cleanly."""
        self._stopping = True
        client = self._client
        if client is not None and self.connected.is_set():
            with contextlib.suppress(aiomqtt.MqttError, asyncio.TimeoutError):
                await client.publish(self._topics.status, b"offline", qos=1, retain=True, timeout=3)
