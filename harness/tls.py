"""Throwaway TLS material and broker credentials for tests: a CA, a server certificate
signed by it, and a Mosquitto password file, made with the `openssl` and
`mosquitto_passwd` command-line tools (both come with the Debian packages the tests
already need, so no Python dependency is added for them).

Certificates are EC P-256, valid for two days, with the extensions Python's default
SSL context checks (CA basic constraints and key usage, subject alternative names for
127.0.0.1 and localhost, key identifiers).
"""

from __future__ import annotations

import shutil
import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path

from harness.mqtt_capture import MqttCapture

_DAYS = "2"
_KEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


@dataclass(frozen=True, slots=True)
class CertificateAuthority:
    cert: Path
    key: Path


@dataclass(frozen=True, slots=True)
class ServerTls:
    """What a TLS listener needs: its certificate chain's CA, its certificate and key."""

    ca_file: Path
    cert_file: Path
    key_file: Path


def _tool(name: str) -> str:
    for candidate in (shutil.which(name), f"/usr/bin/{name}", f"/usr/sbin/{name}"):
        if candidate and Path(candidate).exists():
            return candidate
    raise RuntimeError(f"{name} not found: install the Debian package that provides it")


def _run(*args: str) -> None:
    result = subprocess.run(args, capture_output=True, text=True, timeout=30, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{Path(args[0]).name} failed ({result.returncode}): {result.stderr.strip()[-1000:]}")


def make_ca(directory: Path, name: str = "ca") -> CertificateAuthority:
    """A self-signed CA in `directory` as `<name>.pem` and `<name>.key`."""
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / f"{name}.pem", directory / f"{name}.key"
    _run(
        _tool("openssl"), "req", "-x509", *_KEY, "-keyout", str(key), "-out", str(cert), "-days", _DAYS,
        "-subj", f"/CN=nvr-edge test {name}",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )  # fmt: skip
    return CertificateAuthority(cert, key)


def make_server_cert(ca: CertificateAuthority, directory: Path, name: str = "server") -> ServerTls:
    """A server certificate for 127.0.0.1 and localhost, signed by `ca`."""
    directory.mkdir(parents=True, exist_ok=True)
    cert, key, csr = directory / f"{name}.pem", directory / f"{name}.key", directory / f"{name}.csr"
    extensions = directory / f"{name}.ext"
    extensions.write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
        "basicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature\n"
        "extendedKeyUsage=serverAuth\n"
        "subjectKeyIdentifier=hash\n"
        "authorityKeyIdentifier=keyid\n"
    )
    _run(_tool("openssl"), "req", *_KEY, "-keyout", str(key), "-out", str(csr), "-subj", "/CN=127.0.0.1")
    _run(
        _tool("openssl"), "x509", "-req", "-in", str(csr), "-CA", str(ca.cert), "-CAkey", str(ca.key),
        "-CAcreateserial", "-out", str(cert), "-days", _DAYS, "-extfile", str(extensions),
    )  # fmt: skip
    return ServerTls(ca.cert, cert, key)


def make_password_file(path: Path, users: dict[str, str]) -> Path:
    """A Mosquitto password file (hashed) with `users` (name -> password)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    for i, (user, password) in enumerate(users.items()):
        _run(_tool("mosquitto_passwd"), *(["-c"] if i == 0 else []), "-b", str(path), user, password)
    path.chmod(0o600)
    return path


class SecureCapture(MqttCapture):
    """MqttCapture that connects with TLS (verified against `ca_file`) and a user name/password."""

    def __init__(
        self,
        host: str,
        port: int,
        topics: tuple[str, ...] = ("#",),
        *,
        ca_file: Path | None = None,
        username: str | None = None,
        password: str | None = None,
    ) -> None:
        super().__init__(host, port, topics)
        if ca_file is not None:
            self._client.tls_set(ca_certs=str(ca_file), cert_reqs=ssl.CERT_REQUIRED)
        if username is not None:
            self._client.username_pw_set(username, password)
