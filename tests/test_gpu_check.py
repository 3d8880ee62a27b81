"""The GPU check's logic without a GPU: scripts/gpu_wheels.py's derivation of the wheels a GPU
machine lacks (pure functions, a fake fetcher, local wheels: nothing is downloaded) and
scripts/gpu_check.sh's phases (selection, dependencies, timeouts, RESULT lines) with stand-in
phases, then for real up to the first CUDA call."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "gpu_check.sh"


def _load_gpu_wheels():
    spec = importlib.util.spec_from_file_location("gpu_wheels", ROOT / "scripts" / "gpu_wheels.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_wheels"] = module
    spec.loader.exec_module(module)
    return module


gw = _load_gpu_wheels()


# ----------------------------------------------------------------------------------------------
# gpu_wheels.py


def test_installed_list_formats():
    text = """# a comment
python==3.12.3
Package    Version
---------- -------
numpy==2.5.2
torch 2.11.0+cu130
Huggingface_Hub==1.33.0   # trailing comment
scipy
"""
    inst = gw.parse_installed(text)
    assert inst.python == "3.12.3"
    assert inst.packages == {"numpy": "2.5.2", "torch": "2.11.0+cu130", "huggingface-hub": "1.33.0", "scipy": None}


def test_the_default_machine_list_has_the_documented_versions():
    inst = gw.parse_installed(gw.DEFAULT_INSTALLED.read_text())
    assert inst.python == "3.12.3"
    assert inst.packages["torch"] == "2.11.0+cu130"
    assert inst.packages["numpy"] == "2.5.2"
    assert inst.packages["transformers"] == "5.17.0"
    for name in ("numba", "scipy", "opencv-python-headless", "onnxruntime", "pytest", "accelerate", "safetensors"):
        assert name in inst.packages
    for name in ("gsplat", "diffusers", "fastapi", "uvicorn", "python-multipart", "pydantic"):
        assert name not in inst.packages


def test_backend_requirements_come_from_pyproject_without_dev_only_packages():
    reqs = gw.backend_requirements(gw.DEFAULT_PYPROJECT.read_text(), gw.DEFAULT_EXTRAS)
    names = {gw.canonicalize_name(gw.Requirement(r).name) for r in reqs}
    assert {"torch", "numpy", "fastapi", "uvicorn", "python-multipart", "diffusers", "gsplat", "transformers"} <= names
    assert not names & {"bpy", "schemathesis", "ray", "dynapose4d"}
    with pytest.raises(ValueError, match="no extra"):
        gw.backend_requirements(gw.DEFAULT_PYPROJECT.read_text(), ["nope"])


def _wheel(name, version, requires=(), size=1000):
    return gw.Wheel(gw.canonicalize_name(name), version, Path(f"{name}-{version}-py3-none-any.whl"), size, list(requires))


class FakeIndex:
    """fetch(): the newest version in range of the packages it knows; records each call."""

    def __init__(self, packages):
        self.packages = packages  # name -> [Wheel]
        self.calls = []

    def __call__(self, name, spec):
        self.calls.append((name, str(spec)))
        fits = [w for w in self.packages[name] if spec.contains(w.version, prereleases=True)]
        if not fits:
            raise RuntimeError(f"no {name}{spec}")
        return max(fits, key=lambda w: gw.Version(w.version))


def _index():
    return FakeIndex({
        "fastapi": [_wheel("fastapi", "0.165.0", ["starlette>=1.6", "pydantic>=2.9", "typing-extensions>=4.8",
                                                    "uvicorn[standard]>=0.12; extra == 'all'"])],
        "starlette": [_wheel("starlette", "1.10.0", ["anyio>=4,<5", "typing-extensions>=4.10; python_version < '3.13'"])],
        "pydantic": [_wheel("pydantic", "2.14.4", ["pydantic-core==2.50.5", "typing-extensions>=4.16"])],
        "pydantic-core": [_wheel("pydantic-core", "2.50.5", ["typing-extensions>=4.14"], size=2_000_000)],
        "diffusers": [_wheel("diffusers", "0.42.1", ["huggingface-hub>=0.34", "importlib-metadata", "numpy",
                                                      "torch>=1.4; extra == 'torch'", "tomli; python_version < '3.11'"]),
                      _wheel("diffusers", "0.35.0", ["huggingface-hub>=0.20"])],
        "importlib-metadata": [_wheel("importlib-metadata", "10.2.0", ["zipp>=3.20"])],
        "gsplat": [_wheel("gsplat", "1.5.3", ["jaxtyping", "ninja", "numpy", "torch"])],
    })


INSTALLED = gw.Installed("3.12.3", {"numpy": "2.5.2", "torch": "2.11.0+cu130", "huggingface-hub": "1.33.0",
                                    "typing-extensions": None, "anyio": "4.16.0", "zipp": None, "jaxtyping": "0.3.11",
                                    "ninja": None})


def test_plan_carries_only_what_the_machine_lacks_and_walks_their_requirements():
    index = _index()
    roots = ["torch>=2.4", "numpy>=1.24", "fastapi>=0.115", "diffusers>=0.30", "gsplat>=1.5"]
    plan = gw.make_plan(roots, INSTALLED, {}, "3.12.3", index)
    assert not plan.conflicts
    assert set(plan.wheels) == {"fastapi", "starlette", "pydantic", "pydantic-core", "diffusers", "importlib-metadata", "gsplat"}
    assert plan.wheels["diffusers"].version == "0.42.1"  # the newest in range
    # Installed ones are met, never fetched; markers for other Pythons and unasked extras are not walked.
    assert {"numpy", "torch", "huggingface-hub", "typing-extensions", "anyio", "zipp", "jaxtyping", "ninja"} == set(plan.met)
    fetched = {name for name, _ in index.calls}
    assert not fetched & set(INSTALLED.packages)
    assert "tomli" not in plan.required_by and "uvicorn" not in plan.required_by
    # Listed without a version: assumed to fit, and said so with what was asked of it.
    assert set(plan.assumed) == {"typing-extensions", "zipp"}
    assert ">=4.16" in plan.assumed["typing-extensions"]
    assert plan.required_by["pydantic-core"] == ["pydantic 2.14.4"]
    assert plan.total_bytes == 6 * 1000 + 2_000_000


def test_an_installed_version_outside_a_range_is_a_conflict_never_an_upgrade():
    index = _index()
    old = gw.Installed("3.12.3", {**INSTALLED.packages, "numpy": "1.26.4"})
    plan = gw.make_plan(["numpy>=2"], old, {}, "3.12.3", index)
    assert plan.conflicts and "numpy 1.26.4" in plan.conflicts[0] and "never upgraded" in plan.conflicts[0]
    assert not index.calls


def test_a_carried_wheel_needing_a_newer_installed_package_is_a_conflict_a_range_settles():
    old_hub = gw.Installed("3.12.3", {**INSTALLED.packages, "huggingface-hub": "0.25.0"})
    plan = gw.make_plan(["diffusers>=0.30"], old_hub, {}, "3.12.3", _index())
    assert any("diffusers 0.42.1 needs huggingface-hub>=0.34" in c for c in plan.conflicts)
    # The ranges file narrows the pick to a version whose requirements the machine meets.
    index = _index()
    ranges = gw.parse_ranges("# comment\ndiffusers<0.40  # older hub\n")
    plan = gw.make_plan(["diffusers>=0.30"], old_hub, ranges, "3.12.3", index)
    assert not plan.conflicts and plan.wheels["diffusers"].version == "0.35.0"
    assert index.calls == [("diffusers", "<0.40,>=0.30")]


def test_markers_follow_the_machines_python():
    env = gw.marker_env("3.12.3")
    assert env["python_version"] == "3.12" and env["python_full_version"] == "3.12.3"
    assert gw.applies(gw.Requirement("tomli; python_version < '3.11'"), gw.marker_env("3.10")) is True
    assert gw.applies(gw.Requirement("tomli; python_version < '3.11'"), env) is False
    assert gw.applies(gw.Requirement("x; extra == 'test'"), env) is False
    assert gw.applies(gw.Requirement("x; extra == 'test'"), env, ["test"]) is True


def test_the_default_list_and_pyproject_carry_the_issues_packages():
    """What the documented machine lacks, from pyproject.toml's requirements (the fetcher stands in
    for pip download and says every wheel needs nothing)."""
    inst = gw.parse_installed(gw.DEFAULT_INSTALLED.read_text())
    roots = gw.backend_requirements(gw.DEFAULT_PYPROJECT.read_text(), gw.DEFAULT_EXTRAS)
    fetched = []

    def fetch(name, spec):
        fetched.append(name)
        return _wheel(name, "99.0")

    plan = gw.make_plan(roots, inst, gw.parse_ranges(gw.DEFAULT_RANGES.read_text()), inst.python, fetch)
    assert not plan.conflicts
    assert set(fetched) == {"fastapi", "uvicorn", "python-multipart", "fast-simplification", "diffusers", "gsplat"}
    assert {"torch", "numpy", "transformers", "numba", "scipy", "opencv-python-headless", "safetensors"} <= set(plan.met)


def test_stub_versions():
    assert gw.stub_version("2.5.2", [">=1.24"]) == "2.5.2"
    assert gw.stub_version(None, [">=4.8.0", ">=4.16.0,<5"]) == "4.16.0"
    assert gw.stub_version(None, []) == "0"
    assert gw.stub_version(None, [">1.0"]) == "1.0.1"


def _write_wheel(folder: Path, name: str, version: str, requires=()) -> Path:
    dist = f"{name.replace('-', '_')}-{version}"
    path = folder / f"{dist}-py3-none-any.whl"
    meta = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n" + "".join(f"Requires-Dist: {r}\n" for r in requires)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(f"{dist}.dist-info/METADATA", meta)
        zf.writestr(f"{dist}.dist-info/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        zf.writestr(f"{dist}.dist-info/RECORD", "")
    return path


def test_verify_resolves_offline_against_stubs_of_the_installed_packages(tmp_path):
    """pip's resolver over local wheels only (--no-index): the carried set resolves when the
    installed versions fit, and not when one is too old."""
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    _write_wheel(wheels, "carried-app", "1.0", ["carried-lib>=2", "base-pkg>=1.5"])
    _write_wheel(wheels, "carried-lib", "2.1", ["base-pkg<3"])
    for have, ok in (("1.7", True), ("1.2", False)):
        inst = gw.Installed("3.12.3", {"base-pkg": have})
        plan = gw.make_plan(["carried-app"], inst, {}, "3.12.3", gw.folder_fetcher(wheels))
        assert set(plan.wheels) == {"carried-app", "carried-lib"}
        result = gw.verify(plan, ["carried-app"], inst, {}, wheels)
        assert result["verified"] is ok, result
        if ok:
            assert result["resolved"] == 3 and result["installed_used"] == 1
    # A wheel nothing needs is reported: every carried megabyte must be wanted.
    _write_wheel(wheels, "stray", "1.0")
    inst = gw.Installed("3.12.3", {"base-pkg": "1.7"})
    plan = gw.make_plan(["carried-app"], inst, {}, "3.12.3", gw.folder_fetcher(wheels))
    result = gw.verify(plan, ["carried-app"], inst, {}, wheels)
    assert not result["verified"] and "stray" in result["error"]


def test_offline_main_reports_a_result_line(tmp_path, capsys):
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    _write_wheel(wheels, "carried-app", "1.0", ["base-pkg>=1"])
    (tmp_path / "installed.txt").write_text("python==3.12.3\nbase-pkg==1.1\n")
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\ndependencies = ["carried-app>=1", "base-pkg"]\n')
    rc = gw.main(["--installed", str(tmp_path / "installed.txt"), "--pyproject", str(tmp_path / "pyproject.toml"),
                  "--ranges", str(tmp_path / "none.txt"), "--extras", "", "--out", str(wheels), "--offline"])
    result = json.loads(capsys.readouterr().out.splitlines()[-1].removeprefix("RESULT "))
    assert rc == 0
    assert result["python"] == "3.12" and result["wheels"] == 1 and result["status"] == "ok" and result["verified"]
    assert result["total_mib"] < 0.01 and list(result["files"]) == ["carried_app-1.0-py3-none-any.whl"]
    rc = gw.main(["--installed", str(tmp_path / "installed.txt"), "--pyproject", str(tmp_path / "pyproject.toml"),
                  "--ranges", str(tmp_path / "none.txt"), "--extras", "", "--out", str(wheels), "--offline", "--budget-mib", "0.0001"])
    assert rc == 1 and json.loads(capsys.readouterr().out.splitlines()[-1][7:])["status"] == "over_budget"


# ----------------------------------------------------------------------------------------------
# gpu_check.sh


def test_gpu_check_is_valid_bash():
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)


def test_the_python_inside_gpu_check_compiles():
    """The phases' Python is inline (here-documents): at least it must compile."""
    text = SCRIPT.read_text()
    blocks = text.split("<<'EOF'\n")[1:]
    assert len(blocks) >= 4
    for block in blocks:
        compile(block.split("\nEOF\n", 1)[0], "gpu_check.sh", "exec")


