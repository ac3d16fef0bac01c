"""Stats (SPEC 3.4) and health (SPEC 3.5): snapshots of the daemon's state as JSON-ready dicts.

Pure functions of what the workers and the link report, so they are tested without
a camera or a broker. Rates are computed from counter deltas between two snapshots.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from edge import __version__
from edge.config import reserve_problem
from edge.status import CameraState, CameraStatus

_PAGE = os.sysconf("SC_PAGE_SIZE")
LOW_FREE_BYTES = 64 * 1024 * 1024


def rss_bytes() -> int:
    """Resident set size now (not the peak that resource.getrusage reports)."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * _PAGE
    except OSError:
        return 0


def thread_count() -> int | None:
    """Threads of this process; None when unknown, e.g. with every descriptor in use
    (listing /proc needs one, and stats must go out all the same)."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return None


@dataclass
class _Sample:
    at: float
    frames_in: int
    frames_detect: int


@dataclass
class RateMeter:
    """Per-camera fps and process CPU, from deltas since the previous call."""

    _cameras: dict[str, _Sample] = field(default_factory=dict)
    _cpu: tuple[float, float] | None = None

    def fps(self, camera: str, status: CameraStatus, now: float) -> tuple[float, float]:
        prev = self._cameras.get(camera)
        self._cameras[camera] = _Sample(now, status.frames_in, status.frames_detect)
        if prev is not None and status.frames_in < prev.frames_in:
            prev = None  # the camera was restarted (reload): a new worker counts from zero
        if prev is None:
            span = max(now - status.started_monotonic, 1e-3)
            return status.frames_in / span, status.frames_detect / span
        span = max(now - prev.at, 1e-3)
        return (status.frames_in - prev.frames_in) / span, (status.frames_detect - prev.frames_detect) / span

    def cpu_percent(self, now: float) -> float:
        times = os.times()
        used = times.user + times.system
        prev, self._cpu = self._cpu, (now, used)
        if prev is None:
            return 0.0
        return 100.0 * (used - prev[1]) / max(now - prev[0], 1e-3)


def camera_stats(status: CameraStatus, fps_in: float, fps_detect: float, now: float) -> dict[str, object]:
    age = None if status.last_frame_monotonic is None else round(now - status.last_frame_monotonic, 3)
    return {
        "state": status.state.value,
        "fps_in": round(fps_in, 2),
        "fps_detect": round(fps_detect, 2),
        "frames_skipped": status.frames_skipped,
        "reconnects": status.reconnects,
        "last_frame_age_s": age,
        "motion": status.motion,
        "error": status.error,
        "detect": status.detect_enabled,
        "idle": status.idle,  # idle mode: keyframes only, packet sizes watched (edge.idle)
        "idle_wakes": status.idle_wakes,
        "idle_allowed": status.idle_allowed,  # why a camera never idles: its sizes do not show motion
        "width": status.width,
        "height": status.height,
    }


def read_only(path: Path) -> bool:
    """The filesystem holding `path` is mounted read-only (e.g. ext4 after an SD card error)."""
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def disk_check(data_dir: Path) -> str:
    """'ok', or a short reason why the box cannot keep footage."""
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return f"cannot create data_dir: {exc.strerror}"
    if read_only(data_dir):
        return "data_dir is on a read-only file system"
    if not os.access(data_dir, os.W_OK):
        return "data_dir is not writable"
    try:
        free = shutil.disk_usage(data_dir).free
    except OSError as exc:
        return f"cannot read data_dir: {exc.strerror}"
    if free < LOW_FREE_BYTES:
        return "less than 64 MB free"
    return "ok"


def reserve_warning(data_dir: Path, min_free: int, footage: Callable[[], int]) -> str | None:
    """Why `recording.min_free_bytes` leaves no room for any footage on data_dir's
    filesystem (every segment is deleted as it closes), or None. `footage` is read only
    when the filesystem has less than the reserve free."""
    try:
        info = os.statvfs(data_dir)
    except OSError:
        return None
    total, free = info.f_blocks * info.f_frsize, info.f_bavail * info.f_frsize
    if min_free < total and free >= min_free:
        return None
    return reserve_problem(min_free, total, free, footage())


STARTING_GRACE_S = 30.0  # README "Is it working?": how long a component may still be starting
HEALTH_STATES = ("ok", "degraded", "failed", "starting", "offline")  # SPEC 3.5's three, and issue 18's two


def _camera_check(status: CameraStatus, now: float, grace_s: float) -> tuple[str, bool]:
    """(its check, whether it is still starting within the grace period)."""
    if status.state is CameraState.STREAMING:
        return "ok", False
    starting = status.state is CameraState.STARTING and now - status.started_monotonic < grace_s
    return status.state.value, starting


def health(
    request_id: str | None,
    cameras: dict[str, CameraStatus],
    mqtt_ok: bool,
    disk: str,
    detect_off: Mapping[str, str] | None = None,
    warnings: Mapping[str, str] | None = None,
    *,
    mqtt_starting: bool = False,
    recording_errors: Mapping[str, str | None] | None = None,
    grace_s: float = STARTING_GRACE_S,
) -> dict[str, object]:
    """SPEC 3.5: ok when every enabled camera streams and the disk is fine,
    failed when none streams or recording cannot write, degraded otherwise.

    Issue 18: `starting` while a component has not finished starting, for at most `grace_s`
    after it started (a camera whose first connection is still pending, `mqtt_starting`: the
    link has not connected yet), so a restart never shows as failed; a failure already known
    (a camera refused, a dead disk) still counts. `cameras` names each camera's state and
    reason (`error`, and `recording_error` when its main stream cannot be recorded).

    Additions: `detect` says, per enabled camera, whether motion detection runs and why
    not (`detect_off`: a detect/set OFF, which a retained message repeats at every
    start); `warnings` names components that work but will not keep what they should
    (a `min_free_bytes` larger than the disk): any warning makes an ok box degraded."""
    now = time.monotonic()
    enabled = {cam: st for cam, st in cameras.items() if st.state is not CameraState.DISABLED}
    checked = {cam: _camera_check(st, now, grace_s) for cam, st in enabled.items()}
    camera_checks = {cam: check for cam, (check, _) in checked.items()}
    starting = mqtt_starting or any(pending for _, pending in checked.values())
    streaming = sum(1 for v in camera_checks.values() if v == "ok")
    if disk != "ok":
        status = "failed"
    elif starting:
        status = "starting"
    elif camera_checks and streaming == 0:
        status = "failed"
    elif streaming < len(camera_checks) or not mqtt_ok or warnings:
        status = "degraded"
    else:
        status = "ok"
    off = detect_off or {}
    recording = recording_errors or {}
    mqtt = "ok" if mqtt_ok else "starting" if mqtt_starting else "disconnected"
    return {
        "id": request_id,
        "time": round(time.time(), 3),
        "status": status,
        "checks": {"mqtt": mqtt, "disk": disk, "cameras": camera_checks},
        "cameras": {
            cam: {
                "state": st.state.value,
                "error": st.error,
                **({"recording_error": recording[cam]} if recording.get(cam) else {}),
            }
            for cam, st in enabled.items()
        },
        "detect": {cam: {"enabled": cam not in off, "reason": off.get(cam)} for cam in camera_checks},
        "warnings": dict(warnings or {}),
    }


def offline_health(cameras: list[str], disk: str) -> dict[str, object]:
    """The retained health a cleanly stopping daemon leaves: nothing is known of its cameras
    from now on (roll-call then shows them `unknown`, not as they were), and since when."""
    return {
        "id": None,
        "time": round(time.time(), 3),
        "status": "offline",
        "checks": {"mqtt": "offline", "disk": disk, "cameras": dict.fromkeys(cameras, "unknown")},
        "cameras": {cam: {"state": "unknown", "error": "the box is offline (stopped)"} for cam in cameras},
        "detect": {},
        "warnings": {},
    }


def stats(
    started: float,
    meter: RateMeter,
    cameras: dict[str, CameraStatus],
    recording: dict[str, object],
    outbox: dict[str, object],
    per_camera: dict[str, dict[str, object]] | None = None,
) -> dict[str, object]:
    now = time.monotonic()
    camera_entries = {}
    for cam, status in cameras.items():
        fps_in, fps_detect = meter.fps(cam, status, now)
        camera_entries[cam] = {**camera_stats(status, fps_in, fps_detect, now), **(per_camera or {}).get(cam, {})}
    return {
        "time": round(time.time(), 3),
        "uptime_s": round(now - started, 1),
        "version": __version__,
        "cameras": camera_entries,
        "recording": recording,
        "outbox": outbox,
        "process": {
            "cpu_percent": round(meter.cpu_percent(now), 1),
            "rss_bytes": rss_bytes(),
            "threads": thread_count(),
        },
    }
