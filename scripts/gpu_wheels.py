#!/usr/bin/env python3
"""Fetch the wheels a GPU machine lacks, and only those, for its Python and platform.

The GPU machine this project is lent has no internet and no package index, but comes with
torch, transformers, numpy, numba and much else already installed (the list is
``scripts/gpu_machine_packages.txt``; give another with ``--installed``). What the backend needs
beyond that travels with the repository as wheels, within a size budget. This script:

1. takes the backend's requirements from ``backend/pyproject.toml`` (its dependencies and the
   extras named by ``--extras``, default ``diffusion,eval,cuda,onnx``) and the optional version
   ranges of ``scripts/gpu_requirements.txt``;
2. walks them: a requirement the machine already meets is left alone (its installed version must
   be inside the range, else it is a conflict: nothing installed there is ever upgraded); any
   other is downloaded with ``pip download --no-deps --only-binary=:all:`` for the machine's
   Python (``python==X.Y.Z`` in the list, or ``--python``) and manylinux x86_64, at the newest
   version inside its range, and the requirements in the wheel's own metadata are walked in turn;
3. checks the wheels' total size against ``--budget-mib`` (default 40, leaving room for the
   repository within the 64 MiB that travel);
4. checks that the set resolves: ``pip install --dry-run --no-index --only-binary=:all:
   --python-version X.Y --target TMP`` over the wheel folder and a folder of *stub* wheels, one
   per installed package the walk met (name and version only, no files and no requirements).
   ``--target`` makes pip ignore what is installed here, so the stubs stand in for the machine's
   packages, and a constraints file pins each to its installed version: the resolution succeeds
   only if the carried wheels and the machine's packages fit together without changing any of
   the latter. An installed package listed without a version is assumed to fit (its stub takes
   the lowest version the requirements allow; the RESULT lists them under ``assumed``).
5. writes the wheels into ``--out`` (default ``gpu_wheels/``, ignored by git), removing wheels
   left there by an earlier run, and ends with ``RESULT {json}``: ``python``, ``wheels`` (count),
   ``total_mib``, ``budget_mib``, ``status``, ``verified``, the files and sizes.

    python scripts/gpu_wheels.py [--installed FILE] [--out gpu_wheels] [--budget-mib 40]
        [--extras diffusion,eval,cuda,onnx] [--python 3.12] [--offline]

``--offline`` downloads nothing: it plans from the wheels already in ``--out`` and verifies them
(what to run after changing the installed list or the ranges, to see whether a download is due).
On the GPU machine ``scripts/gpu_check.sh`` installs the folder with ``pip install --no-deps
--no-index --target DIR`` and puts DIR on ``PYTHONPATH`` (docs/evaluation.md).
"""

from __future__ import annotations

import argparse
import email.parser
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

try:
    from packaging.requirements import Requirement
    from packaging.specifiers import SpecifierSet
    from packaging.utils import canonicalize_name
    from packaging.version import InvalidVersion, Version
except ImportError:  # pip always carries a copy
    from pip._vendor.packaging.requirements import Requirement  # type: ignore[no-redef]
    from pip._vendor.packaging.specifiers import SpecifierSet  # type: ignore[no-redef]
    from pip._vendor.packaging.utils import canonicalize_name  # type: ignore[no-redef]
    from pip._vendor.packaging.version import InvalidVersion, Version  # type: ignore[no-redef]

try:
    import tomllib
except ImportError:  # Python 3.10
    tomllib = None

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_INSTALLED = ROOT / "scripts" / "gpu_machine_packages.txt"
DEFAULT_RANGES = ROOT / "scripts" / "gpu_requirements.txt"
DEFAULT_PYPROJECT = ROOT / "backend" / "pyproject.toml"
DEFAULT_OUT = ROOT / "gpu_wheels"
DEFAULT_EXTRAS = ("diffusion", "eval", "cuda", "onnx")
SELF = "dynapose4d"
# manylinux x86_64: pip matches a manylinux_2_N tag exactly, so name every N a Python 3.12
# machine's glibc can run (2.17 to 2.39), plus the legacy aliases.
PLATFORMS = ["manylinux1_x86_64", "manylinux2010_x86_64", "manylinux2014_x86_64"] + [
    f"manylinux_2_{n}_x86_64" for n in range(5, 40)
]


