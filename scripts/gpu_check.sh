#!/usr/bin/env bash
# The GPU check (docs/evaluation.md, "The GPU check"), in phases, for a machine with one NVIDIA
# GPU, a CUDA torch and no internet, whose commands are cut off after 10 minutes. Each phase runs
# under its own `timeout` and prints its own line as soon as it ends:
#
#   RESULT {"phase": NAME, "status": "ok"|"failed"|"timeout"|"skipped", "seconds": S, "result": {...}}
#
# so a run cut off from outside still reports every phase that ended. "result" is what the phase
# measured (also by the time it failed or timed out); a failed phase adds "rc" and "error" (or its
# last output line), a timed-out one "timeout_s", a skipped one "reason".
#
#   scripts/gpu_check.sh 1     install, cuda, build, tests, render, animate   (first command)
#   scripts/gpu_check.sh 2     install, cuda, models, generate                (second command)
#   scripts/gpu_check.sh all | PHASE[,PHASE...]
#
# Phases:
#   install   the carried wheels (scripts/gpu_wheels.py) with pip install --no-deps --no-index
#             --target WORK/site, on PYTHONPATH: nothing installed on the machine is upgraded or
#             shadowed (checked); import check of the backend and what it needs; pip check of the
#             carried packages. Quick when the same wheels were installed before.
#   cuda      the first CUDA call: torch's device, CUDA and nvcc versions. Without a CUDA device
#             it fails with that message and every later phase is skipped.
#   build     gsplat's CUDA kernels compiled on their own, timed (MAX_JOBS = the cores).
#   tests     tests/test_render_cuda.py, and gsplat against our PyTorch and numba renderers (PSNR).
#   render    scripts/bench_render.py --device cuda (gsplat and our PyTorch path on the GPU).
#   animate   scripts/bench_animate.py --device cuda: every frame per step against 4 per step
#             (needs benchmark-dev's crane: BENCHMARK_DEV, else gpu_data/benchmark-dev, else
#             ../shared/benchmark-dev).
#   models    full-size random-weight Zero-1-to-3 XL and SVD written there (make_full_size_models.py).
#   generate  one `generate` job at the `standard` preset on them: wall time and peak VRAM of each
#             stage (written as each stage ends, so a timeout keeps the stages that finished).
#
# Without gsplat's kernels built on this machine (a fresh machine for the second command), the
# phases after it use the PyTorch rasteriser (DYNAPOSE4D_RENDERER=torch) and say so, rather than
# compiling for minutes inside a measurement.
#
# Time: BUDGET_S (default 540) is the command's; each phase gets the smaller of its cap
# (GPU_CHECK_CAP_<phase>, defaults below) and what is left of the budget, and is skipped when less
# than 20 s is left. Environment: WHEELS (default gpu_wheels), WORK (default /tmp/dp4d-gpu-check:
# the install, the kernels, the models and the logs, kept between the two commands when the
# machine is), LOG (every phase's output, appended; default WORK/gpu_check.log), PYTHON (python3);
# relative paths are from the repository root.
# GPU_CHECK_STUB="phase=ok|fail|hang|nocuda,..." replaces phases by stand-ins (tests/test_gpu_check.py).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
ROOT=$PWD
SELF="$ROOT/scripts/gpu_check.sh"

export WHEELS=${WHEELS:-gpu_wheels}
export WORK=${WORK:-/tmp/dp4d-gpu-check}
export LOG=${LOG:-$WORK/gpu_check.log}
export PY=${PYTHON:-python3}
export TARGET=${TARGET:-$WORK/site}
export RESULTS="$WORK/results"
export TORCH_EXTENSIONS_DIR=${TORCH_EXTENSIONS_DIR:-$WORK/torch_extensions}
if [ "${1:-}" != "__phase" ]; then  # (a phase inherits it)
  export PYTHONPATH="$TARGET:$ROOT/backend:$ROOT${PYTHONPATH:+:$PYTHONPATH}"
fi
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
CORES=$(nproc 2>/dev/null || echo 4)
export CORES
PHASES_1="install cuda build tests render animate"
PHASES_2="install cuda models generate"
ALL="install cuda build tests render animate models generate"
declare -A CAP=([install]=90 [cuda]=60 [build]=330 [tests]=90 [render]=120 [animate]=300 [models]=240 [generate]=480)

# ---------------------------------------------------------------------------------------------
# Phase bodies: run as `gpu_check.sh __phase NAME` (under timeout, output to the log). Each writes
# its figures as one JSON object to $RES (rewritten as it goes, so a timeout keeps the latest);
# exit 0 is ok, anything else failed.

