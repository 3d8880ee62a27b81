"""The dynamic stage's frames per step: the schedule (every frame visited evenly, no frame twice in
a step, a function of the step alone), the per-device defaults of the job settings, and the
step profiler that measured them."""

from collections import Counter

import pytest
import torch

from dynapose4d.deform import DeformConfig, HexPlaneConfig
from dynapose4d.pipeline.configs import animate_config, generate_config
from dynapose4d.pipeline.demo import DemoConfig, make_demo_inputs
from dynapose4d.pipeline.settings import PRESETS, JobError, validate_settings
from dynapose4d.stages import DynamicConfig, DynamicStage
from dynapose4d.stages.profile import PHASES, format_profile, profile_steps


@pytest.fixture(scope="module")
def inputs():
    torch.set_num_threads(1)
    return make_demo_inputs(DemoConfig(gaussians=400, frames=7, video_size=48, keypoints=5))


def stage_for(inputs, **kw):
    deform = DeformConfig(num_controls=32, hexplane=HexPlaneConfig(spatial_res=(8,), time_res=7, channels=8), hidden=16)
    config = DynamicConfig(**{"iterations": 4, "frames_per_step": 3, "resolution": 32, "deform": deform, **kw})
    return DynamicStage(config, inputs.object.static, inputs.video, inputs.support.keypoints, inputs.track, inputs.camera)


def frames_at(stage, step):
    stage.step = step
    return stage.sample_frames().tolist()


@pytest.mark.parametrize("k", [1, 2, 3, 4, 6])
def test_every_frame_is_visited_evenly_and_never_twice_in_a_step(inputs, k):
    stage = stage_for(inputs, frames_per_step=k)
    T, steps = stage.num_frames, 7 * 12  # 12 passes over the 7 frames for k = 1
    counts = Counter()
    for step in range(steps):
        ids = frames_at(stage, step)
        assert len(ids) == k and len(set(ids)) == k and ids == sorted(ids), (step, ids)
        assert all(0 <= i < T for i in ids)
        counts.update(ids)
    assert set(counts) == set(range(T))
    assert max(counts.values()) - min(counts.values()) <= 1, counts  # a pure random pick spreads far wider
    # Shuffled passes: within any 2 ceil(T / k) + 1 steps every frame comes up at least once.
    window = 2 * -(-T // k) + 1
    for start in range(0, steps - window):
        seen = set()
        for step in range(start, start + window):
            seen.update(frames_at(stage, step))
        assert seen == set(range(T)), (start, seen)


def test_schedule_depends_on_the_step_and_seed_only(inputs):
    a, b = stage_for(inputs, frames_per_step=3), stage_for(inputs, frames_per_step=3)
    late = [frames_at(a, s) for s in (40, 3, 17)]  # out of order, as after a resume
    assert late == [frames_at(b, s) for s in (40, 3, 17)]
    other_seed = stage_for(inputs, frames_per_step=3, seed=1)
    assert [frames_at(a, s) for s in range(10)] != [frames_at(other_seed, s) for s in range(10)]


def test_zero_or_too_many_frames_per_step_means_every_frame(inputs):
    for k in (0, 7, 20):
        assert frames_at(stage_for(inputs, frames_per_step=k), 5) == list(range(7))


def test_frames_per_step_default_depends_on_the_device():
    cfg = animate_config(validate_settings("animate", {}))
    cpu = cfg.dynamic_for(32, novel_view_sds=False, device_type="cpu")
    cuda = cfg.dynamic_for(32, novel_view_sds=False, device_type="cuda")
    assert cpu.frames_per_step == PRESETS["standard"].cpu_frames_per_step == 4
    assert cuda.frames_per_step == 0  # DG4D's every frame on a GPU
    explicit = animate_config(validate_settings("animate", {"frames_per_step": 64}))
    assert explicit.dynamic_for(32, novel_view_sds=False, device_type="cpu").frames_per_step == 64
    gen = generate_config(validate_settings("generate", {"preset": "low-vram"}), user_video=True)
    assert gen.dynamic_for(14, novel_view_sds=True, device_type="cuda").frames_per_step == 4
    with pytest.raises(JobError, match="frames_per_step"):
        validate_settings("animate", {"frames_per_step": -1})


def test_profile_splits_a_real_step_into_its_phases(inputs):
    stage = stage_for(inputs, frames_per_step=2)
    before = {k: v.detach().clone() for k, v in stage.deformation.state_dict().items()}
    prof = profile_steps(stage, 2)
    assert stage.step == 2  # the profiled steps are real steps
    assert any(not torch.equal(before[k], v) for k, v in stage.deformation.state_dict().items())
    assert set(prof) == set(PHASES) | {"step"}
    for phase in PHASES[:-1]:
        assert prof[phase] > 0, phase
    assert sum(prof[p] for p in PHASES) == pytest.approx(prof["step"], rel=1e-6)
    assert abs(prof["other"]) < 0.5 * prof["step"]
    table = format_profile({"a": prof})
    assert "raster_backward" in table and "step" in table
    # The wrappers are gone afterwards: a plain step runs and nothing is left patched.
    assert "frames_and_handles" not in vars(stage.deformation) and "losses" not in vars(stage)
    stage.train_step()


def _openmp_waiting(env_extra: dict) -> tuple[str, str]:
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    code = "import dynapose4d, os; print(os.environ.get('OMP_WAIT_POLICY'), os.environ.get('GOMP_SPINCOUNT'))"
    out = subprocess.run([sys.executable, "-c", code], env={**env, **env_extra}, capture_output=True, text=True, check=True)
    return tuple(out.stdout.split())


def test_openmp_threads_spin_briefly_unless_the_user_chose():
    """Long-spinning OpenMP threads cost a step 3x on shared cores: the package shortens the spin
    before torch loads, and leaves a user's own choice alone."""
    assert _openmp_waiting({}) == ("None", "1000")
    assert _openmp_waiting({"OMP_WAIT_POLICY": "ACTIVE"}) == ("ACTIVE", "None")
    assert _openmp_waiting({"GOMP_SPINCOUNT": "300000"}) == ("None", "300000")
