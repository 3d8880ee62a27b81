"""The sidebar panel: View3D > Sidebar > DynaPose4D. Draws state; never waits for anything."""

from __future__ import annotations

import bpy

from . import properties, runtime
from .format.messages import has_details, headline
from .link import job_settings

KIND_BUTTON = {"generate": "Generate", "demo": "Run Demo", "animate": "Animate"}


class DynaPose4DPanel:
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "DynaPose4D"


class DYNAPOSE4D_PT_main(DynaPose4DPanel, bpy.types.Panel):
    bl_idname = "DYNAPOSE4D_PT_main"
    bl_label = "DynaPose4D"

    def draw(self, context):
        layout = self.layout
        s = properties.settings(context)
        state = runtime.STATE
        # 1. Backend status.
        box = layout.box()
        health = state.health
        row = box.row(align=True)
        icon = "CHECKMARK" if health.info else ("SORTTIME" if health.checking else "ERROR" if health.error else "UNLINKED")
        row.label(text=health.summary()[:90], icon=icon)
        row.operator("dynapose4d.connect", text="", icon="FILE_REFRESH")
        row.operator("dynapose4d.stop_backend", text="", icon="QUIT")
        if health.info is not None:
            draw_models_needed(box, s.kind)
        # 2. What to run, on what: the inputs, then the settings that sit beside them.
        layout.prop(s, "kind", expand=True)
        col = layout.column()
        col.use_property_split = True  # labels in their own column: not cut at the sidebar's default width
        if s.kind == "generate":
            col.template_ID(s, "image", open="image.open")
            if s.image is None:
                col.prop(s, "image_path")
            col.prop(s, "video_path")
        elif s.kind == "animate":
            col.prop(s, "animate_input", expand=True)
            if s.animate_input == "SELECTED":
                draw_selected_splat(col, context)
            else:
                col.prop(s, "ply_path")
            col.prop(s, "video_path")
        draw_job_settings(col, s, job_settings.MAIN)
        # 3. Run, cancel, progress, errors.
        row = layout.row(align=True)
        row.scale_y = 1.4
        row.operator("dynapose4d.generate", text=KIND_BUTTON[s.kind], icon="PLAY")
        row.operator("dynapose4d.cancel", text="", icon="CANCEL")
        view = state.view
        if view is not None:
            fraction = view.progress or 0.0
            if view.state == "done":
                fraction = 1.0
            layout.progress(factor=fraction, type="BAR", text=view.text())
            if state.fetch is not None and state.fetch.done < state.fetch.total:
                layout.label(text=f"Receiving snapshot {state.fetch.version}: frame {state.fetch.done}/{state.fetch.total}",
                             icon="IMPORT")
            elif state.imported_version is not None:
                info = f"Snapshot {state.imported_version} imported"  # short: the sidebar's default width
                if state.last_update_s is not None:
                    info += f" · {state.last_update_s:.2f} s"
                layout.label(text=info, icon="OUTLINER_COLLECTION")
        waiting = view is not None and view.state == "waiting"
        if s.kind == "generate" and (waiting or state.candidates is not None):
            from . import candidates

            candidates.draw(layout, state.candidates, waiting)
        if state.colour_hint and state.imported_version is not None:
            # Solid shading draws the splats grey; the operator's tooltip says so.
            layout.operator("dynapose4d.show_colours", text="Show Splat Colours", icon="MATERIAL")
        if state.error:
            draw_error(layout, context, state.error)


def draw_selected_splat(layout, context) -> None:
    """Which object Animate will animate, or why the active one cannot be."""
    from .scene.selected_splat import describe

    selection = describe(context.active_object)
    col = layout.column(align=True)
    col.alert = not selection.ok
    for number, line in enumerate(selection.lines):
        icon = ("OUTLINER_OB_POINTCLOUD" if selection.ok else "ERROR") if number == 0 else "BLANK1"
        col.label(text=line, icon=icon)


def draw_models_needed(layout, kind: str) -> None:
    """Which models the chosen kind needs, and whether the backend has them (Demo and Animate: none)."""
    view = runtime.STATE.models.snapshot()
    if kind != "generate":
        layout.label(text=f"{'Demo' if kind == 'demo' else 'Animate'} needs no model", icon="CHECKMARK")
        return
    rows = [r for r in view.rows if r.kind in ("zero123", "svd")] if view.rows else []
    if not rows:  # the list is not here yet: the health answer's
        for name, ok in runtime.STATE.health.models():
            layout.label(text=name, icon="CHECKMARK" if ok else "X")
        return
    col = layout.column(align=True)
    for row in rows:
        col.label(text=f"{row.title}: {row.used_by}", icon="CHECKMARK" if row.state == "present" else "X")
    if any(r.state != "present" and r.name in ("zero123-xl", "svd") for r in rows):
        col.label(text="Download models in the add-on's preferences (Models)", icon="INFO")


def draw_error(layout, context, error: str) -> None:
    """One readable line, and the whole message behind a Details toggle."""
    box = layout.box()
    box.alert = True
    for number, line in enumerate(_wrap(headline(error), 60)[:3]):
        box.label(text=line, icon="ERROR" if number == 0 else "BLANK1")
    if not has_details(error):
        return
    wm = context.window_manager
    open_ = wm.dynapose4d_error_details
    box.prop(wm, "dynapose4d_error_details", icon="TRIA_DOWN" if open_ else "TRIA_RIGHT", emboss=False)
    if open_:
        for line in _wrap(error, 70)[:40]:
            box.label(text=line)


