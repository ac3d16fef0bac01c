"""Small pure pieces: backoff, topic names, health rules, command parsing."""

import random

import pytest

from edge.backoff import Backoff
from edge.commands import parse_health_request
from edge.health import RateMeter, health
from edge.status import CameraState, CameraStatus
from edge.topics import Topics


def test_backoff_grows_with_jitter_and_resets() -> None:
    b = Backoff(1.0, 8.0, rng=random.Random(1))
    delays = [b.next_delay() for _ in range(6)]
    for delay, base in zip(delays, [1, 2, 4, 8, 8, 8], strict=True):
        assert base / 2 <= delay <= base
    b.reset()
    assert b.next_delay() <= 1.0


def test_topics_follow_the_spec() -> None:
    t = Topics("nvr", "cluster-20")
    assert t.status == "nvr/cluster-20/status"
    assert t.motion("gate-1") == "nvr/cluster-20/cameras/gate-1/motion"
    assert t.thumbnail("gate-1-1") == "nvr/cluster-20/events/gate-1-1/thumbnail"
    assert t.detect_set_camera("nvr/cluster-20/cameras/gate-1/detect/set") == "gate-1"
    assert t.detect_set_camera("nvr/cluster-20/cameras/a/b/detect/set") is None
    assert t.detect_set_camera("nvr/other/cameras/gate-1/detect/set") is None


def _st(state: CameraState) -> CameraStatus:
    return CameraStatus(state=state)


def test_health_status_rules() -> None:
    ok = health("x", {"a": _st(CameraState.STREAMING), "b": _st(CameraState.DISABLED)}, True, "ok")
    assert ok["status"] == "ok" and ok["id"] == "x" and ok["checks"]["cameras"] == {"a": "ok"}
    some = health(None, {"a": _st(CameraState.STREAMING), "b": _st(CameraState.RECONNECTING)}, True, "ok")
    assert some["status"] == "degraded" and some["checks"]["cameras"]["b"] == "reconnecting"
    none = health(None, {"a": _st(CameraState.FAILED)}, True, "ok")
    assert none["status"] == "failed"
    disk = health(None, {"a": _st(CameraState.STREAMING)}, True, "data_dir is not writable")
    assert disk["status"] == "failed"


@pytest.mark.parametrize(
    ("payload", "expected"),
    [(b"", None), (b"  ", None), (b'{"id": "abc"}', "abc"), (b"{}", None), (b'{"id": null}', None)],
)
def test_health_request_accepted(payload: bytes, expected: str | None) -> None:
    assert parse_health_request(payload) == expected


@pytest.mark.parametrize(
    "payload",
    [b"\xff\xfe", b"[1,2]", b'{"id": [1]}', b"not json", b'"id"', b'{"id": 7}', b'{"a": {"id": "x"}}', b"[" * 3000],
)
def test_health_request_rejected(payload: bytes) -> None:
    with pytest.raises(ValueError):
        parse_health_request(payload)


def test_rate_meter_survives_a_camera_restarted_by_a_reload() -> None:
    meter, old = RateMeter(), CameraStatus(started_monotonic=0.0)
    old.frames_in = 500
    meter.fps("a", old, 100.0)
    new = CameraStatus(started_monotonic=100.0)
    new.frames_in = 10  # the new worker counts from zero
    fps_in, _ = meter.fps("a", new, 102.0)
    assert fps_in == 5.0


def test_durations_read_at_a_glance() -> None:
    from edge.durations import in_words

    assert [in_words(s) for s in (-3, 0.9, 119, 120, 7199, 7200, 7260, 172800)] == [
        "0 s",
        "0 s",
        "119 s",
        "2 min",
        "119 min",
        "2 h 0 min",
        "2 h 1 min",
        "2 days",
    ]
