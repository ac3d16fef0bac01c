"""Config loading: SPEC section 2, one line per problem with its YAML line number."""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from urllib.parse import unquote

import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from edge.config import (
    BoxConfig,
    CameraConfig,
    Config,
    ConfigError,
    MotionConfig,
    MqttConfig,
    human_size,
    load_config,
    parse_config,
    parse_size,
    password_file_too_open,
    summary,
)
from edge.redact import redact_text, redact_url, redact_urls

EXAMPLE = Path(__file__).resolve().parents[1] / "config" / "edge.example.yaml"
EXAMPLE_PASSWORD = "CHANGE-ME"
# Every problem is one line ending in its line number; a duplicate also names the first.
ONE_LINE = re.compile(r"^[^\n]+ \(line \d+(; first at line \d+)?\)$")
WHOLE_FILE = re.compile(
    r"^<file>: (the file is empty|invalid YAML: [^\n]+|the top level must be a mapping of keys \(line \d+\)"
    r"|more than \d+ values \(aliases expanding\?\)|nested too deeply)$"
)


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text)
    assert str(info.value) == "\n".join(info.value.problems)
    return info.value.problems


def minimal(extra: str = "") -> str:
    return "box:\n  id: a\n" + extra


# ----------------------------------------------------------------------------------
# The required case
# ----------------------------------------------------------------------------------

FOUR_MISTAKES = (
    "box:\n"  # 1
    "  id: cluster 20\n"  # 2  box id with a space
    "mqtt:\n"  # 3
    "  hots: 127.0.0.1\n"  # 4  mistyped key
    "cameras:\n"  # 5
    "  gate-1:\n"  # 6
    "    url: http://admin:hunter2@10.0.0.64/stream1\n"  # 7  http:// URL (with credentials)
    "  gate-1:\n"  # 8  duplicate camera id
    "    url: rtsp://10.0.0.65/stream1\n"  # 9
)


def test_four_mistakes_give_exactly_four_lines_with_line_numbers(tmp_path: Path) -> None:
    expected = [
        "box.id: must match [a-z0-9][a-z0-9_-]* (line 2)",
        "mqtt.hots: unknown key (line 4)",
        "cameras.gate-1.url: must be an rtsp:// or rtsps:// URL (line 7)",
        "cameras.gate-1: duplicate key (line 8; first at line 6)",
    ]
    assert problems(FOUR_MISTAKES) == expected  # sorted by line
    path = tmp_path / "edge.yaml"
    path.write_text(FOUR_MISTAKES)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.problems == expected
    assert str(info.value) == "\n".join(expected)
    assert "hunter2" not in str(info.value)


# ----------------------------------------------------------------------------------
# Each kind of problem, with its line
# ----------------------------------------------------------------------------------