gsplat_built() { compgen -G "$TORCH_EXTENSIONS_DIR/*/gsplat_cuda/gsplat_cuda.so" > /dev/null; }

benchmark_dev() {
  local d
  for d in "${BENCHMARK_DEV:-}" "$ROOT/gpu_data/benchmark-dev" "$ROOT/../shared/benchmark-dev"; do
    [ -n "$d" ] && [ -d "$d/crane" ] && { echo "$d"; return 0; }
  done
  return 1
}

result_line() {  # the RESULT line of a script's output (last one)
  grep '^RESULT ' "$1" | tail -n 1 | cut -c8-
}

phase_install() {
  mkdir -p "$TARGET"
  local stamp wheels=()
  shopt -s nullglob
  wheels=("$WHEELS"/*.whl)
  shopt -u nullglob
  stamp=$("$PY" -c 'import sys; print(sys.version.split()[0])')" $(cd "$WHEELS" 2>/dev/null && ls ./*.whl 2>/dev/null | tr '\n' ' ')"
  if [ ${#wheels[@]} -eq 0 ]; then
    echo "no wheels in $WHEELS: the machine's own packages must do (make them with scripts/gpu_wheels.py)"
  elif [ -f "$TARGET/.gpu_check_stamp" ] && [ "$(cat "$TARGET/.gpu_check_stamp")" = "$stamp" ]; then
    echo "the same ${#wheels[@]} wheels are already installed in $TARGET"
  else
    rm -rf "$TARGET" && mkdir -p "$TARGET"
    # --no-deps: exactly the carried wheels, nothing resolved, nothing upgraded; --target: into a
    # folder of its own, never into the machine's site-packages.
    "$PY" -m pip install --no-deps --no-index --no-compile --no-cache-dir --disable-pip-version-check --target "$TARGET" "${wheels[@]}" || return 1
    echo "$stamp" > "$TARGET/.gpu_check_stamp"
  fi
  "$PY" - "${#wheels[@]}" <<'EOF'
import importlib, importlib.metadata as md, json, os, re, subprocess, sys, time
target = os.path.realpath(os.environ["TARGET"])
out = {"python": sys.version.split()[0], "wheels": int(sys.argv[1])}
# Nothing carried may shadow an installed package (a second copy of it earlier on sys.path).
carried, shadowed = [], []
for d in md.distributions():
    where = os.path.realpath(str(d.locate_file("")))
    if where == target:
        carried.append(re.sub(r"[-_.]+", "-", d.metadata["Name"]).lower())
for name in carried:
    others = [d for d in md.distributions() if re.sub(r"[-_.]+", "-", d.metadata["Name"]).lower() == name
              and os.path.realpath(str(d.locate_file(""))) != target]
    if others:
        shadowed.append(f"{name} (installed {others[0].version})")
out["carried"] = sorted(carried)
t0 = time.perf_counter()
missing = []
for mod in ("torch", "numpy", "transformers", "diffusers", "huggingface_hub", "accelerate", "safetensors", "gsplat",
            "fastapi", "uvicorn", "multipart", "fast_simplification", "skimage", "cv2", "numba", "scipy", "onnxruntime",
            "rich", "PIL", "dynapose4d", "dynapose4d.cli.main", "dynapose4d.server.api.app", "dynapose4d.guidance.zero123",
            "dynapose4d.video.clip", "dynapose4d.guidance.svd", "dynapose4d.pipeline", "dynapose4d.mesh.skinned", "dynapose4d.mesh.surface",
            "dynapose4d.render.numba_raster"):
    try:
        importlib.import_module(mod)
    except Exception as exc:
        missing.append(f"{mod}: {type(exc).__name__}: {exc}")
versions = {}
for dist in ("torch", "numpy", "transformers", "diffusers", "huggingface-hub", "accelerate", "safetensors", "gsplat",
             "fastapi", "starlette", "pydantic", "uvicorn", "python-multipart", "fast-simplification", "scikit-image",
             "opencv-python-headless", "numba", "scipy", "onnxruntime", "rich", "pillow", "typing-extensions"):
    try:
        versions[dist] = md.version(dist)
    except md.PackageNotFoundError:
        versions[dist] = None
out["import_s"] = round(time.perf_counter() - t0, 1)
out["versions"] = versions
# pip check over the whole environment, PYTHONPATH included; only lines about carried packages
# count (the machine's own packages are not ours to judge).
check = subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True, text=True).stdout.splitlines()
out["pip_check"] = [l for l in check if re.sub(r"[-_.]+", "-", l.split(" ")[0]).lower() in carried]
if shadowed:
    out["error"] = "carried wheels shadow installed packages: " + ", ".join(shadowed)
elif missing:
    out["error"] = "; ".join(missing)
json.dump(out, open(os.environ["RES"], "w"))
print(json.dumps(out, indent=1))
sys.exit(1 if "error" in out else 0)
EOF
}

phase_cuda() {
  "$PY" - <<'EOF'
import json, os, re, shutil, subprocess, sys
import torch
out = {"torch": torch.__version__, "torch_cuda": torch.version.cuda, "cores": int(os.environ["CORES"])}
nvcc = shutil.which("nvcc") or ("/usr/local/cuda/bin/nvcc" if os.path.exists("/usr/local/cuda/bin/nvcc") else None)
if nvcc:
    m = re.search(r"release (\S+),", subprocess.run([nvcc, "--version"], capture_output=True, text=True).stdout)
    out["nvcc"] = m.group(1) if m else "?"
if not torch.cuda.is_available():
    out["error"] = f"no CUDA device: torch {torch.__version__} (CUDA build {torch.version.cuda}) sees none; nothing after this runs here"
    json.dump(out, open(os.environ["RES"], "w"))
    print(out["error"])
    sys.exit(3)
p = torch.cuda.get_device_properties(0)
out.update(device=p.name, capability=f"{p.major}.{p.minor}", memory_gib=round(p.total_memory / 2**30, 1),
           multiprocessors=p.multi_processor_count)
torch.ones(1, device="cuda").add_(1)  # the first CUDA call proper
json.dump(out, open(os.environ["RES"], "w"))
print(json.dumps(out))
EOF
}

phase_build() {
  export MAX_JOBS=$CORES
  "$PY" - <<'EOF'
import glob, json, os, time
import torch
out = {"max_jobs": int(os.environ["MAX_JOBS"]), "cached": bool(glob.glob(os.path.join(os.environ["TORCH_EXTENSIONS_DIR"], "*", "gsplat_cuda", "gsplat_cuda.so")))}
json.dump(out, open(os.environ["RES"], "w"))
t0 = time.perf_counter()
from gsplat.cuda._backend import _C  # compiles the kernels unless this machine built them before
out["build_s"] = round(time.perf_counter() - t0, 1)
if _C is None:
    out["error"] = "gsplat found no CUDA toolkit (nvcc) to compile with"
else:
    so = glob.glob(os.path.join(os.environ["TORCH_EXTENSIONS_DIR"], "*", "gsplat_cuda", "gsplat_cuda.so"))
    out["so_mib"] = round(os.path.getsize(so[0]) / 2**20, 1) if so else None
json.dump(out, open(os.environ["RES"], "w"))
print(json.dumps(out))
raise SystemExit(1 if "error" in out else 0)
EOF
}

phase_tests() {
  local sel=() note=""
  if ! gsplat_built; then
    sel=(-k "not gsplat"); note="gsplat's kernels are not built here: its tests and PSNR skipped"
    echo "$note"
  fi
  "$PY" -m pytest tests/test_render_cuda.py -q -p no:cacheprovider "${sel[@]}" 2>&1 | tee "$WORK/pytest.out"
  local rc=${PIPESTATUS[0]}
  local summary
  summary=$(grep -E '(passed|failed|error|skipped|deselected)' "$WORK/pytest.out" | tail -n 1 | sed 's/=//g; s/^ *//; s/ *$//')
  NOTE="$note" SUMMARY="$summary" RC=$rc "$PY" - <<'EOF'
import json, os
out = {"pytest": os.environ["SUMMARY"], "renderer": "torch" if os.environ["NOTE"] else "gsplat"}
if os.environ["NOTE"]:
    out["note"] = os.environ["NOTE"]
json.dump(out, open(os.environ["RES"], "w"))
if not os.environ["NOTE"]:
    import torch
    from dynapose4d.cameras import Cameras
    from dynapose4d.evaluation.metrics import psnr
    from dynapose4d.evaluation.scenes import sphere_scene
    from dynapose4d.render import render
    g = sphere_scene(20_000)
    cams = Cameras.orbit(15.0, torch.tensor([0.0, 120.0, 240.0]), 2.0, width=256)
    with torch.no_grad():
        gpu = render(g.to("cuda"), cams.to("cuda"), 1.0, backend="gsplat").rgb.cpu()
        for cpu_backend in ("torch", "numba"):  # our PyTorch rasteriser and the compiled CPU one
            cpu = render(g, cams, 1.0, backend=cpu_backend).rgb
            out[f"gsplat_vs_{cpu_backend}_psnr_db"] = round(float(psnr(gpu, cpu)), 2)
            json.dump(out, open(os.environ["RES"], "w"))
    out["scene"] = "sphere_scene(20000), 3 views at 256^2"
    json.dump(out, open(os.environ["RES"], "w"))
print(json.dumps(out))
if os.environ["RC"] != "0":
    raise SystemExit(1)
EOF
}

phase_render() {
  local backend=gsplat
  gsplat_built || backend=torch
  "$PY" scripts/bench_render.py --device cuda --backend "$backend" --quick --sizes 5000,20000 --threads "$CORES" 2>&1 | tee "$WORK/render.out"
  local rc=${PIPESTATUS[0]} res
  res=$(result_line "$WORK/render.out")
  [ -n "$res" ] && echo "$res" > "$RES"
  return "$rc"
}

phase_animate() {
  local dev
  dev=$(benchmark_dev) || { echo '{"error": "no benchmark-dev crane (BENCHMARK_DEV, gpu_data/benchmark-dev or ../shared/benchmark-dev)"}' > "$RES"; return 1; }
  echo "benchmark-dev: $dev"
  DYNAPOSE4D_BENCHMARK_DEV=$dev OMP_NUM_THREADS=$CORES "$PY" scripts/bench_animate.py --device cuda --after-frames-per-step 4 \
    --iterations "${ANIMATE_ITERATIONS:-500}" --before-iterations "${ANIMATE_ITERATIONS:-500}" --skip profile \
    --out "$WORK/animate" 2>&1 | tee "$WORK/animate.out"
  local rc=${PIPESTATUS[0]} res
  res=$(result_line "$WORK/animate.out")
  [ -n "$res" ] && echo "$res" > "$RES"
  return "$rc"
}

phase_models() {
  local cache="$WORK/models/hf-cache"
  if [ -f "$WORK/models/.done" ]; then
    echo '{"cached": true}' > "$RES"
    echo "the full-size models are already in $WORK/models"
    return 0
  fi
  rm -rf "$WORK/models"
  local t0=$SECONDS
  "$PY" scripts/make_full_size_models.py "$WORK/models" --models zero123-xl,svd || return 1
  touch "$WORK/models/.done"
  echo "{\"write_s\": $((SECONDS - t0)), \"disk_gib\": $(du -sk "$cache" | awk '{printf "%.1f", $1 / 1048576}')}" > "$RES"
}

phase_generate() {
  # scripts/bench_pipeline.py rewrites $RES as each stage ends: a timeout keeps the finished stages.
  HF_HUB_CACHE="$WORK/models/hf-cache" "$PY" scripts/bench_pipeline.py --real --preset standard --device cuda --result "$RES"
}

stub_phase() {  # GPU_CHECK_STUB: phase=ok|fail|hang|nocuda
  case "$1" in
    ok) echo "stub ok"; echo '{"stub": true}' > "$RES" ;;
    fail) echo "stub failure"; return 1 ;;
    hang) echo '{"stub": true, "partial": 1}' > "$RES"; echo "stub hangs"; sleep 600 ;;
    nocuda) echo '{"error": "no CUDA device (stub)"}' > "$RES"; echo "no CUDA device (stub)"; return 3 ;;
    *) echo "unknown stub $1"; return 2 ;;
  esac
}

