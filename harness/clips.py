"""Test clips: generated scenes (cached), and the labelled real clips when present."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _make_clips_module():  # noqa: ANN202 - the scripts/make_clips.py module
    spec = importlib.util.spec_from_file_location("make_clips", REPO / "scripts" / "make_clips.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def default_cache() -> Path:
    return Path(os.environ.get("NVR_EDGE_CLIP_CACHE", Path.home() / ".cache" / "nvr-edge" / "clips"))


def ensure_clips(cache_dir: Path | None = None, **params: float) -> dict[str, Path]:
    """{'walkers': mp4, 'static': mp4}, generated once per parameter set."""
    return _make_clips_module().ensure_clips(cache_dir or default_cache(), **params)


def shared_clips_dir() -> Path | None:
    """`../shared/clips` beside the checkout (developers' and CI's machines only)."""
    folder = REPO.parent / "shared" / "clips"
    return folder if folder.is_dir() else None
