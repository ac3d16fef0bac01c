"""TLS and authentication against a real Mosquitto configured with generated certificates
and a password file: the right CA and password connect (daemon and `nvr-edge health`),
a wrong CA is refused, a wrong password is reported as refused credentials."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
from aiomqtt.exceptions import MqttConnectError
from paho.mqtt.client import convert_connack_rc_to_reason_code

from edge.mqtt import refusal
from harness.broker import Mosquitto
from harness.daemon import DaemonProcess, run_cli, write_config
from harness.tls import CertificateAuthority, SecureCapture, ServerTls, make_ca, make_password_file, make_server_cert

USER, PASSWORD = "cluster-7", "tls-test-Pa55word"
P = "nvr/box-tls"


@dataclass(frozen=True)
class Pki:
    server: ServerTls
    other_ca: CertificateAuthority  # a CA that did not sign the broker's certificate
    passwords: Path  # the broker's (hashed) password file


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    root = tmp_path_factory.mktemp("pki")
    ca = make_ca(root, "district-ca")
    return Pki(
        make_server_cert(ca, root), make_ca(root, "other-ca"), make_password_file(root / "passwd", {USER: PASSWORD})
    )


@pytest.fixture
def secure_broker(pki: Pki, tmp_path: Path) -> Iterator[Mosquitto]:
    with Mosquitto(workdir=tmp_path / "broker", tls=pki.server, password_file=pki.passwords) as running:
        yield running


def _config(tmp_path: Path, broker: Mosquitto, *, ca_file: Path, password: str, mode: int = 0o600) -> Path:
    secret = tmp_path / "mqtt-password"
    secret.write_text(password + "\n")
    secret.chmod(mode)
    mqtt: dict[str, Any] = {"username": USER, "password_file": str(secret), "tls": {"ca_file": str(ca_file)}}
    return write_config(
        tmp_path / "edge.yaml",
        box_id="box-tls",
        data_dir=tmp_path / "data",
        mqtt_port=broker.port,
        cameras={},
        extra={"mqtt": mqtt},
    )


def _capture(broker: Mosquitto, pki: Pki) -> SecureCapture:
    return SecureCapture(
        broker.host, broker.port, (f"{P}/#",), ca_file=pki.server.ca_file, username=USER, password=PASSWORD
    )


def _events(daemon: DaemonProcess, *names: str) -> list[dict[str, Any]]:
    return [line for line in daemon.logs() if line.get("event") in names]


def test_right_ca_and_password_connect_and_health_answers(tmp_path: Path, secure_broker: Mosquitto, pki: Pki) -> None:
    # 0644: every user of the box can read the password - the daemon says so once.
    config = _config(tmp_path, secure_broker, ca_file=pki.server.ca_file, password=PASSWORD, mode=0o644)
    with _capture(secure_broker, pki) as capture, DaemonProcess(config) as daemon:
        capture.wait_for(lambda m: m.topic == f"{P}/status" and m.text == "online", timeout=30)
        health = run_cli("health", "--config", str(config), "--timeout", "10")
        assert health.returncode == 0, health.stdout + health.stderr
        assert '"status": "ok"' in health.stdout
        # The broker does enforce both: without the password the same command is refused.
        anonymous = tmp_path / "anonymous.yaml"
        anonymous.write_text(config.read_text().replace("password_file:", "# password_file:"))
        refused = run_cli("health", "--config", str(anonymous), "--timeout", "5")
        assert refused.returncode == 2 and "Not authorized" in refused.stderr, refused.stderr
        assert daemon.alive
    assert len(_events(daemon, "mqtt_connected")) == 1
    warned = _events(daemon, "mqtt_password_file_readable")
    assert len(warned) == 1 and warned[0]["level"] == "warning" and "chmod o-r" in warned[0]["hint"]
    assert PASSWORD not in daemon.log_text()


def test_wrong_ca_is_one_clear_error_per_attempt_and_never_connects(
    tmp_path: Path, secure_broker: Mosquitto, pki: Pki
) -> None:
    config = _config(tmp_path, secure_broker, ca_file=pki.other_ca.cert, password=PASSWORD)
    with _capture(secure_broker, pki) as capture, DaemonProcess(config) as daemon:
        daemon.wait_log("mqtt_tls_failed", timeout=30)
        deadline = time.monotonic() + 25
        while len(_events(daemon, "mqtt_tls_failed")) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        failed = _events(daemon, "mqtt_tls_failed")
        assert daemon.alive
        daemon.kill()  # a clean stop would wait its flush budget for a broker it cannot reach
    assert len(failed) >= 2, daemon.log_text()[-2000:]
    for line in failed:
        assert line["level"] == "error"
        assert line["error"].startswith("TLS verification of the broker failed (self-signed certificate")
        assert "check mqtt.tls.ca_file" in line["error"]
        assert line["retry_in_s"] >= 5  # slow: a config problem does not fix itself in a second
    # One line per attempt: each line comes the announced delay after the one before (plus the
    # handshake), so no attempt went unreported and none was reported twice.
    times = [datetime.fromisoformat(line["timestamp"]).timestamp() for line in failed]
    for before, start, end in zip(failed, times, times[1:], strict=False):
        assert before["retry_in_s"] - 0.2 <= end - start <= before["retry_in_s"] + 2.0, (before, end - start)
    assert not _events(daemon, "mqtt_connected", "mqtt_disconnected", "mqtt_link_error")
    assert not capture.on_topic(f"{P}/status")
    assert not _events(daemon, "mqtt_password_file_readable")  # 0600 is fine


def test_wrong_password_is_reported_as_refused_credentials(tmp_path: Path, secure_broker: Mosquitto, pki: Pki) -> None:
    wrong = "not-the-Pa55word"
    config = _config(tmp_path, secure_broker, ca_file=pki.server.ca_file, password=wrong)
    with _capture(secure_broker, pki) as capture, DaemonProcess(config) as daemon:
        first = daemon.wait_log("mqtt_not_authorised", timeout=30)
        time.sleep(3)  # a fast retry (0.5 s, then 1 s, ...) would show here
        attempts = _events(daemon, "mqtt_not_authorised")
        assert daemon.alive
        daemon.kill()
    assert first["level"] == "error"
    assert first["error"] == (
        "the broker refused the credentials ([code:135] Not authorized): check mqtt.username and mqtt.password_file"
    )
    assert first["retry_in_s"] >= 5 and len(attempts) == 1
    assert not _events(daemon, "mqtt_connected", "mqtt_disconnected", "mqtt_link_error")
    assert not capture.on_topic(f"{P}/status")
    assert wrong not in daemon.log_text() and PASSWORD not in daemon.log_text()
    health = run_cli("health", "--config", str(config), "--timeout", "5")
    assert health.returncode == 2 and wrong not in health.stdout + health.stderr


def test_only_a_refused_connect_is_reported_as_refused_credentials() -> None:
    """CONNACK 4/5 (134/135 in MQTT 5) are credentials; the same numbers from a publish are not."""
    for rc in (convert_connack_rc_to_reason_code(4), convert_connack_rc_to_reason_code(5), 5):
        assert refusal(MqttConnectError(rc))[0] == "mqtt_not_authorised"
    assert refusal(MqttConnectError(convert_connack_rc_to_reason_code(3))) is None  # server unavailable: transient
    assert refusal(aiomqtt.MqttCodeError(4, "Could not publish message")) is None  # MQTT_ERR_NO_CONN
    assert refusal(aiomqtt.MqttError("[Errno 111] Connection refused")) is None
    mismatch = "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: Hostname mismatch, certificate is not valid"
    event, message = refusal(aiomqtt.MqttError(mismatch + " for 'b.example'. (_ssl.c:1006)"))
    assert event == "mqtt_tls_failed"
    assert message.startswith("TLS verification of the broker failed (Hostname mismatch, certificate is not valid")
