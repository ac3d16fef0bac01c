"""Masking of credentials in camera URLs, for logs, MQTT payloads and error messages.

Installers paste camera passwords into URLs as they are, unescaped: `@`, `#`, `?`, `:`
and even `/` turn up in them. A strict URL parser would then find no credentials at
all and leave the password in the clear, so these functions err the other way: when
unsure, they hide too much rather than too little. Nothing here ever raises.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import unquote

MASK = "***"

_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
# What may follow the userinfo up to the path: host name, IPv4, [IPv6], port.
_HOST = re.compile(r"[A-Za-z0-9._~%!$&'()*+,;=:\[\]-]*")
# Credentials passed as parameters, e.g. old Dahua/XMeye `/user=admin&password=x&channel=1`.
_PARAM = re.compile(r"(?i)(?<=[/?&;])(user|username|usr|password|passwd|pass|pwd|token|secret)=([^&;#/?\s]+)")
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://\S+")
_MIN_SECRET = 3  # shorter secrets are not hunted down in free text (they would mask half the text)


def _split(url: str) -> tuple[str, str, str] | None:
    """(`scheme://`, userinfo, `host...`) when `url` carries a userinfo part, else None.

    The userinfo ends at the last `@` that is followed by something host-like. It may
    contain `/`, `?` or `#` (an unescaped password) only when a `:` comes before them,
    i.e. it reads as `user:pass...`; otherwise such an `@` belongs to the path.
    """
    match = _SCHEME.match(url)
    if match is None:
        return None
    scheme, rest = match.group(), url[match.end() :]
    at = len(rest)
    while (at := rest.rfind("@", 0, at)) != -1:
        host = re.split(r"[/?#]", rest[at + 1 :], maxsplit=1)[0]
        userinfo = rest[:at]
        cut = re.search(r"[/?#]", userinfo)
        if _HOST.fullmatch(host) and (cut is None or ":" in userinfo[: cut.start()]):
            return scheme, userinfo, rest[at + 1 :]
    return None


def redact_url(url: str) -> str:
    """`rtsp://user:pass@host/x` -> `rtsp://***@host/x`; URLs without credentials unchanged.

    Credential parameters (`password=...`, `user=...`) are masked too. Anything that
    is not a string comes back as `***`: a caller logging the result must never be
    the one to crash.
    """
    if not isinstance(url, str):
        return MASK
    try:
        parts = _split(url)
        if parts is not None:
            url = f"{parts[0]}{MASK}@{parts[2]}"
        if _SCHEME.match(url):
            url = _PARAM.sub(lambda m: f"{m.group(1)}={MASK}", url)
        return url
    except Exception:  # pragma: no cover - defensive: regexes on str do not raise
        return MASK


def redact_urls(text: str) -> str:
    """Redact every `scheme://...` URL found in free text (up to the next whitespace)."""
    if not isinstance(text, str):
        return MASK
    return _URL_IN_TEXT.sub(lambda m: redact_url(m.group()), text)


def _secrets_of(url: str) -> list[str]:
    """The credential strings of `url` (raw and percent-decoded), longest first."""
    found: set[str] = set()
    parts = _split(url)
    if parts is not None:
        userinfo = parts[1]
        found |= {userinfo, unquote(userinfo)}
        if ":" in userinfo:
            password = userinfo.split(":", 1)[1]
            found |= {password, unquote(password)}
    for match in _PARAM.finditer(url):
        if match.group(1).lower() not in ("user", "username", "usr"):
            found |= {match.group(2), unquote(match.group(2))}
    return sorted((s for s in found if len(s) >= _MIN_SECRET), key=len, reverse=True)


def redact_text(text: str, urls: Iterable[str]) -> str:
    """Hide `urls` and their credentials in free text, e.g. an FFmpeg error message.

    Each full URL becomes its redacted form; each password (raw or percent-decoded, at
    least 3 characters) becomes `***` wherever it appears on its own; finally any
    other URL with a userinfo part is redacted too.
    """
    if not isinstance(text, str):
        return MASK
    try:
        valid = sorted({u for u in urls if isinstance(u, str) and u}, key=len, reverse=True)
    except TypeError:
        valid = []
    if not valid:
        return redact_urls(text)
    secrets = sorted({s for url in valid for s in _secrets_of(url)}, key=len, reverse=True)
    # Whole URLs first, in one pass, so that a password that happens to look like part of
    # a URL (`://`, `10.0`) cannot break the URL apart before it is recognised.
    pieces = re.split("(" + "|".join(map(re.escape, valid)) + ")", text)
    out = []
    for i, piece in enumerate(pieces):
        if i % 2:
            out.append(redact_url(piece))
            continue
        for secret in secrets:
            piece = piece.replace(secret, MASK)
        out.append(redact_urls(piece))
    return "".join(out)
