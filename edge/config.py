"""Configuration (SPEC section 2): pydantic models, and a YAML loader that reports problems.

The motion and event models below are the seam between the config loader and the
pure detector/tracker: the detector and tracker import only these two classes.

The loader's job is the installer's experience: every problem in the file comes back
at once, one line each, as `dotted.key.path: short message (line N)`, never a
traceback and never a camera password. Hence the YAML is composed into a node tree
(which keeps line numbers) and turned into plain data here rather than by PyYAML's
constructor, which would silently keep the last of two duplicate keys.
"""

from __future__ import annotations

import math
import os
import re
import stat
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from edge.placeholders import placeholder_problems
from edge.redact import redact_url, redact_urls, url_problem


class _Strict(BaseModel):
    """Base for every config model: unknown keys are errors, models are immutable.

    `allow_inf_nan=False`: `.inf`/`.nan` are valid YAML floats but no valid setting.
    `hide_input_in_errors`: a ValidationError printed anywhere must not show a camera URL.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False, hide_input_in_errors=True)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        """pydantic turns `true` into 1; in a YAML file that is a mistake, not a number."""
        if isinstance(value, bool) and info.field_name is not None:
            field = cls.model_fields.get(info.field_name)
            if field is not None and field.annotation in (int, float):
                raise PydanticCustomError("bool_not_number", "must be a number, not true/false")
        return value


class MotionConfig(_Strict):
    """Motion detector settings; top-level `motion:` with per-camera overrides."""

    sensitivity: int = Field(5, ge=1, le=10, description="1 = only large, clear motion; 10 = the faintest")
    frame_height: int = Field(100, ge=32, le=720, description="luma is downscaled to this height for detection")
    detect_fps: float = Field(5.0, gt=0, le=60, description="at most this many frames per second are analysed")
    min_area: float = Field(0.002, ge=0, le=0.5, description="smallest object, as a fraction of the frame area")
    lighting_fraction: float = Field(
        0.5, gt=0, le=1, description="a change over this fraction of the frame is lighting, not motion"
    )
    idle_after: float = Field(
        10.0,
        ge=0,
        le=3600,
        description="seconds without motion before only keyframes are decoded and packet sizes watched; 0 = never",
    )


class EventConfig(_Strict):
    """Event tracker settings (top-level `events:`)."""

    min_frames: int = Field(3, ge=1, le=100, description="consecutive motion frames before an event starts")
    end_after: float = Field(5.0, gt=0, le=600, description="seconds without motion before an event ends")
    update_interval: float = Field(5.0, ge=0, le=3600, description="minimum seconds between two update messages")
    max_duration: float = Field(600.0, gt=0, description="an event longer than this is ended and a new one started")
    pre_roll: float = Field(
        5.0, ge=0, le=300, description="seconds of recording before the event start listed in recordings"
    )
    post_roll: float = Field(
        5.0, ge=0, le=300, description="seconds of recording after the event end listed in recordings"
    )
    thumbnail_width: int = Field(640, ge=64, le=3840)
    jpeg_quality: int = Field(80, ge=10, le=100)


# --------------------------------------------------------------------------------------
# Values: identifiers, sizes, URLs
# --------------------------------------------------------------------------------------

ID_PATTERN = r"[a-z0-9][a-z0-9_-]*"
_ID_RE = re.compile(ID_PATTERN)
RTSP_MESSAGE = "must be an rtsp:// or rtsps:// URL"
_SIZE_MESSAGE = "must be a size like 50GB, 500MB or 1GiB"
_SIZE_RE = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*(?:([kmgtp])(i)?)?(b)?\s*", re.IGNORECASE)
_PREFIX_POWER = {"": 0, "k": 1, "m": 2, "g": 3, "t": 4, "p": 5}
MAX_SIZE = 2**63 - 1  # the index stores sizes in SQLite integers
MAX_CAMERA_ID_CHARS = 64  # SPEC 5; a 300-character id made `File name too long` at every segment
MAX_CAMERAS = 64  # a thread or two each and a mosaic tile: README "Limits"
MAX_PASSWORD_BYTES = 1024  # a password file is one line; a bigger file is the wrong file (/etc/shadow)


def parse_size(value: object) -> int:
    """'50GB', '500 MB' (SI: 10^3 steps), '1GiB' (IEC: 2^10 steps), '2048' or 2048 -> bytes.

    The unit is case-insensitive and the trailing B optional ('10M' = 10 MB). Decimal
    arithmetic keeps '1.1GB' exact; anything else raises ValueError with the message
    shown to the installer.
    """
    if isinstance(value, bool):
        raise ValueError(_SIZE_MESSAGE)
    if isinstance(value, int):
        size = value
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(_SIZE_MESSAGE)
        size = int(value)
    elif isinstance(value, str) and (match := _SIZE_RE.fullmatch(value)):
        number, prefix, binary, _ = match.groups()
        base = 1024 if binary else 1000
        size = int(Decimal(number) * base ** _PREFIX_POWER[(prefix or "").lower()])
    else:
        raise ValueError(_SIZE_MESSAGE)
    if size > MAX_SIZE:
        raise ValueError("is too large")
    return size


def human_size(n: int) -> str:
    """Bytes in SI units with three significant digits: 50 GB, 1.07 GB, 512 B."""
    for unit, size in (("PB", 10**15), ("TB", 10**12), ("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if n >= size:
            value = n / size
            return f"{value:.3g} {unit}" if value < 100 else f"{value:.0f} {unit}"
    return f"{n} B"


ByteSize = Annotated[int, BeforeValidator(parse_size), Field(gt=0)]


def _check_id(value: str) -> str:
    if not _ID_RE.fullmatch(value):
        raise ValueError("must match [a-z0-9][a-z0-9_-]*")
    return value


def _check_camera_id(value: str) -> str:
    """A camera id is a topic level, a directory name and part of Home Assistant's ids."""
    if len(value) > MAX_CAMERA_ID_CHARS:
        raise ValueError(f"camera id is {len(value)} characters; at most {MAX_CAMERA_ID_CHARS}")
    return _check_id(value)


