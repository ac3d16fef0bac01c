"""Configuration models (SPEC section 2).

The motion and event models below are the seam between the config loader and the
pure detector/tracker: the detector and tracker import only these two classes.
"""

from __future__ import annotations

import os
import re
import stat
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
    field_validator,
)

from edge.redact import redact_url


class _Strict(BaseModel):
    """Base for every config model: unknown keys are errors, models are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class MotionConfig(_Strict):
    """Motion detector settings; top-level `motion:` with per-camera overrides."""

    sensitivity: int = Field(5, ge=1, le=10, description="1 = only large, clear motion; 10 = the faintest")
    frame_height: int = Field(120, ge=32, le=720, description="luma is downscaled to this height for detection")
    detect_fps: float = Field(5.0, gt=0, le=60, description="at most this many frames per second are analysed")
    min_area: float = Field(0.002, ge=0, le=0.5, description="smallest object, as a fraction of the frame area")
    lighting_fraction: float = Field(
        0.5, gt=0, le=1, description="a change over this fraction of the frame is lighting, not motion"
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
# The rest of the file (SPEC section 2)
# --------------------------------------------------------------------------------------

ID_PATTERN = r"^[a-z0-9][a-z0-9_-]*$"
_ID_RE = re.compile(ID_PATTERN)
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgtp]i?b?|b)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "k": 10**3,
    "kb": 10**3,
    "m": 10**6,
    "mb": 10**6,
    "g": 10**9,
    "gb": 10**9,
    "t": 10**12,
    "tb": 10**12,
    "p": 10**15,
    "pb": 10**15,
    "ki": 2**10,
    "kib": 2**10,
    "mi": 2**20,
    "mib": 2**20,
    "gi": 2**30,
    "gib": 2**30,
    "ti": 2**40,
    "tib": 2**40,
    "pi": 2**50,
    "pib": 2**50,
}


def parse_size(value: object) -> int:
    """'50GB' (SI), '1GiB' (IEC), '2048' or 2048 -> bytes."""
    if isinstance(value, bool):
        raise ValueError("must be a size like 50GB, 500MB or 1GiB")
    if isinstance(value, int | float):
        return int(value)
    if isinstance(value, str):
        match = _SIZE_RE.match(value)
        if match:
            return int(float(match.group(1)) * _SIZE_UNITS[(match.group(2) or "").lower()])
    raise ValueError("must be a size like 50GB, 500MB or 1GiB")


def human_size(n: int) -> str:
    for unit, size in (("TB", 10**12), ("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"


ByteSize = Annotated[int, BeforeValidator(parse_size), Field(gt=0)]


def _check_id(value: str) -> str:
    if not isinstance(value, str) or not _ID_RE.match(value):
        raise ValueError("must match [a-z0-9][a-z0-9_-]*")
    return value


def _check_rtsp(value: object) -> str:
    if not isinstance(value, str) or not value.lower().startswith(("rtsp://", "rtsps://")):
        raise ValueError("must be an rtsp:// or rtsps:// URL")
    return value


Identifier = Annotated[str, AfterValidator(_check_id)]
RtspUrl = Annotated[str, BeforeValidator(_check_rtsp)]


class BoxConfig(_Strict):
    id: Identifier
    data_dir: Path = Path("/var/lib/nvr-edge")


class TlsConfig(_Strict):
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None


class MqttConfig(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(1883, ge=1, le=65535)
    topic_prefix: str = "nvr"
    username: str | None = None
    password_file: Path | None = None
    tls: TlsConfig | None = None
    stats_interval: float = Field(30.0, gt=0)
    keepalive: int = Field(30, ge=5, le=3600)
    client_id: str | None = None

    @field_validator("topic_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if not value or any(c in value for c in "+#") or value.startswith("/") or value.endswith("/"):
            raise ValueError("must be a plain topic (no +, #, or leading/trailing /)")
        return value

    def read_password(self) -> str | None:
        """The broker password from `password_file` (trailing newline stripped)."""
        if self.password_file is None:
            return None
        return self.password_file.read_text().rstrip("\r\n")


class RecordingConfig(_Strict):
    segment_seconds: float = Field(10.0, ge=1, le=600)
    max_bytes: ByteSize = 50 * 10**9
    min_free_bytes: Annotated[int, BeforeValidator(parse_size), Field(ge=0)] = 1 * 10**9
    event_protect_hours: float = Field(72.0, ge=0, description="event footage outlives plain footage this long")


class OutboxConfig(_Strict):
    max_bytes: ByteSize = 100 * 10**6


Point = Annotated[tuple[float, float], AfterValidator(lambda p: _check_point(p))]


def _check_point(point: tuple[float, float]) -> tuple[float, float]:
    if not all(0.0 <= v <= 1.0 for v in point):
        raise ValueError("coordinates must be between 0 and 1")
    return point


Polygon = Annotated[list[Point], Field(min_length=3)]


class CameraConfig(_Strict):
    url: RtspUrl
    detect_url: RtspUrl | None = None
    enabled: bool = True
    share: Literal["full", "events", "none"] = "full"
    privacy_masks: list[Polygon] = Field(default_factory=list)
    name: str | None = None
    motion: MotionConfig = Field(default_factory=MotionConfig)

    @property
    def effective_detect_url(self) -> str:
        return self.detect_url or self.url


class MosaicConfig(_Strict):
    interval: float = Field(10.0, ge=0)


class WebConfig(_Strict):
    listen: str | None = None

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str | None) -> str | None:
        if value is None:
            return value
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
            raise ValueError('must be "host:port", e.g. "0.0.0.0:8080"')
        return value


class LogConfig(_Strict):
    level: Literal["debug", "info", "warning", "error"] = "info"


class Config(_Strict):
    box: BoxConfig
    mqtt: MqttConfig = Field(default_factory=MqttConfig)
    recording: RecordingConfig = Field(default_factory=RecordingConfig)
    cameras: dict[Identifier, CameraConfig] = Field(default_factory=dict)
    motion: MotionConfig = Field(default_factory=MotionConfig)
    events: EventConfig = Field(default_factory=EventConfig)
    outbox: OutboxConfig = Field(default_factory=OutboxConfig)
    mosaic: MosaicConfig = Field(default_factory=MosaicConfig)
    web: WebConfig = Field(default_factory=WebConfig)
    log: LogConfig = Field(default_factory=LogConfig)

    @property
    def enabled_cameras(self) -> dict[str, CameraConfig]:
        return {cam_id: cam for cam_id, cam in self.cameras.items() if cam.enabled}


# --------------------------------------------------------------------------------------
# Loading: YAML with line numbers, duplicate keys, one line per problem
# --------------------------------------------------------------------------------------


class ConfigError(Exception):
    """The config is unusable; `problems` holds one human line each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


