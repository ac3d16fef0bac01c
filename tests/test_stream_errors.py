"""FFmpeg's errors in words (issue 18): real FFmpeg (PyAV) opening real sockets that
refuse, answer garbage or answer an RTSP error status, and URLs FFmpeg itself rejects.
No message shows an error number, FFmpeg's `returned N` or a password."""

from __future__ import annotations

import re
import socket
import threading
from collections.abc import Callable, Iterator

import pytest

from edge.source import SourceError, SourceOptions, open_stream

SECRET = "pw-Zq7x"
NUMBERS = re.compile(r"Errno|returned -?\d+|\d{6,}")


@pytest.fixture
def answering() -> Iterator[Callable[[bytes], str]]:
    """`answer(reply)`: a URL whose server reads the request, sends `reply` and hangs up."""
    sockets: list[socket.socket] = []

    def answer(reply: bytes) -> str:
        server = socket.create_server(("127.0.0.1", 0))
        sockets.append(server)

        def serve() -> None:
            while True:
                try:
                    conn, _ = server.accept()
                except OSError:
                    return
                with conn:
                    conn.recv(4096)
                    conn.sendall(reply)

        threading.Thread(target=serve, daemon=True).start()
        return f"rtsp://admin:{SECRET}@127.0.0.1:{server.getsockname()[1]}/stream1"

    yield answer
    for server in sockets:
        server.close()


def _error(url: str) -> SourceError:
    with pytest.raises(SourceError) as info:
        open_stream(url, SourceOptions(open_timeout=3, read_timeout=3), poll=3)
    message = str(info.value)
    assert not NUMBERS.search(message), message
    assert SECRET not in message and "admin" not in message, message
    return info.value


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_refused() -> None:
    error = _error(f"rtsp://admin:{SECRET}@127.0.0.1:{_closed_port()}/x")
    assert str(error) == "connection refused (camera down or wrong port)" and not error.fatal


def test_a_url_ffmpeg_rejects_says_so_in_words() -> None:
    """Was `Invalid argument: 'rtsp://...' returned 22`."""
    error = _error(f"rtsp://admin:{SECRET}@[fe80::1%25nosuchif9]:554/x")
    assert str(error).startswith("FFmpeg cannot use this URL (check the host, port and path;") and error.fatal


def test_an_answer_that_is_not_rtsp_says_so_in_words(answering: Callable[[bytes], str]) -> None:
    """Was `[Errno 1094995529] Invalid data found when processing input: '...'`."""
    error = _error(answering(b"HTTP/1.0 200 OK\r\nContent-Type: text/html\r\n\r\n<html>camera web page</html>"))
    assert str(error).startswith("the camera's answer is not an RTSP stream FFmpeg can read (the wrong port")


@pytest.mark.parametrize(
    ("status", "words", "fatal"),
    [
        ("400 Bad Request", "the camera refused the request (400 Bad Request): check the path", True),
        ("404 Not Found", "stream path not found on the camera (404)", True),
        ("454 Session Not Found", "the camera refused the request (4xx): check the path", False),
        ("503 Service Unavailable", "the camera answered with a server error (5xx): it may be busy", False),
    ],
)
def test_rtsp_error_statuses(answering: Callable[[bytes], str], status: str, words: str, fatal: bool) -> None:
    error = _error(answering(f"RTSP/1.0 {status}\r\nCSeq: 1\r\n\r\n".encode()))
    assert str(error).startswith(words) and error.fatal is fatal


def test_a_host_name_that_does_not_resolve() -> None:
    """FFmpeg says only `Input/output error`; the name is looked up to say what it is."""
    error = _error(f"rtsp://admin:{SECRET}@no-such-camera.invalid:554/x")
    assert str(error).startswith("no such host: no-such-camera.invalid does not resolve")
