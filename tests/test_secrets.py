"""Camera and MQTT credentials never appear in anything the daemon emits: its log (stdout
and stderr), every MQTT message it publishes (discovery included), stats, health,
events, error messages, the CLI's output, and the files it keeps (SQLite bytes, WAL too).

The credentials are distinctive strings with characters that must be percent-encoded
in a URL, so the scan looks for them raw, percent-encoded and as the Basic auth token
an RTSP client sends. One camera has the right password (events and thumbnails flow),
one a wrong password (401 error path), one points at a dead port (connection error
path); `nvr-edge health` also runs with a wrong broker password, and a reload is sent
a file whose broken camera URL holds the password.

Below that, property tests of the redaction itself (issue 15): a URL that does not parse
as a whole (the host forgotten, a port that is no port, unbalanced brackets) keeps
nothing but its scheme, whatever the password holds.
"""

from __future__ import annotations

import base64
import json
import re
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.config import ConfigError, parse_config
from edge.redact import redact_text, redact_url, redact_urls, url_problem
from harness.broker import Mosquitto, free_port
from harness.camsim import CameraSimulator
from harness.daemon import DaemonProcess, run_cli, write_config
from harness.tls import SecureCapture, make_password_file

CAM_USER, CAM_PASSWORD = "camviewer7Kq", "Cam/Pw:9x@Zr%q!"
SIDE_USER = "sideviewer5Rn"  # the simulator keeps one mount per user:password pair
WRONG_CAM_PASSWORD = "Wrong:Cam@Pw4Tt"
MQTT_USER, MQTT_PASSWORD = "district8Vb", "Mqtt-Pw#8Hh$z"
WRONG_MQTT_PASSWORD = "Wrong-Mqtt-Pw2Jj"
P = "nvr/box-s"


def _forms(secret: str) -> set[str]:
    """How a secret can leak: raw, percent-encoded (all or URL-safe chars kept)."""
    return {secret, quote(secret, safe=""), quote(secret)}


SECRETS = {
    form for secret in (CAM_PASSWORD, WRONG_CAM_PASSWORD, MQTT_PASSWORD, WRONG_MQTT_PASSWORD) for form in _forms(secret)
} | {
    base64.b64encode(f"{user}:{pw}".encode()).decode()
    for user in (CAM_USER, SIDE_USER)
    for pw in (CAM_PASSWORD, WRONG_CAM_PASSWORD)
}  # the Basic authorization an RTSP client sends
USER_NAMES = _forms(CAM_USER) | _forms(SIDE_USER) | _forms(MQTT_USER)  # shown only as rtsp://***@host/...


@pytest.fixture(scope="module")
def locked_cameras(clips: dict[str, Path]) -> Iterator[CameraSimulator]:
    """Both mounts want the camera password."""
    mounts = {"moving": clips["walkers"], "locked": clips["static"]}
    auth = {"moving": (CAM_USER, CAM_PASSWORD), "locked": (SIDE_USER, CAM_PASSWORD)}
    with CameraSimulator(mounts, auth=auth) as sim:
        yield sim


def _leaks(blobs: dict[str, bytes], needles: set[str]) -> list[str]:
    return [f"{needle!r} in {name}" for name, blob in blobs.items() for needle in needles if needle.encode() in blob]


def _data_files(data_dir: Path) -> dict[str, bytes]:
    """Every file the daemon keeps except recordings (index, outbox, their WAL and shm), raw bytes."""
    return {
        str(path.relative_to(data_dir)): path.read_bytes()
        for path in sorted(data_dir.rglob("*"))
        if path.is_file() and "recordings" not in path.relative_to(data_dir).parts
    }


