"""Judge a benchmark report folder's speed and memory rows against this project's performance targets.

The benchmark (``lowlightdenoise benchmark``) only measures; the targets are the project's (issue 5), so
they are judged here, beside the committed reports, and written next to them:

    python benchmarks/speed_targets.py reports/cpu       # writes reports/cpu/targets.md and targets.json

Targets: default-2d at least 0.5 Mvoxel/s on the CPU; on a GPU at least 1 Gvoxel/s and the speed volume
file to file in under 3 s; peak RAM at most 3 x the volume's size (as float32) + 2 GB for every method;
peak GPU memory at most 4 GB. Printed as met / NOT met, never asserted.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

from LowLightDenoiseLib.tables import markdown_table, number, write_text_atomic

TARGET_MODEL = "default-2d"
TARGET_CPU_VOXELS_PER_S = 0.5e6
TARGET_GPU_VOXELS_PER_S = 1e9
TARGET_GPU_END_TO_END_S = 3.0
TARGET_GPU_MEMORY_BYTES = 4 * 1024 ** 3


def judge(rows: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """One verdict per measured speed row (failed rows are skipped)."""
    out = []
    for row in rows:
        if row.get("error"):
            continue
        limit_mb = (3 * row["volume_bytes"] + 2 * 1024 ** 3) / 1024 ** 2
        vol_mb = row["volume_bytes"] / 1024 ** 2
        item: Dict[str, Any] = {
            "method": row["method"], "device": row["device"],
            "ram": {"peak_mb": row["peak_rss_mb"], "limit_mb": round(limit_mb, 1), "met": row["peak_rss_mb"] <= limit_mb,
                    "rule": f"3 x {vol_mb:.0f} MB (the volume as float32) + 2048 MB"}}
        if row["method"] == TARGET_MODEL and row["device"] == "cpu":
            item["speed"] = {"mvoxels_per_s": row["mvoxels_per_s"], "target": TARGET_CPU_VOXELS_PER_S / 1e6,
                             "met": row["voxels_per_s"] >= TARGET_CPU_VOXELS_PER_S}
        if row["device"].startswith("cuda"):
            item["gpu_memory"] = {"peak_mb": row.get("peak_gpu_mb"), "target_mb": TARGET_GPU_MEMORY_BYTES / 1024 ** 2,
                                  "met": (row.get("peak_gpu_mb") or 0) <= TARGET_GPU_MEMORY_BYTES / 1024 ** 2}
            if row["method"] == TARGET_MODEL:
                item["speed"] = {"mvoxels_per_s": row["mvoxels_per_s"], "target": TARGET_GPU_VOXELS_PER_S / 1e6,
                                 "met": row["voxels_per_s"] >= TARGET_GPU_VOXELS_PER_S}
                item["end_to_end"] = {"seconds": row["end_to_end_s"], "target": TARGET_GPU_END_TO_END_S,
                                      "met": row["end_to_end_s"] <= TARGET_GPU_END_TO_END_S}
        out.append(item)
    return out


def render(verdicts: List[Dict[str, Any]], command: Optional[str] = None) -> str:
    """The verdicts as a Markdown table (one row per method, device and target)."""
    rows = []
    for t in verdicts:
        for key, label in (("speed", "throughput"), ("end_to_end", "end to end"), ("ram", "peak RAM"),
                           ("gpu_memory", "peak GPU memory")):
            if key not in t:
                continue
            v = t[key]
            if key == "speed":
                text = f"{number(v['mvoxels_per_s'], 3)} Mvoxel/s vs >= {v['target']:g}"
            elif key == "end_to_end":
                text = f"{number(v['seconds'], 2)} s vs <= {v['target']:g} s"
            elif key == "ram":
                text = f"{number(v['peak_mb'], 0)} MB vs <= {number(v['limit_mb'], 0)} MB ({v['rule']})"
            else:
                text = f"{number(v['peak_mb'], 0)} MB vs <= {v['target_mb']:g} MB"
            rows.append([t["method"], t["device"], label, text, "met" if v["met"] else "NOT met"])
    if not any(t["method"] == TARGET_MODEL for t in verdicts):
        rows.append([TARGET_MODEL, "cpu", "throughput", "not measured (model not in this run)", "-"])
    lines = ["# Performance targets of issue 5 (measured, not asserted)", ""]
    if command:
        lines += [f"Judged from `speed.json` of the report written by `{command}` (see `report.md`).", ""]
    lines += [markdown_table(["method", "device", "target", "measured", "result"], rows), ""]
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("report", type=Path, help="benchmark report folder (holding speed.json)")
    args = parser.parse_args(argv)
    speed = args.report / "speed.json"
    if not speed.is_file():
        print(f"speed_targets: error: {speed} does not exist (run the benchmark with its speed part first).",
              file=sys.stderr)
        return 2
    verdicts = judge(json.loads(speed.read_text()))
    summary = args.report / "summary.json"
    command = json.loads(summary.read_text()).get("command") if summary.is_file() else None
    text = render(verdicts, command)
    write_text_atomic(args.report / "targets.json", json.dumps(verdicts, indent=1))
    write_text_atomic(args.report / "targets.md", text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
