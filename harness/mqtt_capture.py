"""Records every MQTT message under a topic filter, for tests, the demo and benchmarks.

Runs a paho client on its own network thread: the code under test is the daemon (a
separate process), this is only the observer standing where the district would.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion


@dataclass(frozen=True)
class Received:
    topic: str
    payload: bytes
    retain: bool
    qos: int
    at: float = field(default_factory=time.time)

    @property
    def text(self) -> str:
        return self.payload.decode("utf-8", errors="replace")


class MqttCapture:
    """Subscribes to `topics` and keeps every message; reconnects if the broker restarts.

    With a `client_id` the session is persistent (clean_session off): the broker queues
    QoS 1 messages while this subscriber is disconnected, as a district consumer would."""

    def __init__(self, host: str, port: int, topics: tuple[str, ...] = ("#",), client_id: str | None = None) -> None:
        self._topics = topics
        self._lock = threading.Condition()
        self.messages: list[Received] = []
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id or "",
            clean_session=client_id is None,
            protocol=mqtt.MQTTv311,
        )
        self._client.on_connect = self._on_connect
        self._client.on_message = self._on_message
        # paho annotates the delays int, but only adds and sleeps on them: fractions of a second work
        self._client.reconnect_delay_set(min_delay=0.1, max_delay=0.5)  # type: ignore[arg-type]
        self._host, self._port = host, port
        self._connected = threading.Event()

    def _on_connect(self, client: mqtt.Client, _u: object, _f: object, rc: object, _p: object) -> None:
        for topic in self._topics:
            client.subscribe(topic, qos=1)
        self._connected.set()

    def _on_message(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append(Received(msg.topic, bytes(msg.payload), bool(msg.retain), msg.qos))
            self._lock.notify_all()

    def start(self, timeout: float = 10.0) -> MqttCapture:
        self._client.connect_async(self._host, self._port, keepalive=10)
        self._client.loop_start()
        if not self._connected.wait(timeout):
            raise RuntimeError(f"capture could not connect to {self._host}:{self._port}")
        time.sleep(0.1)  # let the SUBACK arrive
        return self

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def publish(self, topic: str, payload: bytes | str, qos: int = 1, retain: bool = False) -> None:
        self._client.publish(topic, payload, qos=qos, retain=retain).wait_for_publish(5)

    def snapshot(self) -> list[Received]:
        with self._lock:
            return list(self.messages)

    def matching(self, predicate: Callable[[Received], bool]) -> list[Received]:
        return [m for m in self.snapshot() if predicate(m)]

    def on_topic(self, topic: str) -> list[Received]:
        return self.matching(lambda m: m.topic == topic)

    def wait_for(self, predicate: Callable[[Received], bool], timeout: float, count: int = 1) -> list[Received]:
        """Wait until `count` messages match; return them (raises TimeoutError otherwise)."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                found = [m for m in self.messages if predicate(m)]
                if len(found) >= count:
                    return found
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(
                        f"{len(found)}/{count} matching messages after {timeout} s; "
                        f"topics seen: {sorted({m.topic for m in self.messages})[:30]}"
                    )
                self._lock.wait(min(remaining, 0.5))

    def __enter__(self) -> MqttCapture:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