CAM = "cameras:\n  c1:\n    url: rtsp://h/x\n"  # lines 3-5 after minimal()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # unknown keys: the line of the unknown key, at any depth
        (minimal("colour: red\n"), "colour: unknown key (line 3)"),
        (minimal(CAM + "    sahre: full\n"), "cameras.c1.sahre: unknown key (line 6)"),
        (minimal(CAM + "    motion:\n      sensitivty: 3\n"), "cameras.c1.motion.sensitivty: unknown key (line 7)"),
        (minimal("mqtt:\n  tls:\n    ca: x\n"), "mqtt.tls.ca: unknown key (line 5)"),
        # missing required keys: the line of the parent mapping
        ("mqtt: {}\n", "box: required (line 1)"),
        ("# a comment\n\nmqtt: {}\n", "box: required (line 3)"),
        ("box:\n  data_dir: /x\n", "box.id: required (line 1)"),
        (minimal("cameras:\n  c1: {}\n"), "cameras.c1.url: required (line 4)"),
        (minimal("cameras:\n  c1:\n"), "cameras.c1.url: required (line 4)"),
        (minimal("cameras:\n  c1:\n    enabled: false\n"), "cameras.c1.url: required (line 4)"),
        # values
        (minimal(CAM + "    share: maybe\n"), "cameras.c1.share: must be one of: full, events, none (line 6)"),
        (minimal(CAM + "    enabled: 3\n"), "cameras.c1.enabled: must be true or false (line 6)"),
        (minimal(CAM + "    name: [a]\n"), "cameras.c1.name: must be text (line 6)"),
        (
            minimal(CAM + "    detect_url: http://h/y\n"),
            "cameras.c1.detect_url: must be an rtsp:// or rtsps:// URL (line 6)",
        ),
        (minimal("cameras:\n  c1:\n    url: rtsp:///x\n"), "cameras.c1.url: has no host (line 5)"),
        (minimal("cameras:\n  c1:\n    url: 5\n"), "cameras.c1.url: must be an rtsp:// or rtsps:// URL (line 5)"),
        (
            minimal("cameras:\n  Gate 1:\n    url: rtsp://h/x\n"),
            "cameras.Gate 1: must match [a-z0-9][a-z0-9_-]* (line 4)",
        ),
        (minimal("cameras:\n  -c:\n    url: rtsp://h/x\n"), "cameras.-c: must match [a-z0-9][a-z0-9_-]* (line 4)"),
        ("box:\n  id: 20\n", "box.id: must be text (line 2)"),
        ('box:\n  id: "abc\\n"\n', "box.id: must match [a-z0-9][a-z0-9_-]* (line 2)"),
        (minimal("mqtt:\n  port: 70000\n"), "mqtt.port: must be at most 65535 (line 4)"),
        (minimal("mqtt:\n  port: 0\n"), "mqtt.port: must be at least 1 (line 4)"),
        (minimal("mqtt:\n  port: 1883.5\n"), "mqtt.port: must be a whole number (line 4)"),
        (minimal("mqtt:\n  port: true\n"), "mqtt.port: must be a number, not true/false (line 4)"),
        (minimal("mqtt:\n  stats_interval: soon\n"), "mqtt.stats_interval: must be a number (line 4)"),
        (minimal("mqtt:\n  stats_interval: 0\n"), "mqtt.stats_interval: must be greater than 0 (line 4)"),
        (minimal("mqtt:\n  stats_interval: .inf\n"), "mqtt.stats_interval: must be a finite number (line 4)"),
        (minimal("mqtt:\n  host: mqtt://broker\n"), "mqtt.host: must be a host name or address, not a URL (line 4)"),
        (minimal("mqtt:\n  host: ''\n"), "mqtt.host: must not be empty (line 4)"),
        (
            minimal("mqtt:\n  topic_prefix: nvr/#\n"),
            "mqtt.topic_prefix: must be a plain topic (not empty; no +, #, or leading/trailing /) (line 4)",
        ),
        (
            minimal("mqtt:\n  topic_prefix: /nvr\n"),
            "mqtt.topic_prefix: must be a plain topic (not empty; no +, #, or leading/trailing /) (line 4)",
        ),
        (minimal("mqtt:\n  tls: yes please\n"), "mqtt.tls: must be a mapping of keys (line 4)"),
        (minimal("mqtt:\n  tls:\n    key_file: /etc/hostname\n"), "mqtt.tls.key_file: needs cert_file too (line 5)"),
        (minimal("mqtt:\n  password_file: /etc/hostname\n"), "mqtt.password_file: needs mqtt.username too (line 4)"),
        (
            minimal("recording:\n  max_bytes: lots\n"),
            "recording.max_bytes: must be a size like 50GB, 500MB or 1GiB (line 4)",
        ),
        (minimal("recording:\n  max_bytes: 0\n"), "recording.max_bytes: must be greater than 0 (line 4)"),
        (
            minimal("recording:\n  max_bytes: -5GB\n"),
            "recording.max_bytes: must be a size like 50GB, 500MB or 1GiB (line 4)",
        ),
        (minimal("recording:\n  segment_seconds: 601\n"), "recording.segment_seconds: must be at most 600 (line 4)"),
        (
            minimal(CAM + "    privacy_masks:\n      - [[0, 0], [1.5, 0], [1, 1]]\n"),
            "cameras.c1.privacy_masks.0.1: coordinates must be between 0 and 1 (line 7)",
        ),
        (
            minimal(CAM + "    privacy_masks:\n      - [[0, 0], [1, 1]]\n"),
            "cameras.c1.privacy_masks.0: a polygon needs at least 3 points (line 7)",
        ),
        (
            minimal(CAM + "    privacy_masks:\n      - [[0, 0], [1, 0], [1]]\n"),
            "cameras.c1.privacy_masks.0.2: a point is [x, y] (line 7)",
        ),
        (
            minimal(CAM + "    privacy_masks:\n      - [[0, 0], [1, 0], [1, 1, 1]]\n"),
            "cameras.c1.privacy_masks.0.2: a point is [x, y] (line 7)",
        ),
        (minimal(CAM + "    privacy_masks: 5\n"), "cameras.c1.privacy_masks: must be a list (line 6)"),
        (
            minimal(CAM + "    zones:\n      - [[0, 0], [1, 1]]\n"),
            "cameras.c1.zones.0: a polygon needs at least 3 points (line 7)",
        ),
        (
            minimal(CAM + "    zones:\n      - [[0, 0], [1, 0], [1, -0.1]]\n"),
            "cameras.c1.zones.0.2: coordinates must be between 0 and 1 (line 7)",
        ),
        (
            minimal(CAM + "    motion:\n      sensitivity: 11\n"),
            "cameras.c1.motion.sensitivity: must be at most 10 (line 7)",
        ),
        (minimal(CAM + "    motion: 5\n"), "cameras.c1.motion: must be a mapping of keys (line 6)"),
        (minimal("events:\n  jpeg_quality: 5\n"), "events.jpeg_quality: must be at least 10 (line 4)"),
        (minimal("mosaic:\n  interval: -1\n"), "mosaic.interval: must be at least 0 (line 4)"),
        (minimal("web:\n  listen: everywhere\n"), 'web.listen: must be "host:port", e.g. "0.0.0.0:8080" (line 4)'),
        (minimal("web:\n  listen: 0.0.0.0:99999\n"), 'web.listen: must be "host:port", e.g. "0.0.0.0:8080" (line 4)'),
        (minimal("log:\n  level: verbose\n"), "log.level: must be one of: debug, info, warning, error (line 4)"),
        (minimal("mqtt: 5\n"), "mqtt: must be a mapping of keys (line 3)"),
        (minimal("cameras: [a, b]\n"), "cameras: must be a mapping of keys (line 3)"),
        # duplicate keys, anywhere
        ("box:\n  id: a\n  id: b\n", "box.id: duplicate key (line 3; first at line 2)"),
        (minimal("mqtt: {}\nmqtt: {}\n"), "mqtt: duplicate key (line 4; first at line 3)"),
        (
            minimal(CAM + "    motion:\n      sensitivity: 3\n      sensitivity: 4\n"),
            "cameras.c1.motion.sensitivity: duplicate key (line 8; first at line 7)",
        ),
        (minimal(CAM + '    "url": rtsp://h/y\n'), "cameras.c1.url: duplicate key (line 6; first at line 5)"),
        # files that must be readable at load time
        (
            minimal("mqtt:\n  username: u\n  password_file: /nonexistent/pw\n"),
            "mqtt.password_file: no such file (line 5)",
        ),
        (minimal("mqtt:\n  username: u\n  password_file: /\n"), "mqtt.password_file: is not a regular file (line 5)"),
        (minimal("mqtt:\n  tls:\n    ca_file: /nonexistent/ca.pem\n"), "mqtt.tls.ca_file: no such file (line 5)"),
        # YAML values PyYAML itself chokes on
        (minimal("  data_dir: 2024-13-45\n"), "box.data_dir: not a valid !!timestamp value (line 3)"),
        (minimal("mqtt:\n  port: !!int abc\n"), "mqtt.port: not a valid !!int value (line 4)"),
        (
            minimal("mqtt:\n  host: !!python/object:os.system x\n"),
            "mqtt.host: unsupported YAML tag !!python/object:os.system (line 4)",
        ),
        (minimal("mqtt:\n  host: !vault x\n"), "mqtt.host: unsupported YAML tag !vault (line 4)"),
        (minimal("mqtt: &m\n  host: x\n  more: *m\n"), "mqtt.more: an alias refers to itself (line 5)"),
        (minimal("? [a, b]\n: 1\n"), "<top>: keys must be plain values (line 3)"),
        (minimal(CAM + "    <<: 5\n"), "cameras.c1.<<: can only merge a mapping or a list of mappings (line 6)"),
    ],
)
def test_each_problem_names_key_and_line(text: str, expected: str) -> None:
    found = problems(text)
    assert expected in found, found


