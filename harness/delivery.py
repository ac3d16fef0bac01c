"""Produced against received: did every event the daemon raised reach the subscriber, in order?

"Produced" is the daemon's own record: its `event` log line, written right after the
message was committed to the outbox. "Received" is what a subscriber got on `P/events`.
Delivery is at-least-once (SPEC 3.1), so duplicates are allowed and counted apart;
order is checked per camera on the first arrival of each (id, type).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

Key = tuple[str, str, str]  # (camera, event id, type)


def produced(log_lines: Iterable[dict[str, Any]]) -> list[Key]:
    """The events the daemon queued, in the order it queued them."""
    return [
        (str(line["camera"]), str(line["id"]), str(line["type"])) for line in log_lines if line.get("event") == "event"
    ]


def received(payloads: Iterable[bytes]) -> list[dict[str, Any]]:
    """Event JSON objects from the raw payloads of `P/events`, in arrival order."""
    return [json.loads(p) for p in payloads]


@dataclass
class Tally:
    produced: int = 0
    received: int = 0
    duplicates: int = 0
    missing: list[Key] = field(default_factory=list)
    out_of_order: list[str] = field(default_factory=list)  # one line per camera whose order differs

    def line(self) -> str:
        return (
            f"produced {self.produced}, received {self.received} ({self.duplicates} duplicates), "
            f"missing {len(self.missing)}, cameras out of order {len(self.out_of_order)}"
        )


def tally(made: list[Key], got: list[dict[str, Any]]) -> Tally:
    arrivals: list[Key] = [(str(e["camera"]), str(e["id"]), str(e["type"])) for e in got]
    first_seen: list[Key] = list(dict.fromkeys(arrivals))
    seen = set(first_seen)
    result = Tally(produced=len(made), received=len(first_seen), duplicates=len(arrivals) - len(first_seen))
    result.missing = [key for key in made if key not in seen]
    made_set = set(made)
    for camera in sorted({k[0] for k in made}):
        want = [k for k in dict.fromkeys(made) if k[0] == camera and k in seen]
        have = [k for k in first_seen if k[0] == camera and k in made_set]
        if have != want:
            result.out_of_order.append(f"{camera}: produced {want[:6]}..., received {have[:6]}...")
    return result
