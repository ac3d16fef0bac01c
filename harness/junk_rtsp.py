"""A hostile RTSP server: it announces one H.264 video track, then sends random bytes as
its interleaved RTP payloads (RTSP over TCP, as the daemon asks for).

GStreamer's server cannot be made to send garbage behind a valid session, so this is
a few dozen lines of plain sockets. Each client gets its own session; a session ends
after `session_seconds` (the client then reconnects, as after a camera reboot).
"""

from __future__ import annotations

import random
import socket
import struct
import threading
import time
from collections.abc import Callable

from harness.camsim import pick_port

SDP = (
    "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=junk\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\n"
    "m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=fmtp:96 packetization-mode=1\r\n"
    "a=control:trackID=0\r\n"
)


class JunkRtspServer:
    """`url` serves random RTP payloads at `fps` packets a second."""

    def __init__(self, host: str = "127.0.0.1", fps: float = 25.0, session_seconds: float = 2.0, seed: int = 1) -> None:
        self.host, self.port = host, pick_port(host)
        self.url = f"rtsp://{host}:{self.port}/junk"
        self.fps, self.session_seconds = fps, session_seconds
        self.sessions = 0  # PLAYs answered
        self._rng = random.Random(seed)
        self._stop = threading.Event()
        self._sock: socket.socket | None = None
        self._threads: list[threading.Thread] = []

    def start(self) -> JunkRtspServer:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        sock.listen(16)
        sock.settimeout(0.2)
        self._sock = sock
        self._spawn(self._accept)
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=2)
        if self._sock is not None:
            self._sock.close()

    def __enter__(self) -> JunkRtspServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _spawn(self, target: Callable[..., None], *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _accept(self) -> None:
        assert self._sock is not None
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._spawn(self._session, conn)

    def _session(self, conn: socket.socket) -> None:
        conn.settimeout(5.0)
        buffer = b""
        try:
            while not self._stop.is_set():
                while b"\r\n\r\n" not in buffer:
                    chunk = conn.recv(4096)
                    if not chunk:
                        return
                    buffer += chunk
                head, buffer = buffer.split(b"\r\n\r\n", 1)
                lines = head.decode("latin-1").split("\r\n")
                method = lines[0].split(" ", 1)[0]
                headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
                conn.sendall(self._answer(method, headers.get("cseq", "0")))
                if method == "PLAY":
                    self.sessions += 1
                    self._junk(conn)
                    return
        except OSError:
            return
        finally:
            conn.close()

    def _answer(self, method: str, cseq: str) -> bytes:
        extra, body = "", ""
        if method == "OPTIONS":
            extra = "Public: OPTIONS, DESCRIBE, SETUP, PLAY, TEARDOWN\r\n"
        elif method == "DESCRIBE":
            extra = f"Content-Base: {self.url}/\r\nContent-Type: application/sdp\r\n"
            body = SDP
        elif method == "SETUP":
            extra = "Transport: RTP/AVP/TCP;unicast;interleaved=0-1\r\nSession: 12345678;timeout=60\r\n"
        elif method == "PLAY":
            extra = "Session: 12345678\r\nRange: npt=0.000-\r\n"
        return f"RTSP/1.0 200 OK\r\nCSeq: {cseq}\r\n{extra}Content-Length: {len(body)}\r\n\r\n{body}".encode()

    def _junk(self, conn: socket.socket) -> None:
        """Valid RTP headers around random payloads, paced at `fps`, for `session_seconds`."""
        seq, started = 0, time.monotonic()
        while not self._stop.is_set() and time.monotonic() - started < self.session_seconds:
            payload = self._rng.randbytes(self._rng.randrange(20, 1400))
            ts = int((time.monotonic() - started) * 90000)
            rtp = struct.pack(">BBHII", 0x80, 0x80 | 96, seq & 0xFFFF, ts & 0xFFFFFFFF, 0x1234) + payload
            conn.sendall(b"$\x00" + struct.pack(">H", len(rtp)) + rtp)
            seq += 1
            time.sleep(1.0 / self.fps)