@dataclass
class Installed:
    """The machine's installed packages: canonical name -> version (None: listed without one)."""

    python: str | None
    packages: dict[str, str | None]


@dataclass
class Wheel:
    name: str  # canonical
    version: str
    path: Path
    size: int
    requires: list[str]  # Requires-Dist lines, markers included


@dataclass
class Plan:
    python: str
    wheels: dict[str, Wheel] = field(default_factory=dict)  # what must travel
    met: dict[str, list[str]] = field(default_factory=dict)  # installed name -> specifiers asked of it
    required_by: dict[str, list[str]] = field(default_factory=dict)
    conflicts: list[str] = field(default_factory=list)
    assumed: dict[str, str] = field(default_factory=dict)  # installed without a version -> what was asked

    @property
    def total_bytes(self) -> int:
        return sum(w.size for w in self.wheels.values())


def parse_installed(text: str) -> Installed:
    """One package a line: ``name==version``, ``name version`` (as ``pip list`` prints it) or a
    bare ``name``; ``#`` starts a comment; ``python==3.12.3`` gives the interpreter's version."""
    python, packages = None, {}
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line or line.startswith("-") or set(line) <= set("-= "):
            continue  # blank, or pip list's header rule
        m = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?\s*(?:==\s*|\s+)?(\S+)?", line)
        if not m:
            raise ValueError(f"cannot read the installed-package line {raw!r}")
        name, version = m.group(1), m.group(2)
        if name.lower() == "package" and (version or "").lower() == "version":
            continue  # pip list's header
        if name.lower() == "python":
            python = version
            continue
        packages[canonicalize_name(name)] = version
    return Installed(python, packages)


def parse_ranges(text: str) -> dict[str, SpecifierSet]:
    """Requirement lines (``name>=a,<b``) narrowing what the walk may pick for each name."""
    ranges: dict[str, SpecifierSet] = {}
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        req = Requirement(line)
        name = canonicalize_name(req.name)
        ranges[name] = ranges.get(name, SpecifierSet()) & req.specifier
    return ranges


def backend_requirements(pyproject_text: str, extras: Iterable[str]) -> list[str]:
    """The backend's dependencies and those of the given extras, without references to itself."""
    if tomllib is None:
        raise RuntimeError("reading pyproject.toml needs Python 3.11 (tomllib)")
    project = tomllib.loads(pyproject_text)["project"]
    optional = project.get("optional-dependencies", {})
    out = list(project.get("dependencies", []))
    for extra in extras:
        if extra not in optional:
            raise ValueError(f"pyproject.toml has no extra {extra!r} (it has {', '.join(optional)})")
        out += optional[extra]
    seen, reqs = set(), []
    for line in out:
        if canonicalize_name(Requirement(line).name) == SELF or line in seen:
            continue
        seen.add(line)
        reqs.append(line)
    return reqs


def marker_env(python: str) -> dict[str, str]:
    """PEP 508 marker values of CPython ``python`` on Linux x86_64."""
    full = python if python.count(".") >= 2 else python + ".0"
    short = ".".join(full.split(".")[:2])
    return {
        "implementation_name": "cpython", "implementation_version": full, "os_name": "posix",
        "platform_machine": "x86_64", "platform_python_implementation": "CPython", "platform_release": "",
        "platform_system": "Linux", "platform_version": "", "python_full_version": full,
        "python_version": short, "sys_platform": "linux",
    }


def applies(req: Requirement, env: dict[str, str], extras: Iterable[str] = ()) -> bool:
    """Whether a requirement's marker holds on the machine, with the requester's extras."""
    if req.marker is None:
        return True
    return any(req.marker.evaluate({**env, "extra": e}) for e in ("", *extras))


def _version_ok(spec: SpecifierSet, version: str) -> bool:
    try:
        return spec.contains(Version(version), prereleases=True)
    except InvalidVersion:
        return False


