"""Naming OS threads, so top -H, /proc and the benchmarks can tell the daemon's threads apart."""

from __future__ import annotations

import ctypes

_PR_SET_NAME = 15
_LIBC = ctypes.CDLL(None, use_errno=True)  # the process's own symbols: libc's prctl


def name_os_thread(name: str) -> None:
    """Give the calling thread its name in /proc/<pid>/task/<tid>/comm (15 bytes at
    most): camera, record and analysis workers show up under their own names."""
    try:
        _LIBC.prctl(_PR_SET_NAME, name.encode()[:15], 0, 0, 0)
    except (AttributeError, OSError):
        pass
