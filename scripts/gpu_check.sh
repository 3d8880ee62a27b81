#!/usr/bin/env bash
# One prepared GPU check (README, "GPU check"): on a machine with one NVIDIA GPU, a CUDA build of
# torch and no internet, in one command of at most 10 minutes:
#
#   1. install the carried wheels (scripts/gpu_requirements.txt: gsplat, diffusers, transformers and
#      what they need) offline from WHEELS (default: ./wheels);
#   2. the CUDA tests: gsplat rasterisation against our CPU renderer (> 40 dB) and its gradients;
#   3. bench_render.py on CUDA (short);
#   4. the full-size random-weight models, written on this machine by make_full_size_models.py
#      (nothing large travels), and a full `generate` job at the `standard` preset on them, with
#      per-stage wall time and peak VRAM.
#
#   scripts/gpu_check.sh [WHEELS]          # env: OUT (default /tmp/dp4d-gpu-check), PYTHON (default python3)
#
# The last line is `RESULT {json}` with static_s, video_s, dynamic_s, total_s, peak_vram_gb,
# gsplat_psnr_db. Random weights give noise, not quality: only time and memory mean anything.
set -euo pipefail
cd "$(dirname "$0")/.."
WHEELS=${1:-${WHEELS:-wheels}}
OUT=${OUT:-/tmp/dp4d-gpu-check}
PY=${PYTHON:-python3}
export PYTHONPATH="$PWD/backend${PYTHONPATH:+:$PYTHONPATH}"
export HF_HUB_OFFLINE=1 OMP_NUM_THREADS=${OMP_NUM_THREADS:-4}
mkdir -p "$OUT"
started=$(date +%s)
log() { echo "[gpu_check $(( $(date +%s) - started ))s] $*"; }

"$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'torch has no CUDA device here (torch ' + torch.__version__ + ')')"
log "torch $("$PY" -c 'import torch; print(torch.__version__, torch.version.cuda, torch.cuda.get_device_name(0))')"

# 1. Carried wheels, offline. pip keeps what is already installed at the pinned version.
if [ -d "$WHEELS" ]; then
  log "installing from $WHEELS"
  "$PY" -m pip install --quiet --no-index --find-links "$WHEELS" -r scripts/gpu_requirements.txt
else
  log "no wheel folder $WHEELS: using the packages already installed"
fi
"$PY" -c "import gsplat, diffusers, transformers; print('gsplat', gsplat.__version__, 'diffusers', diffusers.__version__, 'transformers', transformers.__version__)"

# 2. CUDA tests (the first gsplat call compiles its kernels unless the wheel carries them).
log "CUDA tests"
"$PY" -m pytest tests/test_render_cuda.py -q -x -p no:cacheprovider 2>&1 | tail -n 5
gsplat_psnr=$("$PY" - <<'EOF'
import torch
from dynapose4d.cameras import Cameras
from dynapose4d.evaluation.metrics import psnr
from dynapose4d.evaluation.scenes import sphere_scene
from dynapose4d.render import render
g = sphere_scene(20_000)
cams = Cameras.orbit(15.0, torch.tensor([0.0, 120.0, 240.0]), 2.0, width=256)
with torch.no_grad():
    cpu = render(g, cams, 1.0, backend="torch").rgb
    gpu = render(g.to("cuda"), cams.to("cuda"), 1.0, backend="gsplat").rgb.cpu()
print(round(psnr(gpu, cpu), 2))
EOF
)
log "gsplat vs CPU renderer: $gsplat_psnr dB"

# 3. Renderer benchmark on CUDA (short).
log "bench_render"
"$PY" scripts/bench_render.py --device cuda --backend gsplat --quick 2>&1 | tail -n 12 || log "bench_render failed (see above)"

# 4. Full-size random-weight models (~9 GB of disk, ~3 minutes), then one generate job.
if [ ! -d "$OUT/models/hf-cache/models--stabilityai--stable-video-diffusion-img2vid" ]; then
  log "writing the full-size models"
  "$PY" scripts/make_full_size_models.py "$OUT/models" --models zero123-xl,svd | grep -v "^Writing" || true
fi
export HF_HUB_CACHE="$OUT/models/hf-cache"
log "generate (standard preset) on the full-size models"
"$PY" - "$OUT/job" "$gsplat_psnr" <<'EOF'
import json, shutil, sys, time
from pathlib import Path
import torch
from dynapose4d.cameras import Cameras
from dynapose4d.evaluation.articulated import make_articulated
from dynapose4d.events import StageEvent
from dynapose4d.imaging.images import to_pil
from dynapose4d.pipeline import run_job, write_job
from dynapose4d.render import render

job, gsplat_psnr = Path(sys.argv[1]), float(sys.argv[2])
shutil.rmtree(job, ignore_errors=True)
(job / "inputs").mkdir(parents=True)
obj = make_articulated("lamp")
with torch.no_grad():
    out = render(obj.static, Cameras.orbit(0.0, 0.0, 2.0, width=256), 1.0)
to_pil(out.rgb[None])[0].save(job / "inputs" / "input.png")
write_job(job, "generate", {"preset": "standard", "device": "cuda", "previews": False}, {"image": "input.png"})
# Phases from the job's own events: static = start to the video step's start (Zero-1-to-3 load and
# the static stage), video = the video step (SVD load and sampling), dynamic = the rest (keypoints,
# Zero-1-to-3 load again, the dynamic stage, outputs).
marks = {}
def emit(event):
    if isinstance(event, StageEvent):
        marks.setdefault((event.stage, event.status), time.perf_counter())
        print(f"  {event.stage} {event.status} {event.message}", flush=True)
torch.cuda.reset_peak_memory_stats()
t0 = time.perf_counter()
summary = run_job(job, emit)
t_end = time.perf_counter()
peak = torch.cuda.max_memory_allocated() / 2**30
v0, v1 = marks.get(("video", "started"), float("nan")), marks.get(("video", "finished"), float("nan"))
times = {"static": v0 - t0, "video": v1 - v0, "dynamic": t_end - v1}
total = t_end - t0
print(f"{'phase':<12}{'wall s':>10}")
for k, v in times.items():
    print(f"{k:<12}{v:>10.1f}")
print(f"{'total':<12}{total:>10.1f}   peak VRAM {peak:.2f} GB (torch allocator)   status {summary.get('status')}")
result = {"static_s": round(times["static"], 1), "video_s": round(times["video"], 1),
          "dynamic_s": round(times["dynamic"], 1), "total_s": round(total, 1),
          "peak_vram_gb": round(peak, 2), "gsplat_psnr_db": gsplat_psnr, "status": summary.get("status")}
print("RESULT " + json.dumps(result))
EOF
