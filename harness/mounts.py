"""Small filesystems for disk-fault tests (root only): a tmpfs of a given size, made
read-only and writable again under a running daemon.

A plain `mount -o remount,ro` fails with EBUSY while any file on the filesystem is
open for writing (the daemon's SQLite files always are), so a read-only fault under a
running daemon is made with a read-only bind mount on top of the directory: every new
file, directory and unlink there fails with EROFS, exactly as on a read-only disk, and
statvfs reports ST_RDONLY; only writes through descriptors opened before the fault
still land. `trigger_ext4_error` makes the real thing on a loop-mounted ext4: the kernel
remounts it read-only under every open file, for good.
"""

from __future__ import annotations

import os
import shutil
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


def can_fake_ext4_errors() -> bool:
    """Loop devices, mkfs.ext4 and ext4's trigger_fs_error (debug sysfs knob) are all here."""
    return is_root() and Path("/dev/loop-control").exists() and shutil.which("mkfs.ext4") is not None


def mount_ext4_image(image: Path, path: Path, size: str = "256M") -> None:
    """A fresh ext4 in a file, loop-mounted at `path` with errors=remount-ro (Debian's default for /)."""
    path.mkdir(parents=True, exist_ok=True)
    _run("truncate", "-s", size, str(image))
    _run("mkfs.ext4", "-q", "-F", str(image))
    _run("mount", "-o", "loop,errors=remount-ro", str(image), str(path))


def trigger_ext4_error(path: Path) -> None:
    """Make the kernel see an ext4 error at `path`: it aborts the journal and remounts the
    filesystem read-only at once, open files included (an SD card failing). Only a fresh
    mount after fsck makes it writable again."""
    source = subprocess.run(["findmnt", "-no", "SOURCE", str(path)], capture_output=True, text=True, check=True)
    Path(f"/sys/fs/ext4/{Path(source.stdout.strip()).name}/trigger_fs_error").write_text("1")


def unmount_all(path: Path) -> None:
    """Lazily unmount everything stacked on `path` (never raises: used in finally blocks)."""
    for _ in range(5):
        if subprocess.run(["mountpoint", "-q", str(path)], check=False).returncode != 0:
            return
        subprocess.run(["umount", "-l", str(path)], check=False, capture_output=True)


def freeze(path: Path) -> None:
    """`fsfreeze -f`: every write to the filesystem at `path` blocks until `thaw` (a disk
    that stops answering: the writer hangs in the kernel, it gets no error)."""
    _run("fsfreeze", "-f", str(path))


def thaw(path: Path) -> None:
    """Undo `freeze` (never raises: used in finally blocks)."""
    subprocess.run(["fsfreeze", "-u", str(path)], check=False, capture_output=True)