def test_problems_of_a_bad_value_are_not_doubled() -> None:
    """A value PyYAML cannot build is one problem, not also a pydantic one."""
    assert problems(minimal("mqtt:\n  port: !!int abc\n")) == ["mqtt.port: not a valid !!int value (line 4)"]


def test_all_problems_are_collected_and_sorted_by_line() -> None:
    found = problems(
        "mqtt:\n  port: 0\n  port: 1\n  username: u\n  password_file: /nonexistent\ncameras:\n  x:\n    url: ftp://h\n"
    )
    assert found == [
        "box: required (line 1)",
        "mqtt.port: must be at least 1 (line 2)",
        "mqtt.port: duplicate key (line 3; first at line 2)",
        "mqtt.password_file: no such file (line 5)",
        "cameras.x.url: must be an rtsp:// or rtsps:// URL (line 8)",
    ]


def as_unprivileged(check: Callable[[], list[str]]) -> list[str]:
    """`check()` as this user, or, under root (CI), in a forked child that became `nobody`
    first: root reads every file, so an unreadable one can only be shown to someone else."""
    if os.geteuid() != 0:
        return check()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: drop to nobody, run the check, report, exit without cleanup
        try:
            os.close(read)
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            result = check()
        except BaseException as exc:  # noqa: BLE001 - reported to the parent, whose assertion shows it
            result = [f"the check failed as nobody: {type(exc).__name__}: {exc}"]
        os.write(write, json.dumps(result).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        out = pipe.read()
    os.waitpid(pid, 0)
    return json.loads(out)


def test_unreadable_password_file_is_a_problem() -> None:
    folder = Path(tempfile.mkdtemp())  # not under pytest's tmp_path: nobody must reach the file to judge it
    try:
        folder.chmod(0o755)
        secret = folder / "pw"
        secret.write_text("pw\n")
        secret.chmod(0)
        text = minimal(f"mqtt:\n  username: u\n  password_file: {secret}\n")
        found = as_unprivileged(lambda: problems(text))
    finally:
        shutil.rmtree(folder)
    assert found == ["mqtt.password_file: cannot be read by this user (line 5)"]


# ----------------------------------------------------------------------------------
# Whole-file problems
# ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "<file>: the file is empty"),
        ("# only a comment\n\n", "<file>: the file is empty"),
        ("- a\n- b\n", "<file>: the top level must be a mapping of keys (line 1)"),
        ("\n\nhello\n", "<file>: the top level must be a mapping of keys (line 3)"),
        (
            "box:\n  id: a\ncameras: [\n",
            "<file>: invalid YAML: expected the node content, but found '<stream end>' (line 4)",
        ),
        ("box:\n\tid: a\n", "<file>: invalid YAML: found character '\\t' that cannot start any token (line 2)"),
        ("box:\n  id: a\n  x: \x00\n", "<file>: invalid YAML: character U+0000 is not allowed (line 3)"),
        (
            "box: {id: a}\n---\nbox: {id: b}\n",
            "<file>: invalid YAML: expected a single document in the stream but found another document (line 2)",
        ),
        ("box: *nothing\n", "<file>: invalid YAML: found undefined alias 'nothing' (line 1)"),
        ("a: " + "[" * 2000 + "]" * 2000 + "\n", "<file>: nested too deeply"),
    ],
)
def test_whole_file_problems(text: str, expected: str) -> None:
    assert problems(text) == [expected]


def test_alias_bomb_is_one_line() -> None:
    text = "a: &a [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]\n"
    for prev, name in zip("abcde", "bcdef", strict=True):
        text += f"{name}: &{name} [{', '.join(['*' + prev] * 10)}]\n"
    assert problems(text) == ["<file>: more than 100000 values (aliases expanding?)"]


def test_file_problems_name_the_file(tmp_path: Path) -> None:
    def load_problems(path: Path) -> list[str]:
        with pytest.raises(ConfigError) as info:
            load_config(path)
        return info.value.problems

    assert load_problems(tmp_path / "nope.yaml") == [f"{tmp_path / 'nope.yaml'}: no such file"]
    assert load_problems(tmp_path) == [f"{tmp_path}: is a directory, not a file"]
    latin1 = tmp_path / "latin1.yaml"
    latin1.write_bytes(b"box:\n  id: a\n# caf\xe9\n")
    assert load_problems(latin1) == [f"{latin1}: not UTF-8 text (line 3)"]
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert load_problems(empty) == [f"{empty}: the file is empty"]
    broken = tmp_path / "broken.yaml"
    broken.write_text("box: [\n")
    assert load_problems(broken)[0].startswith(f"{broken}: invalid YAML: ")
    if os.geteuid() != 0:
        locked = tmp_path / "locked.yaml"
        locked.write_text("box: {id: a}\n")
        locked.chmod(0)
        assert load_problems(locked) == [f"{locked}: permission denied"]


def test_utf8_bom_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "bom.yaml"
    path.write_bytes(b"\xef\xbb\xbfbox:\n  id: a\n")
    assert load_config(path).box.id == "a"


