#!/usr/bin/env python3
"""Benchmark of the add-on's scene import (real bpy, no UI): what a user waits for when a
snapshot arrives.

For each size it imports a synthetic job (``tests.addon_fixtures.make_sequence``: an asymmetric
moving cloud with a 5-keypoint rig) into an empty scene, then applies newer snapshots of the
same size in place, as the live import does while the backend trains. Measured: the first
import (new mesh, shape keys, attributes, Geometry Nodes display, empties, baked armature,
camera), the median in-place update, and the growth of the process's peak memory during the
first import (Linux: the peak is reset first; elsewhere the lifetime peak is used), and the
time to show another frame afterwards (depsgraph: shape-key mix and the Geometry Nodes display).

Goals (issue 7): <= 2 s to import 100k Gaussians x 25 frames, <= 0.5 s per live update.

    python scripts/bench_import.py [--sizes 10000x25,100000x25] [--updates 3]

The last line is ``RESULT {json}`` with ``import_s_100k_25`` and ``update_s`` (the median
update at 100k x 25), their ratios to the goals, and the peak memory.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

GOAL_IMPORT_S = 2.0
GOAL_UPDATE_S = 0.5


def _rss_mb(field: str) -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def _reset_peak() -> bool:
    try:  # Linux: "5" resets the peak resident set size (VmHWM) to the current one
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _peak_mb() -> float:
    hwm = _rss_mb("VmHWM")
    if hwm is not None:
        return hwm
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024.0 * 1024.0) if sys.platform == "darwin" else peak / 1024.0


def measure(count: int, frames: int, updates: int) -> dict:
    import bpy

    from blender_addon.scene import importer
    from tests.addon_fixtures import make_sequence

    bpy.ops.wm.read_factory_settings(use_empty=True)
    sequences = [make_sequence(count=count, frames=frames, seed=v, version=v + 1) for v in range(updates + 1)]
    _reset_peak()
    before = _rss_mb("VmRSS") or _peak_mb()
    t0 = time.perf_counter()
    importer.import_sequence(bpy.context, sequences[0], "bench")
    import_s = time.perf_counter() - t0
    peak_mb = _peak_mb() - before
    update_times = []
    for seq in sequences[1:]:
        t0 = time.perf_counter()
        importer.import_sequence(bpy.context, seq, "bench")
        update_times.append(time.perf_counter() - t0)
    # What the viewport then pays per frame change: shape-key mix + Geometry Nodes display.
    scene = bpy.context.scene
    frame_times = []
    for frame in (2, frames // 2, frames):
        t0 = time.perf_counter()
        scene.frame_set(frame)
        bpy.context.evaluated_depsgraph_get()
        frame_times.append(time.perf_counter() - t0)
    objects = len(bpy.data.objects)
    bpy.ops.wm.read_factory_settings(use_empty=True)
    return {
        "count": count,
        "frames": frames,
        "import_s": import_s,
        "update_s": statistics.median(update_times) if update_times else float("nan"),
        "peak_mb": peak_mb,
        "frame_s": statistics.median(frame_times),
        "objects": objects,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000x25,100000x25", help="GAUSSIANSxFRAMES, comma-separated")
    parser.add_argument("--updates", type=int, default=3, help="live updates timed per size")
    args = parser.parse_args(argv)
    sizes = [tuple(int(v) for v in s.lower().split("x")) for s in args.sizes.split(",")]
    if (100_000, 25) not in sizes:
        sizes.append((100_000, 25))

    import bpy

    print(f"bpy {bpy.app.version_string}; {args.updates} updates per size", flush=True)
    print(f"{'gaussians':>10} {'frames':>6} {'import_s':>9} {'update_s':>9} {'frame_s':>8} {'peak_mb':>8} {'objects':>7}")
    rows = []
    for count, frames in sizes:
        row = measure(count, frames, args.updates)
        rows.append(row)
        print(f"{count:>10} {frames:>6} {row['import_s']:>9.3f} {row['update_s']:>9.3f} {row['frame_s']:>8.3f} {row['peak_mb']:>8.0f} {row['objects']:>7}",
              flush=True)
    main_row = next(r for r in rows if (r["count"], r["frames"]) == (100_000, 25))
    ratio_import = main_row["import_s"] / GOAL_IMPORT_S
    ratio_update = main_row["update_s"] / GOAL_UPDATE_S
    print(f"100k x 25: import {ratio_import:.2f}x of the {GOAL_IMPORT_S:g} s goal, "
          f"update {ratio_update:.2f}x of the {GOAL_UPDATE_S:g} s goal")
    result = {
        "import_s_100k_25": round(main_row["import_s"], 4),
        "update_s": round(main_row["update_s"], 4),
        "peak_mb_100k_25": round(main_row["peak_mb"], 1),
        "frame_change_s_100k": round(main_row["frame_s"], 4),
        "import_goal_ratio": round(ratio_import, 3),
        "update_goal_ratio": round(ratio_update, 3),
        "bpy": bpy.app.version_string,
    }
    print("RESULT " + json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
