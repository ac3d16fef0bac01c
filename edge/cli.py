"""Command line (SPEC section 1): run, check-config, health, probe; the district's tail and roll-call;
export and verify (footage for an investigation)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import resource
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from edge import __version__

DEFAULT_CONFIG = "/etc/nvr-edge/edge.yaml"
EXIT_OK, EXIT_UNHEALTHY, EXIT_BAD = 0, 1, 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nvr-edge", description="Edge ingest daemon for neighbourhood CCTV")
    parser.add_argument("--version", action="version", version=f"nvr-edge {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    default = os.environ.get("NVR_EDGE_CONFIG") or DEFAULT_CONFIG
    for name, text in (
        ("run", "run the daemon until SIGTERM/SIGINT"),
        ("check-config", "validate the config and print what would run"),
        ("health", "ask the running daemon for its health over MQTT"),
    ):
        cmd = sub.add_parser(name, help=text, description=text)
        cmd.add_argument(
            "--config", default=default, help=f"config file (default: $NVR_EDGE_CONFIG or {DEFAULT_CONFIG})"
        )
        if name == "health":
            cmd.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the answer")
    _district_parsers(sub)
    _footage_parsers(sub, default)
    _probe_parser(sub, default)
    return parser


def _probe_parser(sub: argparse._SubParsersAction, default: str) -> None:
    """`nvr-edge probe` (edge/probe.py): the cameras' streams, tried before the daemon runs."""
    probe = sub.add_parser(
        "probe",
        help="connect to the cameras' streams as the daemon would and say what each is",
        description="Connect to every enabled camera's url and detect_url (or only the CAMs named, or a URL "
        "given instead) as the daemon would: one row per stream (reachable or why not, codec, size, fps, GOP, "
        "bitrate, audio, time to the first picture), then a verdict per camera. "
        "Exit 0 when every camera is usable, 1 when one is not, 2 for bad arguments or config.",
    )
    probe.add_argument("--config", default=default, help=f"config file (default: $NVR_EDGE_CONFIG or {DEFAULT_CONFIG})")
    probe.add_argument("--seconds", type=float, default=5.0, help="how long each stream is measured (default 5)")
    probe.add_argument("targets", nargs="*", metavar="CAM|URL", help="camera ids of the config, or rtsp:// URLs")


def _footage_parsers(sub: argparse._SubParsersAction, default_config: str) -> None:
    """export and verify (edge/export_command.py, edge/verify.py): footage for an investigation."""
    from edge import export_command, verify

    export_command.add_parser(sub, default_config)
    verify.add_parser(sub, default_config)


def _connection_arguments(cmd: argparse.ArgumentParser) -> None:
    """The MQTT connection options of tail and roll-call (edge/district.py reads them)."""
    cmd.add_argument("--config", help="use this daemon config's mqtt section (host, TLS, user, password file)")
    cmd.add_argument("--host", help="broker host (overrides the config)")
    cmd.add_argument("--port", type=int, help="broker port (default 1883, or the config's)")
    cmd.add_argument("--prefix", help="topic prefix (default nvr, or the config's mqtt.topic_prefix)")
    cmd.add_argument("--username", help="MQTT user name")
    cmd.add_argument("--password-file", help="file holding the MQTT password (never on the command line)")
    cmd.add_argument("--ca-file", help="CA certificate of the broker: connect with TLS")


def _district_parsers(sub: argparse._SubParsersAction) -> None:
    """tail and roll-call (edge/district.py): the district's view of every box under a prefix."""
    tail = sub.add_parser(
        "tail",
        help="print live events of every box under the prefix, one line each",
        description="Print live events of every box under the prefix: box, camera, type, time, score.",
    )
    _connection_arguments(tail)
    tail.add_argument("--count", type=int, help="exit after this many events")
    tail.add_argument("--seconds", type=float, help="exit after this many seconds")
    roll = sub.add_parser(
        "roll-call",
        help="list every box seen: status, age of its last stats, its cameras' states",
        description="List every box under the prefix with its retained status, the age of its last stats "
        "and its cameras' states. Exit 0 when every box seen is online, 1 when one is not, 2 when none is seen.",
    )
    _connection_arguments(roll)
    roll.add_argument("--wait", type=float, default=35.0, help="seconds to listen for stats at most (default 35)")


