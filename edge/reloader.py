"""SIGHUP: read the configuration file again and apply what changed to the cameras it
concerns only (edge/reload.py plans it); the others keep streaming untouched.

An invalid file changes nothing: one log line per problem, the running config stays.
Sections the daemon cannot swap while running keep their running values (said once).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from edge.cameras import Cameras
from edge.commands import Commands
from edge.config import Config, ConfigError
from edge.logs import get_logger
from edge.reload import plan_reload


class Reloader:
    """Applies reloads one at a time. Owner: the event loop (the file is read in a worker thread)."""

    def __init__(
        self,
        source: Callable[[], Config] | None,
        config: Callable[[], Config],
        adopt: Callable[[Config], None],
        cameras: Cameras,
        commands: Commands,
    ) -> None:
        """`source` reads the file (raises ConfigError); `adopt` makes a config the running one."""
        self._source = source
        self._config = config
        self._adopt = adopt
        self._cameras = cameras
        self._commands = commands
        self._lock = asyncio.Lock()
        self._log = get_logger(box=config().box.id)

    async def reload(self) -> None:
        if self._source is None:
            self._log.warning("reload_ignored", reason="no configuration file to read")
            return
        async with self._lock:
            try:
                loaded = await asyncio.to_thread(self._source)
            except ConfigError as exc:
                for problem in exc.problems:
                    self._log.error("reload_rejected", problem=problem)
                return
            plan = plan_reload(self._config(), loaded)
            if plan.needs_restart:
                self._log.warning("reload_needs_restart", sections=list(plan.needs_restart))
            for cam_id in plan.stop:
                await self._cameras.stop(cam_id, "reconfigured")
            self._adopt(plan.config)
            self._cameras.list_disabled()
            for cam_id in plan.start:
                self._cameras.start(cam_id)
            self._commands.send_discovery("reloaded")
            started, stopped = list(plan.start), list(plan.stop)
            self._log.info("reloaded", stopped=stopped, started=started, cameras=len(self._cameras.workers))
