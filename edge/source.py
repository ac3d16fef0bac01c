"""RTSP input: open a stream with PyAV over TCP and yield decoded video frames.

Only the transport lives here (timeouts, probing, error wording); what is done with
the frames is the camera worker's business (edge.camera).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import av
import av.error

from edge.redact import redact_text


class SourceError(Exception):
    """The stream could not be opened or read; `fatal` means retrying soon is pointless."""

    def __init__(self, message: str, fatal: bool = False) -> None:
        super().__init__(message)
        self.fatal = fatal


@dataclass(frozen=True, slots=True)
class SourceOptions:
    open_timeout: float = 10.0
    read_timeout: float = 10.0


def _describe(exc: BaseException, url: str) -> SourceError:
    """Turn a PyAV/OS exception into words a person can act on, credentials masked."""
    if isinstance(exc, av.error.HTTPUnauthorizedError | av.error.HTTPForbiddenError):
        return SourceError("camera refused the credentials (401/403): check user and password", fatal=True)
    if isinstance(exc, av.error.HTTPNotFoundError):
        return SourceError("stream path not found on the camera (404)", fatal=True)
    if isinstance(exc, ConnectionRefusedError):
        return SourceError("connection refused (camera down or wrong port)")
    if isinstance(exc, TimeoutError | av.error.ExitError):
        return SourceError("timed out waiting for the camera")
    text = str(exc) or type(exc).__name__
    return SourceError(redact_text(text, [url]))


def open_stream(url: str, options: SourceOptions) -> av.container.InputContainer:
    """Open `url` with short probing (0.4-0.8 s to first frame instead of ~5 s)."""
    try:
        return av.open(
            url,
            options={
                "rtsp_transport": "tcp",
                "analyzeduration": "1000000",
                "probesize": "32768",
            },
            timeout=(options.open_timeout, options.read_timeout),
        )
    except Exception as exc:  # noqa: BLE001 - every failure becomes a worded SourceError
        raise _describe(exc, url) from exc


def select_streams(container: av.container.InputContainer) -> tuple[av.VideoStream, av.AudioStream | None]:
    """The first video stream (required, H.264/H.265/MJPEG) and the first audio stream, if any."""
    if not container.streams.video:
        raise SourceError("the stream has no video track", fatal=True)
    video = container.streams.video[0]
    if video.codec_context.name not in ("h264", "hevc", "mjpeg", "mpeg4"):
        raise SourceError(f"unsupported video codec {video.codec_context.name!r}", fatal=True)
    video.thread_type = "SLICE"  # one thread per stream: many small streams share the cores
    audio = container.streams.audio[0] if container.streams.audio else None
    return video, audio


def demux_packets(
    container: av.container.InputContainer, streams: list[av.stream.Stream], url: str
) -> Iterator[av.Packet]:
    """Packets of `streams` until the stream fails; always ends with a SourceError."""
    try:
        for packet in container.demux(streams):
            if packet.size:
                yield packet
    except SourceError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise _describe(exc, url) from exc
    raise SourceError("the camera ended the stream")


def decode(packet: av.Packet) -> list[av.VideoFrame]:
    """Decode one packet; a corrupt packet costs its frame, not the stream."""
    try:
        return packet.decode()
    except av.error.InvalidDataError:
        return []
