#!/usr/bin/env python3
"""Renderer benchmark on the fixed scene of DESIGN.md §6.

Forward + backward time (projection, SH, rasterisation), Gaussian-pixel pairs per second and
peak memory for N Gaussians in {1k, 5k, 20k, 100k} at 128^2 and 256^2, for the renderer's
backend (``--backend``, default ``auto``: the numba tile rasteriser on the CPU), our PyTorch
pair rasteriser and, where it fits in memory, the dense reference (all pixels x all Gaussians),
all measured in the same run. Each configuration runs in a fresh subprocess so that its peak
memory is its own; a tiny render before the measurement loads the compiled kernels, so their
one-off JIT or cache loading counts in neither time nor peak.

The last line is ``RESULT {json}`` with the 20k / 256^2 figures of the chosen backend, the
PyTorch path's time there (``torch_fwd_bwd_s``) and the chosen backend's speedup over the dense
reference at 5k / 128^2.

    python scripts/bench_render.py [--quick] [--sizes 5000,20000] [--threads N] [--backend auto|numba|torch|gsplat] [--device cpu|cuda]

``--sizes`` measures only those Gaussian counts (the RESULT then reports 20k if measured, else
the largest, and the dense speedup at the smallest).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import statistics
import time

SIZES = [1_000, 5_000, 20_000, 100_000]
RESOLUTIONS = [128, 256]
DENSE_MAX_BYTES = 6e9  # skip the dense reference when its [pixels, N] temporaries exceed this


def _run(args):
    kind, n, res, reps, threads, device = args  # kind: a render() backend name, or "dense"
    import torch

    from dynapose4d.cameras import Cameras
    from dynapose4d.render import render
    from dynapose4d.render.pairs import _contributing_pairs
    from dynapose4d.render.projection import project_gaussians
    from dynapose4d.render.reference import rasterize_dense
    from dynapose4d.evaluation.scenes import sphere_scene

    torch.set_num_threads(threads)
    backend = None
    if kind != "dense":  # load the kernels (JIT cache) before the peak-memory baseline
        backend = render(sphere_scene(8).to(device), Cameras.orbit(0.0, 0.0, 2.0, width=16, device=device), backend=kind).backend
    g = sphere_scene(n).to(device).requires_grad_()
    cam = Cameras.orbit(0.0, 0.0, 2.0, width=res, device=device)
    weights = torch.rand(res, res, 3, generator=torch.Generator().manual_seed(0)).to(device)
    cuda = torch.device(device).type == "cuda"

    def step():
        if kind != "dense":
            rgb = render(g, cam, 1.0, backend=kind).rgb
        else:
            p = project_gaussians(g.means, g.quats, g.scales, g.opacities, cam.viewmats[None], cam.Ks[None], res, res)
            rgb, _, _ = rasterize_dense(
                p.means2d, p.conics, g.opacities[None], g.rgb[None], p.depths, (p.radii > 0).all(-1), res, res
            )
        (rgb * weights).sum().backward()

    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if cuda:  # on CUDA the peak is the allocator's, above what the scene already holds
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        baseline_cuda = torch.cuda.memory_allocated()
    step()  # warm-up (also the peak-memory sample)
    peak_mb = max(0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - baseline) / 1024
    if cuda:
        peak_mb = (torch.cuda.max_memory_allocated() - baseline_cuda) / 2**20
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        step()
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    with torch.no_grad():
        p = project_gaussians(g.means, g.quats, g.scales, g.opacities, cam.viewmats[None], cam.Ks[None], res, res)
        feats = torch.cat([p.means2d, p.conics, g.opacities[None, :, None]], -1)
        pairs = len(_contributing_pairs(feats, p.radii, p.depths, res, res, 10**9)[0])
    return {"fwd_bwd_s": statistics.median(times), "peak_mb": peak_mb, "pairs": pairs, "backend": backend}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer repetitions, skip 100k")
    ap.add_argument("--threads", type=int, default=2, help="CPU threads, torch's and numba's (the target has 2 cores)")
    ap.add_argument("--backend", default="auto", choices=["auto", "numba", "torch", "gsplat"], help="the backend measured")
    ap.add_argument("--sizes", help="comma list of Gaussian counts (default: 1000,5000,20000,100000; --quick drops 100k)")
    ap.add_argument("--device", default="cpu", help="cpu (default) or cuda (with --backend gsplat: gsplat against our torch path on the GPU)")
    args = ap.parse_args()
    reps = 2 if args.quick else 5
    ctx = mp.get_context("spawn")
    rows = []
    sizes = [int(n) for n in args.sizes.split(",")] if args.sizes else (SIZES if not args.quick else SIZES[:3])
    for n in sizes:
        for res in RESOLUTIONS:
            configs = [(args.backend, n, res)] + ([("torch", n, res)] if args.backend != "torch" else [])
            if res * res * n * 4 * 12 < DENSE_MAX_BYTES:
                configs.append(("dense", n, res))
            for kind, n_, res_ in configs:
                with ctx.Pool(1) as pool:
                    r = pool.apply(_run, ((kind, n_, res_, reps if n_ < 100_000 else 2, args.threads, args.device),))
                r.update(kind=kind, n=n_, res=res_, pairs_per_s=r["pairs"] / r["fwd_bwd_s"])
                rows.append(r)
                name = kind if kind == "dense" or kind == r["backend"] else f"{kind}:{r['backend']}"
                print(
                    f"{name:>10} N={n_:>7,} {res_:>3}^2  fwd+bwd {r['fwd_bwd_s'] * 1000:8.1f} ms  "
                    f"peak {r['peak_mb']:7.0f} MB  pairs {r['pairs']:>10,}  {r['pairs_per_s'] / 1e6:6.2f} M pairs/s",
                    flush=True,
                )

    def find(kind, n, res):
        return next((r for r in rows if (r["kind"], r["n"], r["res"]) == (kind, n, res)), None)

    main = args.backend
    used = next(r["backend"] for r in rows if r["kind"] == main)
    label = main if main == used else f"{main} ({used})"
    print()
    print(
        f"| N | res | {label} fwd+bwd (ms) | peak (MB) | M pairs/s | torch fwd+bwd (ms) | torch peak (MB) "
        "| vs torch | dense fwd+bwd (ms) | dense peak (MB) | speedup vs dense |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        if r["kind"] != main:
            continue
        t, d = find("torch", r["n"], r["res"]), find("dense", r["n"], r["res"])
        torch_cols = f"{t['fwd_bwd_s'] * 1000:.0f} | {t['peak_mb']:.0f} | {t['fwd_bwd_s'] / r['fwd_bwd_s']:.1f}x"
        dense = f"{d['fwd_bwd_s'] * 1000:.0f} | {d['peak_mb']:.0f} | {d['fwd_bwd_s'] / r['fwd_bwd_s']:.1f}x" if d else "- | - | -"
        print(
            f"| {r['n']:,} | {r['res']} | {r['fwd_bwd_s'] * 1000:.0f} | {r['peak_mb']:.0f} | "
            f"{r['pairs_per_s'] / 1e6:.2f} | {torch_cols} | {dense} |"
        )
    n_main = 20_000 if 20_000 in sizes else max(sizes)
    n_dense = 5_000 if 5_000 in sizes else min(sizes)
    main_row, torch_row = find(main, n_main, 256), find("torch", n_main, 256)
    dense, ours = find("dense", n_dense, 128), find(main, n_dense, 128)
    result = {
        "backend": used,
        "n": n_main,
        "res": 256,
        "fwd_bwd_s": round(main_row["fwd_bwd_s"], 4),
        "peak_mb": round(main_row["peak_mb"], 1),
        "pairs_per_s": round(main_row["pairs_per_s"]),
        f"speedup_vs_dense_{n_dense // 1000}k_128": round(dense["fwd_bwd_s"] / ours["fwd_bwd_s"], 2) if dense else None,
        "torch_fwd_bwd_s": round(torch_row["fwd_bwd_s"], 4),
        "threads": args.threads,
        "device": args.device,
    }
    print("RESULT " + json.dumps(result))


if __name__ == "__main__":
    main()
