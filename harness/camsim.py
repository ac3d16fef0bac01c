"""Runs scripts/camsim.py (system python3 + GStreamer) as a child process."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import threading
import time
from pathlib import Path

from harness.broker import free_port

REPO = Path(__file__).resolve().parents[1]
SYSTEM_PYTHON = os.environ.get("NVR_EDGE_SYSTEM_PYTHON", "/usr/bin/python3")


class CameraSimulator:
    """An RTSP server with one mount per entry of `mounts` (name -> MP4 file).

    The port is chosen once and kept, so stop() then start() brings the same
    cameras back at the same URLs (camera outage tests)."""

    def __init__(
        self, mounts: dict[str, Path], port: int | None = None, host: str = "127.0.0.1", cache_dir: Path | None = None
    ) -> None:
        self.mounts = dict(mounts)
        self.host = host
        self.port = port or free_port()
        self.cache_dir = cache_dir
        self.urls = {name: f"rtsp://{host}:{self.port}/{name}" for name in mounts}
        self._proc: subprocess.Popen[str] | None = None
        self._lines: queue.Queue[str] = queue.Queue()
        self._stderr: list[str] = []

    def start(self, timeout: float = 30.0) -> CameraSimulator:
        cmd = [
            SYSTEM_PYTHON,
            str(REPO / "scripts" / "camsim.py"),
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--control",
            "stdin",
        ]
        for name, path in self.mounts.items():
            cmd += ["--mount", f"{name}={path}"]
        if self.cache_dir is not None:
            cmd += ["--cache", str(self.cache_dir)]
        self._proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1
        )
        threading.Thread(target=self._pump, args=(self._proc.stdout, self._lines.put), daemon=True).start()
        threading.Thread(target=self._pump, args=(self._proc.stderr, self._stderr.append), daemon=True).start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self._lines.get(timeout=0.2)
            except queue.Empty:
                if self._proc.poll() is not None:
                    break
                continue
            if line.strip() == "READY":
                return self
        self.stop()
        raise RuntimeError(f"camera simulator did not start: {''.join(self._stderr)[-2000:]}")

    @staticmethod
    def _pump(stream, sink) -> None:  # noqa: ANN001 - a text pipe and a callable
        for line in stream:
            sink(line)

    def _command(self, line: str, timeout: float = 5.0) -> None:
        assert self._proc is not None and self._proc.stdin is not None
        self._proc.stdin.write(line + "\n")
        self._proc.stdin.flush()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                answer = self._lines.get(timeout=0.2).strip()
            except queue.Empty:
                continue
            if answer.endswith(line):
                if answer.startswith("OK"):
                    return
                raise RuntimeError(f"simulator refused {line!r}")
        raise TimeoutError(f"simulator did not answer {line!r}")

    def stall(self, name: str) -> None:
        """Frames stop while the RTSP session stays open."""
        self._command(f"stall {name}")

    def resume(self, name: str) -> None:
        self._command(f"resume {name}")

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.stdin:
            proc.stdin.close()

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def __enter__(self) -> CameraSimulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