# ----------------------------------------------------------------------------------
# Sizes
# ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "size"),
    [
        ("50GB", 50 * 10**9),
        ("500 MB", 500 * 10**6),
        ("1GiB", 2**30),
        ("1.5TB", 15 * 10**11),
        ("1.1GB", 11 * 10**8),  # exact, no float rounding
        ("2048", 2048),
        (2048, 2048),
        (1.5e9, 15 * 10**8),
        ("10mib", 10 * 2**20),
        ("10MiB", 10 * 2**20),
        ("3 kB", 3000),
        ("3KB", 3000),
        ("2KiB", 2048),
        ("4TiB", 4 * 2**40),
        ("7B", 7),
        ("7 b", 7),
        ("10M", 10 * 10**6),
        (" 1 GB ", 10**9),
        (".5GB", 5 * 10**8),
    ],
)
def test_sizes(value: object, size: int) -> None:
    assert parse_size(value) == size


@pytest.mark.parametrize(
    "value", ["lots", "", "GB", "-1GB", "1 XB", "1e9", "1,5GB", "1 G B", True, None, [1], float("inf"), float("nan")]
)
def test_bad_sizes(value: object) -> None:
    with pytest.raises(ValueError, match="must be a size like"):
        parse_size(value)


def test_absurd_size_is_too_large() -> None:
    with pytest.raises(ValueError, match="too large"):
        parse_size("9" * 400 + "TB")


@pytest.mark.parametrize(
    ("size", "text"),
    [(50 * 10**9, "50 GB"), (2**30, "1.07 GB"), (15 * 10**11, "1.5 TB"), (512, "512 B"), (999_600_000, "1000 MB")],
)
def test_human_size(size: int, text: str) -> None:
    assert human_size(size) == text


def test_sizes_in_the_file() -> None:
    config = parse_config(minimal("recording:\n  max_bytes: 1GiB\n  min_free_bytes: 0\noutbox:\n  max_bytes: 5MB\n"))
    assert config.recording.max_bytes == 2**30 and config.recording.min_free_bytes == 0
    assert config.outbox.max_bytes == 5 * 10**6


# ----------------------------------------------------------------------------------
# Per-camera motion overrides
# ----------------------------------------------------------------------------------


def test_camera_motion_override_merges_over_top_level() -> None:
    config = parse_config(
        "box:\n  id: b\nmotion:\n  sensitivity: 7\n  min_area: 0.01\ncameras:\n"
        "  a:\n    url: rtsp://h/a\n"
        "  b:\n    url: rtsp://h/b\n    motion:\n      sensitivity: 2\n"
        "  c:\n    url: rtsp://h/c\n    motion:\n"
    )
    a, b, c = (config.cameras[k].motion for k in "abc")
    assert a == config.motion == MotionConfig(sensitivity=7, min_area=0.01)
    assert b == MotionConfig(sensitivity=2, min_area=0.01)
    assert c == a


def test_camera_motion_without_top_level_uses_defaults() -> None:
    config = parse_config(minimal("cameras:\n  a:\n    url: rtsp://h/a\n    motion: {detect_fps: 2}\n"))
    assert config.cameras["a"].motion == MotionConfig(detect_fps=2)


def test_bad_top_level_motion_is_reported_once_at_its_line() -> None:
    text = (
        "box:\n  id: b\nmotion:\n  sensitivity: 11\n  bogus: 1\ncameras:\n"  # 1-6
        "  a: {url: rtsp://h/a}\n"  # 7
        "  b: {url: rtsp://h/b, motion: {sensitivity: 3}}\n"  # 8
        "  c: {url: rtsp://h/c, motion: {sensitivity: 0}}\n"  # 9
    )
    assert problems(text) == [
        "motion.sensitivity: must be at most 10 (line 4)",
        "motion.bogus: unknown key (line 5)",
        "cameras.c.motion.sensitivity: must be at least 1 (line 9)",
    ]


# ----------------------------------------------------------------------------------
# Defaults and conveniences
# ----------------------------------------------------------------------------------


def test_defaults() -> None:
    config = parse_config("box:\n  id: b\n")
    assert config.box.data_dir == Path("/var/lib/nvr-edge")
    mqtt = config.mqtt
    assert (mqtt.host, mqtt.port, mqtt.topic_prefix, mqtt.username, mqtt.password_file, mqtt.tls) == (
        "127.0.0.1",
        1883,
        "nvr",
        None,
        None,
        None,
    )
    assert mqtt.stats_interval == 30 and mqtt.keepalive == 30 and mqtt.client_id == "nvr-edge-b"
    assert config.recording.segment_seconds == 10 and config.recording.max_bytes == 50 * 10**9
    assert config.cameras == {} and config.enabled_cameras == {}
    assert config.motion == MotionConfig() and config.mosaic.interval == 10
    assert config.web.listen is None and config.log.level == "info"


def test_camera_defaults_and_conveniences() -> None:
    config = parse_config(
        minimal(
            "cameras:\n  a:\n    url: rtsp://h/a\n  b:\n    url: rtsp://h/b\n    detect_url: rtsp://h/b2\n"
            "    enabled: false\n    name: Back gate\n"
        )
    )
    a, b = config.cameras["a"], config.cameras["b"]
    assert (a.enabled, a.share, a.privacy_masks, a.zones, a.name, a.detect_url) == (True, "full", [], [], None, None)
    assert a.effective_detect_url == "rtsp://h/a" and b.effective_detect_url == "rtsp://h/b2"
    assert list(config.enabled_cameras) == ["a"] and b.name == "Back gate"


def test_empty_sections_mean_defaults_and_yaml_11_words_stay_keys() -> None:
    config = parse_config("box:\n  id: b\nmqtt:\nweb:\ncameras:\n  on:\n    url: RTSP://h/a\n  1:\n    url: rtsp://h\n")
    assert config.mqtt.port == 1883 and config.web.listen is None
    assert set(config.cameras) == {"on", "1"}