def _check_rtsp(value: object) -> str:
    """A camera URL; the message never quotes the value (it may hold a password)."""
    if not isinstance(value, str) or not value.lower().startswith(("rtsp://", "rtsps://")):
        raise ValueError(RTSP_MESSAGE)
    if any(c.isspace() or not c.isprintable() for c in value):
        raise ValueError("must not contain spaces or control characters (write a space as %20)")
    problem = url_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value


def _not_empty(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    return value


Identifier = Annotated[str, AfterValidator(_check_id)]
CameraId = Annotated[str, AfterValidator(_check_camera_id)]
RtspUrl = Annotated[str, BeforeValidator(_check_rtsp)]
Text = Annotated[str, AfterValidator(_not_empty)]


# --------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------


class BoxConfig(_Strict):
    id: Identifier
    data_dir: Path = Path("/var/lib/nvr-edge")

    @field_validator("data_dir", mode="before")
    @classmethod
    def _data_dir(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip():
            raise ValueError("must not be empty")
        if isinstance(value, str | Path) and not Path(value).is_absolute():
            # Relative to whatever directory the daemon starts in: under systemd that is /.
            raise ValueError(
                "must be an absolute path, e.g. /var/lib/nvr-edge (a relative one depends on where the daemon starts)"
            )
        return value


class TlsConfig(_Strict):
    """Present (even empty, or `tls: true`) means TLS; an unset ca_file means the system CAs."""

    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None

    @field_validator("key_file")
    @classmethod
    def _key_needs_cert(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        if value is not None and "cert_file" in info.data and info.data["cert_file"] is None:
            raise ValueError("needs cert_file too")
        return value


def _plain_topic(value: str) -> str:
    if not value or any(c in value for c in "+#\0") or value.startswith("/") or value.endswith("/"):
        raise ValueError("must be a plain topic (not empty; no +, #, or leading/trailing /)")
    return value


MQTT_MAX_PACKET_BYTES = 268_435_455


def _mqtt_size(value: int) -> int:
    """`mqtt.max_message_bytes` past what MQTT can carry is a typo, not a setting."""
    if value > MQTT_MAX_PACKET_BYTES:
        raise ValueError("must be at most 256MiB, the largest message MQTT can carry")
    return value


class MqttConfig(_Strict):
    host: Text = "127.0.0.1"
    port: int = Field(1883, ge=1, le=65535)
    topic_prefix: str = "nvr"
    username: str | None = None
    password_file: Path | None = None
    tls: TlsConfig | None = None
    stats_interval: float = Field(30.0, gt=0)
    keepalive: int = Field(30, ge=5, le=3600)
    client_id: Text | None = None  # Config fills in nvr-edge-<box.id>
    # The broker's limit on one message: images are encoded to fit under it (edge/jpeg.py).
    # 128 KiB is the smallest limit of the common brokers (AWS IoT Core); the MQTT maximum is 256 MiB.
    max_message_bytes: Annotated[int, BeforeValidator(parse_size), Field(ge=4096), AfterValidator(_mqtt_size)] = 131_072

    @field_validator("host")
    @classmethod
    def _host(cls, value: str) -> str:
        if "://" in value or "/" in value or any(c.isspace() for c in value):
            raise ValueError("must be a host name or address, not a URL")
        return value

    @field_validator("topic_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        return _plain_topic(value)

    @field_validator("password_file")
    @classmethod
    def _password_needs_user(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        # MQTT sends no password without a user name: it would be silently dropped.
        if value is not None and "username" in info.data and info.data["username"] is None:
            raise ValueError("needs mqtt.username too")
        return value

    @field_validator("tls", mode="before")
    @classmethod
    def _tls_switch(cls, value: Any) -> Any:
        return {} if value is True else None if value is False else value

    def read_password(self) -> str | None:
        """The broker password from `password_file` (trailing newline stripped).

        Read when the client is built, never stored in the config, so it cannot
        end up in a repr or a log line.
        """
        if self.password_file is None:
            return None
        return read_password_file(self.password_file)


def read_password_file(path: Path) -> str:
    """The password in `path`, without ever blocking: a FIFO or a device is refused before
    it is opened (an open() of a FIFO waits for a writer, and it was on the event loop).

    Raises ValueError (`mqtt.password_file: why`, never the content) or OSError."""
    problem = password_file_problem(path)
    if problem is not None:
        raise ValueError(f"mqtt.password_file: {problem}")
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):  # swapped for a FIFO since the check
            raise ValueError("mqtt.password_file: is not a regular file")
        raw = os.read(fd, MAX_PASSWORD_BYTES + 1)
    finally:
        os.close(fd)
    problem = _password_content_problem(raw)
    if problem is not None:
        raise ValueError(f"mqtt.password_file: {problem}")
    return raw.decode("utf-8").rstrip("\r\n")


def password_file_problem(path: Path) -> str | None:
    """Why `path` cannot be the password file, from its metadata alone (it is not opened)."""
    try:
        info = path.stat()
    except FileNotFoundError:
        return "no such file"
    except (OSError, ValueError):
        return "is not a usable file path"
    if not stat.S_ISREG(info.st_mode):
        return "is not a regular file"
    if not os.access(path, os.R_OK):
        return "cannot be read by this user"
    if info.st_size > MAX_PASSWORD_BYTES:
        return f"is {info.st_size} bytes: larger than {MAX_PASSWORD_BYTES} bytes, not a password file"
    return None


def _password_content_problem(raw: bytes) -> str | None:
    """A password file holds one line of UTF-8 text (a trailing newline is fine)."""
    if len(raw) > MAX_PASSWORD_BYTES:
        return f"is larger than {MAX_PASSWORD_BYTES} bytes, not a password file"
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return "is not UTF-8 text"
    if sum(1 for line in text.splitlines() if line.strip()) > 1:
        return "has more than one line: a password file holds the password alone"
    return None


class RecordingConfig(_Strict):
    segment_seconds: float = Field(10.0, ge=1, le=600)
    max_bytes: ByteSize = 50 * 10**9
    min_free_bytes: Annotated[int, BeforeValidator(parse_size), Field(ge=0)] = 1 * 10**9
    event_protect_hours: float = Field(72.0, ge=0, description="event footage outlives plain footage this long")


class OutboxConfig(_Strict):
    max_bytes: ByteSize = 100 * 10**6


def _check_point(point: tuple[float, float]) -> tuple[float, float]:
    if not all(0.0 <= v <= 1.0 for v in point):
        raise ValueError("coordinates must be between 0 and 1")
    return point


Point = Annotated[tuple[float, float], AfterValidator(_check_point)]
Polygon = Annotated[list[Point], Field(min_length=3)]


_RESOLUTION_RE = re.compile(r"\s*(\d{1,5})\s*[xX]\s*(\d{1,5})\s*")


def parse_resolution(value: object) -> tuple[int, int]:
    """'1920x1080' -> (1920, 1080)."""
    if isinstance(value, tuple):  # already parsed (the `WxH` shorthand for both streams)
        return value
    match = _RESOLUTION_RE.fullmatch(value) if isinstance(value, str) else None
    if match is None or not all(16 <= int(side) <= 16384 for side in match.groups()):
        raise ValueError("must be WIDTHxHEIGHT, e.g. 1920x1080 (each side 16 to 16384)")
    return int(match.group(1)), int(match.group(2))


Resolution = Annotated[tuple[int, int], BeforeValidator(parse_resolution)]


class MaxResolution(_Strict):
    """The largest picture accepted from each of a camera's streams (either way round); a
    larger one is refused before it is decoded. `WxH` alone sets both."""

    record: Resolution = Field((4096, 2160), description="the `url` stream")
    detect: Resolution = Field((1920, 1080), description="the `detect_url` stream, when there is one")

    @model_validator(mode="before")
    @classmethod
    def _both(cls, data: Any) -> Any:
        if not isinstance(data, str):
            return data
        size = parse_resolution(data)  # one message for the key, not one per stream
        return {"record": size, "detect": size}


class CameraConfig(_Strict):
    url: RtspUrl = Field(repr=False)  # a repr in a log line or traceback must not show the password
    detect_url: RtspUrl | None = Field(None, repr=False)
    enabled: bool = True
    share: Literal["full", "events", "none"] = "full"
    privacy_masks: list[Polygon] = Field(default_factory=list)
    zones: list[Polygon] = Field(
        default_factory=list, description="where motion counts: an object must touch one; empty = everywhere"
    )
    name: str | None = None
    motion: MotionConfig = Field(default_factory=MotionConfig)
    max_resolution: MaxResolution = Field(default_factory=MaxResolution)

    @property
    def effective_detect_url(self) -> str:
        """The stream motion detection decodes: the sub-stream if there is one."""
        return self.detect_url or self.url


class MosaicConfig(_Strict):
    interval: float = Field(10.0, ge=0)


class WebTlsConfig(_Strict):
    """HTTPS for the page and the footage API: the box's certificate (chain) and key, PEM."""

    cert_file: Path
    key_file: Path


MIN_TOKEN_CHARS = 16  # e.g. `openssl rand -hex 32`: a guessable token would let footage out


class WebConfig(_Strict):
    listen: str | None = None
    # The footage API (edge/api.py) is on only with a token file: /api/... needs its token.
    token_file: Path | None = None
    tls: WebTlsConfig | None = None
    max_export_seconds: float = Field(7200.0, gt=0, le=86400, description="longest range one API export may cover")

    @model_validator(mode="after")
    def _needs_listen(self) -> WebConfig:
        if self.listen is None and (self.token_file is not None or self.tls is not None):
            raise ValueError("web.token_file and web.tls need web.listen too")
        return self

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str | None) -> str | None:
        if value is None:
            return value
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isascii() or not port.isdigit() or not 1 <= int(port) <= 65535:
            raise ValueError('must be "host:port", e.g. "0.0.0.0:8080"')
        return value


def read_token_file(path: Path) -> str:
    """The footage API's bearer token: one line of at least MIN_TOKEN_CHARS printable
    characters, from a regular file (never a FIFO: checked before it is opened). Raises
    ValueError (`web.token_file: why`, never the content) or OSError."""
    problem = password_file_problem(path)
    if problem is not None:
        raise ValueError(f"web.token_file: {problem}")
    with path.open("rb") as file:
        raw = file.read(MAX_PASSWORD_BYTES + 1)
    problem = _password_content_problem(raw)
    token = raw.decode("utf-8", errors="replace").strip()
    if problem is None and (len(token) < MIN_TOKEN_CHARS or not token.isprintable() or " " in token):
        problem = f"the token must be one word of at least {MIN_TOKEN_CHARS} characters (e.g. openssl rand -hex 32)"
    if problem is not None:
        raise ValueError(f"web.token_file: {problem.replace('a password file holds the password', 'it holds')}")
    return token


def _web_file_problems(data: dict[str, Any], doc: _Document) -> list[str]:
    """The API's token and the certificate it serves must work now, not at the first request."""
    web = data.get("web")
    if not isinstance(web, dict):
        return []
    problems = []
    token = web.get("token_file")
    if isinstance(token, str) and token:
        try:
            read_token_file(Path(token))
        except (ValueError, OSError) as exc:
            reason = str(exc).removeprefix("web.token_file: ") if isinstance(exc, ValueError) else exc.strerror
            problems.append(f"web.token_file: {reason} (line {doc.line_of(('web', 'token_file'))})")
    tls = web.get("tls")
    if isinstance(tls, dict) and all(isinstance(tls.get(k), str) and tls.get(k) for k in ("cert_file", "key_file")):
        unreadable = [(key, _unreadable(Path(tls[key]))) for key in ("cert_file", "key_file")]
        for key, why in unreadable:
            if why:
                problems.append(f"web.tls.{key}: {why} (line {doc.line_of(('web', 'tls', key))})")
        if not any(why for _, why in unreadable):
            import ssl

            try:
                ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(tls["cert_file"], tls["key_file"])
            except (ssl.SSLError, OSError):
                line = doc.line_of(("web", "tls"))
                problems.append(f"web.tls: cert_file and key_file are not a PEM certificate and its key (line {line})")
    return problems


class HomeAssistantConfig(_Strict):
    """Home Assistant MQTT discovery: the box and its cameras appear there without YAML."""

    discovery: bool = Field(False, description="publish discovery configs (retained) and answer Home Assistant's birth")
    prefix: str = Field("homeassistant", description="Home Assistant's discovery prefix (its MQTT integration's)")

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        return _plain_topic(value)


class LogConfig(_Strict):
    level: Literal["debug", "info", "warning", "error"] = "info"


SECTIONS = (
    "box",
    "mqtt",
    "recording",
    "cameras",
    "motion",
    "events",
    "outbox",
    "mosaic",
    "web",
    "homeassistant",
    "log",
)


class Config(_Strict):
    box: BoxConfig
    mqtt: MqttConfig = Field(default_factory=MqttConfig)
    recording: RecordingConfig = Field(default_factory=RecordingConfig)
    cameras: dict[CameraId, CameraConfig] = Field(default_factory=dict)
    motion: MotionConfig = Field(default_factory=MotionConfig)
    events: EventConfig = Field(default_factory=EventConfig)
    outbox: OutboxConfig = Field(default_factory=OutboxConfig)
    mosaic: MosaicConfig = Field(default_factory=MosaicConfig)
    web: WebConfig = Field(default_factory=WebConfig)
    homeassistant: HomeAssistantConfig = Field(default_factory=HomeAssistantConfig)
    log: LogConfig = Field(default_factory=LogConfig)

    @model_validator(mode="before")
    @classmethod
    def _prepare(cls, data: Any) -> Any:
        """Fill in what depends on other keys, on plain data so errors keep their place.

        An empty section (`mqtt:` with every key commented out) means its defaults; each
        camera's `motion:` is the top-level `motion:` with the camera's keys on top; the
        MQTT client id defaults to `nvr-edge-<box.id>`.
        """
        if not isinstance(data, dict):
            return data
        data = {key: ({} if key in SECTIONS and value is None else value) for key, value in data.items()}
        base = data.get("motion", {})
        if isinstance(data.get("cameras"), dict):
            data["cameras"] = {cam_id: _camera_with_motion(cam, base) for cam_id, cam in data["cameras"].items()}
        box, mqtt = data.get("box"), data.get("mqtt", {})
        box_id = box.get("id") if isinstance(box, dict) else box.id if isinstance(box, BoxConfig) else None
        if isinstance(box_id, str):
            client_id = f"nvr-edge-{box_id}"
            if isinstance(mqtt, dict) and mqtt.get("client_id") is None:
                data["mqtt"] = {**mqtt, "client_id": client_id}
            elif isinstance(mqtt, MqttConfig) and mqtt.client_id is None:
                data["mqtt"] = mqtt.model_copy(update={"client_id": client_id})
        return data

    @field_validator("cameras", mode="before")
    @classmethod
    def _camera_count(cls, value: Any) -> Any:
        if isinstance(value, dict) and len(value) > MAX_CAMERAS:
            raise ValueError(f"{len(value)} cameras; a box takes at most {MAX_CAMERAS} (README: Limits)")
        return value

    @property
    def enabled_cameras(self) -> dict[str, CameraConfig]:
        return {cam_id: cam for cam_id, cam in self.cameras.items() if cam.enabled}


def _camera_with_motion(cam: Any, base: Any) -> Any:
    """One camera's raw data with its `motion:` merged over the top-level one."""
    if cam is None:
        return {}
    if not isinstance(cam, dict):
        return cam
    own = cam.get("motion")
    own = {} if own is None else own
    if isinstance(own, dict) and isinstance(base, dict):
        return {**cam, "motion": {**base, **own}}
    return cam


def _inherited_motion(data: dict[str, Any]) -> set[tuple[str, str, str, str]]:
    """(cameras, cam, motion, key) of every camera motion key taken from top-level `motion:`.

    A bad top-level value would otherwise be reported once per camera, at the camera.
    """
    base, cameras = data.get("motion"), data.get("cameras")
    if not isinstance(base, dict) or not isinstance(cameras, dict):
        return set()
    found = set()
    for cam_id, cam in cameras.items():
        own = cam.get("motion") if isinstance(cam, dict) else None
        if cam is None or (isinstance(cam, dict) and (own is None or isinstance(own, dict))):
            found |= {("cameras", cam_id, "motion", key) for key in base if key not in (own or {})}
    return found


# --------------------------------------------------------------------------------------
# Loading: YAML with line numbers, duplicate keys, one line per problem
# --------------------------------------------------------------------------------------


class ConfigError(Exception):
    """The config is unusable; `problems` holds one human line each (str() joins them)."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


Loc = tuple[str | int, ...]
_MERGE_TAG = "tag:yaml.org,2002:merge"
_YAML_TAG = "tag:yaml.org,2002:"
MAX_VALUES = 100_000  # aliases can make a small file expand exponentially
MAX_DEPTH = 64
MAX_FILE_BYTES = 10 * 2**20


class _TooLarge(Exception):
    pass


def _key_text(part: str | int) -> str:
    """A key as shown in an error: control characters escaped, long keys cut.

    Keys are echoed (so the installer finds the typo) but no valid key contains `@`: a
    key that does is most likely a pasted URL, and whatever precedes its `@` is hidden.
    """
    text = str(part)
    if "@" in text:
        text = "***@" + text.rsplit("@", 1)[1]
    if not text.isprintable():
        text = repr(text)[1:-1]
    return text if len(text) <= 64 else text[:61] + "..."


def _dotted(loc: Loc) -> str:
    parts = [_key_text(part) for part in loc]
    if len(parts) > 10:
        parts = [*parts[:4], "...", *parts[-3:]]
    return ".".join(parts) or "<top>"


def _line(node: yaml.Node) -> int:
    return node.start_mark.line + 1


class _Document:
    """Turns a composed YAML tree into plain data, noting the line of every key path.

    Mapping keys are their source text (a camera called `1` or `on` stays `"1"` / `"on"`),
    duplicates are problems (the first one is kept), merge keys (`<<: *defaults`) work
    with explicit keys winning, and a value PyYAML cannot construct (`2024-13-45`,
    `!!int abc`, an unknown tag) is a problem at its own line instead of an exception.
    """

    def __init__(self) -> None:
        self.lines: dict[Loc, int] = {}
        self.problems: list[str] = []
        self.bad: set[Loc] = set()  # values replaced by None: pydantic's errors there are noise
        self._constructor = yaml.constructor.SafeConstructor()
        self._active: set[int] = set()
        self._count = 0

    def problem(self, loc: Loc, message: str, line: int) -> None:
        self.problems.append(f"{_dotted(loc)}: {message} (line {line})")

    def to_data(self, node: yaml.Node, loc: Loc) -> Any:
        self._count += 1
        if self._count > MAX_VALUES:
            raise _TooLarge
        self.lines.setdefault(loc, _line(node))
        if isinstance(node, yaml.ScalarNode):
            return self._scalar(node, loc)
        if id(node) in self._active or len(loc) > MAX_DEPTH:
            self.bad.add(loc)
            why = "an alias refers to itself" if id(node) in self._active else "nested too deeply"
            self.problem(loc, why, self.lines[loc])
            return None
        self._active.add(id(node))
        try:
            if isinstance(node, yaml.MappingNode):
                return self._mapping(node, loc)
            return [self.to_data(child, (*loc, i)) for i, child in enumerate(node.value)]
        finally:
            self._active.discard(id(node))

    def _scalar(self, node: yaml.ScalarNode, loc: Loc) -> Any:
        try:
            return self._constructor.construct_object(node, deep=True)
        except Exception:  # PyYAML raises ValueError, AttributeError, ... on odd scalars
            self.bad.add(loc)
            tag = node.tag.replace(_YAML_TAG, "!!")
            if node.tag in self._constructor.yaml_constructors:
                self.problem(loc, f"not a valid {tag} value", self.lines[loc])
            else:
                self.problem(loc, f"unsupported YAML tag {tag}", self.lines[loc])
            return None

    def _mapping(self, node: yaml.MappingNode, loc: Loc) -> dict[str, Any]:
        out: dict[str, Any] = {}
        merges = self._pairs(node, loc, out, explicit=True)
        seen = {id(node)}
        while merges:  # breadth-first: explicit keys, then sources in order, then theirs
            source = merges.pop(0)
            if id(source) in seen:
                continue
            seen.add(id(source))
            merges += self._pairs(source, loc, out, explicit=False)
        return out

    def _pairs(self, node: yaml.MappingNode, loc: Loc, out: dict[str, Any], explicit: bool) -> list[yaml.MappingNode]:
        """Add `node`'s pairs to `out`; return the mappings named by its merge keys."""
        first_line: dict[str, int] = {}
        merges: list[yaml.MappingNode] = []
        for key_node, value_node in node.value:
            line = _line(key_node)
            if key_node.tag == _MERGE_TAG:
                sources = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
                if all(isinstance(s, yaml.MappingNode) for s in sources):
                    merges += sources
                else:
                    self.problem((*loc, "<<"), "can only merge a mapping or a list of mappings", line)
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                self.problem(loc, "keys must be plain values", line)
                continue
            key = key_node.value
            if explicit:
                if key in first_line:
                    dotted = _dotted((*loc, key))
                    self.problems.append(f"{dotted}: duplicate key (line {line}; first at line {first_line[key]})")
                    continue
                first_line[key] = line
            elif key in out:
                continue  # explicit keys and earlier merge sources win
            self.lines[(*loc, key)] = line
            out[key] = self.to_data(value_node, (*loc, key))
        return merges

    def line_of(self, loc: Loc) -> int:
        """The line of `loc`, or of its nearest ancestor present in the file."""
        while loc:
            if loc in self.lines:
                return self.lines[loc]
            loc = loc[:-1]
        return self.lines.get((), 1)


def _yaml_message(exc: yaml.YAMLError, text: str) -> str:
    """One line for a YAML syntax error, with its line when PyYAML knows it."""
    if isinstance(exc, yaml.MarkedYAMLError):
        message = exc.problem or exc.context or "syntax error"
        if message.startswith("but ") and exc.context:
            message = f"{exc.context} {message}"
        mark = exc.problem_mark or exc.context_mark
        return f"invalid YAML: {message}" + (f" (line {mark.line + 1})" if mark else "")
    if isinstance(exc, yaml.reader.ReaderError):
        line = text.count("\n", 0, max(0, exc.position)) + 1
        char = exc.character
        code = ord(char) if isinstance(char, str) else char
        what = f"U+{code:04X}" if exc.encoding == "unicode" or isinstance(char, str) else f"byte 0x{code:02x}"
        return f"invalid YAML: character {what} is not allowed (line {line})"
    return "invalid YAML: " + (str(exc).splitlines() or ["syntax error"])[0]


_INTERNAL_LOC = re.compile(r"\[key\]|(function-(after|before|wrap|plain)|lax-or-strict|json-or-python|nullable)\[.*\]")
_MESSAGES = {
    "extra_forbidden": "unknown key",
    "missing": "required",
    "string_type": "must be text",
    "string_unicode": "must be text",
    "int_type": "must be a whole number",
    "int_parsing": "must be a whole number",
    "int_from_float": "must be a whole number",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "finite_number": "must be a finite number",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "dict_type": "must be a mapping of keys",
    "model_type": "must be a mapping of keys",
    "model_attributes_type": "must be a mapping of keys",
    "list_type": "must be a list",
    "tuple_type": "must be a list",
    "path_type": "must be a file path",
    "string_too_short": "must not be empty",
    "bool_not_number": "must be a number, not true/false",
}


def _human(error: Any) -> str:
    """pydantic's error as a short message; never the input value (it may be a URL)."""
    kind, ctx = error["type"], error.get("ctx") or {}
    if kind in _MESSAGES:
        return _MESSAGES[kind]
    if kind == "literal_error":
        return "must be one of: " + str(ctx.get("expected", "")).replace("'", "").replace(" or ", ", ")
    if kind in ("value_error", "assertion_error"):
        return str(ctx.get("error", "is not valid"))
    if kind == "too_short":
        return f"needs at least {ctx.get('min_length')} items"
    if kind == "too_long":
        return f"takes at most {ctx.get('max_length')} items"
    for bound, words in (("gt", "greater than"), ("ge", "at least"), ("lt", "less than"), ("le", "at most")):
        if bound in ctx:
            limit = ctx[bound]
            return f"must be {words} {limit:g}" if isinstance(limit, int | float) else f"must be {words} {limit}"
    return str(error["msg"]).split(",")[0][:120]


def _polygon_problem(loc: Loc, error: Any) -> tuple[Loc, str] | None:
    """Shape errors of a mask or zone say "polygon" and "point" (pydantic: "items", "required")."""
    if len(loc) < 4 or loc[0] != "cameras" or loc[2] not in ("privacy_masks", "zones"):
        return None
    kind = error["type"]
    if len(loc) == 4 and kind == "too_short":
        return loc, "a polygon needs at least 3 points"
    if len(loc) == 5 and kind in ("too_short", "too_long", "tuple_type"):
        return loc, "a point is [x, y]"
    if len(loc) == 6 and kind == "missing":
        return loc[:5], "a point is [x, y]"
    return None


def _validation_problems(exc: ValidationError, doc: _Document, inherited: set[Any]) -> list[str]:
    problems = []
    for error in exc.errors(include_url=False, include_input=False):
        loc: Loc = tuple(p for p in error["loc"] if not (isinstance(p, str) and _INTERNAL_LOC.fullmatch(p)))
        if any(loc[:n] in doc.bad for n in range(len(loc) + 1)):
            continue  # already reported as a YAML value problem
        if loc[:4] in inherited:  # a top-level motion value, copied into a camera
            loc = ("motion", *loc[3:])
        loc, message = _polygon_problem(loc, error) or (loc, _human(error))
        problems.append(f"{_dotted(loc)}: {message} (line {doc.line_of(loc)})")
    return problems


def _file_problems(data: dict[str, Any], doc: _Document) -> list[str]:
    """The broker's secret and TLS files must be readable now, not at the first reconnect."""
    mqtt = data.get("mqtt")
    if not isinstance(mqtt, dict):
        return []
    locs: list[Loc] = [("mqtt", "password_file")]
    if isinstance(mqtt.get("tls"), dict):
        locs += [("mqtt", "tls", key) for key in ("ca_file", "cert_file", "key_file")]
    problems = []
    for loc in locs:
        value: Any = data
        for part in loc:
            value = value.get(part) if isinstance(value, dict) else None
        if not isinstance(value, str) or not value:
            continue
        message = _password_problem(Path(value)) if loc[-1] == "password_file" else _unreadable(Path(value))
        if message:
            problems.append(f"{_dotted(loc)}: {message} (line {doc.line_of(loc)})")
    return problems


def _password_problem(path: Path) -> str | None:
    """check-config's verdict on the password file: metadata first, then the content."""
    problem = password_file_problem(path)
    if problem is not None:
        return problem
    try:
        with path.open("rb") as file:
            raw = file.read(MAX_PASSWORD_BYTES + 1)
    except OSError as exc:
        return f"cannot be read ({exc.strerror})"
    if not raw.strip():  # as the installer leaves it: the broker would refuse the box at every attempt
        return "is empty: write the broker password into it (README: The broker password)"
    return _password_content_problem(raw)


def _unreadable(path: Path) -> str | None:
    try:
        if not path.exists():
            return "no such file"
        if not path.is_file():
            return "is not a file"
        if not os.access(path, os.R_OK):
            return "cannot be read by this user"
    except (OSError, ValueError):
        return "is not a usable file path"
    return None


_LINE_RE = re.compile(r"\(line (\d+)(?:; first at line \d+)?\)$")


def _by_line(problem: str) -> int:
    match = _LINE_RE.search(problem)
    return int(match.group(1)) if match else 0


def _mask(problem: str) -> str:
    """Last line of defence: no problem line shows what precedes an `@` (a password)."""
    return re.sub(r"[^\s'\"(]+@", lambda m: m.group() if m.group().endswith("***@") else "***@", redact_urls(problem))


def _compose(text: str, source: str) -> yaml.Node:
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        raise ConfigError([f"{source}: {_mask(_yaml_message(exc, text))}"]) from None
    except RecursionError:
        raise ConfigError([f"{source}: nested too deeply"]) from None
    if node is None:
        raise ConfigError([f"{source}: the file is empty"])
    if not isinstance(node, yaml.MappingNode):
        raise ConfigError([f"{source}: the top level must be a mapping of keys (line {_line(node)})"])
    return node


def parse_config(text: str, source: str = "<file>") -> Config:
    """Validate YAML text; raise ConfigError with every problem found, sorted by line.

    `source` names the file in whole-file problems (syntax errors, empty file).
    """
    node = _compose(text, source)
    doc = _Document()
    try:
        data = doc.to_data(node, ())
    except _TooLarge:
        raise ConfigError([f"{source}: more than {MAX_VALUES} values (aliases expanding?)"]) from None
    except RecursionError:
        raise ConfigError([f"{source}: nested too deeply"]) from None
    problems = list(doc.problems)
    config = None
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        problems += _validation_problems(exc, doc, _inherited_motion(data))
    problems += _file_problems(data, doc)
    problems += _web_file_problems(data, doc)
    problems += placeholder_problems(data, doc.line_of)
    if problems:
        unique = dict.fromkeys(_mask(p) for p in problems)
        raise ConfigError(sorted(unique, key=_by_line))
    assert config is not None
    return config


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read and validate the config file; every problem becomes one ConfigError line."""
    path = Path(path)
    try:
        with path.open("rb") as file:
            raw = file.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError([f"{path}: no such file"]) from None
    except IsADirectoryError:
        raise ConfigError([f"{path}: is a directory, not a file"]) from None
    except PermissionError:
        raise ConfigError([f"{path}: permission denied"]) from None
    except (OSError, ValueError) as exc:
        raise ConfigError([f"{path}: cannot read ({getattr(exc, 'strerror', None) or exc})"]) from None
    if len(raw) > MAX_FILE_BYTES:
        raise ConfigError([f"{path}: larger than {MAX_FILE_BYTES // 2**20} MiB, not a config file"])
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise ConfigError([f"{path}: not UTF-8 text (line {line})"]) from None
    return parse_config(text, str(path))


def password_file_too_open(path: str | os.PathLike[str]) -> bool:
    """True when everyone on the box may read the password file (worth a warning, not an
    error). Group read is how the installer shares it with the service (root:nvr-edge 0640)."""
    try:
        return bool(Path(path).stat().st_mode & stat.S_IROTH)
    except (OSError, ValueError):
        return False


def reserve_problem(min_free: int, total: int, free: int | None = None, footage: int = 0) -> str | None:
    """Why `recording.min_free_bytes` leaves no room for footage on a filesystem of `total`
    bytes (`free` of them free, `footage` of them ours), or None when it fits."""
    if min_free <= 0 or total <= 0:
        return None
    if min_free >= total:
        where = f"the whole filesystem of box.data_dir ({human_size(total)})"
    elif free is not None and free + footage < min_free:
        where = f"what could ever be free on it ({human_size(free + footage)})"
    else:
        return None
    return (
        f"recording.min_free_bytes ({human_size(min_free)}) is more than {where}: "
        "every segment is deleted as soon as it closes"
    )


def filesystem_size(path: Path) -> int:
    """Size in bytes of the filesystem that holds `path` (or its nearest existing parent); 0 if unknown."""
    for candidate in (path, *path.parents):
        try:
            info = os.statvfs(candidate)
        except FileNotFoundError:
            continue
        except (OSError, ValueError):
            return 0
        return info.f_blocks * info.f_frsize
    return 0


def _camera_lines(config: Config) -> Iterator[str]:
    for cam_id, cam in config.cameras.items():
        label = f'{cam_id} "{cam.name}"' if cam.name else cam_id
        detect = redact_url(cam.detect_url) if cam.detect_url else "same stream"
        yield (
            f"  {label}: {'enabled' if cam.enabled else 'disabled'}, share {cam.share}, "
            f"url {redact_url(cam.url)}, detect {detect}, {len(cam.privacy_masks)} privacy mask(s), "
            f"{len(cam.zones) or 'no'} zone(s)"
        )


def _web_lines(config: Config) -> list[str]:
    """The page and the footage API (token and TLS said as yes/no: never the token)."""
    web = config.web
    if web.listen is None:
        return []
    scheme = "https" if web.tls else "http"
    lines = [f"web: the centre's page on {scheme}://{web.listen}/"]
    if web.token_file is not None:
        lines.append(
            f"web: footage API on {scheme}://{web.listen}/api/ (token from {web.token_file}), "
            f"exports up to {web.max_export_seconds:g} s, share: full cameras only"
        )
        if web.tls is None:
            lines.append("warning: web.token_file without web.tls: the token and footage cross the network unencrypted")
    return lines


def summary(config: Config) -> str:
    """What `nvr-edge check-config` prints: what would run, without secrets.

    Shows whether a password is configured, never the password; camera URLs redacted.
    """
    mqtt, rec = config.mqtt, config.recording
    lines = [
        f"box {config.box.id}, data in {config.box.data_dir}",
        f"broker {mqtt.host}:{mqtt.port}, TLS {'yes' if mqtt.tls else 'no'}, "
        f"auth {'yes' if mqtt.username is not None else 'no'}"
        f"{' (with password file)' if mqtt.password_file else ''}, client id {mqtt.client_id}",
        f"topics under {mqtt.topic_prefix}/{config.box.id}/, messages up to {mqtt.max_message_bytes} bytes",
        *([f"Home Assistant discovery under {config.homeassistant.prefix}/"] if config.homeassistant.discovery else []),
        f"recording: budget {human_size(rec.max_bytes)}, segments of {rec.segment_seconds:g} s",
        *_web_lines(config),
        f"cameras: {len(config.enabled_cameras)} enabled of {len(config.cameras)}",
        *_camera_lines(config),
    ]
    if not config.enabled_cameras:
        lines.append("warning: no camera is enabled")
    reserve = reserve_problem(rec.min_free_bytes, filesystem_size(config.box.data_dir.absolute()))
    if reserve is not None:
        lines.append(f"warning: {reserve}")
    if mqtt.password_file and password_file_too_open(mqtt.password_file):
        lines.append(f"warning: {mqtt.password_file} is readable by every user (chmod o-r it)")
    return "\n".join(lines)
