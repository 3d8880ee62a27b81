"""The add-on's scene tests again, on bpy 5.x, where actions are slotted only (Action.fcurves is
gone; keys live in the channelbags of slots).

``python3 scripts/dev.py test`` runs this file as a second step under ``.venv-bpy5/`` (bpy 5.0.x,
no backend, no torch: ``pytest --noconftest``). Under the main environment's bpy 4.5 it skips.
"""

import pytest

bpy = pytest.importorskip("bpy")
if bpy.app.version < (5, 0, 0):
    pytest.skip(f"bpy {bpy.app.version_string}: this file runs under bpy 5.x (scripts/dev.py test runs it in .venv-bpy5/)",
                allow_module_level=True)

from blender_addon.scene import animation, importer, points  # noqa: E402
from tests import test_addon_scene as scene_tests  # noqa: E402
from tests import test_addon_selected_splat as selected_splat_tests  # noqa: E402
from tests import test_addon_skinned as skinned_tests  # noqa: E402
from tests.addon_fixtures import fresh_blender, make_sequence  # noqa: E402,F401
from tests.test_addon_selected_splat import lamp_inputs, registered  # noqa: E402,F401

pytestmark = pytest.mark.usefixtures("fresh_blender")

# Every scene test, collected again in this module (they take only tmp_path and fresh_blender).
for _module in (scene_tests, skinned_tests, selected_splat_tests):
    for _name, _test in vars(_module).items():
        if _name.startswith("test_"):
            globals()[_name] = _test


def test_this_is_blender_5_without_legacy_action_fcurves():
    assert bpy.app.version >= (5, 0, 0)
    assert not hasattr(bpy.types.Action, "fcurves")


def test_keys_live_in_the_channelbag_of_the_assigned_slot():
    from bpy_extras.anim_utils import action_get_channelbag_for_slot

    seq = make_sequence(frames=4)
    coll = importer.import_sequence(bpy.context, seq, "job-5", importer.ImportOptions(frame_start=1))
    key = next(o for o in coll.objects if o.type == "MESH").data.shape_keys
    adt = key.animation_data
    assert adt.action_slot is not None and adt.action_slot.target_id_type == "KEY"
    channelbag = action_get_channelbag_for_slot(adt.action, adt.action_slot)
    assert channelbag.fcurves.find(f'key_blocks["{points.key_name(3)}"].value') is not None
    assert animation.fcurves(key, create=False) == channelbag.fcurves