def test_client_id_tls_switch_and_merge_keys() -> None:
    config = parse_config(
        "box: {id: b}\nmqtt:\n  client_id: custom\n  tls: true\ncameras:\n"
        "  a: &cam\n    url: rtsp://h/a\n    share: events\n"
        "  b:\n    <<: *cam\n    url: rtsp://h/b\n"
    )
    assert config.mqtt.client_id == "custom" and config.mqtt.tls is not None
    assert config.cameras["b"].url == "rtsp://h/b" and config.cameras["b"].share == "events"
    assert parse_config(minimal("mqtt:\n  tls: false\n")).mqtt.tls is None


def test_models_are_frozen_and_strict() -> None:
    config = parse_config(minimal())
    with pytest.raises(Exception):  # noqa: B017 - pydantic's frozen error type is an implementation detail
        config.box.id = "x"  # type: ignore[misc]
    with pytest.raises(Exception):  # noqa: B017
        CameraConfig(url="rtsp://h/x", colour="red")  # type: ignore[call-arg]
    assert Config.model_validate({"box": {"id": "x"}}).mqtt.client_id == "nvr-edge-x"
    assert Config(box=BoxConfig(id="y"), mqtt=MqttConfig()).mqtt.client_id == "nvr-edge-y"


def test_read_password_and_permissions(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("s3cret\n")
    secret.chmod(0o600)
    assert MqttConfig(username="u", password_file=secret).read_password() == "s3cret"
    assert MqttConfig().read_password() is None
    assert not password_file_too_open(secret)
    secret.chmod(0o640)  # the installer's root:nvr-edge 0640: the service's group reads it
    assert not password_file_too_open(secret)
    secret.chmod(0o604)
    assert password_file_too_open(str(secret))
    secret.chmod(0o620)  # group may write, not read
    assert not password_file_too_open(secret)
    assert not password_file_too_open(tmp_path / "missing")


def _password_problems(path: Path) -> list[str]:
    return problems(minimal(f"mqtt:\n  username: u\n  password_file: {path}\n"))


def test_password_file_must_look_like_a_password(tmp_path: Path) -> None:
    """Issue 15: any readable file passed, and as root /etc/shadow went out as the password."""
    shadow = tmp_path / "shadow"
    shadow.write_text("root:*:20000:0:99999:7:::\ndaemon:*:20000:0:99999:7:::\n")
    big = tmp_path / "big"
    big.write_text("x" * 1025)
    binary = tmp_path / "binary"
    binary.write_bytes(b"\xff\xfe\x00pw")
    assert _password_problems(shadow) == [
        "mqtt.password_file: has more than one line: a password file holds the password alone (line 5)"
    ]
    assert _password_problems(big) == [
        "mqtt.password_file: is 1025 bytes: larger than 1024 bytes, not a password file (line 5)"
    ]
    assert _password_problems(binary) == ["mqtt.password_file: is not UTF-8 text (line 5)"]
    for path in (shadow, big, binary):
        with pytest.raises(ValueError, match=r"^mqtt\.password_file: ") as info:
            MqttConfig(username="u", password_file=path).read_password()
        assert "root" not in str(info.value) and "xxx" not in str(info.value)
    fine = tmp_path / "fine"
    fine.write_text("\n  p@ss: word \r\n\n")  # one non-empty line, blank lines around it
    assert parse_config(minimal(f"mqtt:\n  username: u\n  password_file: {fine}\n")).mqtt.password_file == fine
    fine.write_text("x" * 1024)
    assert MqttConfig(username="u", password_file=fine).read_password() == "x" * 1024


def test_a_fifo_as_password_file_is_refused_without_blocking(tmp_path: Path) -> None:
    """open() of a FIFO waits for a writer: check-config and the reconnect must not open it."""
    fifo = tmp_path / "pw-fifo"
    os.mkfifo(fifo)
    assert _password_problems(fifo) == ["mqtt.password_file: is not a regular file (line 5)"]
    outcome: list[BaseException] = []
    reader = threading.Thread(
        target=lambda: outcome.append(_raised(MqttConfig(username="u", password_file=fifo).read_password)),
        daemon=True,
    )
    reader.start()
    reader.join(5)
    assert not reader.is_alive(), "read_password blocked on the FIFO"
    assert [str(e) for e in outcome] == ["mqtt.password_file: is not a regular file"]


def _raised(call: Callable[[], object]) -> BaseException:
    try:
        call()
    except Exception as exc:  # noqa: BLE001 - the test looks at what was raised
        return exc
    raise AssertionError("nothing raised")


def test_camera_ids_are_at_most_64_characters() -> None:
    ok = "c" * 64
    assert list(parse_config(minimal(f"cameras:\n  {ok}:\n    url: rtsp://h/x\n")).cameras) == [ok]
    found = problems(minimal(f"cameras:\n  {'c' * 300}:\n    url: rtsp://h/x\n"))
    assert found == [f"cameras.{'c' * 61}...: camera id is 300 characters; at most 64 (line 4)"]


def test_at_most_64_cameras() -> None:
    def cameras(n: int) -> str:
        return minimal("cameras:\n" + "".join(f"  c{i}:\n    url: rtsp://h/{i}\n" for i in range(n)))

    assert len(parse_config(cameras(64)).cameras) == 64
    assert problems(cameras(65)) == ["cameras: 65 cameras; a box takes at most 64 (README: Limits) (line 3)"]
    assert problems(cameras(2000)) == ["cameras: 2000 cameras; a box takes at most 64 (README: Limits) (line 3)"]


def test_a_reserve_larger_than_the_disk_is_a_warning(tmp_path: Path) -> None:
    """min_free_bytes above the filesystem's size deletes every segment as it closes."""
    text = f"box:\n  id: a\n  data_dir: {tmp_path / 'not-yet'}\nrecording:\n  min_free_bytes: 1000PB\n"
    lines = summary(parse_config(text)).splitlines()
    warning = [line for line in lines if "min_free_bytes" in line]
    assert len(warning) == 1 and warning[0].startswith("warning: recording.min_free_bytes (1000 PB) is more than")
    assert warning[0].endswith("every segment is deleted as soon as it closes")
    assert not [line for line in summary(parse_config(minimal())).splitlines() if "min_free_bytes" in line]


# ----------------------------------------------------------------------------------
# The example file
# ----------------------------------------------------------------------------------


def edited_example(text: str | None = None) -> str:
    """The example as an installer leaves it after editing: its placeholders replaced."""
    text = EXAMPLE.read_text() if text is None else text
    return text.replace(EXAMPLE_PASSWORD, "s3cret-pw").replace("broker.district.example", "broker.lan")


def test_the_unedited_example_is_refused_by_name_one_line_per_placeholder() -> None:
    """Issue 18: the example the installer copies into place passed check-config, and a box
    started on it logged camera_down forever. Every placeholder is one line, nothing else."""
    found = problems(EXAMPLE.read_text())
    lines = EXAMPLE.read_text().splitlines()
    host_line = next(n for n, line in enumerate(lines, 1) if line.startswith("  host: broker.district.example"))
    assert found[0] == (
        "mqtt.host: still holds the example's placeholder broker host broker.district.example: "
        f"write the district broker's host name or address (line {host_line})"
    )
    urls = found[1:]
    assert len(urls) == 48  # url and detect_url of 24 cameras
    for line in urls:
        match = re.fullmatch(
            r"cameras\.([a-z0-9-]+)\.(url|detect_url): still holds the example's placeholder password CHANGE-ME: "
            r"put the camera's own user and password in it \(line (\d+)\)",
            line,
        )
        assert match, line
        assert lines[int(match[3]) - 1].strip().startswith(f"{match[2]}: rtsp://viewer:{EXAMPLE_PASSWORD}@"), line
    assert not any(f"{EXAMPLE_PASSWORD}@" in line or "viewer" in line for line in found)


def test_a_placeholder_anywhere_is_refused_and_the_edited_example_passes() -> None:
    assert problems(minimal("mqtt:\n  username: change-me\n")) == [
        "mqtt.username: still holds the example's placeholder password CHANGE-ME: "
        "put the camera's own user and password in it (line 4)"
    ]
    assert parse_config(edited_example()).box.id == "cluster-20"


@pytest.mark.parametrize("value", ["./demo-data", "data", "~/nvr", "var/lib/nvr-edge"])
def test_a_relative_data_dir_is_refused(value: str) -> None:
    assert problems(minimal(f"  data_dir: {value}\n")) == [
        "box.data_dir: must be an absolute path, e.g. /var/lib/nvr-edge "
        "(a relative one depends on where the daemon starts) (line 3)"
    ]


def test_an_empty_password_file_is_refused(tmp_path: Path) -> None:
    """The installer creates it empty: a box with a user name and that file is refused by the broker."""
    empty = tmp_path / "mqtt-password"
    empty.write_text("\n")
    assert _password_problems(empty) == [
        "mqtt.password_file: is empty: write the broker password into it (README: The broker password) (line 5)"
    ]


def test_the_demo_config_passes() -> None:
    """config/demo.yaml (README: the hand-run demo) holds no placeholder and an absolute data_dir."""
    assert load_config(EXAMPLE.with_name("demo.yaml")).box.data_dir.is_absolute()


def test_example_config_loads_with_24_cameras() -> None:
    config = parse_config(edited_example())
    assert config.box.id == "cluster-20" and len(config.cameras) == 24
    assert {"gate-1", "gate-2", "lane-1"} <= set(config.cameras)
    assert {c.share for c in config.cameras.values()} == {"full", "events", "none"}
    assert sum(bool(c.privacy_masks) for c in config.cameras.values()) == 1
    assert sum(not c.enabled for c in config.cameras.values()) == 1
    assert all(c.detect_url and c.url != c.detect_url for c in config.cameras.values())
    assert config.cameras["park-1"].motion.sensitivity == 3


def test_example_keys_are_all_documented() -> None:
    """Every key of the model appears in the example (set or commented out)."""
    text = EXAMPLE.read_text()

    def keys(model: type) -> set[str]:
        found = set()
        for name, field in model.model_fields.items():
            found.add(name)
            sub = field.annotation
            for candidate in getattr(sub, "__args__", (sub,)):
                if isinstance(candidate, type) and hasattr(candidate, "model_fields"):
                    found |= keys(candidate)
        return found

    for key in keys(Config) | keys(CameraConfig):
        assert re.search(rf"^\s*#?\s*{key}:", text, re.MULTILINE), key


def test_example_with_auth_and_tls_uncommented_loads(tmp_path: Path) -> None:
    files = {}
    for name in ("mqtt-password", "district-ca.pem", "client.pem", "client.key"):
        files[name] = tmp_path / name
        files[name].write_text("x\n")
    text = edited_example().replace("port: 1883", "port: 8883")
    text, web, rest = text.partition("\nweb:")  # the MQTT keys only: web.tls is the footage API's
    for key in ("username", "password_file", "tls", "ca_file", "cert_file", "key_file", "client_id"):
        text = re.sub(rf"^(\s*)# ( *){key}:", rf"\1\2{key}:", text, flags=re.MULTILINE)
    text += web + rest
    for name, path in files.items():
        text = text.replace(f"/etc/nvr-edge/{name}", str(path))
    config = parse_config(text)
    assert config.mqtt.tls is not None and config.mqtt.tls.key_file == files["client.key"]
    assert config.mqtt.username == "cluster-20" and config.mqtt.read_password() == "x"
    assert "TLS yes, auth yes" in summary(config)


# ----------------------------------------------------------------------------------
# Redaction
# ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "redacted"),
    [
        ("rtsp://user:pass@10.0.0.64/stream1", "rtsp://***@10.0.0.64/stream1"),
        ("rtsp://10.0.0.64/stream1", "rtsp://10.0.0.64/stream1"),
        (
            "rtsp://10.0.0.64:554/cam/realmonitor?channel=1&subtype=0",
            "rtsp://10.0.0.64:554/cam/realmonitor?channel=1&subtype=0",
        ),
        ("rtsp://admin@10.0.0.64/s", "rtsp://***@10.0.0.64/s"),
        ("rtsp://a:p@ss:w/rd@h:554/x?y=1", "rtsp://***@h:554/x?y=1"),
        ("rtsp://admin:Pass#1@10.0.0.64/s", "rtsp://***@10.0.0.64/s"),
        ("rtsp://admin:pa?ss@10.0.0.64/s", "rtsp://***@10.0.0.64/s"),
        ("rtsp://admin:p@ss@[fe80::1]:554/s", "rtsp://***@[fe80::1]:554/s"),
        ("rtsps://u:p%40x@h", "rtsps://***@h"),
        ("RTSP://u:p@h/x", "RTSP://***@h/x"),
        ("rtsp://u:p@", "rtsp://***"),  # no host: the URL does not parse, nothing of it is shown
        ("rtsp://admin:Zq@7:xSECRETx", "rtsp://***"),  # issue 15: the host forgotten
        ("rtsp://admin:Zq@cam:0/x", "rtsp://***"),  # port out of range
        ("rtsp://admin:Zq@[fe80::1/x", "rtsp://***"),  # unbalanced brackets
        ("rtsp://admin:Zq@999.1.1.1/x", "rtsp://***"),  # digits and dots that are no IPv4 address
        ("rtsp://u:p@[fe80::1%25eth0]:554/x", "rtsp://***@[fe80::1%25eth0]:554/x"),
        ("rtsp://10.0.0.64/user=admin&password=s3cret&channel=1", "rtsp://10.0.0.64/user=***&password=***&channel=1"),
        ("rtsp://h/path@thing", "rtsp://h/path@thing"),  # an @ in the path is no credential
        ("not a url", "not a url"),
        ("user:pass@host", "user:pass@host"),  # no scheme: not a URL
        ("", ""),
    ],
)
def test_redact_url(url: str, redacted: str) -> None:
    assert redact_url(url) == redacted


