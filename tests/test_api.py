"""The footage API on the real daemon, over HTTPS (`web.tls`): the token (401 without it,
never logged), consent (a `share: events` camera refused, one log line), ranges and gaps,
an export streamed while it is built and then served with Range, an event's export, the
limits (length, 429 beyond two builds) while every camera keeps its frame rate, and
Chromium playing the exported file from the API and seeking in it."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import shutil
import ssl
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from edge.api import bearer_matches
from harness.broker import Mosquitto, free_port
from harness.camsim import CameraSimulator
from harness.clips import default_cache
from harness.daemon import DaemonProcess, write_config
from harness.footage import footage_block, make_clip, probe
from harness.mqtt_capture import MqttCapture
from harness.tls import make_ca, make_server_cert
from tests.test_web import CHROMIUM, chromium

P = "nvr/box-1"
TOKEN = "f00d" * 8  # 32 characters


@dataclass
class Box:
    base: str
    context: ssl.SSLContext
    daemon: DaemonProcess
    capture: MqttCapture
    hour: float  # start of the hour of `gate` footage
    tail: float  # start of the 5 minutes after a 60 s gap
    tmp: Path


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory, clips: dict[str, Path]) -> Iterator[Box]:
    tmp = tmp_path_factory.mktemp("api")
    data = tmp / "data"
    clip = make_clip(default_cache() / "export" / "1280x720-15fps-10s-500k.mp4", seconds=10, fps=15, size="1280x720",
                     bitrate="500k")  # fmt: skip
    hour = float(int(time.time()) - 4 * 3600)
    footage_block(data, "gate", clip, hour, 720, tmp / "scratch")  # two hours of 720p15
    tail = hour + 7200 + 60
    footage_block(data, "gate", clip, tail, 30, tmp / "scratch2")  # a 60 s gap, then 5 minutes
    footage_block(data, "lane", clip, hour, 6, tmp / "scratch3")
    tls = make_server_cert(make_ca(tmp / "ca"), tmp / "ca")
    (tmp / "token").write_text(TOKEN + "\n")
    port = free_port()
    with Mosquitto() as broker, CameraSimulator({"gate": clips["walkers"], "lane": clips["static"],
                                                 "yard": clips["static"]}) as sim:  # fmt: skip
        config = write_config(
            tmp / "edge.yaml",
            box_id="box-1",
            data_dir=data,
            mqtt_port=broker.port,
            cameras={
                "gate": {"url": sim.urls["gate"]},
                "lane": {"url": sim.urls["lane"], "share": "events"},
                "yard": {"url": sim.urls["yard"]},
            },
            stats_interval=2.0,
            extra={
                "recording": {"min_free_bytes": 0},
                "events": {"end_after": 2.0, "pre_roll": 2.0, "post_roll": 2.0},
                "web": {
                    "listen": f"127.0.0.1:{port}",
                    "token_file": str(tmp / "token"),
                    "tls": {"cert_file": str(tls.cert_file), "key_file": str(tls.key_file)},
                },
            },
        )
        context = ssl.create_default_context(cafile=str(tls.ca_file))
        with MqttCapture(broker.host, broker.port, (f"{P}/#",)) as capture, DaemonProcess(config) as daemon:
            found = Box(f"https://127.0.0.1:{port}", context, daemon, capture, hour, tail, tmp)
            deadline = time.monotonic() + 30
            while _get(found, "/", token=None)[0] != 200:
                assert time.monotonic() < deadline, daemon.log_text()[-2000:]
                time.sleep(0.3)
            yield found
        shutil.rmtree(data / "exports", ignore_errors=True)  # gigabytes: not for pytest's kept tmp dirs
        assert TOKEN not in daemon.log_text()
        assert not [e for e in daemon.logs() if "Traceback" in json.dumps(e)]


def _get(
    box: Box, path: str, token: str | None = TOKEN, headers: dict[str, str] | None = None, scheme: str = "Bearer"
) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(box.base + path, headers=dict(headers or {}))
    if token is not None:
        value = token if scheme == "Bearer" else base64.b64encode(f"district:{token}".encode()).decode()
        request.add_header("Authorization", f"{scheme} {value}")
    try:
        with urllib.request.urlopen(request, timeout=120, context=box.context) as answer:
            return answer.status, dict(answer.headers), answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()
    except OSError:
        return 0, {}, b""


def _q(camera: str, start: float, end: float) -> str:
    return f"camera={camera}&from={start!r}&to={end!r}"


def _refusals(box: Box) -> list[dict[str, Any]]:
    return [e for e in box.daemon.logs() if e.get("event") == "api_refused_consent"]


def test_bearer_matches_only_the_token() -> None:
    token = TOKEN.encode()
    assert bearer_matches(f"Bearer {TOKEN}", token) and bearer_matches(f"bearer  {TOKEN} ", token)
    assert bearer_matches("Basic " + base64.b64encode(f"anyone:{TOKEN}".encode()).decode(), token)
    for header in (None, "", TOKEN, f"Bearer {TOKEN}x", f"Bearer {TOKEN[:-1]}", "Basic !!!", f"Token {TOKEN}"):
        assert not bearer_matches(header, token), header


def test_the_api_needs_the_token_and_the_page_does_not(box: Box) -> None:
    status, headers, body = _get(box, "/api/recordings?camera=gate", token=None)
    assert status == 401 and "Bearer" in headers["WWW-Authenticate"] and "Basic" in headers["WWW-Authenticate"]
    assert json.loads(body)["error"]
    assert _get(box, "/api/recordings?camera=gate", token="0" * 32)[0] == 401
    assert _get(box, "/api/export.mp4?camera=gate&from=10:00&to=10:01", token="0" * 32)[0] == 401
    assert _get(box, "/api/recordings?camera=gate")[0] == 200
    assert _get(box, "/api/recordings?camera=gate", scheme="Basic")[0] == 200
    # The centre's page: unauthenticated as before, and it never points at the API.
    status, _, page = _get(box, "/", token=None)
    assert status == 200 and b"/api" not in page and b"api/" not in page
    assert _get(box, "/cameras.json", token=None)[0] == 200
    # HTTPS only: plain HTTP on the same port gets no page.
    with pytest.raises(OSError):
        urllib.request.urlopen(box.base.replace("https://", "http://") + "/", timeout=5).read()


def test_recordings_lists_the_ranges_and_the_gap(box: Box) -> None:
    status, _, body = _get(box, f"/api/recordings?{_q('gate', box.hour - 60, box.tail + 300)}")
    doc = json.loads(body)
    assert status == 200 and doc["camera"] == "gate" and doc["box"] == "box-1"
    spans = [(round(r["from"] - box.hour), round(r["to"] - box.hour), r["segments"]) for r in doc["ranges"]]
    assert spans == [(0, 7200, 720), (7260, 7560, 30)]
    assert [(round(g["from"] - box.hour), g["seconds"]) for g in doc["gaps"]] == [(7200, 60.0)]


def test_a_camera_not_shared_in_full_never_leaves(box: Box) -> None:
    before = len(_refusals(box))
    for path in ("/api/recordings", "/api/export.mp4", "/api/export.json"):
        status, _, body = _get(box, f"{path}?{_q('lane', box.hour, box.hour + 30)}")
        assert status == 403 and "share: events" in json.loads(body)["error"], path
        assert len(_refusals(box)) == before + 1, path  # one log line per refusal
        before += 1
    assert _refusals(box)[-1]["camera"] == "lane"
    assert _get(box, f"/api/export.json?{_q('nope', box.hour, box.hour + 30)}")[0] == 404
    assert not list((box.tmp / "data" / "exports").glob("lane-*"))


def test_an_export_streams_while_built_then_serves_ranges(box: Box) -> None:
    query = _q("gate", box.tail + 95, box.tail + 215)  # two minutes after the gap
    status, headers, body = _get(box, f"/api/export.mp4?{query}")
    assert status == 200 and headers["Content-Type"] == "video/mp4"
    assert headers.get("Transfer-Encoding") == "chunked" and headers.get("Accept-Ranges") == "none"  # as built
    status, _, manifest = _get(box, f"/api/export.json?{query}")
    doc = json.loads(manifest)
    assert status == 200 and doc["file"]["sha256"] == hashlib.sha256(body).hexdigest()
    assert doc["file"]["bytes"] == len(body) and doc["camera"] == "gate" and doc["share"] == "full"
    assert doc["actual"]["from"] <= box.tail + 95 and doc["actual"]["to"] >= box.tail + 215
    assert all(s["check"] == "ok" for s in doc["segments"]) and doc["gaps"] == []
    (box.tmp / "streamed.mp4").write_bytes(body)
    seen = probe(box.tmp / "streamed.mp4")
    assert seen["errors"] == "" and seen["frames"] == doc["file"]["video_frames"]
    # Built: the same URL now answers Range requests (a browser seeks with them).
    status, headers, whole = _get(box, f"/api/export.mp4?{query}")
    assert status == 200 and whole == body and headers["Accept-Ranges"] == "bytes"
    for wanted, expected in (("bytes=0-99", body[:100]), ("bytes=5000-", body[5000:]), ("bytes=-300", body[-300:])):
        status, headers, part = _get(box, f"/api/export.mp4?{query}", headers={"Range": wanted})
        assert status == 206 and part == expected, wanted
        assert headers["Content-Range"].endswith(f"/{len(body)}")


def test_an_event_exports_over_the_api(box: Box) -> None:
    ends = box.capture.wait_for(
        lambda m: m.topic == f"{P}/events" and json.loads(m.payload)["type"] == "end", timeout=90
    )
    event = json.loads(ends[0].payload)
    status, _, body = _get(box, f"/api/export.json?event={event['id']}")
    doc = json.loads(body)
    assert status == 200, doc
    assert doc["event"] == event["id"] and doc["camera"] == "gate"
    assert doc["actual"]["from"] <= event["start_time"] - 2.0 + 0.01 <= doc["actual"]["to"]
    assert _get(box, "/api/export.json?event=gate-1000")[0] == 404


def test_limits_hold_and_the_cameras_keep_their_rate(box: Box) -> None:
    status, _, body = _get(box, f"/api/export.json?{_q('gate', box.hour, box.hour + 7201)}")
    assert status == 400 and "at most 7200 s" in json.loads(body)["error"]
    # Two exports of two hours each built at once; a third is told to come back.
    answers: dict[int, tuple[int, dict[str, str], bytes]] = {}
    ranges = [(box.hour, box.hour + 7200), (box.hour + 5, box.hour + 7199)]

    def build(n: int) -> None:
        answers[n] = _get(box, f"/api/export.json?{_q('gate', *ranges[n])}")

    def builds() -> int:
        return len([e for e in box.daemon.logs() if e.get("event") == "api_export_started"])

    before = builds()
    started = time.time()
    threads = [threading.Thread(target=build, args=(n,)) for n in range(2)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 20
    while builds() < before + 2:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    status, headers, body = _get(box, f"/api/export.json?{_q('gate', box.hour + 600, box.hour + 660)}")
    busy = answers.copy()
    for thread in threads:
        thread.join(300)
    finished = time.time()
    assert not busy, "an export finished before the third request: the box is too fast for this check"
    assert status == 429 and headers["Retry-After"] and "2 exports" in json.loads(body)["error"]
    for n in range(2):
        code, _, manifest = answers[n]
        doc = json.loads(manifest)
        assert code == 200 and doc["actual"]["seconds"] >= 7190 and doc["file"]["video_frames"] >= 7190 * 15
    # Every camera kept its frame rate (5 fps) while they were built; stats cover the 2 s before each.
    rates: dict[str, list[float]] = {cam: [] for cam in ("gate", "lane", "yard")}
    for message in box.capture.on_topic(f"{P}/stats"):
        if started + 1 <= message.at <= finished + 2:
            for cam, entry in json.loads(message.payload)["cameras"].items():
                rates[cam].append(entry["fps_in"])
    print(f"exports took {finished - started:.1f} s; fps_in during them:", rates)
    for cam, seen in rates.items():
        assert seen and min(seen) >= 4.0, (cam, seen)


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (scripts/setup.sh installs it)")
def test_chromium_plays_the_export_and_seeks(box: Box) -> None:
    query = _q("gate", box.tail + 10, box.tail + 100)
    doc = json.loads(_get(box, f"/api/export.json?{query}")[2])
    state = asyncio.run(_play(f"{box.base}/api/export.mp4?{query}", doc["actual"]["seconds"]))
    print("chromium:", state)
    assert state["duration"] == pytest.approx(doc["actual"]["seconds"], abs=0.5)
    assert state["seeked"] == pytest.approx(state["target"], abs=0.5) and state["ready"] >= 2
    assert state["played_to"] > state["seeked"] and state["error"] is None


async def _play(url: str, seconds: float) -> dict[str, Any]:
    async with chromium() as page:
        await page.send("Security.setIgnoreCertificateErrors", ignore=True)  # the test CA is not the browser's
        await page.send("Network.enable")
        await page.send("Network.setExtraHTTPHeaders", headers={"Authorization": f"Bearer {TOKEN}"})
        await page.send("Page.enable")
        await page.send("Page.navigate", url=url)  # the browser's own player for a video
        video = "document.querySelector('video')"
        await page.wait(f"{video} && {video}.readyState >= 1 && {video}.duration > 0", timeout=30)
        duration = await page.evaluate(f"{video}.duration")
        target = round(seconds * 0.6, 1)
        await page.evaluate(f"{video}.muted = true; {video}.pause(); {video}.currentTime = {target}")
        await page.wait(f"!{video}.seeking && {video}.readyState >= 2", timeout=20)
        seeked = await page.evaluate(f"{video}.currentTime")
        ready = await page.evaluate(f"{video}.readyState")
        await page.evaluate(f"{video}.play()")
        await page.wait(f"{video}.currentTime > {seeked} + 1", timeout=20)
        played_to = await page.evaluate(f"{video}.currentTime")
        error = await page.evaluate(f"{video}.error && {video}.error.message")
        return {"duration": duration, "target": target, "seeked": seeked, "ready": ready, "played_to": played_to,
                "error": error}  # fmt: skip


def test_a_tampered_segment_cuts_the_stream_and_the_manifest_says_why(box: Box) -> None:
    import http.client
    import sqlite3

    with sqlite3.connect(box.tmp / "data" / "index.sqlite") as db:  # the 29th of the five minutes after the gap
        (path,) = db.execute(
            "SELECT path FROM segments WHERE camera = 'gate' AND start BETWEEN ? AND ?",
            (box.tail + 275, box.tail + 285),
        ).fetchone()
    victim = box.tmp / "data" / "recordings" / path
    raw = bytearray(victim.read_bytes())
    raw[-50] ^= 0xFF
    victim.unlink()  # a hard link to the others: this one alone changes
    victim.write_bytes(bytes(raw))
    query = _q("gate", box.tail, box.tail + 300)
    request = urllib.request.Request(f"{box.base}/api/export.mp4?{query}")
    request.add_header("Authorization", f"Bearer {TOKEN}")
    with urllib.request.urlopen(request, timeout=60, context=box.context) as answer:
        assert answer.status == 200
        with pytest.raises(http.client.IncompleteRead) as cut:  # cut, never ended as if whole
            answer.read()
    assert len(cut.value.partial) > 1_000_000  # 28 segments went out before the 29th was found changed
    status, _, body = _get(box, f"/api/export.json?{query}")
    assert status == 409 and path in json.loads(body)["error"] and "does not match" in json.loads(body)["error"]
    assert [e for e in box.daemon.logs() if e.get("event") == "api_export_cut"]