class DYNAPOSE4D_PT_settings(DynaPose4DPanel, bpy.types.Panel):
    bl_label = "Settings"
    bl_parent_id = "DYNAPOSE4D_PT_main"
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context):
        self.layout.use_property_split = True
        draw_job_settings(self.layout.column(), properties.settings(context), job_settings.SETTINGS)


class DYNAPOSE4D_PT_advanced(DynaPose4DPanel, bpy.types.Panel):
    bl_label = "Advanced"
    bl_parent_id = "DYNAPOSE4D_PT_settings"
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context):
        self.layout.use_property_split = True
        draw_job_settings(self.layout.column(), properties.settings(context), job_settings.ADVANCED)


def draw_job_settings(layout, s, place: str) -> None:
    """The job settings of the table's ``place`` for the chosen kind: a number the preset decides
    shows "Auto (...)" until its Override box is ticked."""
    for setting in job_settings.shown_rows(s.kind, place, properties.panel_values(s)):
        if not setting.overridable:
            layout.prop(s, setting.name)
            continue
        override = job_settings.override_name(setting.name)
        row = layout.row(heading=setting.label, align=True)
        row.prop(s, override, text="")
        value = row.row(align=True)
        if getattr(s, override):
            value.prop(s, setting.name, text="")
        else:
            value.active = False  # greyed: the preset decides
            value.label(text=job_settings.auto_text(setting, s.kind))


class DYNAPOSE4D_PT_result(DynaPose4DPanel, bpy.types.Panel):
    bl_label = "Import and Export"
    bl_parent_id = "DYNAPOSE4D_PT_main"

    def draw(self, context):
        layout = self.layout
        layout.use_property_split = True
        s = properties.settings(context)
        col = layout.column()
        col.prop(s, "length_from_video")
        fps = properties.scene_fps(context.scene)
        clip = runtime.STATE.view.clip_duration_s if runtime.STATE.view is not None else None
        if s.length_from_video:
            text = f"the video's {clip:.2f} s at the scene's {fps:g} fps" if clip is not None else "the video's length, once known"
        else:
            col.prop(s, "duration")
            text = f"{max(1, round(s.duration * fps))} frames at the scene's {fps:g} fps"
        col.label(text=text)
        col.prop(s, "time_mode")
        col.prop(s, "set_frame_range")
        col.prop(s, "radius_scale")
        col.prop(s, "output")
        if s.output != "POINTS":
            col.prop(s, "max_bones")
            col.prop(s, "mesh_faces")
        draw_job_picker(col, s)
        row = layout.row(align=True)
        row.operator("dynapose4d.import_job", icon="IMPORT")
        row.operator("dynapose4d.import_result", text="Import Folder", icon="FILE_FOLDER")
        row = layout.row(align=True)
        row.operator("dynapose4d.export_gltf", icon="EXPORT").form = "SCENE"
        row.operator("dynapose4d.export_gltf", text="Export Splats", icon="EXPORT").form = "SPLATS"


def draw_job_picker(layout, s) -> None:
    """The scene's job, picked from the server's list (kind, input, state, date), not typed as an id."""
    state = runtime.STATE
    entry = next((e for e in state.jobs if e.id == s.job_id), None)
    text = entry.label if entry is not None else (f"Job {s.job_id[:8]}…" if s.job_id else "Choose a job")
    row = layout.row(heading="Job", align=True)
    row.operator_menu_enum("dynapose4d.pick_job", "job", text=text, icon="FILE_FOLDER")
    row.operator("dynapose4d.refresh_jobs", text="", icon="FILE_REFRESH")
    if state.jobs_error:
        layout.label(text=headline(state.jobs_error), icon="ERROR")


class DYNAPOSE4D_PT_retarget(DynaPose4DPanel, bpy.types.Panel):
    bl_label = "Retarget"
    bl_parent_id = "DYNAPOSE4D_PT_main"
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context):
        layout = self.layout
        s = properties.settings(context)
        layout.prop(s, "retarget_target")
        target = s.retarget_target
        for i, pair in enumerate(s.retarget_pairs):
            row = layout.row(align=True)
            if target is not None and target.type == "ARMATURE":
                row.prop_search(pair, "bone", target.data, "bones", text="")
            else:
                row.prop(pair, "bone", text="")
            row.prop(pair, "head", text="")
            row.prop(pair, "aim", text="")
            row.operator("dynapose4d.retarget_pair", text="", icon="X").index = i
        layout.operator("dynapose4d.retarget_pair", text="Add Bone", icon="ADD").index = -1
        layout.prop(s, "retarget_preset")
        row = layout.row(align=True)
        row.operator("dynapose4d.retarget_preset", text="Save Preset").action = "SAVE"
        row.operator("dynapose4d.retarget_preset", text="Load Preset").action = "LOAD"
        layout.operator("dynapose4d.retarget", icon="ARMATURE_DATA")


def _wrap(text: str, width: int) -> list[str]:
    import textwrap

    out = []
    for paragraph in str(text).splitlines() or [""]:
        out += textwrap.wrap(paragraph, width) or [""]
    return out


CLASSES = (DYNAPOSE4D_PT_main, DYNAPOSE4D_PT_settings, DYNAPOSE4D_PT_advanced, DYNAPOSE4D_PT_result, DYNAPOSE4D_PT_retarget)
