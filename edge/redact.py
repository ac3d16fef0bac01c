"""Masking of credentials in camera URLs, for logs, MQTT payloads and error messages.

Installers paste camera passwords into URLs as they are, unescaped: `@`, `#`, `?`, `:`
and even `/` turn up in them. So the userinfo ends at the last `@` that is followed by
a strict `host[:port]` (a name, an IPv4 address or a bracketed IPv6 address; a port of
1-65535). A URL that does not parse as a whole that way (the host forgotten, as in
`rtsp://admin:Zq@7:xSECRETx`) keeps nothing but its scheme: when unsure, these
functions hide too much rather than too little. Nothing here ever raises.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from typing import NamedTuple
from urllib.parse import unquote

MASK = "***"

_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
_HOSTNAME = re.compile(r"[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*\.?")
_PORT = re.compile(r"[0-9]{1,5}")
_ZONE = re.compile(r"[A-Za-z0-9._~-]+")
_NUMERIC = re.compile(r"[0-9.]+")
_UNBALANCED = "has unbalanced [ ] (an IPv6 address is written [fe80::1])"
_END_OF_AUTHORITY = re.compile(r"[/?#]")
# Credentials passed as parameters, e.g. old Dahua/XMeye `/user=admin&password=x&channel=1`.
_PARAM = re.compile(r"(?i)(?<=[/?&;])(user|username|usr|password|passwd|pass|pwd|token|secret)=([^&;#/?\s]+)")
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://\S+")
_TRAILING = ".,;:'\")]}>"  # punctuation that ends a sentence around a URL, not the URL
_MIN_SECRET = 3  # shorter secrets are not hunted down in free text (they would mask half the text)


class UrlParts(NamedTuple):
    """A URL that parsed as a whole: `scheme://[userinfo@]hostport[tail]`."""

    scheme: str  # with its `://`
    userinfo: str | None
    hostport: str
    tail: str  # path, query and fragment, from the first `/`, `?` or `#`


def hostport_problem(hostport: str) -> str | None:
    """None when `hostport` is a strict `host[:port]`, else why not (never quoting it)."""
    if hostport.startswith("["):
        end = hostport.find("]")
        if end == -1:
            return _UNBALANCED
        if not _ipv6(hostport[1:end]):
            return "has no valid IPv6 address between [ and ]"
        host, after = hostport[: end + 1], hostport[end + 1 :]
    else:
        host, colon, port = hostport.partition(":")
        after = colon + port
        if not host:
            return "has no host"
        if "[" in hostport or "]" in hostport:
            return _UNBALANCED
        if not _valid_host(host):
            return "has no valid host name or address"
    if not after:
        return None
    if "[" in after or "]" in after:
        return _UNBALANCED
    if not (after.startswith(":") and _PORT.fullmatch(after[1:]) and 1 <= int(after[1:]) <= 65535):
        return "has a port that is not a number from 1 to 65535"
    return None


def _valid_host(host: str) -> bool:
    """A DNS-style name, or a dotted-quad IPv4 address when it is only digits and dots."""
    if not _HOSTNAME.fullmatch(host):
        return False
    if _NUMERIC.fullmatch(host):
        try:
            ipaddress.IPv4Address(host.rstrip("."))
        except ValueError:
            return False
    return True


def _ipv6(text: str) -> bool:
    """An IPv6 address, with an optional zone written `%25zone` (RFC 6874)."""
    address, sep, zone = text.partition("%25")
    if "%" in address or (sep and not _ZONE.fullmatch(zone)):
        return False
    try:
        ipaddress.IPv6Address(address)
    except ValueError:
        return False
    return True


def _cut(text: str) -> tuple[str, str]:
    """(authority part, tail) of what follows `scheme://` or the userinfo's `@`."""
    match = _END_OF_AUTHORITY.search(text)
    return (text, "") if match is None else (text[: match.start()], text[match.start() :])


