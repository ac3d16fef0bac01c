"""Test clips: generated scenes (cached), and the labelled real clips when present."""

from __future__ import annotations

import functools
import importlib.util
import os
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[1]


@functools.cache
def _make_clips_module() -> ModuleType:
    """scripts/make_clips.py, which is a script (no package) so it can run on its own."""
    spec = importlib.util.spec_from_file_location("make_clips", REPO / "scripts" / "make_clips.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def default_cache() -> Path:
    """~/.cache/nvr-edge/clips, or $NVR_EDGE_CLIP_CACHE."""
    return Path(os.environ.get("NVR_EDGE_CLIP_CACHE", Path.home() / ".cache" / "nvr-edge" / "clips"))


def ensure_clips(cache_dir: Path | None = None, **params: object) -> dict[str, Path]:
    """{'walkers': mp4, 'static': mp4}, generated once per parameter set (about 2 s each).

    params go to make_clips.ensure_clips: width, height, fps, seconds, seed, kinds.
    Without cache_dir, non-default parameters get their own folder under the default
    cache, so a short test clip never replaces the 60 s default clips other tests use."""
    module = _make_clips_module()
    if cache_dir is None:
        cache_dir = default_cache()
        wanted = module.clip_params("walkers", **{k: v for k, v in params.items() if k != "kinds"})
        if wanted != module.clip_params("walkers"):
            w, h, fps = wanted["width"], wanted["height"], str(wanted["fps"]).replace("/", "_")
            cache_dir = cache_dir / f"{w}x{h}-{fps}fps-{wanted['seconds']:g}s-seed{wanted['seed']}"
    return module.ensure_clips(Path(cache_dir), **params)


def shared_clips_dir() -> Path | None:
    """`../shared/clips` beside the checkout (labelled real clips; developers' and CI's machines only)."""
    folder = REPO.parent / "shared" / "clips"
    return folder if folder.is_dir() else None
