"""A camera worker wedged in the kernel (its disk stopped answering) stops the systemd
watchdog pings while the event loop keeps running; they resume when it comes back.

The disk is an ext4 on a loop device frozen with `fsfreeze`: every write blocks, as on
a dying SD card; the recording worker hangs in the kernel without any error to see.
The test plays systemd with a datagram socket (tests/test_systemd.py's FakeSystemd).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.app import WORKER_MAX_SILENCE_S
from harness.broker import Mosquitto
from harness.camsim import CameraSimulator
from harness.daemon import DaemonProcess, write_config
from harness.mounts import can_fake_ext4_errors, freeze, mount_ext4_image, thaw, unmount_all
from tests.test_systemd import FakeSystemd

pytestmark = pytest.mark.skipif(
    not can_fake_ext4_errors() or shutil.which("fsfreeze") is None,
    reason="needs root, loop devices, mkfs.ext4 and fsfreeze",
)


@pytest.fixture
def ext4_data(tmp_path: Path) -> Iterator[Path]:
    data = tmp_path / "data"
    mount_ext4_image(tmp_path / "disk.img", data, size="128M")
    try:
        yield data
    finally:
        thaw(data)
        unmount_all(data)


def _pings(fake: FakeSystemd, since: float, until: float = float("inf")) -> list[float]:
    return [t for t, m in fake.messages(since, until) if "WATCHDOG=1" in m.split("\n")]


def test_a_worker_wedged_on_a_frozen_disk_stops_the_watchdog_until_it_recovers(
    tmp_path: Path, ext4_data: Path, broker: Mosquitto, cameras: CameraSimulator
) -> None:
    config = write_config(
        tmp_path / "edge.yaml",
        box_id="box-1",
        data_dir=ext4_data,
        mqtt_port=broker.port,
        cameras={"still": {"url": cameras.urls["still"]}},  # no events: the loop writes nothing
        extra={"recording": {"segment_seconds": 2, "min_free_bytes": 0}},
    )
    fake = FakeSystemd()
    daemon = DaemonProcess(config, env=fake.env).start()
    try:
        fake.wait_for("READY=1", timeout=30)
        daemon.wait_log("segment_closed", timeout=20)
        frozen_at = time.monotonic()
        freeze(ext4_data)
        try:
            time.sleep(WORKER_MAX_SILENCE_S + 8)
            stopped = _pings(fake, frozen_at)
            # Pings went on while the worker's silence was young, then stopped.
            assert stopped and max(stopped) < frozen_at + WORKER_MAX_SILENCE_S + 3, stopped
            assert not _pings(fake, frozen_at + WORKER_MAX_SILENCE_S + 3)
            assert daemon.alive
        finally:
            thaw(ext4_data)
        thawed_at = time.monotonic()
        fake.wait_for("WATCHDOG=1", timeout=10, since=thawed_at)
    finally:
        daemon.stop()
        fake.close()
    withheld = daemon.wait_log("watchdog_withheld", timeout=1)
    assert withheld["probe"] == "camera_workers" and "camera-still" in withheld["reason"], withheld
    daemon.wait_log("watchdog_resumed", timeout=1)
