"""Runs the real daemon (`python -m edge run`) as a child process, for tests, demo and benchmarks."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]


def write_config(
    path: Path,
    *,
    box_id: str,
    data_dir: Path,
    mqtt_port: int,
    cameras: dict[str, dict[str, Any]],
    stats_interval: float = 2.0,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write a daemon config file; `cameras` maps id -> camera keys (at least `url`)."""
    doc: dict[str, Any] = {
        "box": {"id": box_id, "data_dir": str(data_dir)},
        "mqtt": {"host": "127.0.0.1", "port": mqtt_port, "topic_prefix": "nvr", "stats_interval": stats_interval},
        "cameras": cameras,
    }
    for key, value in (extra or {}).items():
        if isinstance(value, dict) and isinstance(doc.get(key), dict):
            doc[key] = {**doc[key], **value}
        else:
            doc[key] = value
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def run_cli(*args: str, timeout: float = 60, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run `python -m edge ARGS` to completion."""
    return subprocess.run(
        [sys.executable, "-m", "edge", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        env={**os.environ, **(env or {})},
    )


class DaemonProcess:
    """`python -m edge run --config PATH`, its JSON log lines kept in a file."""

    def __init__(self, config_path: Path, log_path: Path | None = None, env: dict[str, str] | None = None) -> None:
        self.config_path = config_path
        self.log_path = log_path or config_path.with_suffix(".log")
        self.env = env  # added to (not replacing) this process's environment
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> DaemonProcess:
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "edge", "run", "--config", str(self.config_path)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=REPO,
            env={**os.environ, **self.env} if self.env else None,
        )
        log.close()
        return self

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM and wait; returns the exit code (kills and raises if it hangs)."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise

    def kill(self) -> None:
        """kill -9: no clean-up at all, as in a crash or power cut."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def logs(self) -> list[dict[str, Any]]:
        lines = []
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        for line in text.splitlines():
            try:
                lines.append(json.loads(line))
            except ValueError:
                lines.append({"event": "non_json_output", "line": line})
        return lines

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_log(self, event: str, timeout: float, **match: Any) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.logs():
                if line.get("event") == event and all(line.get(k) == v for k, v in match.items()):
                    return line
            if not self.alive:
                break
            time.sleep(0.2)
        raise TimeoutError(f"no log event {event!r} {match}; log tail:\n{self.log_text()[-3000:]}")

    def __enter__(self) -> DaemonProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if self.alive:
            try:
                self.stop()
            except subprocess.TimeoutExpired:
                pass
