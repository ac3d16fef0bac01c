#!/usr/bin/env python3
"""How long `nvr-edge export` takes for an hour of one camera (issue 17: "a few seconds").

Makes a 10 s 1080p15 H.264 clip at a camera's bitrate (constant, 4 Mbit/s by default),
records it as a ring buffer of back-to-back 10 s segments (real copies, indexed with
their SHA-256, as the recorder leaves them), then runs the real command a few times:
to a file (fsynced, as the CLI does) and to stdout into /dev/null. Prints wall time,
CPU time and throughput per run; the segments are in the page cache after the first
run (as recent footage is on a box) unless --drop-caches (root; affects the machine).

    .venv/bin/python scripts/bench_export.py                 # an hour of 1080p15 at 4 Mbit/s
    .venv/bin/python scripts/bench_export.py --minutes 10 --runs 1
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from harness.clips import default_cache  # noqa: E402
from harness.footage import make_clip, repeat_segment, write_segments  # noqa: E402


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=60)
    parser.add_argument("--size", default="1920x1080")
    parser.add_argument("--fps", type=int, default=15)
    parser.add_argument("--bitrate", default="4M", help="constant bitrate of the camera (x264 CBR with filler)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--dir", type=Path, help="where the footage goes (default: a temporary folder, removed)")
    parser.add_argument("--drop-caches", action="store_true", help="drop the page cache before each run (root)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON too")
    return parser.parse_args()


def _clip(size: str, fps: int, bitrate: str) -> Path:
    path = default_cache() / "export" / f"{size}-{fps}fps-10s-{bitrate}-cbr.mp4"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.mp4")
        subprocess.run(
            ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", f"testsrc2=size={size}:rate={fps}",
             "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=16000", "-t", "10",
             "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-bf", "0", "-g", str(2 * fps),
             "-b:v", bitrate, "-minrate", bitrate, "-maxrate", bitrate, "-bufsize", bitrate,
             "-x264-params", "nal-hrd=cbr:force-cfr=1", "-c:a", "aac", "-b:a", "32k", "-ac", "1", str(tmp)],
            check=True, timeout=600,
        )  # fmt: skip
        tmp.replace(path)
    return path if path.exists() else make_clip(path)


def _run(config: Path, start: float, end: float, output: str, drop: bool) -> dict[str, float]:
    if drop:
        subprocess.run(["sync"], check=True)
        Path("/proc/sys/vm/drop_caches").write_text("1\n")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    began = time.perf_counter()
    args = [sys.executable, "-m", "edge", "export", "--config", str(config), "--camera", "cam",
            "--from", repr(start), "--to", repr(end), "-o", output]  # fmt: skip
    with open(os.devnull, "wb") as sink:
        result = subprocess.run(
            args, cwd=REPO, stdout=sink if output == "-" else subprocess.PIPE, stderr=subprocess.PIPE
        )
    wall = time.perf_counter() - began
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode != 0:
        raise SystemExit(f"export failed: {result.stderr.decode(errors='replace')}")
    return {"wall_s": wall, "user_s": after.ru_utime - before.ru_utime, "sys_s": after.ru_stime - before.ru_stime}


def main() -> int:
    args = _arguments()
    root = args.dir or Path(tempfile.mkdtemp(prefix="nvr-bench-export-"))
    data = root / "data"
    try:
        clip = _clip(args.size, args.fps, args.bitrate)
        count = round(args.minutes * 6)
        start = float(int(time.time()) - 24 * 3600)
        one = write_segments(root / "scratch", "cam", clip, start, segment_s=float("inf"))[0]
        seconds = one[2] - one[1]
        repeat_segment(data, "cam", root / "scratch" / "recordings" / one[0], start, count, seconds, link=False)
        size = sum(p.stat().st_size for p in (data / "recordings").rglob("*.mp4"))
        config = root / "edge.yaml"
        config.write_text(f"box: {{id: bench, data_dir: {data}}}\ncameras:\n  cam: {{url: 'rtsp://127.0.0.1:1/x'}}\n")
        end = start + count * seconds
        print(
            f"{count} segments of {seconds:g} s ({args.size} {args.fps} fps, {args.bitrate}bit/s): {size / 1e9:.2f} GB"
        )
        print(f"nproc {os.cpu_count()}, load {open('/proc/loadavg').read().split()[0]}")
        results = []
        for run in range(args.runs):
            for target in ("file", "stdout"):
                output = str(root / "out.mp4") if target == "file" else "-"
                figures = _run(config, start, end, output, args.drop_caches)
                for leftover in root.glob("out.mp4*"):
                    leftover.unlink()
                figures |= {"run": run + 1, "to": target, "mb_per_s": size / 1e6 / figures["wall_s"]}
                results.append(figures)
                print(
                    f"run {run + 1} to {target:6}: {figures['wall_s']:5.1f} s wall, {figures['user_s']:4.1f} s user, "
                    f"{figures['sys_s']:4.1f} s sys, {figures['mb_per_s']:5.0f} MB/s"
                )
        if args.json:
            print(json.dumps({"segments": count, "bytes": size, "runs": results}))
    finally:
        if args.dir is None:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
