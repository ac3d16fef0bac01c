"""Config loading: SPEC section 2, one line per problem with its YAML line number."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.config import ConfigError, load_config, parse_config, parse_size, password_file_too_open, summary
from edge.redact import redact_text, redact_url

EXAMPLE = Path(__file__).resolve().parents[1] / "config" / "edge.example.yaml"
ONE_LINE = re.compile(r"^[^\n]+ \(line \d+(; first at line \d+)?\)$")
WHOLE_FILE = re.compile(r"^<file>: [^\n]+$")


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text)
    return info.value.problems


def test_four_mistakes_give_four_lines_with_line_numbers() -> None:
    text = (
        "box:\n"
        "  id: cluster 20\n"
        "mqtt:\n"
        "  hots: 127.0.0.1\n"
        "cameras:\n"
        "  gate-1:\n"
        "    url: http://10.0.0.64/stream1\n"
        "  gate-1:\n"
        "    url: rtsp://10.0.0.65/stream1\n"
    )
    found = problems(text)
    assert sorted(found) == sorted(
        [
            "box.id: must match [a-z0-9][a-z0-9_-]* (line 2)",
            "mqtt.hots: unknown key (line 4)",
            "cameras.gate-1.url: must be an rtsp:// or rtsps:// URL (line 7)",
            "cameras.gate-1: duplicate key (line 8; first at line 6)",
        ]
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("box: {id: a}\ncameras:\n  c1: {}\n", "cameras.c1.url: required (line 3)"),
        (
            "box:\n  id: a\ncameras:\n  c1:\n    url: rtsp://x/y\n    share: maybe\n",
            "cameras.c1.share: must be one of: full, events, none (line 6)",
        ),
        ("box:\n  id: a\nmqtt:\n  port: 70000\n", "mqtt.port: must be at most 65535 (line 4)"),
        ("box:\n  id: a\nmqtt:\n  stats_interval: soon\n", "mqtt.stats_interval: must be a number (line 4)"),
        (
            "box:\n  id: a\nrecording:\n  max_bytes: lots\n",
            "recording.max_bytes: must be a size like 50GB, 500MB or 1GiB (line 4)",
        ),
        (
            "box:\n  id: a\ncameras:\n  c1:\n    url: rtsp://x/y\n"
            "    privacy_masks:\n      - [[0, 0], [1.5, 0], [1, 1]]\n",
            "cameras.c1.privacy_masks.0.1: coordinates must be between 0 and 1 (line 7)",
        ),
        (
            "box:\n  id: a\ncameras:\n  c1:\n    url: rtsp://x/y\n    motion:\n      sensitivity: 11\n",
            "cameras.c1.motion.sensitivity: must be at most 10 (line 7)",
        ),
        (
            "box:\n  id: a\nweb:\n  listen: everywhere\n",
            'web.listen: must be "host:port", e.g. "0.0.0.0:8080" (line 4)',
        ),
        ("mqtt: {}\n", "box: required (line 1)"),
        ("box:\n  id: a\n  id: b\n", "box.id: duplicate key (line 3; first at line 2)"),
        (
            "box:\n  id: a\nmqtt:\n  password_file: /nonexistent/pw\n",
            "mqtt.password_file: file not found or not readable (line 4)",
        ),
    ],
)
def test_each_problem_names_key_and_line(text: str, expected: str) -> None:
    assert expected in problems(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("", "<file>: the file is empty"), ("- a\n- b\n", "<file>: the top level must be a mapping of keys (line 1)")],
)
def test_whole_file_problems(text: str, expected: str) -> None:
    assert problems(text) == [expected]


def test_yaml_syntax_error_is_one_line_with_line_number() -> None:
    found = problems("box:\n  id: a\ncameras: [\n")
    assert len(found) == 1 and found[0].startswith("<file>: invalid YAML") and "(line " in found[0]


def test_missing_file_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "nope.yaml")
    assert info.value.problems == [f"{tmp_path / 'nope.yaml'}: no such file"]


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("50GB", 50 * 10**9),
        ("500 MB", 500 * 10**6),
        ("1GiB", 2**30),
        ("1.5TB", 1.5 * 10**12),
        ("2048", 2048),
        (4096, 4096),
        ("10mib", 10 * 2**20),
        ("3 kB", 3000),
        ("7B", 7),
    ],
)
def test_sizes(text: object, size: float) -> None:
    assert parse_size(text) == int(size)


def test_defaults_and_camera_motion_override() -> None:
    config = parse_config(
        "box:\n  id: b\nmotion:\n  sensitivity: 7\n  min_area: 0.01\ncameras:\n"
        "  a:\n    url: rtsp://h/a\n  b:\n    url: rtsp://h/b\n    motion:\n      sensitivity: 2\n"
    )
    assert config.cameras["a"].motion.sensitivity == 7 and config.cameras["a"].motion.min_area == 0.01
    assert config.cameras["b"].motion.sensitivity == 2 and config.cameras["b"].motion.min_area == 0.01
    assert config.mqtt.port == 1883 and config.mqtt.stats_interval == 30
    assert config.recording.max_bytes == 50 * 10**9 and config.recording.segment_seconds == 10
    assert str(config.box.data_dir) == "/var/lib/nvr-edge"
    assert config.cameras["a"].share == "full" and config.cameras["a"].effective_detect_url == "rtsp://h/a"


def test_example_config_loads_with_24_cameras() -> None:
    config = load_config(EXAMPLE)
    assert len(config.cameras) == 24
    assert {c.share for c in config.cameras.values()} == {"full", "events", "none"}
    assert any(c.privacy_masks for c in config.cameras.values())
    assert any(not c.enabled for c in config.cameras.values())


def test_errors_and_summary_never_show_credentials() -> None:
    found = problems("box:\n  id: a\ncameras:\n  c1:\n    url: http://admin:hunter2@10.0.0.1/x\n    detect_url: 5\n")
    assert found and "hunter2" not in "\n".join(found)
    config = load_config(EXAMPLE)
    text = summary(config)
    assert "CHANGE-ME" not in text and "viewer" not in text and "rtsp://***@10.0.0.64" in text


@pytest.mark.parametrize(
    ("url", "redacted"),
    [
        ("rtsp://user:pass@10.0.0.64/stream1", "rtsp://***@10.0.0.64/stream1"),
        ("rtsp://10.0.0.64/stream1", "rtsp://10.0.0.64/stream1"),
        ("rtsp://a:p@ss:w/rd@h:554/x?y=1", "rtsp://***@h:554/x?y=1"),
        ("rtsps://u:p%40x@h", "rtsps://***@h"),
        ("not a url", "not a url"),
    ],
)
def test_redact_url(url: str, redacted: str) -> None:
    assert redact_url(url) == redacted


def test_redact_text_hides_urls_and_bare_passwords() -> None:
    url = "rtsp://admin:s3cr%40t@10.0.0.9/live"
    text = f"Connection to {url} failed; auth s3cr@t rejected"
    out = redact_text(text, [url])
    assert "s3cr" not in out and "rtsp://***@10.0.0.9/live" in out


def test_password_file_permissions(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("pw\n")
    secret.chmod(0o600)
    assert not password_file_too_open(secret)
    secret.chmod(0o644)
    assert password_file_too_open(secret)


def _assert_clean(text: str) -> None:
    try:
        parse_config(text)
    except ConfigError as exc:
        assert exc.problems
        for line in exc.problems:
            assert ONE_LINE.match(line) or WHOLE_FILE.match(line), line


yaml_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 70000), st.floats(allow_nan=False), st.text(max_size=12)
)
yaml_values = st.recursive(
    yaml_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    doc=st.dictionaries(
        st.sampled_from(["box", "mqtt", "cameras", "recording", "motion", "junk"]), yaml_values, max_size=5
    )
)
def test_random_documents_give_a_config_or_one_line_errors(doc: dict) -> None:
    import yaml

    _assert_clean(yaml.safe_dump(doc))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_mutated_example_gives_a_config_or_one_line_errors(data: st.DataObject) -> None:
    text = EXAMPLE.read_text()
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(text) - 1))
        cut = data.draw(st.integers(0, 12))
        insert = data.draw(
            st.sampled_from(["", ":", " ", "\n", "- ", "[", "{", "'", "  x: 1\n", "&a", "*a", "\t", "#"])
        )
        text = text[:pos] + insert + text[pos + cut :]
    _assert_clean(text)