if [ "${1:-}" = "__phase" ]; then
  export RES="$RESULTS/$2.json"
  rm -f "$RES"
  stubs=${GPU_CHECK_STUB:-}
  for s in ${stubs//,/ }; do
    if [ "${s%%=*}" = "$2" ]; then stub_phase "${s#*=}"; exit $?; fi
  done
  "phase_$2"
  exit $?
fi

# ---------------------------------------------------------------------------------------------
# The driver: phase selection, dependencies, timeouts, RESULT lines.

json_str() {  # a JSON string literal
  local s=${1//\\/\\\\}
  s=${s//\"/\\\"}
  s=${s//$'\n'/ }
  s=${s//$'\t'/ }
  s=${s//$'\r'/ }
  printf '"%s"' "$s"
}

started=$SECONDS
BUDGET_S=${BUDGET_S:-540}
log() { echo "[gpu_check $((SECONDS - started))s] $*"; }

case "${1:-1}" in
  1) selected=$PHASES_1 ;;
  2) selected=$PHASES_2 ;;
  all) selected=$ALL ;;
  -h|--help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
  *) selected=${1//,/ } ;;
esac
for p in $selected; do
  [[ " $ALL " == *" $p "* ]] || { echo "unknown phase '$p' (phases: $ALL; or 1, 2, all)" >&2; exit 2; }
done
mkdir -p "$WORK" "$RESULTS" "$(dirname "$LOG")"
: >> "$LOG"
declare -A STATUS=()

needs() {  # the phases a phase needs (ok in this command, or earlier on this machine for install)
  case "$1" in
    install) ;;
    cuda) echo install ;;
    models) echo "install cuda" ;;
    generate) echo "install cuda models" ;;
    *) echo "install cuda" ;;
  esac
}