Loc = tuple[str | int, ...]


class _Document:
    """A YAML document as plain data plus the line of every key path."""

    def __init__(self) -> None:
        self.lines: dict[Loc, int] = {}
        self.problems: list[str] = []

    def to_data(self, node: yaml.Node, loc: Loc) -> Any:
        self.lines.setdefault(loc, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            out: dict[Any, Any] = {}
            first_line: dict[Any, int] = {}
            for key_node, value_node in node.value:
                key = _CONSTRUCTOR.construct_object(key_node, deep=True)
                if isinstance(key, list | dict):
                    self.problems.append(
                        f"{_dotted(loc) or '<top>'}: keys must be plain values (line {key_node.start_mark.line + 1})"
                    )
                    continue
                key = str(key) if not isinstance(key, str) else key
                line = key_node.start_mark.line + 1
                if key in first_line:
                    self.problems.append(
                        f"{_dotted((*loc, key))}: duplicate key (line {line}; first at line {first_line[key]})"
                    )
                    continue
                first_line[key] = line
                self.lines[(*loc, key)] = line
                out[key] = self.to_data(value_node, (*loc, key))
            return out
        if isinstance(node, yaml.SequenceNode):
            return [self.to_data(child, (*loc, i)) for i, child in enumerate(node.value)]
        return _CONSTRUCTOR.construct_object(node, deep=True)

    def line_of(self, loc: Loc) -> int:
        while loc:
            if loc in self.lines:
                return self.lines[loc]
            loc = loc[:-1]
        return self.lines.get((), 1)


_CONSTRUCTOR = yaml.SafeLoader("")


def _key_text(part: str | int) -> str:
    """A key as shown in an error: control characters escaped, long keys cut."""
    text = str(part)
    if not text.isprintable():
        text = repr(text)[1:-1]
    return text if len(text) <= 64 else text[:61] + "..."


def _dotted(loc: Loc) -> str:
    return ".".join(_key_text(part) for part in loc)


def _human(error: dict[str, Any]) -> str:
    kind, ctx = error["type"], error.get("ctx") or {}
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "missing":
        return "required"
    if kind == "literal_error":
        return "must be one of: " + ctx.get("expected", "").replace("'", "").replace(" or ", ", ")
    if kind == "value_error":
        return str(ctx.get("error", error["msg"]))
    if kind in ("float_type", "float_parsing", "int_type", "int_parsing", "int_from_float"):
        return "must be a whole number" if kind.startswith("int") else "must be a number"
    if kind in ("bool_type", "bool_parsing"):
        return "must be true or false"
    if kind in ("string_type",):
        return "must be text"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return "must be a mapping of keys"
    if kind in ("list_type", "tuple_type"):
        return "must be a list"
    if kind == "too_short":
        return f"needs at least {ctx.get('min_length')} items"
    if kind == "too_long":
        return f"takes at most {ctx.get('max_length')} items"
    for bound, words in (("gt", "greater than"), ("ge", "at least"), ("lt", "less than"), ("le", "at most")):
        if bound in ctx:
            return f"must be {words} {ctx[bound]}"
    return error["msg"].split(",")[0][:120]


def _merge_camera_motion(data: dict[str, Any]) -> None:
    """Per-camera `motion:` keys override the top-level ones (merged before validation)."""
    base = data.get("motion")
    cameras = data.get("cameras")
    if not isinstance(cameras, dict):
        return
    for cam in cameras.values():
        if not isinstance(cam, dict):
            continue
        own = cam.get("motion")
        if own is None and isinstance(base, dict):
            cam["motion"] = dict(base)
        elif isinstance(own, dict) and isinstance(base, dict):
            cam["motion"] = {**base, **own}


def _check_files(config: Config, doc: _Document) -> list[str]:
    problems = []
    mqtt = config.mqtt
    files: list[tuple[Loc, Path | None]] = [(("mqtt", "password_file"), mqtt.password_file)]
    if mqtt.tls is not None:
        files += [(("mqtt", "tls", k), getattr(mqtt.tls, k)) for k in ("ca_file", "cert_file", "key_file")]
    for loc, path in files:
        if path is not None and not (path.is_file() and os.access(path, os.R_OK)):
            problems.append(f"{_dotted(loc)}: file not found or not readable (line {doc.line_of(loc)})")
    return problems


def parse_config(text: str) -> Config:
    """Validate YAML text; raise ConfigError with every problem found."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f" (line {mark.line + 1})" if mark else ""
        raise ConfigError([f"<file>: invalid YAML: {exc.problem or exc.context}{line}"]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([f"<file>: invalid YAML: {str(exc).splitlines()[0]}"]) from None
    if node is None:
        raise ConfigError(["<file>: the file is empty"])
    doc = _Document()
    try:
        data = doc.to_data(node, ())
    except yaml.YAMLError as exc:
        raise ConfigError([f"<file>: invalid YAML: {str(exc).splitlines()[0]}"]) from None
    if not isinstance(data, dict):
        raise ConfigError([f"<file>: the top level must be a mapping of keys (line {node.start_mark.line + 1})"])
    _merge_camera_motion(data)
    problems = list(doc.problems)
    config = None
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        for error in exc.errors(include_url=False, include_input=False):
            loc = tuple(error["loc"])
            # pydantic adds the validator's name for Annotated keys; drop non-data parts.
            loc = tuple(p for p in loc if not (isinstance(p, str) and p.startswith("[key]")))
            if loc and loc[-1] == "[key]":
                loc = loc[:-1]
            problems.append(f"{_dotted(loc) or '<top>'}: {_human(error)} (line {doc.line_of(loc)})")
    if config is not None:
        problems += _check_files(config, doc)
    if problems:
        raise ConfigError(list(dict.fromkeys(problems)))
    assert config is not None
    return config


def load_config(path: str | Path) -> Config:
    """Read and validate the config file; every problem becomes one ConfigError line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([f"{path}: no such file"]) from None
    except UnicodeDecodeError:
        raise ConfigError([f"{path}: not UTF-8 text"]) from None
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read ({exc.strerror})"]) from None
    return parse_config(text)


def password_file_too_open(path: Path) -> bool:
    """True when group or others may read the password file."""
    try:
        return bool(path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO))
    except OSError:
        return False


def summary(config: Config) -> str:
    """What `nvr-edge check-config` prints: what would run, without secrets."""
    mqtt = config.mqtt
    lines = [
        f"box {config.box.id}: data in {config.box.data_dir}",
        f"broker {mqtt.host}:{mqtt.port} (TLS {'yes' if mqtt.tls else 'no'}, "
        f"auth {'yes' if mqtt.username else 'no'}), topics under {mqtt.topic_prefix}/{config.box.id}/",
        f"recording: budget {human_size(config.recording.max_bytes)}, "
        f"segments of {config.recording.segment_seconds:g} s",
        f"cameras: {len(config.enabled_cameras)} enabled of {len(config.cameras)}",
    ]
    for cam_id, cam in config.cameras.items():
        detect = redact_url(cam.detect_url) if cam.detect_url else "same stream"
        lines.append(
            f"  {cam_id}: {'enabled' if cam.enabled else 'disabled'}, share {cam.share}, "
            f"url {redact_url(cam.url)}, detect {detect}, {len(cam.privacy_masks)} privacy mask(s)"
        )
    if not config.enabled_cameras:
        lines.append("warning: no camera is enabled")
    return "\n".join(lines)
