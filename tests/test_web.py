"""The centre's screen in a real browser: headless Chromium (Debian's `chromium`) driven
over the DevTools protocol loads the page from the real daemon, sees the mosaic refresh
by itself, and a camera going down turns its row and its mosaic tile red within about
one mosaic interval. The page is read-only and shows no secret."""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from edge.config import CameraConfig
from edge.mosaic import BAR_H, TILE_H, TILE_W, mosaic_size, tile_rect
from edge.status import CameraState, CameraStatus
from edge.web import ScreenData
from harness.broker import Mosquitto, free_port
from harness.camsim import CameraSimulator
from harness.daemon import DaemonProcess, write_config

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
INTERVAL = 3.0  # mosaic.interval of the test daemon
SECRET = "s3cret-pw"


class Page:
    """One browser tab over the DevTools protocol (the few commands a test needs)."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._ws = ws
        self._next = 0

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        self._next += 1
        await self._ws.send_json({"id": self._next, "method": method, "params": params})
        async for message in self._ws:
            data = json.loads(message.data)
            if data.get("id") == self._next:
                if "error" in data:
                    raise RuntimeError(f"{method}: {data['error']}")
                return data["result"]
        raise RuntimeError("the browser closed the connection")

    async def evaluate(self, expression: str) -> Any:
        result = await self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression[:80]}...: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def wait(self, expression: str, timeout: float, every: float = 0.2) -> tuple[Any, float]:
        """Poll until `expression` is truthy: (its value, when)."""
        deadline = time.monotonic() + timeout
        while True:
            value = await self.evaluate(expression)
            if value:
                return value, time.time()
            if time.monotonic() > deadline:
                raise TimeoutError(f"not true after {timeout} s: {expression[:200]}")
            await asyncio.sleep(every)


@asynccontextmanager
async def chromium(width: int = 1920, height: int = 1080) -> AsyncIterator[Page]:
    """Headless Chromium with one tab, its DevTools port read from the profile folder."""
    assert CHROMIUM is not None
    profile = Path(tempfile.mkdtemp(prefix="nvr-chromium-"))
    proc = subprocess.Popen(
        [
            CHROMIUM,
            "--headless=new",
            "--no-sandbox",  # tests run as root
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--remote-debugging-address=127.0.0.1",
            "--remote-debugging-port=0",
            f"--user-data-dir={profile}",
            f"--window-size={width},{height}",
            "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not port_file.exists() or not port_file.read_text().strip():
            if proc.poll() is not None or time.monotonic() > deadline:
                err = proc.stderr.read().decode(errors="replace")[-1500:] if proc.poll() is not None else ""
                pytest.skip(f"chromium could not start here: {err or 'no DevTools port in 30 s'}")
            await asyncio.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{port}/json/list") as answer:
                targets = await answer.json()
            tab = next(t for t in targets if t["type"] == "page")
            async with session.ws_connect(tab["webSocketDebuggerUrl"], max_msg_size=0) as ws:
                yield Page(ws)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(profile, ignore_errors=True)


def _get(url: str, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, method=method, data=b"x" if method not in ("GET", "HEAD") else None)
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, dict(answer.headers), answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def _wait_http(url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if _get(url)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer in {timeout} s")


def _bar_colour_js(index: int, count: int) -> str:
    """JS: the mean colour of the right end of tile `index`'s label bar in the image shown."""
    x, y, _w, _h = tile_rect(index, count)
    left, top = x + TILE_W - 40, y + TILE_H + 4
    return f"""(() => {{
      const img = document.getElementById("mosaic");
      if (!img.complete || !img.naturalWidth) return null;
      const c = document.createElement("canvas"); c.width = 32; c.height = {BAR_H - 8};
      const g = c.getContext("2d"); g.drawImage(img, -{left}, -{top});
      const d = g.getImageData(0, 0, c.width, c.height).data; const sum = [0, 0, 0];
      for (let i = 0; i < d.length; i += 4) {{ sum[0] += d[i]; sum[1] += d[i + 1]; sum[2] += d[i + 2]; }}
      return sum.map(v => v / (d.length / 4));
    }})()"""