def test_redact_url_never_raises_on_garbage() -> None:
    for garbage in (None, 5, b"rtsp://u:p@h", ["x"], "://@", "rtsp://" + "@" * 1000, "\x00rtsp://u:p@h"):
        assert isinstance(redact_url(garbage), str)  # type: ignore[arg-type]
    assert redact_url(None) == "***"  # type: ignore[arg-type]


def test_redact_text_hides_urls_and_bare_passwords() -> None:
    url = "rtsp://admin:s3cr%40t@10.0.0.9/live"
    other = "rtsp://viewer:0ther-pw@10.0.0.10/live"
    text = (
        f"[rtsp @ 0x55] method DESCRIBE failed: 401 Unauthorized\n"
        f"Connection to {url} failed; auth s3cr@t rejected (raw s3cr%40t); also '{other}'"
    )
    out = redact_text(text, [url])
    assert "s3cr" not in out and "rtsp://***@10.0.0.9/live" in out
    assert "0ther-pw" not in out and "rtsp://***@10.0.0.10/live" in out  # unlisted URL: caught anyway
    assert "[rtsp @ 0x55]" in out  # FFmpeg's own '@' is left alone
    assert redact_text("no url here", ["rtsp://h/x", "", None]) == "no url here"  # type: ignore[list-item]
    assert redact_text(None, ["x"]) == "***"  # type: ignore[arg-type]