def test_no_credential_leaves_the_daemon(
    tmp_path: Path, locked_cameras: CameraSimulator, clips: dict[str, Path]
) -> None:
    passwords = make_password_file(tmp_path / "broker-passwd", {MQTT_USER: MQTT_PASSWORD})
    secret = tmp_path / "mqtt-password"
    secret.write_text(MQTT_PASSWORD + "\n")
    secret.chmod(0o600)
    wrong_secret = tmp_path / "wrong-mqtt-password"
    wrong_secret.write_text(WRONG_MQTT_PASSWORD + "\n")
    sim = locked_cameras
    cameras: dict[str, dict[str, Any]] = {
        "front": {"url": sim.url_with("moving", CAM_USER, CAM_PASSWORD), "name": "Front gate"},
        "side": {"url": sim.url_with("locked", SIDE_USER, WRONG_CAM_PASSWORD), "share": "events"},
        "dead": {"url": f"rtsp://{quote(CAM_USER)}:{quote(CAM_PASSWORD, safe='')}@127.0.0.1:{free_port()}/s1"},
    }
    outputs: dict[str, bytes] = {}
    with Mosquitto(workdir=tmp_path / "broker", password_file=passwords) as broker:

        def config(path: Path, password_file: Path, cams: dict[str, dict[str, Any]]) -> Path:
            mqtt = {"username": MQTT_USER, "password_file": str(password_file)}
            extra = {"mqtt": mqtt, "homeassistant": {"discovery": True}, "events": {"end_after": 2.0}}
            return write_config(
                path, box_id="box-s", data_dir=tmp_path / "data", mqtt_port=broker.port, cameras=cams,
                stats_interval=1.0, extra=extra,
            )  # fmt: skip

        good = config(tmp_path / "edge.yaml", secret, cameras)
        capture = SecureCapture(broker.host, broker.port, ("#",), username=MQTT_USER, password=MQTT_PASSWORD)
        with capture, DaemonProcess(good) as daemon:
            start = capture.wait_for(
                lambda m: m.topic == f"{P}/events" and json.loads(m.payload)["thumbnail"], timeout=60
            )[0]
            capture.wait_for(lambda m: m.topic == f"{P}/events/{json.loads(start.payload)['id']}/thumbnail", timeout=10)
            stats = capture.wait_for(
                lambda m: (
                    m.topic == f"{P}/stats"
                    and json.loads(m.payload)["cameras"]["side"]["state"] == "failed"
                    and json.loads(m.payload)["cameras"]["dead"]["error"] is not None
                ),
                timeout=30,
            )[-1]
            for name, args in {
                "health": ("health", "--config", str(good), "--timeout", "10"),
                "check-config": ("check-config", "--config", str(good)),
                "health, wrong broker password": (
                    "health", "--config", str(config(tmp_path / "wrong.yaml", wrong_secret, cameras)), "--timeout", "5",
                ),
            }.items():  # fmt: skip
                result = run_cli(*args)
                outputs[f"nvr-edge {name}"] = (result.stdout + result.stderr).encode()
            # A reload with a broken camera URL that carries the password: rejected, one line per problem.
            broken = {**cameras, "side": {"url": f"http://{CAM_USER}:{CAM_PASSWORD}@10.0.0.9/x"}}
            config(good, secret, broken)
            daemon.proc.send_signal(signal.SIGHUP)
            daemon.wait_log("reload_rejected", timeout=10)
            result = run_cli("check-config", "--config", str(good))
            outputs["nvr-edge check-config, broken"] = (result.stdout + result.stderr).encode()
        assert daemon.proc.returncode == 0
        broker_messages = capture.snapshot()

    outputs["daemon stdout+stderr"] = daemon.log_path.read_bytes()
    outputs.update({f"mqtt {m.topic}#{i}": m.payload for i, m in enumerate(broker_messages)})
    outputs.update({f"data_dir/{name}": blob for name, blob in _data_files(tmp_path / "data").items()})
    assert not _leaks(outputs, SECRETS)
    assert not _leaks(outputs, USER_NAMES)

    # The scan was not vacuous: everything above was really emitted, with masked URLs where shown.
    topics = {m.topic for m in broker_messages}
    assert {f"{P}/status", f"{P}/events", f"{P}/health", f"{P}/stats"} <= topics
    assert any(t.startswith(f"{P}/events/") and t.endswith("/thumbnail") for t in topics)
    assert any(t.startswith("homeassistant/") for t in topics)
    camera_stats = json.loads(stats.payload)["cameras"]
    assert camera_stats["side"]["error"].startswith("authentication failed (401)")
    assert camera_stats["front"]["state"] == "streaming"
    log = outputs["daemon stdout+stderr"].decode()
    assert re.search(r'"url": "rtsp://\*\*\*@127\.0\.0\.1:\d+/locked"', log)
    assert '"event": "reload_rejected"' in log
    assert "rtsp://***@127.0.0.1:" in outputs["nvr-edge check-config"].decode()
    assert b'"status": "degraded"' in outputs["nvr-edge health"]
    assert b"Not authorized" in outputs["nvr-edge health, wrong broker password"]
    assert b"must be an rtsp:// or rtsps:// URL" in outputs["nvr-edge check-config, broken"]
    kept = _data_files(tmp_path / "data")
    assert any(name.startswith("outbox.sqlite") for name in kept) and any(name.startswith("index") for name in kept)


# ----------------------------------------------------------------------------------
# Malformed URLs: nothing after the scheme survives (issue 15, item 8)
# ----------------------------------------------------------------------------------

MARK = "xSECRETx"
LEAKED = "rtsp://admin:Zq@7:xSECRETx"  # issue 15: the host forgotten; `7` read as the host
_text = st.characters(blacklist_categories=("Cs", "Zs", "Zl", "Zp", "Cc"))
_user = st.text(st.characters(blacklist_categories=("Cs", "Zs", "Zl", "Zp", "Cc"), blacklist_characters=":/?#@"),
                min_size=1, max_size=10)  # fmt: skip