def make_plan(roots: list[str], installed: Installed, ranges: dict[str, SpecifierSet], python: str,
              fetch: Callable[[str, SpecifierSet], Wheel]) -> Plan:
    """Walk the requirements: what the machine meets stays, the rest is fetched (newest in range)
    and its own requirements are walked. ``fetch(name, specifier)`` returns the wheel it picked.
    No backtracking: a requirement that excludes an earlier pick, or an installed version, is a
    conflict, to be settled by a range in the ranges file."""
    env = marker_env(python)
    plan = Plan(python=python)
    queue: list[tuple[Requirement, str]] = [(Requirement(r), "pyproject.toml") for r in roots]
    done_extras: dict[str, set[str]] = {}
    while queue:
        req, requester = queue.pop(0)
        name = canonicalize_name(req.name)
        plan.required_by.setdefault(name, [])
        if requester not in plan.required_by[name]:
            plan.required_by[name].append(requester)
        if name in installed.packages:
            have = installed.packages[name]
            plan.met.setdefault(name, [])
            spec = str(req.specifier)
            if spec and spec not in plan.met[name]:
                plan.met[name].append(spec)
            if have is None:
                if spec:
                    plan.assumed[name] = ",".join(plan.met[name])
            elif not _version_ok(req.specifier, have):
                plan.conflicts.append(f"{requester} needs {req}, but the machine has {name} {have} (never upgraded)")
            continue
        spec = req.specifier & ranges.get(name, SpecifierSet())
        wheel = plan.wheels.get(name)
        first = wheel is None
        if first:
            wheel = plan.wheels[name] = fetch(name, spec)
            new_extras = set(req.extras)
        elif not _version_ok(spec, wheel.version):
            plan.conflicts.append(f"{requester} needs {req}, but {name} {wheel.version} was picked first "
                                  f"(for {', '.join(plan.required_by[name][:-1])}): add a range for it to the ranges file")
            continue
        else:
            new_extras = set(req.extras) - done_extras.get(name, set())
            if not new_extras:
                continue
        done_extras.setdefault(name, set()).update(new_extras)
        # Each requirement of the wheel once: the plain ones on the first visit, an extra's when
        # that extra is first asked for.
        for line in wheel.requires:
            sub = Requirement(line)
            if sub.marker is not None and "extra" in str(sub.marker):
                wanted = any(sub.marker.evaluate({**env, "extra": e}) for e in new_extras)
            else:
                wanted = first and applies(sub, env)
            if wanted:
                queue.append((sub, f"{name} {wheel.version}"))
    return plan


def read_wheel(path: Path) -> Wheel:
    """Name, version and Requires-Dist of a wheel, from its METADATA."""
    with zipfile.ZipFile(path) as zf:
        meta_name = next(n for n in zf.namelist() if re.fullmatch(r"[^/]+\.dist-info/METADATA", n))
        meta = email.parser.Parser().parsestr(zf.read(meta_name).decode("utf-8"))
    return Wheel(canonicalize_name(meta["Name"]), meta["Version"], path, path.stat().st_size,
                 meta.get_all("Requires-Dist") or [])


def pip_platform_args(python: str) -> list[str]:
    short = ".".join(python.split(".")[:2])
    args = ["--only-binary=:all:", "--python-version", short, "--implementation", "cp"]
    for p in PLATFORMS:
        args += ["--platform", p]
    return args


def pip_fetcher(staging: Path, python: str) -> Callable[[str, SpecifierSet], Wheel]:
    """Downloads one wheel (no dependencies) into its own folder under ``staging``."""

    def fetch(name: str, spec: SpecifierSet) -> Wheel:
        dest = staging / name
        shutil.rmtree(dest, ignore_errors=True)
        cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-cache-dir", "-d", str(dest),
               *pip_platform_args(python), f"{name}{spec}"]
        print(f"  download {name}{spec}", flush=True)
        proc = subprocess.run(cmd, capture_output=True, text=True)
        wheels = sorted(dest.glob("*.whl"))
        if proc.returncode != 0 or len(wheels) != 1:
            raise RuntimeError(f"pip download {name}{spec} for Python {python} failed:\n{proc.stdout}{proc.stderr}")
        return read_wheel(wheels[0])

    return fetch


def folder_fetcher(folder: Path) -> Callable[[str, SpecifierSet], Wheel]:
    """Picks from the wheels already in ``folder`` (the newest in range): the offline mode."""
    wheels: dict[str, list[Wheel]] = {}
    for path in sorted(folder.glob("*.whl")):
        w = read_wheel(path)
        wheels.setdefault(w.name, []).append(w)

    def fetch(name: str, spec: SpecifierSet) -> Wheel:
        fits = [w for w in wheels.get(name, []) if _version_ok(spec, w.version)]
        if not fits:
            raise RuntimeError(f"no wheel for {name}{spec} in {folder} (run without --offline to download it)")
        return max(fits, key=lambda w: Version(w.version))

    return fetch


