"""FFmpeg's errors as words a technician can act on: the one place both the camera worker
(edge/source.py) and `nvr-edge probe` (edge/probe.py) get them from.

FFmpeg reports a URL it cannot use as `Invalid argument: '...' returned 22`, a reply it
cannot parse as `[Errno 1094995529] Invalid data found when processing input`, and a
host name that does not resolve as a bare `Input/output error`. Each becomes one short
sentence saying what is wrong and what to check; `fatal` marks what retrying soon
cannot fix (the daemon then retries slowly). No message quotes the URL: whatever is
left of FFmpeg's own text is passed through redaction.
"""

from __future__ import annotations

import errno
import socket
from dataclasses import dataclass

import av.error

from edge.redact import parse_url, redact_text


@dataclass(frozen=True, slots=True)
class Words:
    """What went wrong, in words, and whether a quick retry is pointless."""

    message: str
    fatal: bool = False


_INVALID_URL = (
    "FFmpeg cannot use this URL (check the host, port and path; in the password write @ as %40, "
    ": as %3A, / as %2F, # as %23 and a space as %20)"
)
_HTTP_CLASSES: tuple[tuple[type[BaseException], Words], ...] = (
    (
        av.error.HTTPUnauthorizedError,
        Words("authentication failed (401): check the user and password in the URL", fatal=True),
    ),
    (av.error.HTTPForbiddenError, Words("access denied (403): this user may not view the stream", fatal=True)),
    (av.error.HTTPNotFoundError, Words("stream path not found on the camera (404)", fatal=True)),
    (
        av.error.HTTPBadRequestError,
        Words("the camera refused the request (400 Bad Request): check the path and its parameters", fatal=True),
    ),
    (
        av.error.HTTPTooManyRequestsError,
        Words("the camera refused: too many requests (429); it may allow only a few viewers at once"),
    ),
    (av.error.HTTPOtherClientError, Words("the camera refused the request (4xx): check the path")),
    (
        av.error.HTTPServerError,
        Words("the camera answered with a server error (5xx): it may be busy (too many viewers) or rebooting"),
    ),
)
_ERRNO_WORDS = {
    errno.ECONNREFUSED: "connection refused (camera down or wrong port)",
    errno.ETIMEDOUT: "timed out waiting for the camera",
    errno.EHOSTUNREACH: "no route to the camera's address (wrong address, or the camera is off the network)",
    errno.ENETUNREACH: "the camera's network cannot be reached from this box (wrong address or no route)",
    errno.ECONNRESET: "the camera closed the connection (too many viewers, or it restarted)",
    errno.EPIPE: "the camera closed the connection (too many viewers, or it restarted)",
    errno.ECONNABORTED: "the connection to the camera was aborted",
}


def _host(url: str) -> str | None:
    parts = parse_url(url)
    if parts is None:
        return None
    host = parts.hostport
    if host.startswith("["):
        return host[1 : host.find("]")].split("%25")[0]
    return host.split(":")[0]


def _resolves(host: str) -> bool:
    """The host name resolves (asked only after a failure, to tell DNS from the rest)."""
    try:
        socket.getaddrinfo(host, None)
    except (OSError, UnicodeError):
        return False
    return True


def describe(exc: BaseException, url: str, reading: bool = False, waited: float | None = None) -> Words:
    """Turn a PyAV/OS exception raised for `url` into words, credentials masked.

    `reading`: it came while reading packets of an opened stream, not while opening it.
    `waited`: the open gave up after its read timeout (FFmpeg then reports a camera that
    accepted the connection and never answered as invalid data)."""
    for kind, words in _HTTP_CLASSES:
        if isinstance(exc, kind):
            return words
    if isinstance(exc, TimeoutError | av.error.ExitError):
        return Words("timed out waiting for the camera")
    code = getattr(exc, "errno", None)
    if isinstance(exc, ConnectionRefusedError) or code == errno.ECONNREFUSED:
        return Words(_ERRNO_WORDS[errno.ECONNREFUSED])
    if isinstance(exc, av.error.ArgumentError) or code == errno.EINVAL:
        return Words(_INVALID_URL, fatal=True)
    if isinstance(exc, av.error.InvalidDataError):
        if waited is not None:
            return Words(
                f"timed out waiting for the camera (it took the connection but said nothing for {waited:.0f} s)"
            )
        if reading:
            return Words("the stream broke off: the camera sent data FFmpeg cannot read")
        return Words(
            "the camera's answer is not an RTSP stream FFmpeg can read (the wrong port, e.g. its web port, "
            "or the camera hung up: too many viewers, or it wants a password the URL lacks)"
        )
    if isinstance(exc, av.error.ProtocolNotFoundError):
        return Words("this FFmpeg cannot speak the URL's protocol (rtsps needs TLS support)", fatal=True)
    if code == errno.EIO:
        host = None if reading else _host(url)
        if host is not None and not _resolves(host):
            return Words(f"no such host: {host} does not resolve (check the name, or use the camera's address)")
        return Words("input/output error talking to the camera")
    if isinstance(code, int) and code in _ERRNO_WORDS:
        return Words(_ERRNO_WORDS[code])
    return Words(_plain(exc, url))


def _plain(exc: BaseException, url: str) -> str:
    """Whatever FFmpeg said, without its error number, its `returned N` or the URL."""
    text = getattr(exc, "strerror", None) if isinstance(exc, OSError) else None
    text = text or str(exc) or type(exc).__name__
    return redact_text(f"{text[:1].lower()}{text[1:]} (FFmpeg)", [url])