# Any password without / ? # (with those, "user:pa@h/ss@" is a valid URL with an @ in its path).
_password = st.builds(
    lambda a, b: a + MARK + b,
    st.text(st.characters(blacklist_categories=("Cs", "Zs", "Zl", "Zp", "Cc"), blacklist_characters="/?#"), max_size=8),
    st.text(st.characters(blacklist_categories=("Cs", "Zs", "Zl", "Zp", "Cc"), blacklist_characters="/?#"), max_size=8),
)
_host = st.sampled_from(["10.0.0.64", "cam.local", "h", "gate-1"])
_bad_port = st.one_of(
    st.sampled_from(["0", "65536", "99999", "", "-1", "+80", "554554", MARK, "5 54".replace(" ", "x")]),
    st.text(_text, min_size=1, max_size=8).filter(lambda p: not p.isascii() or not p.isdigit()),
)
_bad_hostport = st.one_of(
    st.just(""),  # the host forgotten
    st.builds(lambda port: f":{port}", st.sampled_from(["554", MARK])),  # a port, no host
    st.builds(lambda host, port: f"{host}:{port}", _host, _bad_port),
    st.builds(lambda tail: f"[fe80::1{tail}", st.sampled_from(["", ":554", "%25eth0", MARK])),  # [ never closed
    st.builds(lambda inner: f"[{inner}]", st.sampled_from([MARK, "10.0.0.1", "fe80::1::2", "fe80::1%eth0"])),
    st.builds(lambda host, junk: f"{host}{junk}", _host, st.sampled_from(["]", "[", "]:554", f"[{MARK}"])),
    st.sampled_from(["7", "999.0.0.1", "10.0.0.256", "ca$m", "cam!x", "a..b", "h:554:1", f"{MARK}!"]),
)
_path = st.sampled_from(["", "/", "/stream1", "/Streaming/Channels/101", "?channel=1", "#x"])


@settings(max_examples=400, deadline=None)
@given(scheme=st.sampled_from(["rtsp", "rtsps", "RTSP"]), user=_user, password=_password, hostport=_bad_hostport,
       path=_path)  # fmt: skip
def test_a_url_that_does_not_parse_keeps_only_its_scheme(
    scheme: str, user: str, password: str, hostport: str, path: str
) -> None:
    url = f"{scheme}://{user}:{password}@{hostport}{path}"
    assert redact_url(url) == f"{scheme}://***"
    assert url_problem(url) is not None  # check-config refuses it
    for out in (
        redact_urls(f"error opening {url}, retrying"),
        redact_urls(f"error opening '{url}': 401"),
        redact_text(f"error opening '{url}': 401 ({hostport}{path})", [url]),
    ):
        assert MARK not in out and password not in out, out


def test_the_leaked_url_of_issue_15() -> None:
    """It passed check-config; the log and P/stats showed `rtsp://***@7:xSECRETx`."""
    assert redact_url(LEAKED) == "rtsp://***"
    assert MARK not in redact_text(f"[tcp @ 0x5] Failed to resolve hostname 7: {LEAKED} 7:xSECRETx", [LEAKED])
    with pytest.raises(ConfigError) as info:
        parse_config(f"box:\n  id: a\ncameras:\n  gate:\n    url: {LEAKED}\n")
    assert info.value.problems == ["cameras.gate.url: has no valid host name or address (line 5)"]


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("rtsp://u:p@", "has no host"),
        ("rtsp://u:p@:554/x", "has no host"),
        ("rtsp://u:p@cam:0/x", "has a port that is not a number from 1 to 65535"),
        ("rtsp://u:p@cam:65536/x", "has a port that is not a number from 1 to 65535"),
        ("rtsp://u:p@cam:x55/x", "has a port that is not a number from 1 to 65535"),
        ("rtsp://u:p@[fe80::1/x", "has unbalanced [ ] (an IPv6 address is written [fe80::1])"),
        ("rtsp://u:p@fe80::1]/x", "has unbalanced [ ] (an IPv6 address is written [fe80::1])"),
        ("rtsp://u:p@[cam]/x", "has no valid IPv6 address between [ and ]"),
        ("rtsp://u:p@10.0.0.256/x", "has no valid host name or address"),
        ("rtsp://u:p@cam:554:1/x", "has a port that is not a number from 1 to 65535"),
    ],
)
def test_check_config_names_what_is_wrong_without_quoting(url: str, problem: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(f"box:\n  id: a\ncameras:\n  gate:\n    url: '{url}'\n")
    assert info.value.problems == [f"cameras.gate.url: {problem} (line 5)"]


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("rtsp://u:p@cam:1/x", "rtsp://***@cam:1/x"),
        ("rtsp://u:p@cam:65535", "rtsp://***@cam:65535"),
        ("rtsp://u:p@[::1]:554/x", "rtsp://***@[::1]:554/x"),
        ("rtsp://u:p@[fe80::1%25eth0]/x", "rtsp://***@[fe80::1%25eth0]/x"),
        ("rtsp://10.0.0.1", "rtsp://10.0.0.1"),
        ("rtsp://cam.local./x", "rtsp://cam.local./x"),
        ("rtsp://a:p@ss@h/x", "rtsp://***@h/x"),
        ("rtsps://u:pa/ss@h:322/x?y=1", "rtsps://***@h:322/x?y=1"),
    ],
)
def test_valid_urls_still_pass(url: str, shown: str) -> None:
    config = parse_config(f"box:\n  id: a\ncameras:\n  gate:\n    url: '{url}'\n")
    assert config.cameras["gate"].url == url
    assert redact_url(url) == shown
