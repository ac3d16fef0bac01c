"""Small filesystems for disk-fault tests (root only): a tmpfs of a given size, made
read-only and writable again under a running daemon.

A plain `mount -o remount,ro` fails with EBUSY while any file on the filesystem is
open for writing (the daemon's SQLite files always are), so a read-only fault under a
running daemon is made with a read-only bind mount on top of the directory: every new
file, directory and unlink there fails with EROFS, exactly as on a read-only disk, and
statvfs reports ST_RDONLY; only writes through descriptors opened before the fault
still land (a kernel that remounts ext4 read-only after an error stops those too).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path


def is_root() -> bool:
    return os.geteuid() == 0


def _run(*args: str) -> None:
    subprocess.run(list(args), check=True, capture_output=True, text=True, timeout=30)


def mount_tmpfs(path: Path, size: str = "256m") -> None:
    """A fresh tmpfs at `path` (memory is used only for what is written)."""
    path.mkdir(parents=True, exist_ok=True)
    _run("mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path))


def remount(path: Path, mode: str) -> None:
    """`mount -o remount,ro|rw`: works for `ro` only while nothing there is open for writing."""
    _run("mount", "-o", f"remount,{mode}", str(path))


def make_read_only_under_writers(path: Path) -> None:
    """Read-only from now on for every new open, mkdir and unlink under `path` (see module doc)."""
    _run("mount", "--bind", str(path), str(path))
    _run("mount", "-o", "remount,bind,ro", str(path))


def make_writable_again(path: Path) -> None:
    """Undo make_read_only_under_writers: the top bind mount becomes writable."""
    _run("mount", "-o", "remount,bind,rw", str(path))


def unmount_all(path: Path) -> None:
    """Lazily unmount everything stacked on `path` (never raises: used in finally blocks)."""
    for _ in range(5):
        if subprocess.run(["mountpoint", "-q", str(path)], check=False).returncode != 0:
            return
        subprocess.run(["umount", "-l", str(path)], check=False, capture_output=True)
