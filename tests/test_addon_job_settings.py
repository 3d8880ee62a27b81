"""The add-on's one table of job settings (blender_addon/link/job_settings.py), with no bpy: it
agrees with the backend's SETTINGS (as the server publishes them at GET /v1/kinds), every row
reaches the request, and a new row costs nothing more than itself."""

from pathlib import Path

import pytest

from blender_addon.link import job_settings
from blender_addon.link.job_settings import JobSetting
from blender_addon.link.jobs import JobOptions, JobRequestError, build_request, request_settings

ROOT = Path(__file__).resolve().parents[1]
JSON_TYPE = {int: "integer", float: "number", str: "string", bool: "boolean"}
# Where the add-on's default is not the command line's, and why.
DELIBERATE_DEFAULTS = {
    "up_axis": "a PLY the add-on sends comes from Blender (Z up); the command line's default is 3DGS tools' Y",
    "previews": "Blender shows the result itself: no preview GIFs",
}


def published_kinds() -> dict:
    """What GET /v1/kinds answers, made the way the server makes it (server/api/app.py)."""
    pipeline = pytest.importorskip("dynapose4d.pipeline")
    return {kind: {"settings": {s.name: s.describe() for s in settings}} for kind, settings in pipeline.SETTINGS.items()}


def disagreements(kinds: dict) -> list[str]:
    """How the add-on's table and the server's published settings differ (empty: they agree).
    Also run against a live server's GET /v1/kinds by test_addon_client.py."""
    out = []
    table = {s.name: s for s in job_settings.JOB_SETTINGS}
    declared_in = {}
    for kind, info in kinds.items():
        for name, spec in info["settings"].items():
            declared_in.setdefault(name, []).append(kind)
            setting = table.get(name)
            if setting is None:
                out.append(f"{kind}: the backend's setting {name!r} is not in the add-on's table")
                continue
            if JSON_TYPE[setting.type] != spec["type"]:
                out.append(f"{name}: {setting.type.__name__} in the add-on, {spec['type']} on the server")
            if setting.choices and {c[0] for c in setting.choices} != set(spec.get("enum", ())):
                out.append(f"{name}: choices {[c[0] for c in setting.choices]} vs the server's {spec.get('enum')}")
            # The panel's range lies inside the server's for every kind: a value the panel allows is never refused.
            if setting.minimum is not None and setting.minimum < spec.get("minimum", setting.minimum):
                out.append(f"{kind}.{name}: the panel allows {setting.minimum}, the server's minimum is {spec['minimum']}")
            if setting.maximum is not None and setting.maximum > spec.get("maximum", setting.maximum):
                out.append(f"{kind}.{name}: the panel allows {setting.maximum}, the server's maximum is {spec['maximum']}")
            if setting.type in (int, float) and setting.minimum is None:
                out.append(f"{name}: a number without a range in the add-on's table")
            if not setting.auto and setting.default != spec["default"] and name not in DELIBERATE_DEFAULTS:
                out.append(f"{kind}.{name}: the add-on's default {setting.default!r} is not the server's {spec['default']!r}")
            # Not sending an Auto value must mean "the preset decides" where there is a preset.
            if setting.auto and kind == "generate" and spec["default"] not in (0, ""):
                out.append(f"{name}: Auto in the add-on, but the server's generate default is {spec['default']!r}")
    for name, setting in table.items():
        if sorted(setting.kinds) != sorted(declared_in.get(name, [])):
            out.append(f"{name}: sent by {sorted(setting.kinds)} in the add-on, declared for {sorted(declared_in.get(name, []))}")
    return out


def test_the_table_is_the_backend_s_settings():
    assert disagreements(published_kinds()) == []


def test_the_check_finds_a_missing_setting_and_a_wrong_range():
    kinds = published_kinds()
    kinds["demo"]["settings"]["new_thing"] = {"type": "integer", "default": 1, "description": ""}
    kinds["generate"]["settings"]["seed"] = dict(kinds["generate"]["settings"]["seed"], maximum=10)
    found = disagreements(kinds)
    assert any("'new_thing' is not in the add-on's table" in p for p in found)
    assert any("generate.seed: the panel allows" in p for p in found)


def test_settings_only_the_command_line_has_are_documented_with_the_reason():
    guide = (ROOT / "docs" / "blender.md").read_text()
    for setting in job_settings.rows(places=(job_settings.NOWHERE,)):
        assert f"`{setting.name}`" in guide, f"docs/blender.md does not list {setting.name} as command-line only"


