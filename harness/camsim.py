"""Runs scripts/camsim.py (system python3 + GStreamer RTSP server) as a child process.

The simulator needs Debian's python3-gi, which the virtualenv does not have, so it is
a separate process; this wrapper starts it, waits for READY, knows the URLs and can
stop, restart (same port: camera outage tests), stall/resume single mounts, switch a
mount to its alternate clip (a resolution change) and corrupt a share of its frames.
Mounts may require a password (`auth`) or serve MJPEG (`mjpeg`), a codec the daemon refuses,
or be hostile (`claims`: their SPS claims another picture size and reference frame count).
"""

from __future__ import annotations

import collections
import os
import queue
import random
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterable
from fractions import Fraction
from pathlib import Path
from typing import IO
from urllib.parse import quote

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "camsim.py"
SYSTEM_PYTHON = os.environ.get("NVR_EDGE_SYSTEM_PYTHON", "/usr/bin/python3")


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def pick_port(host: str = "127.0.0.1") -> int:
    """A free TCP port below the kernel's ephemeral range.

    Outage tests stop the server while clients keep reconnecting; an ephemeral port
    could meanwhile be taken as some client's source port (or a client could connect
    to itself on it), and the restart on the same port would then fail."""
    high = _ephemeral_low()
    for _ in range(50):
        port = random.randrange(20000, high) if high > 21000 else 0
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
            return int(sock.getsockname()[1])
    raise RuntimeError("no free TCP port found")


