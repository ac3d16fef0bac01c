"""The district's view of its boxes, from the broker: `nvr-edge tail` and `nvr-edge roll-call`.

Both only listen (they publish nothing) to `<prefix>/+/...`, so they see every box under
the prefix. They connect with the same MQTT settings as the daemon (TLS, user name and
password file), taken from a daemon config's `mqtt:` section and/or the command line.

- `tail`: every event of every box as one line: box, camera, type, time, score.
- `roll-call`: every box seen (its retained `status`; its retained health) with its
  status, the age of its last stats and its cameras' states. Stats are not retained, so
  it listens until every online box has sent one, or `--wait` seconds (default a little
  more than the default stats interval). Exit 0 when every box seen is online.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from pydantic import ValidationError

from edge.config import MqttConfig

if TYPE_CHECKING:  # aiomqtt is imported where used: `nvr-edge --version` and `--help` stay light
    import aiomqtt

EXIT_OK, EXIT_NOT_ALL_ONLINE, EXIT_BAD = 0, 1, 2
RETAINED_GRACE_S = 1.0  # retained messages arrive right after the subscription
RECONNECT_S = 5.0


class SettingsError(Exception):
    """The MQTT settings given cannot be used (one line for the user)."""


def settings(args: argparse.Namespace, load: Callable[[str], Any], default_config: str | None = None) -> MqttConfig:
    """A daemon config's `mqtt:` with the flags on top. The config is --config, else (without
    --host) `default_config` when that file exists. `load` reads a daemon config, printing
    its problems, and returns None when it is bad."""
    base: dict[str, Any] = {}
    path = args.config or (
        default_config if not args.host and default_config and Path(default_config).exists() else None
    )
    if path:
        config = load(path)
        if config is None:
            raise SettingsError(f"cannot use {path}")
        base = config.mqtt.model_dump(exclude={"client_id"})
    elif not args.host:
        raise SettingsError("give --host (and --port, --prefix), or --config with a daemon config")
    flags = {
        "host": args.host,
        "port": args.port,
        "topic_prefix": args.prefix,
        "username": args.username,
        "password_file": args.password_file,
    }
    base.update({key: value for key, value in flags.items() if value is not None})
    if args.ca_file:
        base["tls"] = {**(base.get("tls") or {}), "ca_file": args.ca_file}
    try:
        return MqttConfig.model_validate(base)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise SettingsError(f"mqtt.{'.'.join(map(str, first['loc']))}: {first['msg']}") from None


def _client(cfg: MqttConfig, role: str) -> aiomqtt.Client:
    from edge.mqtt import MqttLink

    return MqttLink.client_for(cfg, f"nvr-edge-{role}-{uuid.uuid4().hex[:8]}", will=None)


def _why(exc: BaseException) -> str:
    import aiomqtt

    from edge.mqtt import refusal

    refused = refusal(exc) if isinstance(exc, aiomqtt.MqttError) else None
    return refused[1] if refused else str(exc) or type(exc).__name__


def _box_of(topic: str, prefix: str) -> str | None:
    """`<prefix>/<box>/...` -> box."""
    head = prefix + "/"
    if not topic.startswith(head):
        return None
    box = topic[len(head) :].split("/", 1)[0]
    return box or None


def _clock(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) + f".{int(t * 1000) % 1000:03d}"


# ------------------------------------------------------------------------------------
# tail
# ------------------------------------------------------------------------------------


def event_line(box: str, event: dict[str, Any], received: float) -> str:
    """One event as one line: box, camera, type, time, score (an end also says why)."""
    kind = str(event.get("type", "?"))
    at = event.get("end_time") if kind == "end" else event.get("start_time") if kind == "start" else None
    at = float(at) if isinstance(at, int | float) else received
    score = event.get("peak_score" if kind == "end" else "score")
    text = f"{box:<16} {event.get('camera', '?')!s:<16} {kind:<6} {_clock(at)}  "
    text += f"score {score:.4f}" if isinstance(score, int | float) else "score -"
    if kind == "end" and event.get("reason"):
        text += f"  ({event['reason']})"
    return text


async def tail(
    cfg: MqttConfig, out: TextIO, err: TextIO, count: int | None = None, seconds: float | None = None
) -> int:
    """Print events until `count` of them or `seconds` passed (else forever). A broker that
    cannot be reached at first is an error; a connection lost later is retried."""
    import aiomqtt

    topic = f"{cfg.topic_prefix}/+/events"
    printed, connected_once = 0, False
    deadline = None if seconds is None else time.monotonic() + seconds
    while True:
        try:
            async with asyncio.timeout(None if deadline is None else max(0.0, deadline - time.monotonic())):
                async with _client(cfg, "tail") as client:
                    await client.subscribe(topic, qos=1)
                    connected_once = True
                    async for message in client.messages:
                        box = _box_of(str(message.topic), cfg.topic_prefix) or "?"
                        try:
                            event = json.loads(bytes(message.payload))  # type: ignore[arg-type]
                            line = event_line(box, event, time.time())
                        except (TypeError, ValueError, AttributeError):
                            print(f"{box}: unreadable event on {message.topic}", file=err, flush=True)
                            continue
                        print(line, file=out, flush=True)
                        printed += 1
                        if count is not None and printed >= count:
                            return EXIT_OK
        except TimeoutError:
            return EXIT_OK
        except (aiomqtt.MqttError, OSError) as exc:
            if not connected_once:
                print(f"tail: cannot connect to {cfg.host}:{cfg.port}: {_why(exc)}", file=err, flush=True)
                return EXIT_BAD
            print(f"tail: connection lost ({_why(exc)}), retrying in {RECONNECT_S:g} s", file=err, flush=True)
            await asyncio.sleep(RECONNECT_S)


# ------------------------------------------------------------------------------------
# roll-call
# ------------------------------------------------------------------------------------


@dataclass
class Box:
    """What the broker told about one box."""

    status: str | None = None  # retained P/status
    stats: dict[str, Any] | None = None
    stats_at: float | None = None  # when the last stats arrived (this machine's clock)
    health: dict[str, Any] | None = None  # retained P/health

    def camera_states(self) -> dict[str, str]:
        """From the last stats; else from the retained health (`ok` there means streaming).
        A box that is not online has cameras of unknown state, whatever it last said (issue 18)."""
        if self.stats and isinstance(self.stats.get("cameras"), dict):
            return {cam: str(v.get("state", "?")) for cam, v in self.stats["cameras"].items() if isinstance(v, dict)}
        checks = (self.health or {}).get("checks", {})
        cams = checks.get("cameras", {}) if isinstance(checks, dict) else {}
        if not isinstance(cams, dict):
            return {}
        if self.status != "online":
            return dict.fromkeys(cams, "unknown")
        return {cam: "streaming" if v == "ok" else str(v) for cam, v in cams.items()}


def _take(boxes: dict[str, Box], prefix: str, topic: str, payload: bytes, now: float) -> None:
    box_id = _box_of(topic, prefix)
    if box_id is None:
        return
    kind = topic[len(prefix) + len(box_id) + 2 :]
    box = boxes.setdefault(box_id, Box())
    if kind == "status":
        box.status = payload.decode("utf-8", errors="replace").strip() or None
        return
    try:
        data = json.loads(payload)
    except ValueError:
        return
    if not isinstance(data, dict):
        return
    if kind == "stats":
        box.stats, box.stats_at = data, now
    elif kind == "health":
        box.health = data


async def listen(cfg: MqttConfig, wait: float) -> dict[str, Box]:
    """Collect the boxes' status, stats and health for up to `wait` seconds, less once every
    online box has sent stats."""
    prefix = cfg.topic_prefix
    boxes: dict[str, Box] = {}
    started = time.monotonic()
    async with _client(cfg, "roll-call") as client:
        for kind in ("status", "stats", "health"):
            await client.subscribe(f"{prefix}/+/{kind}", qos=1)
        messages = aiter(client.messages)
        while (left := wait - (time.monotonic() - started)) > 0:
            if time.monotonic() - started >= RETAINED_GRACE_S and all(
                b.stats_at is not None for b in boxes.values() if b.status == "online"
            ):
                break
            try:
                message = await asyncio.wait_for(anext(messages), timeout=min(left, 0.25))
            except TimeoutError:
                continue
            payload = message.payload if isinstance(message.payload, bytes | bytearray) else b""
            _take(boxes, prefix, str(message.topic), bytes(payload), time.time())
    return boxes


def report(boxes: dict[str, Box], now: float) -> tuple[list[str], int]:
    """The table's lines and the exit code."""
    if not boxes:
        return ["no box seen under this prefix"], EXIT_BAD
    lines = [f"{'box':<16} {'status':<8} {'stats':>8}  cameras"]
    for box_id in sorted(boxes):
        box = boxes[box_id]
        age = "-" if box.stats_at is None else f"{now - box.stats_at:.1f} s"
        states = box.camera_states()
        cams = ", ".join(f"{cam} {state}" for cam, state in states.items()) or "-"
        lines.append(f"{box_id:<16} {box.status or 'unknown':<8} {age:>8}  {cams}")
    online = sum(1 for b in boxes.values() if b.status == "online")
    lines.append(f"{len(boxes)} box(es): {online} online, {len(boxes) - online} not")
    return lines, EXIT_OK if online == len(boxes) else EXIT_NOT_ALL_ONLINE


