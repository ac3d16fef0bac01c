"""Shared fixtures: a real Mosquitto, the real RTSP camera simulator, generated clips."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.broker import Mosquitto
from harness.camsim import CameraSimulator
from harness.clips import ensure_clips


def pytest_configure(config: pytest.Config) -> None:
    missing = [
        tool
        for tool in ("mosquitto", "ffprobe")
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists()
    ]
    if missing:
        raise pytest.UsageError(f"missing {', '.join(missing)}: run scripts/setup.sh first")


@pytest.fixture(scope="session")
def clips() -> dict[str, Path]:
    """Generated H.264 scenes: 'walkers' (people crossing, idle spells) and 'static'."""
    return ensure_clips()


@pytest.fixture
def broker() -> Iterator[Mosquitto]:
    with Mosquitto() as running:
        yield running


@pytest.fixture(scope="module")
def cameras(clips: dict[str, Path]) -> Iterator[CameraSimulator]:
    """An RTSP server with a 'moving' and a 'still' camera, shared by a test module."""
    with CameraSimulator({"moving": clips["walkers"], "still": clips["static"]}) as sim:
        yield sim