def test_labels_fit_the_sidebar_and_tooltips_say_more():
    assert len({s.name for s in job_settings.JOB_SETTINGS}) == len(job_settings.JOB_SETTINGS)
    for setting in job_settings.JOB_SETTINGS:
        assert setting.place in job_settings.PLACES
        assert setting.tooltip and setting.tooltip != setting.label, setting.name
        if setting.place != job_settings.PREFERENCES:  # the preferences window is wide
            assert len(setting.label) <= job_settings.MAX_LABEL, (setting.name, setting.label)
        if setting.choices:
            assert setting.default in [c[0] for c in setting.choices], setting.name
        if setting.minimum is not None:
            assert setting.minimum <= setting.default <= setting.maximum, setting.name


def test_an_empty_request_sends_the_table_s_defaults_and_leaves_auto_to_the_backend():
    for kind in job_settings.KINDS:
        expected = {s.name: s.default for s in job_settings.rows(kind) if not s.auto}
        assert request_settings(kind, {}) == expected
    generate = request_settings("generate", {})
    assert "iterations" not in generate and "svd" not in generate and generate["previews"] is False
    assert request_settings("generate", {"iterations": 40, "svd": "svd-xt"})["iterations"] == 40


def test_every_request_validates_on_the_backend(tmp_path):
    pipeline = pytest.importorskip("dynapose4d.pipeline")
    for kind in job_settings.KINDS:
        overridden = {s.name: s.default for s in job_settings.rows(kind) if s.overridable}
        for values in ({}, overridden):
            sent = request_settings(kind, values)
            checked = pipeline.validate_settings(kind, sent)
            assert {name: checked[name] for name in sent} == sent


def test_bad_values_name_the_setting_as_the_panel_does():
    with pytest.raises(JobRequestError, match=r"Motion Steps \(iterations\) must be at least 1, got 0"):
        request_settings("demo", {"iterations": 0})
    with pytest.raises(JobRequestError, match=r"Seed \(seed\) must be int, got 'x'"):
        request_settings("demo", {"seed": "x"})
    with pytest.raises(JobRequestError, match="unknown job setting"):
        request_settings("demo", {"iteratoins": 3})
    assert "gaussians" not in request_settings("generate", {"gaussians": 600})  # another kind's setting: not sent


def test_what_the_panel_shows_follows_the_kind_and_the_video():
    values = {"kind": "generate", "has_video": False, "estimator": "tracker"}
    main = [s.name for s in job_settings.shown_rows("generate", job_settings.MAIN, values)]
    assert main == ["preset", "video_candidates", "choose_video"]
    values["has_video"] = True
    assert [s.name for s in job_settings.shown_rows("generate", job_settings.MAIN, values)] == ["preset", "video_fps"]
    values["kind"] = "animate"
    assert "video_fps" in [s.name for s in job_settings.shown_rows("animate", job_settings.MAIN, dict(values, has_video=False))]
    prefs = [s.name for s in job_settings.shown_rows(None, job_settings.PREFERENCES, values)]
    assert prefs == ["device", "estimator"]
    assert "keypoint_weights" in [s.name for s in job_settings.shown_rows(None, job_settings.PREFERENCES,
                                                                          dict(values, estimator="poseanything"))]
    assert job_settings.auto_text(job_settings.row("iterations"), "generate") == "Auto (from preset)"
    assert job_settings.auto_text(job_settings.row("iterations"), "demo") == "Auto (default)"
    assert job_settings.auto_text(job_settings.row("video_fps"), "animate") == "Auto (from file)"


def test_a_new_row_is_drawn_and_sent(monkeypatch, tmp_path):
    row = JobSetting("tile_size", "Tile Size", ("demo",), 16, "Side of a render tile", 1, 64, place=job_settings.ADVANCED)
    monkeypatch.setattr(job_settings, "JOB_SETTINGS", job_settings.JOB_SETTINGS + (row,))
    shown = job_settings.shown_rows("demo", job_settings.ADVANCED, {"kind": "demo", "has_video": False})
    assert row in shown
    assert build_request(JobOptions(kind="demo")).settings["tile_size"] == 16
    assert build_request(JobOptions(kind="demo", settings={"tile_size": 8})).settings["tile_size"] == 8
    assert "tile_size" not in build_request(JobOptions(kind="generate", image_path=__file__)).settings
