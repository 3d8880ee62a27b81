#!/usr/bin/env python3
"""Build the Blender extension zip into ``dist/`` and validate it with Blender's own tool.

The zip holds ``blender_manifest.toml`` and ``LICENSE`` at its root, the add-on modules (``blender_addon/``
becomes the zip root, as Blender expects), and the backend sources under ``backend_src/`` so
that the add-on can create the backend environment on the user's machine.

    python build.py [--no-validate]

Validation runs ``blender_ext.py validate`` from the bpy package (the development environment
has it); pass ``--no-validate`` where bpy is not installed.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent
ADDON = ROOT / "blender_addon"
BACKEND = ROOT / "backend"
MANIFEST = ROOT / "blender_manifest.toml"
LICENSE = ROOT / "LICENSE"
SKIP_PARTS = {"__pycache__", ".pytest_cache"}
SKIP_SUFFIXES = {".pyc", ".pyo"}
# A fixed timestamp makes the zip byte-identical for identical sources.
EPOCH = (2020, 1, 1, 0, 0, 0)


def manifest_version() -> str:
    match = re.search(r'^version\s*=\s*"([^"]+)"', MANIFEST.read_text(), re.M)
    if not match:
        raise SystemExit(f"{MANIFEST.name}: no version line")
    return match.group(1)


def _files(base: Path):
    for path in sorted(base.rglob("*")):
        if path.is_file() and not (SKIP_PARTS & set(path.parts)) and path.suffix not in SKIP_SUFFIXES:
            yield path


def build(out_dir: Path = ROOT / "dist") -> Path:
    version = manifest_version()
    backend_version = re.search(r'__version__ = "([^"]+)"', (BACKEND / "dynapose4d" / "__init__.py").read_text()).group(1)
    if backend_version != version:
        raise SystemExit(f"version mismatch: manifest {version}, backend {backend_version}; bump both together")
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"dynapose4d-{version}.zip"
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as zf:

        def add(path: Path, arcname: str):
            info = zipfile.ZipInfo(arcname, EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, path.read_bytes())

        add(MANIFEST, "blender_manifest.toml")
        add(LICENSE, "LICENSE")  # GPL-3.0-or-later, as the manifest says: the text goes with the code
        for path in _files(ADDON):
            add(path, path.relative_to(ADDON).as_posix())
        for path in [BACKEND / "pyproject.toml", *_files(BACKEND / "dynapose4d")]:
            add(path, "backend_src/" + path.relative_to(BACKEND).as_posix())
    return target


def blender_ext_cli() -> Path:
    """Blender's extension CLI ships inside the bpy package; find it without importing bpy."""
    import importlib.util

    spec = importlib.util.find_spec("bpy")
    if spec is None or spec.origin is None:
        raise SystemExit("bpy is not installed here; run with --no-validate or use the development environment")
    base = Path(spec.origin).parent
    found = sorted(base.glob("*/scripts/addons_core/bl_pkg/cli/blender_ext.py"))
    if not found:
        raise SystemExit("blender_ext.py not found in the bpy package")
    return found[-1]


def validate(zip_path: Path) -> None:
    cli = blender_ext_cli()
    result = subprocess.run([sys.executable, str(cli), "validate", str(zip_path)], capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"Blender's extension validator rejected {zip_path.name}:\n{result.stdout}{result.stderr}")
    print(result.stdout.strip())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--no-validate", action="store_true", help="skip Blender's validator (no bpy here)")
    ap.add_argument("-o", "--out-dir", type=Path, default=ROOT / "dist")
    args = ap.parse_args()
    path = build(args.out_dir)
    print(f"built {path}")
    if not args.no_validate:
        validate(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
