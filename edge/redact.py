"""Masking of credentials in camera URLs, for logs, MQTT payloads and error messages."""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import unquote

_USERINFO = re.compile(r"^(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<userinfo>[^/?#]*)@")


def redact_url(url: str) -> str:
    """`rtsp://user:pass@host/x` -> `rtsp://***@host/x`; URLs without credentials unchanged."""
    try:
        match = _USERINFO.match(url)
    except TypeError:
        return "***"
    if match is None:
        return url
    # The host part starts after the LAST '@' before the path: passwords may contain '@'.
    rest = url[match.end("scheme") :]
    path_start = len(rest)
    for sep in "/?#":
        idx = rest.find(sep, rest.rfind("@") if "@" in rest else 0)
        if idx != -1:
            path_start = min(path_start, idx)
    authority = rest[:path_start]
    if "@" not in authority:
        return url
    return match.group("scheme") + "***@" + authority.rsplit("@", 1)[1] + rest[path_start:]


def _secrets_of(url: str) -> list[str]:
    """The credential strings hidden in `url` (raw and percent-decoded)."""
    match = _USERINFO.match(url)
    if match is None:
        return []
    rest = url[match.end("scheme") :]
    authority = rest.split("/", 1)[0]
    if "@" not in authority:
        return []
    userinfo = authority.rsplit("@", 1)[0]
    found = {userinfo, unquote(userinfo)}
    if ":" in userinfo:
        password = userinfo.split(":", 1)[1]
        found |= {password, unquote(password)}
    return sorted((s for s in found if len(s) >= 3), key=len, reverse=True)


def redact_text(text: str, urls: Iterable[str]) -> str:
    """Replace every full URL and every credential of `urls` found in free text."""
    for url in urls:
        if not url:
            continue
        text = text.replace(url, redact_url(url))
        for secret in _secrets_of(url):
            text = text.replace(secret, "***")
    return text
