"""The scaling table (Markdown) and plot (PNG) from bench_cameras.py's JSON.

The plot is drawn with OpenCV, already a dependency, rather than matplotlib, which
would be a new one for a single picture: two panels, CPU and RSS against the number
of cameras, one line per process.

  .venv/bin/python scripts/bench_report.py docs/bench-scaling.json --png docs/scaling.png
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from pathlib import Path
from typing import Any

import cv2
import numpy as np

WHITE, BLACK, GREY = (255, 255, 255), (0, 0, 0), (200, 200, 200)
# BGR
SERIES = {
    "nvr-edge busy": (180, 90, 20),
    "nvr-edge idle": (230, 170, 90),
    "ffmpeg floor (busy)": (40, 40, 40),
    "motion busy": (30, 30, 200),
    "motion idle": (120, 120, 240),
    "nvr-edge": (180, 90, 20),
    "motion": (30, 30, 200),
}


def _p95(values: list[float]) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]


def table(runs: list[dict[str, Any]]) -> str:
    """One row per camera count: CPU (% of one core), ratios, RSS, skipped frames, latency.

    "w/o rec." is the daemon without its recording threads, against the floor (which
    records nothing): the issue gives recording its own allowance (10 % of a core)."""
    head = (
        "| cameras | nvr-edge busy | nvr-edge idle | recording (busy) | floor busy | floor idle | motion busy "
        "| motion idle | ours/floor busy | ours/floor idle | w/o rec. / floor busy | w/o rec. / floor idle "
        "| ours/motion busy | ours/motion idle | RSS nvr-edge | RSS/camera | RSS motion | fps_detect busy (min) "
        "| skipped | latency p95 | other CPU |"
    )
    rows = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in sorted(runs, key=lambda r: r["cameras"]):
        b, i = r["cpu_busy"], r["cpu_idle"]
        mb = 1024 * 1024

        def ratio(a: float | None, c: float | None) -> str:
            return f"{a / c:.2f}x" if a is not None and c else "-"

        rec_b, rec_i = b.get("daemon:record", 0.0), i.get("daemon:record", 0.0)
        fps = list(r["fps_detect_busy"].values())
        rows.append(
            f"| {r['cameras']} | {b['daemon']:.1f} % | {i['daemon']:.1f} % | {rec_b:.1f} % "
            f"| {b.get('floor', math.nan):.1f} % | {i.get('floor', math.nan):.1f} % "
            f"| {b.get('motion', math.nan):.1f} % | {i.get('motion', math.nan):.1f} % "
            f"| {ratio(b['daemon'], b.get('floor'))} | {ratio(i['daemon'], i.get('floor'))} "
            f"| {ratio(b['daemon'] - rec_b, b.get('floor'))} | {ratio(i['daemon'] - rec_i, i.get('floor'))} "
            f"| {ratio(b['daemon'], b.get('motion'))} | {ratio(i['daemon'], i.get('motion'))} "
            f"| {r['rss'].get('daemon', 0) / mb:.0f} MB | {r['rss'].get('daemon', 0) / mb / r['cameras']:.1f} MB "
            f"| {r['rss'].get('motion', 0) / mb:.0f} MB | {min(fps) if fps else math.nan:.2f} "
            f"| {sum(r['frames_skipped'].values())} | {_p95(r['latencies']):.2f} s ({len(r['latencies'])}) "
            f"| {statistics.fmean([b.get('other', 0), i.get('other', 0)]):.0f} % |"
        )
    return "\n".join(rows)


def _panel(
    img: np.ndarray,
    box: tuple[int, int, int, int],
    xs: list[int],
    series: dict[str, list[float]],
    title: str,
    unit: str,
) -> None:
    """One line chart inside `box` (x, y, w, h) with axes, ticks and a legend."""
    x0, y0, w, h = box
    left, bottom = x0 + 70, y0 + h - 45
    right, top = x0 + w - 20, y0 + 40
    values = [v for vs in series.values() for v in vs if not math.isnan(v)]
    ymax = max(values) * 1.1 if values else 1.0
    step = 10 ** math.floor(math.log10(ymax / 4)) if ymax > 0 else 1
    step *= 5 if ymax / step > 20 else 2 if ymax / step > 8 else 1
    font = cv2.FONT_HERSHEY_SIMPLEX
    cv2.putText(img, title, (left, y0 + 25), font, 0.6, BLACK, 1, cv2.LINE_AA)
    xmax = max(xs)

    def px(x: float, y: float) -> tuple[int, int]:
        return int(left + (right - left) * x / xmax), int(bottom - (bottom - top) * y / ymax)

    tick = 0.0
    while tick <= ymax:
        _, ty = px(0, tick)
        cv2.line(img, (left, ty), (right, ty), GREY, 1)
        cv2.putText(img, f"{tick:g}", (x0 + 10, ty + 5), font, 0.45, BLACK, 1, cv2.LINE_AA)
        tick += step
    for x in xs:
        tx, _ = px(x, 0)
        cv2.line(img, (tx, bottom), (tx, bottom + 5), BLACK, 1)
        cv2.putText(img, str(x), (tx - 8, bottom + 22), font, 0.45, BLACK, 1, cv2.LINE_AA)
    cv2.line(img, (left, bottom), (right, bottom), BLACK, 1)
    cv2.line(img, (left, bottom), (left, top), BLACK, 1)
    cv2.putText(img, "cameras", (right - 70, bottom + 40), font, 0.45, BLACK, 1, cv2.LINE_AA)
    cv2.putText(img, unit, (x0 + 10, top - 12), font, 0.45, BLACK, 1, cv2.LINE_AA)
    for k, (name, ys) in enumerate(series.items()):
        colour = SERIES.get(name, (0, 150, 0))
        points = [px(x, y) for x, y in zip(xs, ys, strict=True) if not math.isnan(y)]
        for a, b in zip(points, points[1:], strict=False):
            cv2.line(img, a, b, colour, 2, cv2.LINE_AA)
        for p in points:
            cv2.circle(img, p, 4, colour, -1, cv2.LINE_AA)
        ly = top + 8 + 20 * k
        cv2.line(img, (left + 15, ly), (left + 40, ly), colour, 2, cv2.LINE_AA)
        cv2.putText(img, name, (left + 48, ly + 5), font, 0.45, BLACK, 1, cv2.LINE_AA)


def plot(runs: list[dict[str, Any]], path: Path) -> None:
    runs = sorted(runs, key=lambda r: r["cameras"])
    xs = [r["cameras"] for r in runs]
    cpu = {
        "nvr-edge busy": [r["cpu_busy"]["daemon"] for r in runs],
        "nvr-edge idle": [r["cpu_idle"]["daemon"] for r in runs],
        "ffmpeg floor (busy)": [r["cpu_busy"].get("floor", math.nan) for r in runs],
        "motion busy": [r["cpu_busy"].get("motion", math.nan) for r in runs],
        "motion idle": [r["cpu_idle"].get("motion", math.nan) for r in runs],
    }
    mb = 1024 * 1024
    rss = {
        "nvr-edge busy": [r["rss"].get("daemon", 0) / mb for r in runs],
        "motion busy": [r["rss"].get("motion", 0) / mb or math.nan for r in runs],
    }
    img = np.full((440, 1200, 3), 255, np.uint8)
    _panel(img, (0, 0, 640, 440), xs, cpu, "CPU (user+sys), % of one core", "%")
    _panel(img, (640, 0, 560, 440), xs, {"nvr-edge": rss["nvr-edge busy"], "motion": rss["motion busy"]}, "RSS", "MB")
    cv2.imwrite(str(path), img)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("json", type=Path, help="bench_cameras.py --json output")
    parser.add_argument("--png", type=Path, help="write the plot here")
    args = parser.parse_args()
    runs = json.loads(args.json.read_text())
    print(table(runs))
    if args.png:
        plot(runs, args.png)
    return 0


if __name__ == "__main__":
    sys.exit(main())
