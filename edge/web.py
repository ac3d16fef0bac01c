"""The centre's screen: a small read-only web page served by the daemon (`web.listen`).

Three GET resources, nothing else: `/` (the page: the mosaic refreshing by itself and a
table of cameras, sized for a TV across a room), `/mosaic.jpg` (the latest mosaic, the
same JPEG as `P/mosaic`) and `/cameras.json` (what the table shows). It accepts no
commands (any other method is 405) and shows no secret: no URL, no broker setting, only
what stats already say plus the name and the last event that left the box. A
`share: none` camera's row is what stats show of it (id, state, fps, error): no name,
no event. aiohttp serves it on the daemon's own asyncio loop: the standard library's
http.server would need hand-written request handling and a thread.

The page must never cost the daemon its real work: 1100 idle connections once took
every file descriptor (the page refused, stats stopped). So connections are capped
(MAX_CONNECTIONS, and an eighth of the descriptor limit; one more is answered 503 and
closed at once), a connection that sends no request for IDLE_TIMEOUT_S is closed, and
a malformed request is one short warning line (rate-limited), not a traceback.

With `web.token_file` the same server also carries the footage API (edge/api.py, under
/api/, token required; the page never links to it), and with `web.tls` both are HTTPS.
"""

from __future__ import annotations

import asyncio
import html
import json
import logging
import resource
import ssl
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestHandler

from edge.config import CameraConfig, WebTlsConfig
from edge.health import RateMeter
from edge.logs import get_logger
from edge.ratelog import REQUEST_BURST, RateLimitedLog
from edge.status import CameraState, CameraStatus

if TYPE_CHECKING:  # edge.mosaic needs PyAV and OpenCV; the page only names its consent type
    from edge.mosaic import Consent

VIEW_MAX_AGE_S = 1.0  # cameras.json is computed at most once a second, however many screens poll
RETRY_BIND_S = 30.0
MAX_CONNECTIONS = 64  # a centre has a screen or two: enough for every one, never a box's descriptors
FD_SHARE = 8  # ... and at most an eighth of the process's descriptor limit
IDLE_TIMEOUT_S = 10.0  # a connection without a request for this long is closed (aiohttp's default is an hour)
REFUSAL = b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 0\r\nRetry-After: 10\r\n\r\n"
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; img-src 'self'; connect-src 'self'; style-src 'unsafe-inline'; "
        "script-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


@dataclass
class ScreenData:
    """Live views of the daemon's state the page reads (never copies it keeps)."""

    box: str
    mosaic_interval: float
    cameras: Callable[[], Mapping[str, CameraConfig]]
    statuses: Mapping[str, CameraStatus]
    last_events: Mapping[str, Mapping[str, Any]]
    consent: Consent
    mosaic: Callable[[], tuple[bytes, float] | None]
    _meter: RateMeter = field(default_factory=RateMeter)
    _cached: tuple[float, dict[str, Any]] | None = None

    def view(self) -> dict[str, Any]:
        """The /cameras.json document (cached for VIEW_MAX_AGE_S)."""
        now = time.monotonic()
        if self._cached is not None and now - self._cached[0] < VIEW_MAX_AGE_S:
            return self._cached[1]
        rows = []
        for cam_id, cam in self.cameras().items():
            status = self.statuses.get(cam_id) or CameraStatus(
                state=CameraState.DISABLED if not cam.enabled else CameraState.STARTING
            )
            fps = self._meter.fps(cam_id, status, now)[0] if status.state is CameraState.STREAMING else 0.0
            named = self.consent.may_name(cam_id)
            event = self.last_events.get(cam_id) if named else None
            rows.append(
                {
                    "id": cam_id,
                    "name": (cam.name or cam_id) if named else cam_id,
                    "state": status.state.value,
                    "error": status.error,
                    "fps": round(fps, 1),
                    "last_event": dict(event) if event else None,
                }
            )
        mosaic = self.mosaic()
        document = {
            "box": self.box,
            "time": round(time.time(), 3),
            "mosaic": {"interval": self.mosaic_interval, "time": round(mosaic[1], 3) if mosaic else None},
            "cameras": rows,
        }
        self._cached = (now, document)
        return document