def test_redact_urls_in_free_text() -> None:
    assert redact_urls("open rtsp://u:p@h/x: 404") == "open rtsp://***@h/x: 404"


_userinfo_chars = st.characters(blacklist_categories=("Cs", "Zs", "Cc"), blacklist_characters=":/?#@")
_password_chars = st.characters(blacklist_categories=("Cs", "Zs", "Cc"))


@settings(max_examples=300, deadline=None)
@given(
    scheme=st.sampled_from(["rtsp", "rtsps", "RTSP"]),
    user=st.text(_userinfo_chars, min_size=1, max_size=12),
    password=st.text(_password_chars, max_size=16),
    host=st.sampled_from(["10.0.0.64", "cam.local", "[fe80::1]", "h"]),
    port=st.sampled_from(["", ":554"]),
    path=st.sampled_from(["", "/", "/stream1", "/Streaming/Channels/101", "/cam/realmonitor?channel=1&subtype=0"]),
)
def test_credentials_never_survive_redaction(
    scheme: str, user: str, password: str, host: str, port: str, path: str
) -> None:
    url = f"{scheme}://{user}:{password}@{host}{port}{path}"
    assert redact_url(url) == f"{scheme}://***@{host}{port}{path}"
    # A bare password is masked anywhere in the text, so keep it out of the words around the URL.
    secrets = {password, unquote(password), f"{user}:{password}", unquote(f"{user}:{password}")}
    assume(not any(len(s) >= 3 and (s in "error opening '" or s in "': 401") for s in secrets))
    out = redact_text(f"error opening '{url}': 401", [url])
    assert out == f"error opening '{scheme}://***@{host}{port}{path}': 401"


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=60), st.lists(st.text(max_size=30), max_size=3))
def test_redaction_never_raises(text: str, urls: list[str]) -> None:
    assert isinstance(redact_url(text), str)
    assert isinstance(redact_text(text, urls), str)


def test_errors_never_show_credentials() -> None:
    found = problems(
        "box:\n  id: a\ncameras:\n  c1:\n    url: http://admin:hunter2@10.0.0.1/x\n"
        "    detect_url: [rtsp://admin:hunter2@10.0.0.1/y]\n"
        "    rtsp://admin:hunter2@10.0.0.1/z: 1\n"  # a URL pasted as a key
        "    name: {rtsp://admin:hunter2@h: 1}\n"
        "  c2:\n    url: 'rtsp://admin:hunter 2@10.0.0.2/x'\n"
    )
    text = "\n".join(found)
    assert len(found) == 5 and "hunter" not in text and "admin" not in text
    assert "cameras.c1.***@10.0.0.1/z: unknown key (line 7)" in found
    assert "cameras.c2.url: must not contain spaces or control characters (write a space as %20) (line 10)" in found