def parse_url(url: str) -> UrlParts | None:
    """The parts of `url` when it parses as a whole, else None.

    The userinfo ends at the last `@` followed by a valid `host[:port]`; it may contain
    `/`, `?` or `#` (an unescaped password) only when a `:` comes before them, i.e. it
    reads as `user:pass...`; otherwise such an `@` belongs to the path."""
    match = _SCHEME.match(url)
    if match is None:
        return None
    scheme, rest = match.group(), url[match.end() :]
    at = len(rest)
    while (at := rest.rfind("@", 0, at)) != -1:
        userinfo = rest[:at]
        cut = _END_OF_AUTHORITY.search(userinfo)
        if cut is not None and ":" not in userinfo[: cut.start()]:
            continue
        hostport, tail = _cut(rest[at + 1 :])
        if hostport_problem(hostport) is None:
            return UrlParts(scheme, userinfo, hostport, tail)
    hostport, tail = _cut(rest)
    return UrlParts(scheme, None, hostport, tail) if hostport_problem(hostport) is None else None


def url_problem(url: str) -> str | None:
    """None when `url` parses as a whole, else why not, for a config error (never quoting it)."""
    match = _SCHEME.match(url)
    if match is None:
        return "has no scheme://"
    if parse_url(url) is not None:
        return None
    rest = url[match.end() :]
    userinfo, _, after = rest.rpartition("@")
    cut = _END_OF_AUTHORITY.search(userinfo)
    if userinfo and cut is not None and ":" not in userinfo[: cut.start()]:
        after = rest  # that @ is in the path
    return hostport_problem(_cut(after)[0]) or "is not a valid URL"


def redact_url(url: str) -> str:
    """`rtsp://user:pass@host/x` -> `rtsp://***@host/x`; URLs without credentials unchanged.

    Credential parameters (`password=...`, `user=...`) are masked too. A URL that does
    not parse as a whole becomes `scheme://***`. Anything that is not a string comes
    back as `***`: a caller logging the result must never be the one to crash.
    """
    if not isinstance(url, str):
        return MASK
    try:
        match = _SCHEME.match(url)
        if match is None:
            return url
        parts = parse_url(url)
        if parts is None:
            return match.group() + MASK
        userinfo = "" if parts.userinfo is None else MASK + "@"
        tail = _PARAM.sub(lambda m: f"{m.group(1)}={MASK}", parts.tail)
        return f"{parts.scheme}{userinfo}{parts.hostport}{tail}"
    except Exception:  # pragma: no cover - defensive: regexes on str do not raise
        return MASK


def _redact_in_text(match: re.Match[str]) -> str:
    """One URL found in text; punctuation ending a sentence stays out when the URL needs it to."""
    url = match.group()
    if parse_url(url) is None:
        core = url.rstrip(_TRAILING)
        if core != url and parse_url(core) is not None:
            return redact_url(core) + url[len(core) :]
    return redact_url(url)


def redact_urls(text: str) -> str:
    """Redact every `scheme://...` URL found in free text (up to the next whitespace).

    Punctuation that ends a sentence (`rtsp://h/x,`) stays outside the URL when the URL
    parses only without it."""
    if not isinstance(text, str):
        return MASK
    return _URL_IN_TEXT.sub(_redact_in_text, text)


def _secrets_of(url: str) -> list[str]:
    """The credential strings of `url` (raw and percent-decoded), longest first.

    For a URL that does not parse, everything after the scheme is suspect: the whole of
    it and each piece between its `@` and `:`."""
    found: set[str] = set()
    parts = parse_url(url)
    if parts is not None and parts.userinfo is not None:
        userinfo = parts.userinfo
        found |= {userinfo, unquote(userinfo)}
        if ":" in userinfo:
            password = userinfo.split(":", 1)[1]
            found |= {password, unquote(password)}
    elif parts is None and (match := _SCHEME.match(url)):
        rest = url[match.end() :]
        pieces = {rest, *re.split(r"[@:]", rest), *rest.split("@")}
        found |= pieces | {unquote(p) for p in pieces}
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
