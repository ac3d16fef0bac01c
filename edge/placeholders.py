"""The example config's placeholders, refused by name: a box started from the unedited
`config/edge.example.yaml` (which the installer copies into place) says so once, at
check-config or start, instead of logging a `camera_down` for every camera forever.

Each placeholder is a text the example holds where only the installer knows the real
value; a value still holding one is a problem on its own line, with its key path and
line number. The values themselves are never quoted: a camera URL holds a password.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

Loc = tuple[str | int, ...]

CAMERA_PASSWORD = "CHANGE-ME"  # in every camera URL of the example: `rtsp://viewer:CHANGE-ME@...`
BROKER_HOST = "broker.district.example"  # the example's mqtt.host

# Placeholder -> (what it stands for, what to write instead).
PLACEHOLDERS: dict[str, tuple[str, str]] = {
    CAMERA_PASSWORD: ("password", "put the camera's own user and password in it"),
    BROKER_HOST: ("broker host", "write the district broker's host name or address"),
}


def _strings(value: Any, loc: Loc) -> Iterator[tuple[Loc, str]]:
    """Every text value (and mapping key) in plain config data, with its location."""
    if isinstance(value, str):
        yield loc, value
    elif isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, str):
                yield (*loc, key), key
            yield from _strings(item, (*loc, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _strings(item, (*loc, index))


def placeholder_problems(data: Any, line_of: Callable[[Loc], int]) -> list[str]:
    """One `key.path: ... (line N)` per value that still holds one of the example's placeholders."""
    problems = []
    for loc, text in _strings(data, ()):
        folded = text.casefold()
        for placeholder, (what, advice) in PLACEHOLDERS.items():
            if placeholder.casefold() in folded:
                dotted = ".".join(str(part) for part in loc) or "<top>"
                problems.append(
                    f"{dotted}: still holds the example's placeholder {what} {placeholder}: {advice} "
                    f"(line {line_of(loc)})"
                )
                break
    return problems