emit_result() {  # phase status seconds [extra json members]
  local extra=${4:-}
  echo "RESULT {\"phase\": \"$1\", \"status\": \"$2\", \"seconds\": $3${extra:+, $extra}}"
}

file_json() {  # the phase's JSON object (one line), if it wrote one
  [ -s "$1" ] || return 0
  local body
  body=$(tr -d '\n' < "$1")
  [[ "$body" =~ ^[[:space:]]*\{.*\}[[:space:]]*$ ]] && printf '%s' "$body"
}

log "phases: $selected; budget ${BUDGET_S}s; python $PY; wheels $WHEELS; work $WORK; log $LOG"
for phase in $selected; do
  reason=""
  for dep in $(needs "$phase"); do
    if [[ " $selected " == *" $dep "* ]] && [ "${STATUS[$dep]:-}" != ok ]; then
      if [ "$dep" = cuda ] && [ "${STATUS[$dep]:-}" = failed ]; then reason="no CUDA device (see the cuda phase)"
      else reason="needs $dep, which is ${STATUS[$dep]:-not run}"; fi
      break
    fi
  done
  left=$((BUDGET_S - (SECONDS - started)))
  cap_var="GPU_CHECK_CAP_$phase"
  cap=${!cap_var:-${CAP[$phase]}}
  limit=$(( cap < left ? cap : left ))
  if [ -z "$reason" ] && [ "$left" -lt 20 ]; then
    reason="no time left in this command (${left}s of BUDGET_S=${BUDGET_S})"
  fi
  if [ -n "$reason" ]; then
    STATUS[$phase]=skipped
    emit_result "$phase" skipped 0 "\"reason\": $(json_str "$reason")"
    continue
  fi
  log "$phase (timeout ${limit}s)"
  plog="$WORK/logs/$phase.log"
  mkdir -p "$WORK/logs"
  echo "===== $phase $(date -u +%FT%TZ) timeout ${limit}s" >> "$LOG"
  t0=$SECONDS
  if ! gsplat_built && [ "$phase" != build ] && [ "$phase" != install ] && [ "$phase" != cuda ]; then
    export DYNAPOSE4D_RENDERER=torch  # never compile gsplat inside another phase's measurement
  else
    unset DYNAPOSE4D_RENDERER
  fi
  timeout -k 10 "$limit" bash "$SELF" __phase "$phase" 2>&1 | tee -a "$LOG" > "$plog"
  rc=${PIPESTATUS[0]}
  secs=$((SECONDS - t0))
  res=$(file_json "$RESULTS/$phase.json")
  members=${res:+\"result\": $res}
  if [ "$rc" -eq 0 ]; then
    STATUS[$phase]=ok
    emit_result "$phase" ok "$secs" "$members"
  else
    if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
      STATUS[$phase]=timeout
      extra="\"timeout_s\": $limit"
    else
      STATUS[$phase]=failed
      extra="\"rc\": $rc"
    fi
    if [[ "$res" =~ \"error\":\ *\"([^\"]*) ]]; then
      extra="$extra, \"error\": $(json_str "${BASH_REMATCH[1]}")"
    else
      last=$(grep -v '^[[:space:]]*$' "$plog" | tail -n 1 | cut -c1-300)
      extra="$extra, \"last_output\": $(json_str "$last")"
    fi
    echo "--- last lines of $phase:"
    tail -n 8 "$plog" | cut -c1-240
    emit_result "$phase" "${STATUS[$phase]}" "$secs" "$extra${members:+, $members}"
  fi
done
ok=0
for phase in $selected; do [ "${STATUS[$phase]}" = ok ] && ok=$((ok + 1)); done
log "done: $ok of $(wc -w <<< "$selected") phases ok (log: $LOG)"
[ "$ok" -eq "$(wc -w <<< "$selected")" ]