def _poll_ms(interval: float) -> int:
    """How often the page asks: a quarter of the mosaic interval (0.5 to 2 s), so a camera
    going down shows within about one interval."""
    return int(1000 * min(2.0, max(0.5, interval / 4 if interval > 0 else 2.0)))


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>nvr-edge {box}</title>
<style>
html,body{{margin:0;height:100%;background:#111;color:#eee;font-family:system-ui,sans-serif}}
body{{display:flex;flex-direction:column}}
header{{display:flex;justify-content:space-between;align-items:baseline;padding:.5vw 1vw;font-size:2.2vw}}
#offline{{background:#c00;color:#fff;padding:.3vw 1vw;font-size:2vw}}
main{{flex:1;display:flex;gap:1vw;padding:0 1vw 1vw;min-height:0}}
#left{{flex:2;min-width:0}}
#mosaic{{width:100%;height:auto;max-height:calc(100vh - 5vw);object-fit:contain;display:block}}
#right{{flex:1;min-width:0;overflow:hidden}}
table{{width:100%;border-collapse:collapse;font-size:1.5vw}}
th,td{{padding:.15em .4em;text-align:left;border-bottom:1px solid #333;white-space:nowrap}}
th{{color:#aaa;font-weight:normal}}
td.err{{font-size:.7em;white-space:normal}}
tr.down td{{background:#c00000;color:#fff}}
tr.wait td{{background:#8a5a00;color:#fff}}
tr.off td{{color:#777}}
</style></head>
<body data-poll-ms="{poll_ms}">
<header><span>nvr-edge <b>{box}</b></span><span id="clock"></span></header>
<div id="offline" hidden>No answer from the box</div>
<main>
<div id="left"><img id="mosaic" alt="mosaic of the cameras" data-time=""></div>
<div id="right"><table><thead><tr><th>camera</th><th>state</th><th>fps</th><th>last event</th></tr></thead>
<tbody id="cameras"></tbody></table></div>
</main>
<script>
"use strict";
const POLL_MS = Number(document.body.dataset.pollMs);
const img = document.getElementById("mosaic");
const rowClass = {{reconnecting: "down", failed: "down", starting: "wait", disabled: "off"}};
let wanted = null;
img.addEventListener("load", () => {{ img.dataset.time = img.dataset.loading; }});
function clock(t) {{ return new Date(t * 1000).toLocaleTimeString([], {{hour12: false}}); }}
function cell(tr, text, cls) {{
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  tr.appendChild(td);
}}
function render(doc) {{
  document.getElementById("clock").textContent = clock(doc.time);
  const m = doc.mosaic;
  img.hidden = !m.time;
  if (m.time && m.time !== wanted) {{
    wanted = m.time;
    img.dataset.loading = String(m.time);
    img.src = "mosaic.jpg?t=" + encodeURIComponent(m.time);
  }}
  const body = document.createElement("tbody");
  body.id = "cameras";
  for (const cam of doc.cameras) {{
    const tr = document.createElement("tr");
    tr.dataset.camera = cam.id;
    tr.className = rowClass[cam.state] || "ok";
    cell(tr, cam.name);
    cell(tr, cam.state);
    cell(tr, cam.state === "streaming" ? cam.fps.toFixed(1) : "");
    const ev = cam.last_event;
    cell(tr, ev ? ev.type + " " + clock(ev.time) : "");
    body.appendChild(tr);
    if (cam.error && tr.className === "down") {{
      const er = document.createElement("tr");
      er.className = "down";
      const td = document.createElement("td");
      td.colSpan = 4; td.className = "err"; td.textContent = cam.error;
      er.appendChild(td); body.appendChild(er);
    }}
  }}
  document.getElementById("cameras").replaceWith(body);
}}
async function refresh() {{
  try {{
    const answer = await fetch("cameras.json", {{cache: "no-store"}});
    if (!answer.ok) throw new Error(String(answer.status));
    render(await answer.json());
    document.getElementById("offline").hidden = true;
  }} catch (e) {{
    document.getElementById("offline").hidden = false;
  }}
  setTimeout(refresh, POLL_MS);
}}
refresh();
</script></body></html>
"""


def connection_cap() -> int:
    """How many connections the page may hold now: MAX_CONNECTIONS, or less under a low fd limit."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return MAX_CONNECTIONS
    return max(4, min(MAX_CONNECTIONS, soft // FD_SHARE))


class _Refuse(asyncio.Protocol):
    """A connection over the cap: a 503 and closed at once, so it holds no descriptor."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if isinstance(transport, asyncio.WriteTransport):
            transport.write(REFUSAL)
        transport.close()


class _RequestLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    """aiohttp's server logger, except that a request that is not valid HTTP (the client's
    fault) is one short, rate-limited warning instead of an error with a traceback."""

    def __init__(self, limited: RateLimitedLog) -> None:
        super().__init__(logging.getLogger("aiohttp.server"), {})
        self._limited = limited

    def exception(self, msg: object, *args: object, exc_info: Any = True, **kwargs: Any) -> None:
        exc = exc_info if isinstance(exc_info, BaseException) else sys.exc_info()[1]
        if isinstance(exc, HttpProcessingError):
            remote = args[0] if args and isinstance(args[0], str) else None
            first_line = (str(exc.message).splitlines() or [""])[0].split(" b'")[0].rstrip(": ")
            reason = f"{type(exc).__name__}: {first_line}"[:100]  # the client's bytes are not echoed
            self._limited.warning("web_bad_request", remote=remote, status=exc.code, error=reason)
            return
        super().exception(msg, *args, exc_info=exc_info, **kwargs)


class _Routes(Protocol):
    def add_routes(self, router: web.UrlDispatcher) -> None: ...


def _tls_context(tls: WebTlsConfig) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tls.cert_file, tls.key_file)
    return context


class ScreenServer:
    """Serves the page on `listen` ("host:port") from the daemon's loop (and `api`'s routes, if any)."""

    def __init__(
        self, listen: str, data: ScreenData, api: _Routes | None = None, tls: WebTlsConfig | None = None
    ) -> None:
        host, _, port = listen.rpartition(":")
        self._host, self._port = host.strip("[]"), int(port)
        self._data = data
        self._api = api
        self._tls = tls
        self._page = PAGE.format(box=html.escape(data.box), poll_ms=_poll_ms(data.mosaic_interval)).encode()
        self._runner: web.AppRunner | None = None
        self._log = get_logger(component="web", listen=listen)
        self._limited_log = RateLimitedLog(self._log, burst=REQUEST_BURST)
        self._accepted: list[tuple[RequestHandler, float]] = []  # handed to asyncio, not connected yet
        self.requests = 0
        self.refused = 0

    def _app(self) -> web.Application:
        app = web.Application(middlewares=[self._headers])
        app.router.add_get("/", self._index)
        app.router.add_get("/mosaic.jpg", self._mosaic)
        app.router.add_get("/cameras.json", self._cameras)
        if self._api is not None:
            self._api.add_routes(app.router)
        return app

    @web.middleware
    async def _headers(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.requests += 1
        try:
            response = await handler(request)
        except web.HTTPException as exc:  # 404, 405: the same headers
            response = exc
        for name, value in HEADERS.items():
            response.headers.setdefault(name, value)  # the API's video sets its own policy
        return response

    async def _index(self, _request: web.Request) -> web.Response:
        return web.Response(body=self._page, content_type="text/html", charset="utf-8")

    async def _mosaic(self, _request: web.Request) -> web.Response:
        mosaic = self._data.mosaic()
        if mosaic is None:
            raise web.HTTPNotFound(text="no mosaic yet")
        return web.Response(body=mosaic[0], content_type="image/jpeg")

    async def _cameras(self, _request: web.Request) -> web.Response:
        body = json.dumps(self._data.view(), separators=(",", ":"), allow_nan=False)
        return web.Response(text=body, content_type="application/json")

    def _connection(self) -> asyncio.BaseProtocol:
        """asyncio's protocol factory: aiohttp's handler while under the cap, else a refusal.

        Connections accepted in the same loop pass are not in aiohttp's list yet: they are
        counted from `_accepted` until connected (or for a second)."""
        server = self._runner.server if self._runner is not None else None
        if server is None:
            return _Refuse()
        now = time.monotonic()
        self._accepted = [(h, t) for h, t in self._accepted if h.transport is None and now - t < 1.0]
        open_now = len(server.connections) + len(self._accepted)
        cap = connection_cap()
        if open_now >= cap:
            self.refused += 1
            self._limited_log.warning("web_connection_refused", open=open_now, cap=cap)
            return _Refuse()
        handler = server()
        self._accepted.append((handler, now))
        return handler

    async def _listen(self, runner: web.AppRunner) -> asyncio.AbstractServer:
        """Bind, retrying every RETRY_BIND_S (the daemon's real work does not depend on the page)."""
        loop = asyncio.get_running_loop()
        while True:
            try:
                context = await asyncio.to_thread(_tls_context, self._tls) if self._tls is not None else None
                return await loop.create_server(self._connection, self._host, self._port, backlog=128, ssl=context)
            except (OSError, ssl.SSLError) as exc:
                self._log.error("web_listen_failed", error=exc.strerror or str(exc), retry_in_s=RETRY_BIND_S)
                await asyncio.sleep(RETRY_BIND_S)

    async def run(self) -> None:
        """Serve until cancelled."""
        runner = web.AppRunner(
            self._app(),
            access_log=None,
            handle_signals=False,
            shutdown_timeout=1.0,
            keepalive_timeout=IDLE_TIMEOUT_S,
            logger=_RequestLog(self._limited_log),
        )
        await runner.setup()
        self._runner = runner
        listening: asyncio.AbstractServer | None = None
        try:
            listening = await self._listen(runner)
            self._log.info(
                "web_listening",
                max_connections=connection_cap(),
                idle_timeout_s=IDLE_TIMEOUT_S,
                tls=self._tls is not None,
                api=self._api is not None,
            )
            await asyncio.Event().wait()
        finally:
            if listening is not None:
                listening.close()
            self._runner = None
            await asyncio.shield(runner.cleanup())
