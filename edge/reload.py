"""What a new configuration file changes, camera by camera (SIGHUP reload). Pure.

A reload must never interrupt a camera it does not concern: only cameras added,
removed, or whose effective settings changed are stopped or started. Settings the
running daemon cannot swap under its feet (the broker connection, the box identity,
the data directory and its budget, the outbox, logging, the web page) keep their
running values and are reported as needing a restart.
"""

from __future__ import annotations

from dataclasses import dataclass

from edge.config import Config

# Sections applied by restarting only the cameras that depend on them.
LIVE_SECTIONS = ("cameras", "motion", "events")


@dataclass(frozen=True, slots=True)
class ReloadPlan:
    config: Config  # what runs from now on: the new file, with restart-only sections kept
    stop: tuple[str, ...]  # cameras to stop: removed, disabled, or changed
    start: tuple[str, ...]  # cameras to start: added, enabled, or changed
    needs_restart: tuple[str, ...]  # sections changed in the file but kept as they run

    @property
    def changes_anything(self) -> bool:
        return bool(self.stop or self.start)


def _enabled(config: Config) -> dict[str, object]:
    """Camera id -> everything its worker is built from (its settings and the event rules)."""
    return {cam_id: (cam, config.events) for cam_id, cam in config.cameras.items() if cam.enabled}


def plan_reload(running: Config, loaded: Config) -> ReloadPlan:
    sections = [name for name in type(running).model_fields if name not in LIVE_SECTIONS]
    needs_restart = tuple(name for name in sections if getattr(running, name) != getattr(loaded, name))
    config = loaded.model_copy(update={name: getattr(running, name) for name in needs_restart})
    before, after = _enabled(running), _enabled(config)
    stop = tuple(cam for cam in before if after.get(cam) != before[cam])
    start = tuple(cam for cam in after if before.get(cam) != after[cam])
    return ReloadPlan(config, stop, start, needs_restart)
