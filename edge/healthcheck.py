"""`nvr-edge health`: ask the running daemon over the broker, and when it cannot answer,
say why from what the broker holds (issue 18).

The daemon's retained `status` says whether it is online; a daemon that stopped cleanly
left a retained health with status `offline` and the time it stopped; one that crashed
or lost power left only its Last Will (`offline`) and whatever health it last sent. A
broker that cannot be reached is said to be that, as `tail` and `roll-call` say it.

Exit codes (README "Command line"; SPEC 1's 0, 1, 2 unchanged, 4 added):
0 ok; 1 degraded or failed; 2 no answer: the daemon is offline or silent, the broker
cannot be reached, refused this box's credentials or certificate, or the config is bad
(the line printed says which); 4 the daemon answered `starting`. A broker that cannot
be reached stays 2, as SPEC 1 says ("no answer"): scripts that test for 2 keep working.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, TextIO

from edge.config import Config
from edge.durations import in_words

EXIT_OK, EXIT_UNHEALTHY, EXIT_NO_ANSWER, EXIT_STARTING = 0, 1, 2, 4
_ERRNO = re.compile(r"\[Errno -?\d+\]\s*")
OFFLINE_GRACE_S = 3.0  # a retained `offline` may be a restart in progress: wait this long for `online`


@dataclass
class Heard:
    """What the broker told about the box while we waited."""

    answer: dict[str, Any] | None = None
    status: str | None = None  # retained, then live P/status
    retained_health: dict[str, Any] | None = None  # the last health not addressed to us
    offline_at: float | None = field(default=None, repr=False)  # monotonic time `offline` was heard


def _local(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(t))


async def listen(config: Config, timeout: float) -> Heard:
    """Send a health request and collect the answer, the box's status and its retained health."""
    from edge.mqtt import MqttLink
    from edge.topics import Topics

    topics = Topics(config.mqtt.topic_prefix, config.box.id)
    request_id = uuid.uuid4().hex
    heard = Heard()
    client = MqttLink.client_for(config.mqtt, f"nvr-edge-health-{request_id[:8]}", will=None)
    deadline = time.monotonic() + timeout
    async with client:
        await client.subscribe(topics.status, qos=1)
        await client.subscribe(topics.health, qos=1)
        await client.publish(topics.cmd_health, json.dumps({"id": request_id}), qos=1)
        messages = aiter(client.messages)
        while (left := deadline - time.monotonic()) > 0:
            if heard.offline_at is not None and time.monotonic() - heard.offline_at >= OFFLINE_GRACE_S:
                break  # offline, and not coming back right now
            try:
                message = await asyncio.wait_for(anext(messages), timeout=min(left, 0.25))
            except TimeoutError:
                continue
            payload = message.payload if isinstance(message.payload, bytes | bytearray) else b""
            if str(message.topic) == topics.status:
                was, heard.status = heard.status, bytes(payload).decode("utf-8", errors="replace").strip() or None
                heard.offline_at = time.monotonic() if heard.status == "offline" else None
                if heard.status == "online" and was not in (None, "online"):
                    # It came up while we waited (a restart): the request it missed is sent again.
                    await client.publish(topics.cmd_health, json.dumps({"id": request_id}), qos=1)
                continue
            try:
                report = json.loads(bytes(payload))
            except ValueError:
                continue
            if not isinstance(report, dict):
                continue
            if report.get("id") == request_id:
                heard.answer = report
                return heard
            heard.retained_health = report
    return heard


def verdict(heard: Heard, box: str, timeout: float, now: float) -> tuple[str, int]:
    """The line to print (on stderr) and the exit code when the daemon did not answer."""
    last = heard.retained_health or {}
    at = last.get("time") if isinstance(last.get("time"), int | float) else None
    if heard.status == "offline":
        if last.get("status") == "offline" and at is not None:
            since = f"{_local(at)} ({in_words(now - at)} ago)"
            return f"{box}: offline since {since}: the daemon was stopped", EXIT_NO_ANSWER
        said = f"; its last health was {last.get('status')} at {_local(at)}" if at is not None else ""
        return (
            f"{box}: offline: the daemon went away without stopping (a crash, a power cut or a lost "
            f"network: the broker published its last will){said}",
            EXIT_NO_ANSWER,
        )
    if heard.status is None:
        return (
            f"{box}: no answer within {timeout:g} s, and the broker has never heard of this box "
            "(is the daemon started? are box.id and mqtt.topic_prefix the daemon's?)",
            EXIT_NO_ANSWER,
        )
    return f"{box}: no answer within {timeout:g} s, though the broker says it is {heard.status}", EXIT_NO_ANSWER


def code_of(report: dict[str, Any]) -> int:
    status = report.get("status")
    return EXIT_OK if status == "ok" else EXIT_STARTING if status == "starting" else EXIT_UNHEALTHY


def run(config: Config, timeout: float, out: TextIO, err: TextIO) -> int:
    """`nvr-edge health`: the daemon's answer as JSON on stdout, or one line on stderr saying why not."""
    import aiomqtt

    from edge.mqtt import refusal

    mqtt = config.mqtt
    try:
        # The connection counts against --timeout too (a broker behind a dead route never answers).
        heard = asyncio.run(asyncio.wait_for(listen(config, timeout), timeout + OFFLINE_GRACE_S))
    except ValueError as exc:  # the password file went bad since the config was loaded
        print(str(exc), file=err)
        return EXIT_NO_ANSWER
    except (aiomqtt.MqttError, OSError) as exc:
        refused = refusal(exc) if isinstance(exc, aiomqtt.MqttError) else None
        if refused is not None:
            print(f"the broker at {mqtt.host}:{mqtt.port} refused this box: {refused[1]}", file=err)
            return EXIT_NO_ANSWER
        why = _ERRNO.sub("", str(exc)).strip() or "timed out"
        print(f"cannot reach the broker at {mqtt.host}:{mqtt.port}: {why[:1].lower()}{why[1:]}", file=err)
        return EXIT_NO_ANSWER
    if heard.answer is not None:
        print(json.dumps(heard.answer, indent=2), file=out)
        return code_of(heard.answer)
    line, code = verdict(heard, config.box.id, timeout, time.time())
    print(line, file=err)
    return code
