"""A real Mosquitto broker on a free loopback port, for tests, the demo and benchmarks.

Tests must be able to stop and restart the broker (outage tests), so it is run as a
child process on a port chosen once and kept across restarts.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Protocol


class _TlsFiles(Protocol):
    """A TLS listener's files (harness.tls.ServerTls has them)."""

    @property
    def ca_file(self) -> Path: ...
    @property
    def cert_file(self) -> Path: ...
    @property
    def key_file(self) -> Path: ...


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _mosquitto_binary() -> str:
    for candidate in (shutil.which("mosquitto"), "/usr/sbin/mosquitto"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise RuntimeError("mosquitto not found: install the Debian package 'mosquitto'")


class Mosquitto:
    """Runs `mosquitto -c CONF` with an anonymous listener on 127.0.0.1:port.

    With `persistent=True` the broker keeps sessions and their queued QoS 1 messages on
    disk across stop()/start(), as a district broker does: a subscriber with a
    persistent session then misses nothing published while it was away.

    With `tls` (e.g. harness.tls.ServerTls: ca_file, cert_file, key_file) the listener
    speaks TLS only; with `password_file` (mosquitto_passwd format) anonymous clients
    are refused, as on a district broker.

    `message_size_limit` makes the broker refuse larger payloads (MQTT 5: PUBACK reason
    149; 3.1.1: acknowledged and dropped); `max_packet_size` makes it drop the connection
    of a client that sends a larger packet, with no reason given: strict brokers do both."""

    def __init__(
        self,
        port: int | None = None,
        workdir: Path | None = None,
        persistent: bool = False,
        *,
        tls: _TlsFiles | None = None,
        password_file: Path | None = None,
        message_size_limit: int | None = None,
        max_packet_size: int | None = None,
    ) -> None:
        self.port = port or free_port()
        self.host = "127.0.0.1"
        self._workdir = Path(workdir or tempfile.mkdtemp(prefix="nvr-mosquitto-"))
        self._workdir.mkdir(parents=True, exist_ok=True)
        self._persistent = persistent
        self._tls = tls
        self._password_file = password_file
        self._limits = [
            f"{key} {value}"
            for key, value in (("message_size_limit", message_size_limit), ("max_packet_size", max_packet_size))
            if value is not None
        ]
        self._proc: subprocess.Popen[bytes] | None = None

    def _write_conf(self) -> Path:
        conf = self._workdir / "mosquitto.conf"
        lines = [
            f"listener {self.port} 127.0.0.1",
            *(
                [f"cafile {self._tls.ca_file}", f"certfile {self._tls.cert_file}", f"keyfile {self._tls.key_file}"]
                if self._tls is not None
                else []
            ),
            *(
                ["allow_anonymous false", f"password_file {self._password_file}"]
                if self._password_file is not None
                else ["allow_anonymous true"]
            ),
            *(
                [f"persistence true\npersistence_location {self._workdir}/", "max_queued_messages 0"]
                if self._persistent
                else ["persistence false"]
            ),
            *self._limits,
            "log_dest stderr",
            "log_type error",
            "log_type warning",
        ]
        if os.geteuid() == 0:
            lines.append("user root")
        conf.write_text("\n".join(lines) + "\n")
        return conf

    def start(self, timeout: float = 10.0) -> None:
        """Start the broker and wait until it accepts TCP connections."""
        if self.running:
            return
        conf = self._write_conf()
        log = open(self._workdir / "mosquitto.log", "ab")  # noqa: SIM115 - owned by the child
        self._proc = subprocess.Popen(
            [_mosquitto_binary(), "-c", str(conf)],
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited with {self._proc.returncode}: {self.log_tail()}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"mosquitto did not listen on port {self.port}: {self.log_tail()}")

    def stop(self) -> None:
        """Stop the broker (SIGTERM, then SIGKILL after 5 s)."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def log_tail(self, chars: int = 2000) -> str:
        path = self._workdir / "mosquitto.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    def __enter__(self) -> Mosquitto:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