def stub_version(have: str | None, specs: list[str]) -> str:
    """The version a stub of an installed package gets: the installed one, or (listed without a
    version) the lowest one the requirements name that satisfies them all."""
    if have is not None:
        return have
    spec = SpecifierSet(",".join(specs))
    named = [s.version.replace(".*", "") for s in spec if s.operator in (">=", "==", "~=", ">")]
    # ">V" excludes V and its post-releases: V.1 is just above.
    candidates = sorted({Version(v) for v in named} | {Version(f"{v}.1") for v in named} | {Version("0")})
    for v in candidates:
        if spec.contains(v, prereleases=True):
            return str(v)
    raise ValueError(f"no version satisfies {spec}")


def write_stub(folder: Path, name: str, version: str) -> Path:
    """An empty wheel that only declares a name and a version (no files, no requirements)."""
    dist = f"{name.replace('-', '_')}-{version}"
    path = folder / f"{dist}-py3-none-any.whl"
    files = {
        f"{dist}.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{dist}.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: gpu_wheels stub\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = "".join(f"{n},,\n" for n in files) + f"{dist}.dist-info/RECORD,,\n"
    with zipfile.ZipFile(path, "w") as zf:
        for n, text in files.items():
            zf.writestr(n, text)
        zf.writestr(f"{dist}.dist-info/RECORD", record)
    return path


def verify(plan: Plan, roots: list[str], installed: Installed, ranges: dict[str, SpecifierSet], wheel_dir: Path) -> dict:
    """pip's own resolver, offline, over the carried wheels and stubs of the installed packages
    (pinned to their versions): does everything resolve without touching what is installed?"""
    with tempfile.TemporaryDirectory(prefix="gpu-wheels-verify-") as tmp:
        tmp = Path(tmp)
        stubs = tmp / "stubs"
        stubs.mkdir()
        pins = {}
        for name, specs in plan.met.items():
            pins[name] = stub_version(installed.packages[name], specs)
            write_stub(stubs, name, pins[name])
        constraints = tmp / "constraints.txt"
        constraints.write_text("".join(f"{n}=={v}\n" for n, v in pins.items())
                               + "".join(f"{n}{s}\n" for n, s in ranges.items() if str(s)))
        report = tmp / "report.json"
        env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
        env["PIP_CONFIG_FILE"] = os.devnull  # only the two folders: no index, no configured find-links
        cmd = [sys.executable, "-m", "pip", "install", "--dry-run", "--quiet", "--report", str(report),
               "--no-index", "--find-links", str(wheel_dir), "--find-links", str(stubs),
               *pip_platform_args(plan.python), "--target", str(tmp / "target"), "-c", str(constraints), *roots]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            return {"verified": False, "error": (proc.stdout + proc.stderr).strip()[-3000:]}
        chosen = {canonicalize_name(i["metadata"]["name"]): i["metadata"]["version"]
                  for i in json.loads(report.read_text())["install"]}
    problems = []
    for name, w in plan.wheels.items():
        if chosen.get(name) != w.version:
            problems.append(f"{name}: the walk picked {w.version}, pip {chosen.get(name)}")
    for name, v in chosen.items():
        if name not in plan.wheels and pins.get(name) != v:
            problems.append(f"{name} {v}: neither a carried wheel nor an installed package")
    unused = sorted(p.name for p in wheel_dir.glob("*.whl") if read_wheel(p).name not in chosen)
    if unused:
        problems.append(f"wheels in the folder that nothing needs: {', '.join(unused)}")
    return {"verified": not problems, **({"error": "; ".join(problems)} if problems else {}),
            "resolved": len(chosen), "installed_used": len(pins)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--installed", type=Path, default=DEFAULT_INSTALLED, help="the GPU machine's packages (default: %(default)s)")
    ap.add_argument("--ranges", type=Path, default=DEFAULT_RANGES, help="version ranges for the carried wheels")
    ap.add_argument("--pyproject", type=Path, default=DEFAULT_PYPROJECT)
    ap.add_argument("--extras", default=",".join(DEFAULT_EXTRAS), help="the backend's extras to carry (comma list)")
    ap.add_argument("--also", action="append", default=[], help="another requirement to meet (repeatable)")
    ap.add_argument("--python", help="the machine's Python version (default: python==X.Y.Z in --installed)")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="the wheel folder (default: gpu_wheels/, git-ignored)")
    ap.add_argument("--budget-mib", type=float, default=40.0)
    ap.add_argument("--offline", action="store_true", help="download nothing: plan from and verify the wheels in --out")
    args = ap.parse_args(argv)

    installed = parse_installed(args.installed.read_text())
    python = args.python or installed.python
    if not python:
        ap.error("no Python version: give --python or a python==X.Y.Z line in the installed list")
    short = ".".join(python.split(".")[:2])
    ranges = parse_ranges(args.ranges.read_text()) if args.ranges.exists() else {}
    extras = [e for e in args.extras.split(",") if e]
    env = marker_env(python)
    roots = [r for r in backend_requirements(args.pyproject.read_text(), extras) + args.also if applies(Requirement(r), env)]
    print(f"Python {python}; {len(installed.packages)} packages installed there; {len(roots)} requirements "
          f"(pyproject.toml, extras {','.join(extras) or 'none'})", flush=True)

    result: dict = {"python": short, "wheels": 0, "total_mib": 0.0, "budget_mib": args.budget_mib}
    staging_ctx = tempfile.TemporaryDirectory(prefix="gpu-wheels-")
    try:
        if args.offline:
            if not args.out.is_dir():
                ap.error(f"--offline: {args.out} does not exist")
            fetch = folder_fetcher(args.out)
        else:
            fetch = pip_fetcher(Path(staging_ctx.name), python)
        try:
            plan = make_plan(roots, installed, ranges, python, fetch)
        except RuntimeError as exc:
            print(exc, file=sys.stderr)
            print("RESULT " + json.dumps({**result, "status": "failed", "error": str(exc).splitlines()[0]}))
            return 1
        total_mib = plan.total_bytes / 2**20
        result.update(wheels=len(plan.wheels), total_mib=round(total_mib, 2),
                      files={w.path.name: round(w.size / 2**20, 2) for w in sorted(plan.wheels.values(), key=lambda w: w.name)})
        if plan.assumed:
            result["assumed"] = plan.assumed
        print(f"\n{'wheel':<64}{'MiB':>8}  needed by")
        for w in sorted(plan.wheels.values(), key=lambda w: -w.size):
            print(f"{w.path.name:<64}{w.size / 2**20:>8.2f}  {', '.join(plan.required_by[w.name])}")
        print(f"{'total':<64}{total_mib:>8.2f}  (budget {args.budget_mib:g})")
        met = [f"{n} {installed.packages[n] or '(version not listed)'}" for n in sorted(plan.met)]
        print(f"met by the machine: {', '.join(met)}")
        if plan.conflicts:
            print("\nconflicts:\n  " + "\n  ".join(plan.conflicts), file=sys.stderr)
            print("RESULT " + json.dumps({**result, "status": "conflict", "conflicts": plan.conflicts}))
            return 1
        if total_mib > args.budget_mib:
            print(f"\nover budget: {total_mib:.2f} MiB > {args.budget_mib:g} MiB", file=sys.stderr)
            print("RESULT " + json.dumps({**result, "status": "over_budget"}))
            return 1
        if not args.offline:  # the new set replaces the folder's wheels
            args.out.mkdir(parents=True, exist_ok=True)
            for old in args.out.glob("*.whl"):
                old.unlink()
            for w in plan.wheels.values():
                w.path = Path(shutil.move(str(w.path), args.out / w.path.name))
    finally:
        staging_ctx.cleanup()
    check = verify(plan, roots, installed, ranges, args.out)
    result.update(check)
    result["status"] = "ok" if check["verified"] else "unresolved"
    print(f"\nresolution (pip --dry-run, Python {short}, offline, against the installed list): "
          f"{'ok' if check['verified'] else 'FAILED'}" + (f"\n{check['error']}" if not check["verified"] else ""))
    print("RESULT " + json.dumps(result))
    return 0 if check["verified"] else 1


if __name__ == "__main__":
    sys.exit(main())