def run_check(tmp_path, *args, stub="", env=None, timeout=60):
    e = {k: v for k, v in os.environ.items() if not k.startswith("GPU_CHECK_")}
    e.update(WORK=str(tmp_path / "work"), WHEELS=str(tmp_path / "no-wheels"), GPU_CHECK_STUB=stub, **(env or {}))
    proc = subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, env=e, timeout=timeout)
    results = [json.loads(line[len("RESULT "):]) for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    return proc, results


ALL_OK_1 = "install=ok,cuda=ok,build=ok,tests=ok,render=ok,animate=ok"
ALL_OK_2 = "install=ok,cuda=ok,models=ok,generate=ok"


def test_the_two_commands_run_their_phases_in_order(tmp_path):
    proc, results = run_check(tmp_path, "1", stub=ALL_OK_1)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert [r["phase"] for r in results] == ["install", "cuda", "build", "tests", "render", "animate"]
    assert all(r["status"] == "ok" and r["result"] == {"stub": True} and isinstance(r["seconds"], int) for r in results)
    proc, results = run_check(tmp_path, "2", stub=ALL_OK_2)
    assert proc.returncode == 0
    assert [r["phase"] for r in results] == ["install", "cuda", "models", "generate"]
    proc, results = run_check(tmp_path, "cuda,render", stub="cuda=ok,render=ok")
    assert [r["phase"] for r in results] == ["cuda", "render"]  # install not selected: not required
    proc, _ = run_check(tmp_path, "nonsense")
    assert proc.returncode == 2 and "unknown phase" in proc.stderr


def test_without_cuda_every_later_phase_is_skipped_with_the_reason(tmp_path):
    proc, results = run_check(tmp_path, "1", stub=ALL_OK_1.replace("cuda=ok", "cuda=nocuda"))
    assert proc.returncode != 0
    by = {r["phase"]: r for r in results}
    assert by["install"]["status"] == "ok"
    assert by["cuda"]["status"] == "failed" and "no CUDA device" in by["cuda"]["error"]
    for phase in ("build", "tests", "render", "animate"):
        assert by[phase]["status"] == "skipped" and "no CUDA device" in by[phase]["reason"]


def test_a_failed_phase_reports_its_last_output_and_its_dependents_are_skipped(tmp_path):
    proc, results = run_check(tmp_path, "2", stub=ALL_OK_2.replace("models=ok", "models=fail"))
    by = {r["phase"]: r for r in results}
    assert by["models"]["status"] == "failed" and by["models"]["last_output"] == "stub failure" and by["models"]["rc"] == 1
    assert by["generate"]["status"] == "skipped" and "needs models" in by["generate"]["reason"]
    assert "--- last lines of models" in proc.stdout


def test_a_phase_past_its_timeout_says_so_keeps_what_it_measured_and_the_next_phases_run(tmp_path):
    proc, results = run_check(tmp_path, "1", stub=ALL_OK_1.replace("build=ok", "build=hang"),
                              env={"GPU_CHECK_CAP_build": "2"})
    by = {r["phase"]: r for r in results}
    assert by["build"]["status"] == "timeout" and by["build"]["timeout_s"] == 2
    assert by["build"]["result"]["partial"] == 1  # what the phase had written before it was stopped
    assert 2 <= by["build"]["seconds"] < 10
    assert [by[p]["status"] for p in ("tests", "render", "animate")] == ["ok", "ok", "ok"]
    assert proc.returncode != 0


def test_phases_share_the_commands_budget(tmp_path):
    # 24 s in all: tests hangs for its whole 5 s cap, leaving under 20 s: render is skipped.
    proc, results = run_check(tmp_path, "tests,render", stub="tests=hang,render=ok",
                              env={"BUDGET_S": "24", "GPU_CHECK_CAP_tests": "5"})
    by = {r["phase"]: r for r in results}
    assert by["tests"]["status"] == "timeout"
    assert by["render"]["status"] == "skipped" and "no time left" in by["render"]["reason"]
    proc, results = run_check(tmp_path, "2", stub=ALL_OK_2, env={"BUDGET_S": "10"})
    assert [r["status"] for r in results] == ["skipped"] * 4 and "no time left" in results[0]["reason"]


def test_a_real_run_stops_at_the_first_cuda_call_without_a_gpu(tmp_path):
    """The first command for real from the cuda phase on (the install phase's import check is a
    minute of imports on a small machine: a stand-in here)."""
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    proc, results = run_check(tmp_path, "1", stub="install=ok", env={"PYTHON": sys.executable}, timeout=300)
    by = {r["phase"]: r for r in results}
    assert by["cuda"]["status"] == "failed" and by["cuda"]["error"].startswith("no CUDA device"), proc.stdout
    assert by["cuda"]["result"]["torch"] == torch.__version__ and by["cuda"]["rc"] == 3
    for phase in ("build", "tests", "render", "animate"):
        assert by[phase]["status"] == "skipped" and "no CUDA device" in by[phase]["reason"]
    assert (tmp_path / "work" / "gpu_check.log").read_text().count("=====") == 2