class CameraSimulator:
    """An RTSP server with one mount per entry of `mounts` (name -> H.264 MP4 file).

    The port is chosen once and kept, so stop() then start() brings the same cameras
    back at the same URLs. Each mount loops its clip forever at its frame rate.

    `alternates` (name -> MP4) gives a mount a second clip that switch() changes to;
    `auth` (name -> (user, password)) makes a mount require basic authentication;
    `mjpeg` names extra mounts that serve a live MJPEG test pattern; `claims` (name ->
    "WxH" or "WxH:REFS") makes a mount's SPS claim that size (and reference frames)."""

    def __init__(
        self,
        mounts: dict[str, Path],
        port: int | None = None,
        host: str = "127.0.0.1",
        cache_dir: Path | None = None,
        *,
        alternates: dict[str, Path] | None = None,
        auth: dict[str, tuple[str, str]] | None = None,
        mjpeg: Iterable[str] = (),
        claims: dict[str, str] | None = None,
    ) -> None:
        self.mounts = {name: Path(path) for name, path in mounts.items()}
        self.mjpeg = list(mjpeg)
        if not self.mounts and not self.mjpeg:
            raise ValueError("CameraSimulator needs at least one mount")
        self.alternates = {name: Path(path) for name, path in (alternates or {}).items()}
        self.auth = dict(auth or {})
        self.claims = dict(claims or {})
        self.host = host
        self.cache_dir = cache_dir
        self._port_given = port is not None
        self.port: int = port if port is not None else pick_port(host)
        self.urls: dict[str, str] = self._urls()
        self._proc: subprocess.Popen[str] | None = None
        self._lines: queue.Queue[str] = queue.Queue()
        self._stderr: collections.deque[str] = collections.deque(maxlen=50)
        self._pumps: list[threading.Thread] = []
        self._lock = threading.Lock()  # one control command at a time

    def _urls(self) -> dict[str, str]:
        return {name: f"rtsp://{self.host}:{self.port}/{name}" for name in [*self.mounts, *self.mjpeg]}

    def url_with(self, name: str, user: str, password: str) -> str:
        """The mount's URL with credentials in it, as an installer writes it in the config."""
        return self.urls[name].replace("rtsp://", f"rtsp://{quote(user, safe='')}:{quote(password, safe='')}@", 1)

    def _command_line(self) -> list[str]:
        cmd = [SYSTEM_PYTHON, str(SCRIPT), "--host", self.host, "--port", str(self.port), "--control", "stdin"]
        for name, path in self.mounts.items():
            cmd += ["--mount", f"{name}={path}"]
        for name, path in self.alternates.items():
            cmd += ["--alternate", f"{name}={path}"]
        for name, (user, password) in self.auth.items():
            cmd += ["--auth", f"{name}={user}:{password}"]
        for name in self.mjpeg:
            cmd += ["--mjpeg", name]
        for name, claim in self.claims.items():
            cmd += ["--claim", f"{name}={claim}"]
        if self.cache_dir is not None:
            cmd += ["--cache", str(self.cache_dir)]
        return cmd

    def start(self, timeout: float = 20.0) -> CameraSimulator:
        """Launch and wait for READY; RuntimeError (with the simulator's stderr) if it fails."""
        if self.running:
            return self
        for attempt in range(3):
            error = self._launch(timeout)
            if error is None:
                return self
            # Someone took our port between choosing and binding: only a port we chose may change.
            if "cannot listen" in error and not self._port_given and attempt < 2:
                self.port = pick_port(self.host)
                self.urls = self._urls()
                continue
            raise RuntimeError(f"camera simulator did not start: {error}")
        raise AssertionError("unreachable")

    def _launch(self, timeout: float) -> str | None:
        """One start attempt: None when READY, else the reason."""
        self._lines = queue.Queue()
        self._stderr.clear()
        proc = subprocess.Popen(
            self._command_line(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        self._proc = proc
        self._pumps = [
            threading.Thread(target=_pump, args=(proc.stdout, self._lines.put), daemon=True),
            threading.Thread(target=_pump, args=(proc.stderr, self._stderr.append), daemon=True),
        ]
        for thread in self._pumps:
            thread.start()
        urls: dict[str, str] = {}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self._lines.get(timeout=0.1).strip()
            except queue.Empty:
                if proc.poll() is not None and self._lines.empty():
                    break
                continue
            if line.startswith("SERVING "):
                _, name, url = line.split(" ", 2)
                urls[name] = url
            elif line == "READY":
                self.urls = urls or self._urls()
                return None
        else:
            self.stop()
            return f"no READY within {timeout:.0f} s; stderr: {self._stderr_tail()}"
        self.stop()
        return f"exit code {proc.returncode}; stderr: {self._stderr_tail()}"

    def _stderr_tail(self) -> str:
        for thread in self._pumps[1:]:
            thread.join(timeout=1)
        return "".join(self._stderr).strip()[-2000:] or "(empty)"

    def _command(self, line: str, timeout: float = 5.0) -> None:
        with self._lock:
            proc = self._proc
            if proc is None or proc.poll() is not None or proc.stdin is None:
                raise RuntimeError("camera simulator is not running")
            proc.stdin.write(line + "\n")
            proc.stdin.flush()
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                try:
                    answer = self._lines.get(timeout=0.1).strip()
                except queue.Empty:
                    continue
                if answer == f"OK {line}":
                    return
                if answer == f"ERR {line}":
                    raise ValueError(f"camera simulator refused {line!r}")
            raise TimeoutError(f"camera simulator did not answer {line!r}")

    def loop_start(self, name: str, timeout: float = 5.0) -> tuple[float, int, Fraction]:
        """(wall time the mount's clip frame 0 was last sent, frames per loop, fps): frame k
        of loop j goes out at T + (j x frames + k) / fps. RuntimeError before any client played it."""
        line = f"clock {name}"
        with self._lock:
            proc = self._proc
            if proc is None or proc.poll() is not None or proc.stdin is None:
                raise RuntimeError("camera simulator is not running")
            proc.stdin.write(line + "\n")
            proc.stdin.flush()
            found: tuple[float, int, Fraction] | None = None
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                try:
                    answer = self._lines.get(timeout=0.1).strip()
                except queue.Empty:
                    continue
                if answer.startswith(f"CLOCK {name} "):
                    _, _, wall, frames, fps = answer.split(" ")
                    found = (float(wall), int(frames), Fraction(fps))
                elif answer == f"OK {line}" and found is not None:
                    return found
                elif answer == f"ERR {line}":
                    raise RuntimeError(f"camera simulator has no clock for {name!r} yet (no client played it)")
            raise TimeoutError(f"camera simulator did not answer {line!r}")

    def stall(self, name: str) -> None:
        """The mount sends no more frames; its RTSP sessions stay open (a hung camera)."""
        self._command(f"stall {name}")

    def resume(self, name: str) -> None:
        """Frames again, from the next key frame; timestamps show the time that passed."""
        self._command(f"resume {name}")

    def switch(self, name: str) -> None:
        """From the mount's next alternate-clip key frame on, send that clip (again: back)."""
        self._command(f"switch {name}")

    def corrupt(self, name: str, share: float, seconds: float) -> None:
        """For `seconds`, overwrite random bytes in `share` (0..1) of the mount's frames' slices."""
        self._command(f"corrupt {name} {share:g} {seconds:g}")

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM, then SIGKILL after `timeout`; the port is kept for start()."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for thread in self._pumps:
            thread.join(timeout=1)
        for pipe in (proc.stdin, proc.stdout, proc.stderr):
            if pipe is not None:
                try:
                    pipe.close()
                except OSError:
                    pass

    def restart(self) -> CameraSimulator:
        self.stop()
        return self.start()

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def __enter__(self) -> CameraSimulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _pump(stream: IO[str] | None, sink: Callable[[str], object]) -> None:
    """Drain a child's pipe so it never blocks on a full one."""
    if stream is None:
        return
    try:
        for line in stream:
            sink(line)
    except (OSError, ValueError):  # closed under us by stop()
        pass
