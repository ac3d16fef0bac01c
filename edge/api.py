"""The footage API for the district, on the daemon's web server (`web.listen`), off unless
`web.token_file` is set. Three GET resources under /api/, which the centre's page never
links to:

- `/api/recordings?camera=&from=&to=`: the recorded ranges and the gaps between them;
- `/api/export.mp4?camera=&from=&to=` (or `?event=ID`): the same MP4 as `nvr-edge
  export`, streamed while it is built, then served from a short-lived cache with Range
  support (a browser seeks in it);
- `/api/export.json?...`: its manifest (waits for the export to finish).

Every request needs the token (`Authorization: Bearer TOKEN`, or HTTP Basic with the
token as the password, which a browser can ask for), compared in constant time and never
logged. Consent holds: only a `share: full` camera's footage leaves the box (403 and one
log line otherwise). At most MAX_BUILDS exports are built at a time (429 beyond), each
of at most `web.max_export_seconds`.

An export is built by a child process (`python -m edge.export`, at nice 19), never on the
event loop nor in a thread of the daemon: the remux would take the GIL and CPU from the
cameras, and FFmpeg crashing on a damaged file would take the daemon down with it.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hmac
import json
import shutil
import sqlite3
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from edge.config import CameraConfig, EventConfig
from edge.export import ExportError, event_range
from edge.footage import gaps_between, local_iso, nothing_recorded, parse_time, ranges_of
from edge.index import IndexReader
from edge.logs import get_logger
from edge.ratelog import REQUEST_BURST, RateLimitedLog

MAX_BUILDS = 2  # exports built at once; a third waits for one of them (429)
KEEP_S = 1800.0  # a finished export stays servable this long after its last request
MAX_KEPT = 4  # ... and at most this many are kept (each may be gigabytes)
CHUNK = 256 * 1024
EXPORTS = "exports"
MP4_CSP = "default-src 'none'; media-src 'self'; style-src 'unsafe-inline'"  # the browser's own player page
CHALLENGE = ('Bearer realm="nvr-edge footage"', 'Basic realm="nvr-edge footage", charset="UTF-8"')


class _Refusal(Exception):
    """A request that is answered with an error status and a one-line JSON reason."""

    def __init__(self, status: int, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.headers = dict(headers or {})


@dataclass(frozen=True, slots=True)
class Request:
    camera: str
    start: float
    end: float
    event: str | None = None

    @property
    def key(self) -> str:
        return f"{self.camera}-{round(self.start * 1000)}-{round(self.end * 1000)}"


@dataclass
class Job:
    """One export being built (or built) by a child process, its file in the cache."""

    request: Request
    path: Path
    share: str
    done: asyncio.Event = field(default_factory=asyncio.Event)
    error: str | None = None
    status: int = 200
    process: asyncio.subprocess.Process | None = None
    started: float = field(default_factory=time.monotonic)
    last_used: float = field(default_factory=time.monotonic)

    @property
    def partial(self) -> Path:
        return self.path.with_name(self.path.name + ".partial")

    @property
    def manifest(self) -> Path:
        return self.path.with_name(self.path.name + ".json")

    @property
    def running(self) -> bool:
        return not self.done.is_set()


def bearer_matches(header: str | None, token: bytes) -> bool:
    """Whether an Authorization header carries the token (Bearer, or Basic with it as the
    password), compared in constant time."""
    if not header:
        return False
    scheme, _, value = header.strip().partition(" ")
    value = value.strip()
    if scheme.lower() == "basic":
        try:
            value = base64.b64decode(value, validate=True).decode("utf-8").partition(":")[2]
        except (binascii.Error, UnicodeDecodeError):
            return False
    elif scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(value.encode("utf-8", "surrogateescape"), token)


class FootageApi:
    """The /api/ routes; `cameras` and `events` are read live (a reload may change consent)."""

    def __init__(
        self,
        *,
        box: str,
        data_dir: Path,
        token: str,
        max_export_seconds: float,
        cameras: Callable[[], Mapping[str, CameraConfig]],
        events: Callable[[], EventConfig],
    ) -> None:
        self._box = box
        self._data_dir = data_dir
        self._cache = data_dir / EXPORTS
        self._token = token.encode("utf-8")
        self._max_s = max_export_seconds
        self._cameras = cameras
        self._events = events
        self._jobs: dict[str, Job] = {}
        self._reader: IndexReader | None = None
        self._log = get_logger(component="api")
        self._limited = RateLimitedLog(self._log, burst=REQUEST_BURST)
        self._tasks: set[asyncio.Task[None]] = set()
        self._cleared = False

    def add_routes(self, router: web.UrlDispatcher) -> None:
        router.add_get("/api/recordings", self._recordings)
        router.add_get("/api/export.mp4", self._export_mp4)
        router.add_get("/api/export.json", self._export_json)

    # -- checks shared by every route --------------------------------------------------
    def _authorise(self, request: web.Request) -> None:
        if not bearer_matches(request.headers.get("Authorization"), self._token):
            self._limited.warning("api_unauthorised", remote=request.remote, path=request.path)
            raise _Refusal(401, "this needs the box's API token", {"WWW-Authenticate": ", ".join(CHALLENGE)})

    def _consent(self, request: web.Request, camera: str) -> CameraConfig:
        cam = self._cameras().get(camera)
        if cam is None:
            raise _Refusal(404, f"no camera {camera[:64]!r} on this box")
        if cam.share != "full":
            self._log.warning("api_refused_consent", camera=camera, share=cam.share, remote=request.remote)
            raise _Refusal(403, f"the owner of {camera} has not agreed to share its footage (share: {cam.share})")
        return cam

    async def _index(self) -> IndexReader:
        if self._reader is None:
            try:
                self._reader = await asyncio.to_thread(IndexReader, self._data_dir / "index.sqlite")
            except (OSError, sqlite3.Error) as exc:  # no index yet: nothing recorded so far
                raise _Refusal(503, f"the recordings index cannot be read: {exc}") from None
        return self._reader

    async def _parse(self, request: web.Request, *, export: bool) -> Request:
        query = request.query
        event = query.get("event")
        if event:
            reader = await self._index()
            events = self._events()
            try:
                span = await asyncio.to_thread(event_range, reader, event, events.pre_roll, events.post_roll)
            except ExportError as exc:
                raise _Refusal(404, str(exc)) from None
            return Request(*span, event)  # camera, from, to
        camera = query.get("camera")
        if not camera:
            raise _Refusal(400, "give camera= with from= and to=, or event=")
        try:
            start = parse_time(query["from"]) if "from" in query else (None if export else 0.0)
            end = parse_time(query["to"]) if "to" in query else (None if export else time.time())
        except ValueError as exc:
            raise _Refusal(400, str(exc)) from None
        if start is None or end is None:
            raise _Refusal(400, "an export needs from= and to= (or event=)")
        if end <= start:
            raise _Refusal(400, "to= must be after from=")
        return Request(camera, start, end)

    async def _handle(self, request: web.Request, answer: Callable[[], Any]) -> web.StreamResponse:
        try:
            self._authorise(request)
            return await answer()
        except _Refusal as refusal:
            return web.json_response({"error": str(refusal)}, status=refusal.status, headers=refusal.headers)

    # -- /api/recordings ---------------------------------------------------------------
    async def _recordings(self, request: web.Request) -> web.StreamResponse:
        async def answer() -> web.Response:
            wanted = await self._parse(request, export=False)
            self._consent(request, wanted.camera)
            reader = await self._index()
            segments = await asyncio.to_thread(reader.segments_between, wanted.camera, wanted.start, wanted.end)
            doc = {
                "box": self._box,
                "camera": wanted.camera,
                "from": round(wanted.start, 3),
                "to": round(wanted.end, 3),
                "ranges": [r.as_dict() for r in ranges_of(segments)],
                "gaps": [g.as_dict() for g in gaps_between(segments)],
                "note": "finished segments only: the one being written joins when it closes",
            }
            return web.json_response(doc)

        return await self._handle(request, answer)

    # -- /api/export.mp4 and .json -------------------------------------------------------
    async def _job_for(self, request: web.Request) -> Job:
        wanted = await self._parse(request, export=True)
        cam = self._consent(request, wanted.camera)
        if wanted.end - wanted.start > self._max_s:
            asked = wanted.end - wanted.start
            raise _Refusal(
                400, f"{asked:.0f} s asked: one export covers at most {self._max_s:g} s (web.max_export_seconds)"
            )
        job = self._jobs.get(wanted.key)
        if job is not None and job.error is None:
            job.last_used = time.monotonic()
            return job  # being built, or built: shared
        if sum(1 for j in self._jobs.values() if j.running) >= MAX_BUILDS:
            self._limited.warning("api_busy", camera=wanted.camera, remote=request.remote)
            raise _Refusal(429, f"{MAX_BUILDS} exports are being built: try again shortly", {"Retry-After": "10"})
        reader = await self._index()
        segments = await asyncio.to_thread(reader.segments_between, wanted.camera, wanted.start, wanted.end)
        if not segments:
            before = await asyncio.to_thread(reader.last_before, wanted.camera, wanted.start)
            after = await asyncio.to_thread(reader.first_after, wanted.camera, wanted.end)
            raise _Refusal(404, nothing_recorded(wanted.camera, wanted.start, wanted.end, before, after))
        await self._prepare_cache()
        job = Job(wanted, self._cache / f"{wanted.key}.mp4", cam.share)
        self._jobs[wanted.key] = job
        self._spawn(self._build(job, request.remote))
        return job

    async def _build(self, job: Job, remote: str | None) -> None:
        """Run the export child; its last stderr line is the reason when it fails. Whatever
        happens, the job ends done (those waiting on it must never hang)."""
        try:
            await self._run_child(job, remote)
        except asyncio.CancelledError:
            job.error, job.status = "the daemon is stopping", 503
            raise
        except Exception as exc:  # noqa: BLE001 - one failed export must not leave its waiters hanging
            job.error, job.status = f"the export could not run: {exc}", 500
            self._log.exception("api_export_crashed", camera=job.request.camera)
        finally:
            job.done.set()

    async def _run_child(self, job: Job, remote: str | None) -> None:
        wanted = job.request
        args = [
            sys.executable, "-m", "edge.export", "--data-dir", str(self._data_dir), "--box", self._box,
            "--camera", wanted.camera, "--from", repr(wanted.start), "--to", repr(wanted.end),
            "--share", job.share, "-o", str(job.path),
        ]  # fmt: skip
        if wanted.event:
            args += ["--event", wanted.event]
        self._log.info(
            "api_export_started", camera=wanted.camera, event_id=wanted.event, start=local_iso(wanted.start),
            end=local_iso(wanted.end), remote=remote,
        )  # fmt: skip
        job.process = await asyncio.create_subprocess_exec(
            *args, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
        )
        _, stderr = await job.process.communicate()
        errors = stderr.decode("utf-8", "replace").strip().splitlines()
        code = job.process.returncode
        if code != 0 or not await asyncio.to_thread(job.path.exists):
            job.error = errors[-1] if errors else f"the export stopped (exit {code})"
            job.status = 409 if code == 1 else 500
            self._log.error("api_export_failed", camera=wanted.camera, error=job.error, exit_code=code)
            return
        size = await asyncio.to_thread(lambda: job.path.stat().st_size)
        took = round(time.monotonic() - job.started, 2)
        self._log.info("api_export_done", camera=wanted.camera, bytes=size, took_s=took)

    async def _export_mp4(self, request: web.Request) -> web.StreamResponse:
        async def answer() -> web.StreamResponse:
            job = await self._job_for(request)
            if job.done.is_set():
                if job.error is not None:
                    raise _Refusal(job.status, job.error)
                return web.FileResponse(job.path, headers=self._mp4_headers(job), chunk_size=CHUNK)
            return await self._stream(request, job)

        return await self._handle(request, answer)

    def _mp4_headers(self, job: Job) -> dict[str, str]:
        name = f"{self._box}-{job.request.event or job.request.key}.mp4"
        return {
            "Content-Type": "video/mp4",
            "Content-Disposition": f'inline; filename="{name}"',
            "Content-Security-Policy": MP4_CSP,
        }

    async def _stream(self, request: web.Request, job: Job) -> web.StreamResponse:
        """The export as the child writes it (no Range yet: the length is unknown). A failed
        export ends the connection without the closing chunk: the client sees it incomplete."""
        file = await self._open_partial(job)
        if file is None:
            if job.error is not None:
                raise _Refusal(job.status, job.error)
            return web.FileResponse(job.path, headers=self._mp4_headers(job), chunk_size=CHUNK)
        response = web.StreamResponse(headers=self._mp4_headers(job) | {"Accept-Ranges": "none"})
        try:
            await response.prepare(request)
            await self._follow(file, job, response)
        except ConnectionResetError:  # the client went away; the export goes on for whoever asks next
            return response
        finally:
            await asyncio.to_thread(file.close)
        if job.error is not None:
            self._log.warning("api_export_cut", camera=job.request.camera, error=job.error, remote=request.remote)
            if request.transport is not None:
                request.transport.abort()
            return response
        await response.write_eof()
        return response

    async def _follow(self, file: Any, job: Job, response: web.StreamResponse) -> None:
        """Send what the child has written, until it has finished."""
        while True:
            chunk = await asyncio.to_thread(file.read, CHUNK)
            if chunk:
                await response.write(chunk)
                continue
            if job.done.is_set():
                chunk = await asyncio.to_thread(file.read)
                if chunk:
                    await response.write(chunk)
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(job.done.wait(), 0.1)

    async def _open_partial(self, job: Job) -> Any:
        """The file being written, once the child has created it (None: already finished or failed)."""
        while not job.done.is_set():
            with contextlib.suppress(FileNotFoundError):
                return await asyncio.to_thread(job.partial.open, "rb")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(job.done.wait(), 0.05)
        return None

    async def _export_json(self, request: web.Request) -> web.StreamResponse:
        async def answer() -> web.Response:
            job = await self._job_for(request)
            await job.done.wait()
            if job.error is not None:
                raise _Refusal(job.status, job.error)
            doc = json.loads(await asyncio.to_thread(job.manifest.read_text))
            self._log.info(
                "api_manifest", camera=job.request.camera, sha256=doc["file"]["sha256"], remote=request.remote
            )
            return web.json_response(doc)

        return await self._handle(request, answer)

    # -- the cache ---------------------------------------------------------------------
    async def _prepare_cache(self) -> None:
        """Empty the cache once (what a previous run left), then drop what is no longer wanted."""
        if not self._cleared:
            self._cleared = True
            await asyncio.to_thread(shutil.rmtree, self._cache, True)
            await asyncio.to_thread(self._cache.mkdir, parents=True, exist_ok=True)
        now = time.monotonic()
        finished = sorted((j for j in self._jobs.values() if not j.running), key=lambda j: j.last_used, reverse=True)
        for n, job in enumerate(finished):
            if n >= MAX_KEPT - 1 or now - job.last_used > KEEP_S or job.error is not None:
                del self._jobs[job.request.key]
                for path in (job.path, job.manifest, job.partial):
                    await asyncio.to_thread(path.unlink, True)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        """Stop the exports being built (their partial files are left for the next start's clean-up)."""
        for job in self._jobs.values():
            if job.running and job.process is not None and job.process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    job.process.kill()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._reader is not None:
            await asyncio.to_thread(self._reader.close)
