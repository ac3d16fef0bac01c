"""The sd_notify protocol: one datagram of `KEY=value` lines to the socket in $NOTIFY_SOCKET.

systemd sets NOTIFY_SOCKET for a `Type=notify` service and waits for READY=1 before it
calls the service started; WATCHDOG=1 resets its watchdog timer; STOPPING=1 says the
stop is under way. Without NOTIFY_SOCKET (a shell, a container, a test) nothing is sent
and nothing is opened, so the daemon behaves the same everywhere.

It is one datagram, so no dependency: the address is a path, or an abstract socket name
written with a leading '@'. Sends never block the event loop (a full socket buffer drops
the message, as a late WATCHDOG=1 would be worthless anyway), and a failing socket is
logged once, not at every watchdog tick.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping

from edge.logs import get_logger

ENV_SOCKET = "NOTIFY_SOCKET"


def socket_address(value: str | None) -> str | None:
    """$NOTIFY_SOCKET -> an AF_UNIX address ('@name' -> '\\0name'); None when unset or unsupported.

    systemd >= 253 may also hand out `vsock:` addresses (VMs); this daemon runs on
    the host, so those count as unsupported rather than half-handled."""
    if not value:
        return None
    if value.startswith("@") and len(value) > 1:
        return "\0" + value[1:]
    if value.startswith("/"):
        return value
    return None


class Notifier:
    """Sends sd_notify messages; every method is a no-op when there is no socket."""

    def __init__(self, address: str | None) -> None:
        self.address = address
        self._sock: socket.socket | None = None
        self._failing = False
        self._log = get_logger(component="sd_notify")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Notifier:
        env = os.environ if environ is None else environ
        return cls(socket_address(env.get(ENV_SOCKET)))

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, *lines: str) -> bool:
        """Send `KEY=value` lines as one datagram; True when the socket took it."""
        if self.address is None:
            return False
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock.setblocking(False)
            self._sock.sendto("\n".join(lines).encode(), self.address)
        except OSError as exc:  # BlockingIOError (buffer full), ENOENT, ECONNREFUSED, ...
            if not self._failing:
                self._log.warning("sd_notify_failed", message=lines[0].split("=")[0], error=str(exc))
            self._failing = True
            self.close()
            return False
        if self._failing:
            self._log.info("sd_notify_recovered")
            self._failing = False
        return True

    def ready(self, status: str | None = None) -> bool:
        return self.send("READY=1", *([f"STATUS={status}"] if status else []))

    def stopping(self) -> bool:
        return self.send("STOPPING=1", "STATUS=stopping")

    def watchdog(self) -> bool:
        return self.send("WATCHDOG=1")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
