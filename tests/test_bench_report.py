"""The benchmark's arithmetic: the scaling table's ratios, the plot, and the targets'
verdicts, from figures given here (the benchmarks themselves print timings, never tested)."""

from __future__ import annotations

import sys
from pathlib import Path

import cv2

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

from bench_cameras import Result, targets  # noqa: E402
from bench_report import plot, table  # noqa: E402


def run(cameras: int, daemon_busy: float, record_busy: float, floor_busy: float) -> dict:
    mb = 1024 * 1024
    return {
        "cameras": cameras,
        "cpu_busy": {"daemon": daemon_busy, "daemon:record": record_busy, "floor": floor_busy, "motion": 40.0},
        "cpu_idle": {"daemon": 8.0, "daemon:record": 5.0, "floor": 6.0, "motion": 16.0},
        "rss": {"daemon": 300 * mb, "motion": 600 * mb},
        "fps_detect_busy": {"cam0": 4.9, "cam1": 5.0},
        "frames_skipped": {"cam0": 0, "cam1": 2},
        "latencies": [0.5, 0.6, 0.7],
    }


def test_table_ratios_and_rows_in_camera_order() -> None:
    text = table([run(24, 30.0, 6.0, 10.0), run(4, 6.0, 1.0, 2.0)])
    rows = text.splitlines()
    assert len(rows) == 4 and rows[2].startswith("| 4 |") and rows[3].startswith("| 24 |")
    cells = [c.strip() for c in rows[3].strip("|").split("|")]
    head = [c.strip() for c in rows[0].strip("|").split("|")]
    value = dict(zip(head, cells, strict=True))
    assert value["ours/floor busy"] == "3.00x"
    assert value["w/o rec. / floor busy"] == "2.40x"  # (30 - 6) / 10
    assert value["w/o rec. / floor idle"] == "0.50x"  # (8 - 5) / 6
    assert value["ours/motion idle"] == "0.50x"
    assert value["RSS/camera"] == "12.5 MB" and value["skipped"] == "2"


def test_plot_is_a_png(tmp_path: Path) -> None:
    path = tmp_path / "scaling.png"
    plot([run(1, 2.0, 0.5, 0.5), run(8, 10.0, 2.0, 3.0)], path)
    img = cv2.imread(str(path))
    assert img is not None and img.shape[:2] == (440, 1200)
    assert (img < 128).any()  # something is drawn


def test_targets_say_met_and_missed() -> None:
    res = Result(cameras=24, loops=1, idle_after=None)
    res.cpu_busy = {"daemon": 26.0, "daemon:detect": 18.0, "floor": 15.0, "recfloor": 5.0, "motion": 40.0}
    res.cpu_idle = {"daemon": 20.0, "daemon:detect": 12.0, "floor": 14.0, "recfloor": 5.0, "motion": 25.0}
    res.rss = {"daemon": 400 * 1024 * 1024}
    res.frames_skipped = {"cam0": 0}
    res.latencies = [0.5] * 18 + [1.5] * 2
    lines = "\n".join(targets(res))
    assert "[met] no frames skipped" in lines
    assert "[MISSED] event latency p95 1.50 s" in lines  # the two slowest of 20 reach the p95
    assert "[MISSED] idle: daemon 20.0 % <= 0.75 x motion 25.0 % (0.80x)" in lines
    assert "[met] busy: daemon 26.0 % <= 0.75 x motion 40.0 % (0.65x)" in lines
    assert "[MISSED] busy: daemon 26.0 % <= 1.2 x job floor 20.0 % (decode 15.0 + record 5.0) (1.30x)" in lines
    assert "[met] RSS 400 MB <= 150 MB + 10 MB per camera = 390 MB" not in lines
    assert "[MISSED] RSS 400 MB <= 150 MB + 10 MB per camera = 390 MB" in lines