def _red(rgb: list[float] | None) -> bool:
    return rgb is not None and rgb[0] > 150 and rgb[1] < 80 and rgb[2] < 80


ROWS_JS = """Object.fromEntries([...document.querySelectorAll("tr[data-camera]")].map(
  tr => [tr.dataset.camera, {cls: tr.className, cells: [...tr.cells].map(td => td.textContent)}]))"""


class _Consent:
    shares = {"gate": "full", "lane": "events", "yard": "none", "park": "full"}

    def images_allowed(self, camera: str) -> bool:
        return self.shares[camera] == "full"

    def may_name(self, camera: str) -> bool:
        return self.shares[camera] != "none"


def test_cameras_json_shows_a_none_camera_as_stats_do() -> None:
    url = f"rtsp://admin:{SECRET}@10.0.0.1/a"
    cameras = {
        "gate": CameraConfig(url=url, name="Front gate"),
        "lane": CameraConfig(url=url, share="events"),
        "yard": CameraConfig(url=url, share="none", name="Private yard"),
        "park": CameraConfig(url=url, enabled=False),
    }
    statuses = {cam: CameraStatus(state=CameraState.STREAMING) for cam in ("gate", "lane", "yard")}
    statuses["lane"] = CameraStatus(state=CameraState.FAILED, error="authentication failed (401)")
    events = {cam: {"type": "start", "time": 1.0} for cam in ("gate", "lane", "yard")}
    data = ScreenData("box-1", 10.0, lambda: cameras, statuses, events, _Consent(), lambda: (b"jpeg", 5.0))
    view = data.view()
    rows = {row["id"]: row for row in view["cameras"]}
    assert rows["gate"]["name"] == "Front gate" and rows["gate"]["last_event"] == {"type": "start", "time": 1.0}
    assert rows["lane"]["state"] == "failed" and rows["lane"]["error"] == "authentication failed (401)"
    assert rows["yard"] == {"id": "yard", "name": "yard", "state": "streaming", "error": None, "fps": 0.0,
                            "last_event": None}  # fmt: skip
    assert rows["park"]["state"] == "disabled"
    assert view["mosaic"] == {"interval": 10.0, "time": 5.0}
    assert SECRET not in json.dumps(view) and "Private yard" not in json.dumps(view)


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (scripts/setup.sh installs it)")
def test_the_page_in_chromium(
    tmp_path: Path, broker: Mosquitto, cameras: CameraSimulator, clips: dict[str, Path]
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with CameraSimulator({"spare": clips["static"]}) as spare:
        config = write_config(
            tmp_path / "edge.yaml",
            box_id="box-1",
            data_dir=tmp_path / "data",
            mqtt_port=broker.port,
            cameras={
                "gate": {"url": cameras.url_with("moving", "admin", SECRET), "name": "Front gate"},
                "lane": {"url": cameras.urls["still"], "share": "events"},
                "spare": {"url": spare.urls["spare"]},
            },
            stats_interval=2.0,
            extra={"mosaic": {"interval": INTERVAL}, "web": {"listen": f"127.0.0.1:{port}"}},
        )
        with DaemonProcess(config) as daemon:
            _wait_http(base + "/", 30)
            _read_only_and_no_secrets(base)
            timeline = asyncio.run(_browse(base, spare, tmp_path / "page.png"))
        assert daemon.logs()
    # From when the page's data says the camera is down: the row turns red when the page
    # asks next (every quarter interval), the tile with the next mosaic; 1 s for a busy machine.
    poll = min(2.0, max(0.5, INTERVAL / 4))
    down = timeline["daemon_saw_it"]
    assert timeline["row_red"] - down <= poll + 1.0, timeline
    assert timeline["tile_red"] - down <= INTERVAL + poll + 1.0, timeline
    assert down - timeline["stopped"] < 5, timeline
    print("page timeline (s after the stop):", {k: round(v - timeline["stopped"], 2) for k, v in timeline.items()})


async def _browse(base: str, spare: CameraSimulator, screenshot: Path) -> dict[str, float]:
    async with chromium() as page:
        await page.send("Page.enable")
        await page.send("Page.navigate", url=base + "/")
        # The page loads: the table lists the three cameras, the mosaic shows up.
        rows, _ = await page.wait(
            f"(() => {{ const r = {ROWS_JS}; return Object.keys(r).length === 3 && "
            "Object.values(r).every(x => x.cells[1] === 'streaming') && r; })()",
            timeout=40,
        )
        assert rows["gate"]["cells"][0] == "Front gate" and rows["gate"]["cls"] == "ok"
        width, height = mosaic_size(3)
        first, _ = await page.wait(
            f"(() => {{ const i = document.getElementById('mosaic'); "
            f"return i.naturalWidth === {width} && i.naturalHeight === {height} && i.dataset.time; }})()",
            timeout=2 * INTERVAL + 5,
        )
        # ... and refreshes by itself.
        second, _ = await page.wait(
            f"(() => {{ const t = document.getElementById('mosaic').dataset.time; return t !== '{first}' && t; }})()",
            timeout=2 * INTERVAL + 5,
        )
        assert float(second) > float(first)
        assert not _red(await page.evaluate(_bar_colour_js(2, 3)))
        # Readable across a room: at 1920 px the table's text is at least 24 px high.
        size = await page.evaluate("parseFloat(getComputedStyle(document.querySelector('td')).fontSize)")
        assert size >= 24, size
        html = await page.evaluate("document.documentElement.outerHTML")
        assert SECRET not in html and "rtsp" not in html
        shot = await page.send("Page.captureScreenshot", format="png")
        screenshot.write_bytes(base64.b64decode(shot["data"]))

        # A camera goes down: its row and its tile turn red.
        stopped = time.time()
        await asyncio.to_thread(spare.stop)
        _, saw = await page.wait(
            "fetch('cameras.json', {cache: 'no-store'}).then(r => r.json())"
            ".then(d => d.cameras.find(c => c.id === 'spare').state !== 'streaming')",
            timeout=15,
            every=0.1,
        )
        _, row_red = await page.wait(f"{ROWS_JS}['spare'].cls === 'down'", timeout=15, every=0.1)
        _, tile_red = await page.wait(
            f"(() => {{ const c = {_bar_colour_js(2, 3)}; return !!c && c[0] > 150 && c[1] < 80 && c[2] < 80; }})()",
            timeout=3 * INTERVAL + 5,
            every=0.1,
        )
        shot = await page.send("Page.captureScreenshot", format="png")
        screenshot.with_name("page-down.png").write_bytes(base64.b64decode(shot["data"]))
        rows = await page.evaluate(ROWS_JS)
        assert rows["spare"]["cells"][1] in ("reconnecting", "failed") and rows["gate"]["cls"] == "ok", rows
        return {"stopped": stopped, "daemon_saw_it": saw, "row_red": row_red, "tile_red": tile_red}


def _read_only_and_no_secrets(base: str) -> None:
    status, headers, page = _get(base + "/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert "default-src 'none'" in headers["Content-Security-Policy"]
    status, headers, body = _get(base + "/cameras.json")
    assert status == 200 and headers["Content-Type"].startswith("application/json")
    document = json.loads(body)
    assert [c["id"] for c in document["cameras"]] == ["gate", "lane", "spare"]
    for text in (page, body):
        assert SECRET.encode() not in text and b"rtsp" not in text and b"mqtt" not in text.lower()
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        for path in ("/", "/cameras.json", "/mosaic.jpg"):
            assert _get(base + path, method)[0] == 405, (method, path)
    assert _get(base + "/config")[0] == 404
    assert _get(base + "/../edge.yaml")[0] == 404