def test_validation_error_itself_hides_input() -> None:
    with pytest.raises(Exception) as info:  # noqa: B017
        CameraConfig(url="http://admin:hunter2@h/x")
    assert "hunter2" not in str(info.value)


def test_repr_of_a_camera_hides_its_urls() -> None:
    config = parse_config(
        minimal("cameras:\n  c1:\n    url: rtsp://u:hunter2@h/x\n    detect_url: rtsp://u:hunter2@h/y\n")
    )
    assert "hunter2" not in repr(config) and "hunter2" not in str(config.cameras)
    assert config.cameras["c1"].url == "rtsp://u:hunter2@h/x"


# ----------------------------------------------------------------------------------
# Summary
# ----------------------------------------------------------------------------------


def test_summary_of_the_example_never_shows_credentials() -> None:
    text = summary(parse_config(edited_example()))
    assert "s3cret-pw" not in text and "viewer" not in text
    assert "rtsp://***@10.0.0.64:554/Streaming/Channels/101" in text
    lines = text.splitlines()
    assert lines[0] == "box cluster-20, data in /var/lib/nvr-edge"
    assert "broker broker.lan:1883, TLS no, auth no" in lines[1]
    assert "recording: budget 50 GB, segments of 10 s" in lines
    assert "cameras: 23 enabled of 24" in lines
    assert sum(line.startswith("  ") for line in lines) == 24
    assert any("park-2: disabled" in line for line in lines)
    assert any("lane-5: enabled, share full" in line and "1 privacy mask(s)" in line for line in lines)
    assert not any(line.startswith("warning") for line in lines)


def test_summary_with_password_and_no_enabled_camera(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("very-secret-pw\n")
    secret.chmod(0o644)
    config = parse_config(
        f"box:\n  id: a\nmqtt:\n  host: b.example\n  port: 8883\n  username: u\n  password_file: {secret}\n"
        "  tls: {}\nrecording:\n  max_bytes: 1GiB\n  segment_seconds: 2.5\n"
        "cameras:\n  c:\n    url: rtsp://u:p4ss@h/x\n    enabled: false\n"
    )
    text = summary(config)
    assert "very-secret-pw" not in text and "p4ss" not in text
    assert "broker b.example:8883, TLS yes, auth yes (with password file)" in text
    assert "budget 1.07 GB, segments of 2.5 s" in text
    assert "c: disabled, share full, url rtsp://***@h/x, detect same stream, 0 privacy mask(s), no zone(s)" in text
    assert "warning: no camera is enabled" in text
    assert "is readable by every user" in text
    assert summary(parse_config(minimal())).splitlines()[-1] == "warning: no camera is enabled"


# ----------------------------------------------------------------------------------
# Property: anything in, a Config or one-line problems out
# ----------------------------------------------------------------------------------


def _assert_clean(text: str) -> None:
    try:
        parse_config(text)
    except ConfigError as exc:
        assert exc.problems
        for line in exc.problems:
            assert ONE_LINE.match(line) or WHOLE_FILE.match(line), line
            assert f"{EXAMPLE_PASSWORD}@" not in line, line


KEYS = sorted(
    {"box", "id", "data_dir", "mqtt", "host", "port", "topic_prefix", "username", "password_file", "tls"}
    | {"ca_file", "cert_file", "key_file", "stats_interval", "keepalive", "client_id", "recording"}
    | {"segment_seconds", "max_bytes", "min_free_bytes", "cameras", "gate-1", "Gate 1", "url", "detect_url"}
    | {"enabled", "share", "privacy_masks", "name", "motion", "sensitivity", "events", "min_frames", "mosaic"}
    | {"interval", "web", "listen", "log", "level", "junk", "<<"}
)
yaml_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 70000),
    st.floats(),
    st.text(max_size=12),
    st.sampled_from(["rtsp://u:p@h/x", "http://h", "50GB", "1GiB", "full", "none", "0.0.0.0:8080", "/etc/hostname"]),
)


def _yaml_containers(children: st.SearchStrategy) -> st.SearchStrategy:
    keys = st.one_of(st.sampled_from(KEYS), st.text(max_size=6), st.integers())
    return st.one_of(st.lists(children, max_size=4), st.dictionaries(keys, children, max_size=4))


yaml_values = st.recursive(yaml_scalars, _yaml_containers, max_leaves=16)


@settings(max_examples=70, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=st.dictionaries(st.sampled_from(KEYS), yaml_values, max_size=6))
def test_random_documents_give_a_config_or_one_line_errors(doc: dict) -> None:
    _assert_clean(yaml.safe_dump(doc))


@settings(max_examples=70, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_mutated_example_gives_a_config_or_one_line_errors(data: st.DataObject) -> None:
    text = EXAMPLE.read_text()
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(text) - 1))
        cut = data.draw(st.integers(0, 12))
        insert = data.draw(
            st.one_of(
                st.sampled_from(
                    ["", ":", " ", "\n", "- ", "[", "{", "'", '"', "  x: 1\n", "&a ", "*a", "\t", "#", "!!int ", "!x "]
                    + ["<<: *a\n", "? ", "|\n", "---\n", "2024-13-45", ".inf", "\x00", "\ufeff", "@", "%"]
                ),
                st.text(max_size=4),
            )
        )
        text = text[:pos] + insert + text[pos + cut :]
    _assert_clean(text)


@settings(max_examples=40, deadline=None)
@given(st.text(max_size=200))
def test_random_text_gives_a_config_or_one_line_errors(text: str) -> None:
    _assert_clean(text)


@settings(max_examples=20, deadline=None)
@given(st.lists(st.sampled_from(EXAMPLE.read_text().splitlines()), max_size=40))
def test_shuffled_example_lines_give_a_config_or_one_line_errors(lines: list[str]) -> None:
    assume(lines)
    _assert_clean("\n".join(lines) + "\n")