def _load(path: str):  # noqa: ANN202 - returns Config or None
    from edge.config import ConfigError, load_config

    try:
        return load_config(Path(path))
    except ConfigError as exc:
        for line in exc.problems:
            print(line, file=sys.stderr)
        return None


def _cmd_check_config(path: str) -> int:
    from edge.config import summary

    config = _load(path)
    if config is None:
        return EXIT_BAD
    print(summary(config))
    return EXIT_OK


FD_TARGET = 8192  # descriptors the daemon asks for (the unit's LimitNOFILE); 1024 ran out once


def _raise_fd_limit(target: int = FD_TARGET) -> None:
    """Lift the soft descriptor limit towards `target` (within the hard limit) where the
    environment left it lower (a shell's 1024); under systemd, LimitNOFILE already did."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = target if hard == resource.RLIM_INFINITY else min(target, hard)
    if soft != resource.RLIM_INFINITY and soft < want:
        with contextlib.suppress(OSError, ValueError):  # a sandbox may forbid it: keep what we have
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def _cmd_run(path: str) -> int:
    config = _load(path)
    if config is None:
        return EXIT_BAD
    _raise_fd_limit()
    import cv2

    from edge.app import Daemon
    from edge.logs import configure_logging

    cv2.setNumThreads(1)  # camera threads already use the cores; nested pools only add overhead

    configure_logging(config.log.level)
    runner: Callable[[Coroutine[Any, Any, None]], None]
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        runner = asyncio.run

    from edge.config import load_config

    async def main() -> None:
        await Daemon(config, reload=lambda: load_config(Path(path))).run()

    runner(main())
    return EXIT_OK


def _cmd_health(path: str, timeout: float) -> int:
    """edge/healthcheck.py: the answer, or why there is none (offline since, broker unreachable)."""
    from edge.healthcheck import run

    config = _load(path)
    if config is None:
        return EXIT_BAD
    return run(config, timeout, sys.stdout, sys.stderr)


def _cmd_probe(path: str, targets: list[str], seconds: float) -> int:
    """edge/probe.py: URLs given are probed alone; camera ids (or none) come from the config."""
    from edge.probe import config_targets, run, url_target

    urls = [t for t in targets if "://" in t]
    cams = [t for t in targets if "://" not in t]
    if not 0.5 <= seconds <= 60:
        print("probe: --seconds must be between 0.5 and 60", file=sys.stderr)
        return EXIT_BAD
    try:
        chosen = [url_target(url) for url in urls]
        if cams or not urls:
            config = _load(path)
            if config is None:
                return EXIT_BAD
            chosen = config_targets(config, cams, sys.stderr) + chosen
    except ValueError as exc:
        print(f"probe: {exc}", file=sys.stderr)
        return EXIT_BAD
    return run(chosen, seconds)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _dispatch(args)
    except BrokenPipeError:  # e.g. `nvr-edge check-config | head`
        return EXIT_OK


def _dispatch(args: argparse.Namespace) -> int:
    if args.command in ("tail", "roll-call"):
        from edge.district import run

        return run(args, _load, os.environ.get("NVR_EDGE_CONFIG") or DEFAULT_CONFIG)
    if args.command == "export":
        from edge import export_command

        return export_command.run(args, _load)
    if args.command == "verify":
        from edge import verify

        return verify.run(args, _load)
    if args.command == "check-config":
        return _cmd_check_config(args.config)
    if args.command == "run":
        return _cmd_run(args.config)
    if args.command == "probe":
        return _cmd_probe(args.config, args.targets, args.seconds)
    return _cmd_health(args.config, args.timeout)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
