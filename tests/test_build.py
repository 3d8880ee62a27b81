"""The extension zip: built, accepted by Blender's validator, installed and enabled by bpy."""

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def extension_zip(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, str(ROOT / "build.py"), "-o", str(out)], check=True, capture_output=True, text=True)
    (path,) = out.glob("dynapose4d-*.zip")
    return path


def test_zip_layout(extension_zip):
    names = zipfile.ZipFile(extension_zip).namelist()
    assert "blender_manifest.toml" in names and "__init__.py" in names  # manifest at the root
    assert "format/coords.py" in names
    assert "link/__init__.py" in names and "link/client.py" in names and "link/launcher.py" in names
    assert "backend_src/pyproject.toml" in names and "backend_src/dynapose4d/render/pairs.py" in names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]


def test_the_licence_text_goes_with_the_code(extension_zip):
    # The manifest says GPL-3.0-or-later; the GPL wants its text with every copy.
    text = zipfile.ZipFile(extension_zip).read("LICENSE").decode()
    assert "GNU GENERAL PUBLIC LICENSE" in text and "Version 3, 29 June 2007" in text
    assert "How to Apply These Terms to Your New Programs" in text  # the full text, not a notice
    assert text == (ROOT / "LICENSE").read_text()


def test_build_is_reproducible(extension_zip, tmp_path):
    subprocess.run([sys.executable, str(ROOT / "build.py"), "--no-validate", "-o", str(tmp_path)], check=True)
    assert (tmp_path / extension_zip.name).read_bytes() == extension_zip.read_bytes()


def test_validator_rejects_a_bad_manifest(tmp_path):
    sys.path.insert(0, str(ROOT))
    import build

    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("blender_manifest.toml", (ROOT / "blender_manifest.toml").read_text().replace('version = "', 'version = "v'))
        zf.writestr("__init__.py", "")
    with pytest.raises(SystemExit, match="rejected"):
        build.validate(bad)


def test_installs_and_enables_in_blender(extension_zip):
    bpy = pytest.importorskip("bpy")
    bpy.ops.wm.read_factory_settings(use_empty=True)
    result = bpy.ops.extensions.package_install_files(filepath=str(extension_zip), repo="user_default", enable_on_install=True)
    assert result == {"FINISHED"}
    import addon_utils

    enabled = {m.__name__ for m in addon_utils.modules() if addon_utils.check(m.__name__)[1]}
    assert "bl_ext.user_default.dynapose4d" in enabled
