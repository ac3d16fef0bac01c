"""The centre's page, health and discovery read camera status without the camera worker:
importing them must not pull in edge.camera or PyAV (issue 16)."""

from __future__ import annotations

import json
import subprocess
import sys

LIGHT = ("edge.web", "edge.health", "edge.healthcheck", "edge.discovery", "edge.status")
HEAVY = ("av", "edge.camera", "edge.source", "edge.mosaic")


def _loaded_after_import(modules: tuple[str, ...]) -> set[str]:
    """The modules a fresh interpreter has loaded after importing `modules`."""
    code = "import importlib, json, sys\n"
    code += "".join(f"importlib.import_module({name!r})\n" for name in modules)
    code += "print(json.dumps(sorted(sys.modules)))\n"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    return set(json.loads(out.stdout))


def test_status_readers_do_not_import_the_camera_worker_or_pyav() -> None:
    loaded = _loaded_after_import(LIGHT)
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))


def test_camera_worker_still_offers_the_status_types() -> None:
    from edge import camera, status

    assert camera.CameraState is status.CameraState
    assert camera.CameraStatus is status.CameraStatus
