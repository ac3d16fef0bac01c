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
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import ssl
from collections.abc import Awaitable, Callable

import aiomqtt
from aiomqtt.exceptions import MqttConnectError

from edge.backoff import Backoff
from edge.config import MqttConfig, password_file_too_open
from edge.logs import get_logger
from edge.outbox import Outbox
from edge.topics import Topics

CommandHandler = Callable[[str, bytes], Awaitable[None]]

_BATCH = 32  # QoS 1 messages in flight at once: keeps a slow uplink busy
_PUBLISH_TIMEOUT = 20.0
MAX_COMMAND_BYTES = 4096
_AUTH_REFUSED = {4, 5, 134, 135}  # CONNACK: bad user name or password / not authorised (3.1.1 and 5 codes)


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
    """Owns the broker connection; the rest of the daemon talks to the outbox."""

    def __init__(
        self,
        config: MqttConfig,
        client_id: str,
        topics: Topics,
        outbox: Outbox,
        on_command: CommandHandler,
        on_connect: Callable[[], None] | None = None,
        subscriptions: tuple[str, ...] = (),
    ) -> None:
        """`subscriptions`: topics listened to besides the command topics; their messages go to `on_command`."""
        self._cfg = config
        self._client_id = client_id
        self._topics = topics
        self._outbox = outbox
        self._on_command = on_command
        self._on_connect = on_connect
        self._subscriptions = subscriptions
        self._client: aiomqtt.Client | None = None
        self._wake = asyncio.Event()
        self._stopping = False
        self._log = get_logger(component="mqtt", broker=f"{config.host}:{config.port}")
        self.connected = asyncio.Event()
        self.connects = 0

    def wake(self) -> None:
        """New rows are in the outbox."""
        self._wake.set()

    @staticmethod
    def client_for(config: MqttConfig, client_id: str, will: aiomqtt.Will | None) -> aiomqtt.Client:
        """An aiomqtt client with the config's auth and TLS (also used by the CLI)."""
        tls_context = None
        if config.tls is not None:
            tls = config.tls
            tls_context = ssl.create_default_context(cafile=str(tls.ca_file) if tls.ca_file else None)
            if tls.cert_file:
                tls_context.load_cert_chain(str(tls.cert_file), str(tls.key_file) if tls.key_file else None)
        client = aiomqtt.Client(
            config.host,
            config.port,
            username=config.username,
            password=config.read_password(),
            identifier=client_id,
            keepalive=config.keepalive,
            timeout=10,
            tls_context=tls_context,
            will=will,
        )
        # The outbox drain keeps a batch in flight on purpose (a slow uplink stays busy):
        # that is not worth aiomqtt's "pending publish calls" warning.
        client.pending_calls_threshold = 2 * _BATCH
        return client

    def _make_client(self) -> aiomqtt.Client:
        will = aiomqtt.Will(self._topics.status, b"offline", qos=1, retain=True)
        return self.client_for(self._cfg, self._client_id, will)

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

    def _warn_open_password_file(self) -> None:
        """Once at start: a password every user of the box can read is worth a warning."""
        path = self._cfg.password_file
        if path is not None and password_file_too_open(path):
            self._log.warning("mqtt_password_file_readable", path=str(path), hint="every user can read it: chmod o-r")

    async def _serve(self, client: aiomqtt.Client) -> None:
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

    async def _drain(self, client: aiomqtt.Client) -> None:
        """Publish outbox rows oldest first; delete each once acknowledged."""
        while True:
            batch = self._outbox.peek(_BATCH)
            if not batch:
                self._wake.clear()
                if not self._outbox.peek(1):
                    await self._wake.wait()
                continue
            results = await asyncio.gather(
                *(
                    client.publish(m.topic, m.payload, qos=m.qos, retain=m.retain, timeout=_PUBLISH_TIMEOUT)
                    for m in batch
                ),
                return_exceptions=True,
            )
            acked = [m.seq for m, r in zip(batch, results, strict=True) if not isinstance(r, BaseException)]
            self._outbox.ack(acked)
            failure = next((r for r in results if isinstance(r, BaseException)), None)
            if failure is not None:
                self._log.warning("mqtt_publish_failed", error=str(failure), pending=self._outbox.pending)
                raise aiomqtt.MqttError(f"publish failed: {failure}")

    async def publish_volatile(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> bool:
        """Publish now if connected (stats, mosaic); dropped otherwise: they are superseded."""
        client = self._client
        if client is None or not self.connected.is_set():
            return False
        try:
            await client.publish(topic, payload, qos=qos, retain=retain, timeout=5)
        except aiomqtt.MqttError:
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
