"""A camera's state and counters as the stats loop, health, discovery and the page read them.

Kept apart from the camera worker (edge.camera) so that those readers do not import
the worker and, through it, PyAV, NumPy and OpenCV: stdlib only.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import StrEnum


class CameraState(StrEnum):
    """A camera's connection state (SPEC 3.4)."""

    STARTING = "starting"
    STREAMING = "streaming"
    RECONNECTING = "reconnecting"
    FAILED = "failed"
    DISABLED = "disabled"


@dataclass
class CameraStatus:
    """Written by the worker thread, read by the stats loop (plain attribute stores)."""

    state: CameraState = CameraState.STARTING
    error: str | None = None
    frames_in: int = 0
    frames_detect: int = 0
    frames_skipped: int = 0
    reconnects: int = 0
    last_frame_monotonic: float | None = None
    motion: bool = False
    detect_enabled: bool = True
    width: int = 0
    height: int = 0
    started_monotonic: float = field(default_factory=time.monotonic)
    idle: bool = False  # idle mode (edge.idle): keyframes decoded, packet sizes watched
    idle_wakes: int = 0
    idle_allowed: bool = False  # its packet sizes have shown the motion its detector saw (edge.idle.SizeTrust)
    # Bumped by the worker thread on every packet, connection attempt and second of
    # back-off: the systemd watchdog withholds its ping when one goes stale (wedged).
    heartbeat_monotonic: float = field(default_factory=time.monotonic)