async def roll_call(cfg: MqttConfig, out: TextIO, err: TextIO, wait: float) -> int:
    import aiomqtt

    try:
        boxes = await listen(cfg, wait)
    except (aiomqtt.MqttError, OSError) as exc:
        print(f"roll-call: cannot connect to {cfg.host}:{cfg.port}: {_why(exc)}", file=err)
        return EXIT_BAD
    lines, code = report(boxes, time.time())
    print("\n".join(lines), file=out, flush=True)
    return code


# ------------------------------------------------------------------------------------
# command line
# ------------------------------------------------------------------------------------


def run(args: argparse.Namespace, load: Callable[[str], Any], default_config: str | None = None) -> int:
    """`nvr-edge tail` / `nvr-edge roll-call` (edge/cli.py parses, this runs)."""
    try:
        cfg = settings(args, load, default_config)
        if cfg.password_file is not None and not Path(cfg.password_file).is_file():
            raise SettingsError(f"mqtt.password_file: cannot read {cfg.password_file}")
    except SettingsError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_BAD
    try:
        if args.command == "tail":
            return asyncio.run(tail(cfg, sys.stdout, sys.stderr, args.count, args.seconds))
        return asyncio.run(roll_call(cfg, sys.stdout, sys.stderr, args.wait))
    except KeyboardInterrupt:
        return EXIT_OK
