"""Operators: thin. Each copies its properties into plain objects and calls a function.

Network and process work runs on threads (``link.follow``, ``link.launcher``, ``runtime``); the modal
``dynapose4d.watch`` operator polls them with a timer and applies the results on the main
thread, so Blender's UI never waits for the backend.
"""

from __future__ import annotations

import bpy
from bpy.props import BoolProperty, EnumProperty, IntProperty, StringProperty
from bpy_extras.io_utils import ExportHelper, ImportHelper

from . import preferences, properties, runtime

WATCH_INTERVAL_S = 0.2


def start_watching(context) -> None:
    """Run the watch timer (once). The bpy module has no event loop: there, callers tick."""
    if runtime.STATE.watching or bpy.app.background:
        return
    bpy.ops.dynapose4d.watch("INVOKE_DEFAULT")


def follow_job(context, prefs, sampling, place: bool = True, **job) -> None:
    """Follow a new job (``request=``) or an existing one (``job_id=``) into this scene.
    ``place``: a new result goes beside what the scene holds (False: where its data say, e.g.
    on the selected splat it animates)."""
    options = properties.import_options(context)
    options.place = place
    runtime.STATE.start_session(preferences.backend_settings(prefs), sampling, options,
                                context.scene.name, mesh=properties.mesh_request(context),
                                clip_length=properties.settings(context).length_from_video, **job)
    start_watching(context)


def redraw(context) -> None:
    wm = context.window_manager
    for window in wm.windows:
        for area in window.screen.areas:
            if area.type in ("VIEW_3D", "PREFERENCES"):
                area.tag_redraw()


class DYNAPOSE4D_OT_watch(bpy.types.Operator):
    """Follow the backend: apply job progress and new snapshots to the scene as they arrive"""

    bl_idname = "dynapose4d.watch"
    bl_label = "Follow DynaPose4D Backend"
    bl_options = {"INTERNAL"}

    def invoke(self, context, event):
        state = runtime.STATE
        if state.watching:
            return {"CANCELLED"}
        wm = context.window_manager
        self._timer = wm.event_timer_add(WATCH_INTERVAL_S, window=context.window)
        wm.modal_handler_add(self)
        state.watching = True
        return {"RUNNING_MODAL"}

    def modal(self, context, event):
        if event.type != "TIMER":
            return {"PASS_THROUGH"}
        state = runtime.STATE
        try:
            for level, text in state.tick(context):
                self.report({level}, text)
        except Exception as exc:  # a failing import must not kill the timer silently
            state.error = f"import failed: {type(exc).__name__}: {exc}"
            self.report({"ERROR"}, state.error)
            if state.session is not None:
                state.session.close()
        redraw(context)
        if not state.busy():
            self._finish(context)
            return {"FINISHED"}
        return {"PASS_THROUGH"}

    def cancel(self, context):
        self._finish(context)

    def _finish(self, context):
        context.window_manager.event_timer_remove(self._timer)
        runtime.STATE.watching = False


class DYNAPOSE4D_OT_connect(bpy.types.Operator):
    """Connect to the backend (starting the local one if needed) and show its device and models"""

    bl_idname = "dynapose4d.connect"
    bl_label = "Connect"

    def execute(self, context):
        runtime.STATE.check_health(preferences.backend_settings(preferences.get(context)))
        start_watching(context)
        return {"FINISHED"}


class DYNAPOSE4D_OT_stop_backend(bpy.types.Operator):
    """Stop the backend this add-on started (running jobs are interrupted and can be resumed)"""

    bl_idname = "dynapose4d.stop_backend"
    bl_label = "Stop Backend"

    def execute(self, context):
        if not runtime.STATE.stop_backend():
            self.report({"INFO"}, "No backend started by Blender is running")
        return {"FINISHED"}


class DYNAPOSE4D_OT_generate(bpy.types.Operator):
    """Send the job to the backend and import its result live while it trains"""

    bl_idname = "dynapose4d.generate"
    bl_label = "Generate"

    @classmethod
    def poll(cls, context):
        if runtime.STATE.job_running:
            cls.poll_message_set("A job is running: cancel it first")
            return False
        if properties.animates_selection(properties.settings(context)):
            from .scene.selected_splat import describe

            selection = describe(context.active_object)
            if not selection.ok:
                cls.poll_message_set(selection.text)
                return False
        return True

    def execute(self, context):
        from .link.jobs import JobRequestError, build_request

        prefs = preferences.get(context)
        try:
            request = build_request(properties.job_options(context, prefs, runtime.STATE.temp.name), runtime.STATE.temp.name)
            sampling = properties.sampling(context, prefs)
        except (JobRequestError, ValueError, RuntimeError) as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        # A selected splat was sent in world space: its result comes back exactly on it.
        follow_job(context, prefs, sampling, place=not properties.animates_selection(properties.settings(context)), request=request)
        return {"FINISHED"}


class DYNAPOSE4D_OT_import_job(bpy.types.Operator):
    """Import an existing job's latest snapshot (again: e.g. after changing the duration), following it if it still runs"""

    bl_idname = "dynapose4d.import_job"
    bl_label = "Import Job"

    job_id: StringProperty(name="Job", description="Job id (empty: the scene's job)")

    def execute(self, context):
        job_id = self.job_id or properties.settings(context).job_id
        if not job_id:
            self.report({"ERROR"}, "No job id: run a job first, or enter the id of one")
            return {"CANCELLED"}
        prefs = preferences.get(context)
        try:
            sampling = properties.sampling(context, prefs)
        except ValueError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        follow_job(context, prefs, sampling, job_id=job_id)
        return {"FINISHED"}


def _job_client(context):
    """A client of the configured backend (blocking; the candidate operators talk briefly)."""
    return runtime.STATE.backends.client(preferences.backend_settings(preferences.get(context)))


class DYNAPOSE4D_OT_show_candidates(bpy.types.Operator):
    """Show the driving-video candidates of the scene's job (previews and scores)"""

    bl_idname = "dynapose4d.show_candidates"
    bl_label = "Show Candidates"

    def execute(self, context):
        from . import candidates
        from .link.client import BackendError

        job_id = properties.settings(context).job_id or (runtime.STATE.view.id if runtime.STATE.view else "")
        if not job_id:
            self.report({"ERROR"}, "No job: run a Generate job first")
            return {"CANCELLED"}
        try:
            shelf = candidates.refresh(_job_client(context), job_id, runtime.STATE.temp.name)
        except BackendError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        if runtime.STATE.candidates is not None:
            runtime.STATE.candidates.release()
        runtime.STATE.candidates = shelf
        if not shelf.items:
            self.report({"INFO"}, f"Job {job_id} has no driving-video candidates (a Generate job without a video makes them)")
        redraw(context)
        return {"FINISHED"}


class DYNAPOSE4D_OT_choose_candidate(bpy.types.Operator):
    """Drive the motion with this video: the job goes on (or re-runs its 4D stage) and is imported as it trains"""

    bl_idname = "dynapose4d.choose_candidate"
    bl_label = "Use This Video"

    index: IntProperty(name="Candidate", min=0, max=7)

    @classmethod
    def poll(cls, context):
        shelf = runtime.STATE.candidates
        if shelf is None or not shelf.items:
            cls.poll_message_set("Show the job's candidates first")
            return False
        if runtime.STATE.job_running:
            cls.poll_message_set("The job is running: wait for it, or cancel it first")
            return False
        return True

    def execute(self, context):
        from . import candidates
        from .link.client import BackendError

        shelf = runtime.STATE.candidates
        prefs = preferences.get(context)
        try:
            candidates.choose(_job_client(context), shelf.job_id, self.index)
            sampling = properties.sampling(context, prefs)
        except (BackendError, ValueError) as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        shelf.waiting, shelf.chosen, shelf.chosen_by = False, self.index, "user"
        for item in shelf.items:
            item.chosen = item.index == self.index
        follow_job(context, prefs, sampling, job_id=shelf.job_id)
        return {"FINISHED"}


class DYNAPOSE4D_OT_cancel(bpy.types.Operator):
    """Cancel the running job (its last checkpoint is kept: it can be resumed)"""

    bl_idname = "dynapose4d.cancel"
    bl_label = "Cancel"

    @classmethod
    def poll(cls, context):
        return runtime.STATE.job_running

    def execute(self, context):
        runtime.STATE.session.cancel()
        return {"FINISHED"}


EXPORT_FORMS = (
    ("SCENE", "Points, Rig and Camera", "What the scene shows, through Blender's glTF exporter: the points (one morph target "
     "per frame) or the skinned mesh, the keypoint empties, the armature and the reference camera. For engines and Blender"),
    ("SPLATS", "Splats (KHR_gaussian_splatting)", "The Gaussians themselves, written by the backend: rigid parts or a "
     "flipbook, keypoint empties and bones, the camera. For web viewers (three.js, Babylon.js, PlayCanvas) and Blender 5.3"),
)


class DYNAPOSE4D_OT_export_gltf(bpy.types.Operator, ExportHelper):
    """Export the job's result to glTF: the scene's points, rig and camera, or the Gaussian splats themselves"""

    bl_idname = "dynapose4d.export_gltf"
    bl_label = "Export glTF"
    filename_ext = ".glb"

    filter_glob: StringProperty(default="*.glb", options={"HIDDEN"})
    job_id: StringProperty(name="Job", description="Job whose collection to export (empty: the scene's or the active object's)")
    form: EnumProperty(name="Export", items=EXPORT_FORMS, default="SCENE")
    camera: BoolProperty(name="Reference Camera", default=True)
    rebake: BoolProperty(name="Re-bake Rig", default=True, description="Bake the armature again from the keypoint empties first")

    def execute(self, context):
        from .scene.export import ExportError, export_gltf
        from .scene.importer import collection_of, job_collection

        job_id = self.job_id or properties.settings(context).job_id
        coll = job_collection(context.scene, job_id, create=False) if job_id else collection_of(context.active_object)
        if coll is None:
            self.report({"ERROR"}, "Nothing to export: import a DynaPose4D job first")
            return {"CANCELLED"}
        try:
            if self.form == "SPLATS":
                path = export_splats(context, coll, self.filepath)
            else:
                path = export_gltf(context, coll, self.filepath, camera=self.camera, rebake=self.rebake)
        except (ExportError, RuntimeError, ValueError) as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        self.report({"INFO"}, f"Exported {path}")
        return {"FINISHED"}


def export_splats(context, coll, filepath: str):
    """The collection's result as KHR_gaussian_splatting, written by the backend: a folder's through
    its export command, a server job's through the server (sampled as the scene imported it)."""
    from .format.sequence import Sampling
    from .link.exports import folder_source, splats_from_server, splats_with_cli
    from .scene.importer import JOB
    from .scene.result_import import SOURCE

    path = bpy.path.ensure_ext(bpy.path.abspath(filepath), ".glb")
    fps, count = float(coll["dynapose4d_fps"]), int(coll["dynapose4d_frame_count"])
    mode = properties.settings(context).time_mode
    source = coll.get(SOURCE)
    prefs = preferences.get(context)
    if source:
        settings = preferences.backend_settings(prefs)
        splats_with_cli(settings.python, folder_source(source), path, fps=fps, frames=count, mode=mode, env=backend_env(prefs))
        return path
    return splats_from_server(_job_client(context), coll[JOB], Sampling(fps, count, mode), path)


class DYNAPOSE4D_OT_import_result(bpy.types.Operator, ImportHelper):
    """Import a result made by the command line: a job folder (dynapose4d animate/demo -o ...) or a PLY sequence's sequence.json"""

    bl_idname = "dynapose4d.import_result"
    bl_label = "Import DynaPose4D Result"
    bl_options = {"REGISTER", "UNDO"}
    filename_ext = ".json"

    filter_glob: StringProperty(default="*.json;*.ply", options={"HIDDEN"})
    use_result_fps: BoolProperty(name="Result's Frame Rate", default=True,
                                 description="Set the scene's frame rate to the result's, so its frames play at their real "
                                             "times (off: one result frame per scene frame)")

    def execute(self, context):
        from .format.result_folder import ResultFolderError
        from .scene.result_import import import_result_folder

        try:
            coll = import_result_folder(context, self.filepath, properties.import_options(context), self.use_result_fps)
        except ResultFolderError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        self.report({"INFO"}, f"Imported {coll.name}: {coll['dynapose4d_gaussians']:,} Gaussians, {coll['dynapose4d_frame_count']} frames")
        return {"FINISHED"}


def menu_import(self, context):
    self.layout.operator(DYNAPOSE4D_OT_import_result.bl_idname, text="DynaPose4D Result (.json, job folder)")


MENUS = (("TOPBAR_MT_file_import", menu_import),)


def _job_collection(context):
    from .scene.importer import collection_of, job_collection

    job_id = properties.settings(context).job_id
    coll = job_collection(context.scene, job_id, create=False) if job_id else None
    return coll or collection_of(context.active_object)


class DYNAPOSE4D_OT_retarget(bpy.types.Operator):
    """Put the keypoint motion onto the target armature: constraints to the keypoint empties, baked to keys"""

    bl_idname = "dynapose4d.retarget"
    bl_label = "Retarget"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context):
        from .format.retarget import PresetError
        from .scene.retarget import mapping_from_settings, retarget

        s = properties.settings(context)
        coll = _job_collection(context)
        if coll is None:
            self.report({"ERROR"}, "No job to retarget from: import a DynaPose4D job first")
            return {"CANCELLED"}
        try:
            bones = retarget(context, coll, s.retarget_target, mapping_from_settings(s.retarget_pairs))
        except (ValueError, PresetError) as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        self.report({"INFO"}, f"Retargeted {len(bones)} bones of {s.retarget_target.name}")
        return {"FINISHED"}


class DYNAPOSE4D_OT_retarget_pair(bpy.types.Operator):
    """Add a bone to the retarget mapping, or remove one"""

    bl_idname = "dynapose4d.retarget_pair"
    bl_label = "Retarget Bone"
    bl_options = {"REGISTER", "UNDO"}

    index: IntProperty(default=-1, description="The pair to remove (-1: add one)")

    def execute(self, context):
        pairs = properties.settings(context).retarget_pairs
        if self.index < 0:
            pairs.add()
        elif self.index < len(pairs):
            pairs.remove(self.index)
        return {"FINISHED"}


class DYNAPOSE4D_OT_retarget_preset(bpy.types.Operator):
    """Save the retarget mapping to its preset file, or load it from there"""

    bl_idname = "dynapose4d.retarget_preset"
    bl_label = "Retarget Preset"

    action: EnumProperty(items=(("SAVE", "Save", ""), ("LOAD", "Load", "")), default="SAVE")

    def execute(self, context):
        from .format.retarget import PresetError, load_preset, save_preset
        from .scene.retarget import mapping_from_settings

        s = properties.settings(context)
        if not s.retarget_preset:
            self.report({"ERROR"}, "Choose a preset file first")
            return {"CANCELLED"}
        path = bpy.path.abspath(s.retarget_preset)
        try:
            if self.action == "SAVE":
                path = save_preset(path, mapping_from_settings(s.retarget_pairs))
            else:
                pairs = load_preset(path)
                s.retarget_pairs.clear()
                for p in pairs:
                    item = s.retarget_pairs.add()
                    item.bone, item.head, item.aim = p.bone, p.head, p.aim
        except PresetError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        self.report({"INFO"}, f"{'Saved' if self.action == 'SAVE' else 'Loaded'} {path}")
        return {"FINISHED"}


class DYNAPOSE4D_OT_install_backend(bpy.types.Operator):
    """Create the backend's Python environment from the sources bundled with the add-on (downloads packages)"""

    bl_idname = "dynapose4d.install_backend"
    bl_label = "Create Backend Environment"

    def execute(self, context):
        import shlex

        from .link.launcher import EnvironmentBuilder, bundled_backend_source

        if not bpy.app.online_access:
            self.report({"ERROR"}, "Online access is off: allow it in Preferences > System > Network to download the backend's packages")
            return {"CANCELLED"}
        source = bundled_backend_source()
        if source is None:
            self.report({"ERROR"}, "This build of the add-on has no backend sources (backend_src); reinstall it")
            return {"CANCELLED"}
        prefs = preferences.get(context)
        choice = torch_choice(prefs)
        builder = EnvironmentBuilder(
            prefs.env_dir_path() if prefs else preferences.default_env_dir(),
            source,
            base_python=bpy.path.abspath(prefs.base_python) if prefs and prefs.base_python else "",
            extras=("diffusion",) if prefs is None or prefs.with_diffusion else (),
            pip_args=tuple(shlex.split(prefs.pip_args)) if prefs and prefs.pip_args else (),
            torch=choice,
        )
        try:
            runtime.STATE.build_environment(builder, check_env=backend_env(prefs))
        except RuntimeError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        self.report({"INFO"}, f"Creating the backend environment with the {choice.text()}")
        start_watching(context)
        return {"FINISHED"}


def torch_choice(prefs):
    """The torch build for this machine (detected now if the preferences have not yet), or the override."""
    from .link import torch_build

    override = prefs.torch_build if prefs is not None else "AUTO"
    state = runtime.STATE
    if override == "AUTO" and state.torch_facts is None:
        state.torch_facts = torch_build.detect()
    return torch_build.choose(state.torch_facts or torch_build.Facts("?"), override)


def backend_env(prefs) -> dict:
    """The environment the local backend's programs get from the preferences (the model cache)."""
    if prefs is not None and prefs.backend_mode == "LOCAL" and prefs.model_dir:
        return {"HF_HOME": bpy.path.abspath(prefs.model_dir)}
    return {}


class DYNAPOSE4D_OT_install_backend_cancel(bpy.types.Operator):
    """Stop creating the backend environment"""

    bl_idname = "dynapose4d.install_backend_cancel"
    bl_label = "Stop"

    def execute(self, context):
        if runtime.STATE.builder is not None:
            runtime.STATE.builder.cancel()
        return {"FINISHED"}


# -- the models, the setup check ---------------------------------------------------------------------


def _models(context):
    return runtime.STATE.models_of(preferences.backend_settings(preferences.get(context)))


class DYNAPOSE4D_OT_refresh_models(bpy.types.Operator):
    """Ask the backend which models it has (starting the local backend if needed)"""

    bl_idname = "dynapose4d.refresh_models"
    bl_label = "Refresh Models"

    def execute(self, context):
        _models(context).refresh()
        start_watching(context)
        return {"FINISHED"}


class DYNAPOSE4D_OT_download_model(bpy.types.Operator):
    """Download this model on the backend's machine, once you have read and accepted its licence"""

    bl_idname = "dynapose4d.download_model"
    bl_label = "Download Model"

    name: StringProperty(name="Model", options={"HIDDEN"})
    accept: BoolProperty(name="I have read and accept the licence", default=False, options={"SKIP_SAVE"})

    def invoke(self, context, event):
        self.accept = False
        try:
            return context.window_manager.invoke_props_dialog(self, width=560, title=f"Download {self.name}", confirm_text="Download")
        except TypeError:  # Blender 4.2: no title or confirm_text
            return context.window_manager.invoke_props_dialog(self, width=560)

    def draw(self, context):
        layout = self.layout
        model = runtime.STATE.models.snapshot().row(self.name)
        if model is None:
            layout.label(text=f"{self.name}: refresh the models list first", icon="ERROR")
            return
        layout.label(text=f"{model.title} · {model.status_text()}", icon="FILE_3D")
        layout.label(text=f"Licence: {model.license}")
        preferences.wrapped(layout, model.license_note, "INFO", 3, 90)
        layout.operator("wm.url_open", text="Read the licence on the model page", icon="URL").url = model.page_url
        if model.gated:
            preferences.wrapped(layout, "This model is gated: open its page while logged in to Hugging Face and accept the "
                                        "licence there, then put a read token of that account in the preferences.", "ERROR", 3, 90)
            token = context.window_manager.dynapose4d_hf_token
            layout.label(text="A token is set (sent for this download only)" if token else
                         "No token set: the backend's own login (HF_TOKEN, hf auth login) is tried", icon="KEYINGSET")
        layout.prop(self, "accept")

    def execute(self, context):
        if not self.accept:
            self.report({"ERROR"}, "Tick 'I have read and accept the licence' to download the model")
            return {"CANCELLED"}
        token = context.window_manager.dynapose4d_hf_token.strip() or None
        _models(context).download(self.name, accept_license=True, token=token)
        start_watching(context)
        return {"FINISHED"}


class DYNAPOSE4D_OT_cancel_download(bpy.types.Operator):
    """Stop this download (complete files stay: the next download goes on from there)"""

    bl_idname = "dynapose4d.cancel_download"
    bl_label = "Cancel Download"

    name: StringProperty(name="Model", options={"HIDDEN"})

    def execute(self, context):
        _models(context).cancel(self.name)
        start_watching(context)
        return {"FINISHED"}


class DYNAPOSE4D_OT_convert_poseanything(bpy.types.Operator):
    """Convert the PoseAnything checkpoint you downloaded into the weights the keypoint estimator loads"""

    bl_idname = "dynapose4d.convert_poseanything"
    bl_label = "Convert PoseAnything Checkpoint"

    def execute(self, context):
        prefs = preferences.get(context)
        if prefs is None or not prefs.poseanything_file:
            self.report({"ERROR"}, "Choose the downloaded checkpoint (.pth) first")
            return {"CANCELLED"}
        _models(context).convert_poseanything(properties.backend_path(prefs.poseanything_file, prefs))
        start_watching(context)
        return {"FINISHED"}


class DYNAPOSE4D_OT_check_setup(bpy.types.Operator):
    """Run the backend's self-test: the device, the renderer, which models load, and what to do about each problem"""

    bl_idname = "dynapose4d.check_setup"
    bl_label = "Check Setup"

    def execute(self, context):
        prefs = preferences.get(context)
        settings = preferences.backend_settings(prefs)
        runtime.STATE.check_setup(settings, backend_env(prefs))
        start_watching(context)
        return {"FINISHED"}


# -- the job list, the viewport ----------------------------------------------------------------------

_JOB_ITEMS: list = []  # Blender needs the enum's strings kept alive while the menu is open


def _job_items(self, context):
    _JOB_ITEMS[:] = [(e.id, e.label, f"Job {e.id}") for e in runtime.STATE.jobs] or [("", "No jobs (refresh)", "")]
    return _JOB_ITEMS


class DYNAPOSE4D_OT_pick_job(bpy.types.Operator):
    """Choose one of the backend's jobs for this scene (Import Job then brings in its result)"""

    bl_idname = "dynapose4d.pick_job"
    bl_label = "Choose Job"
    bl_property = "job"

    job: EnumProperty(name="Job", items=_job_items)

    def execute(self, context):
        if not self.job:
            return {"CANCELLED"}
        properties.settings(context).job_id = self.job
        redraw(context)
        return {"FINISHED"}


class DYNAPOSE4D_OT_refresh_jobs(bpy.types.Operator):
    """Ask the backend for its jobs"""

    bl_idname = "dynapose4d.refresh_jobs"
    bl_label = "Refresh Jobs"

    def execute(self, context):
        runtime.STATE.refresh_jobs(preferences.backend_settings(preferences.get(context)))
        start_watching(context)
        return {"FINISHED"}


class DYNAPOSE4D_OT_show_colours(bpy.types.Operator):
    """Show the splats' colours: the 3D views drawing them grey (Solid shading) switch to Material Preview"""

    bl_idname = "dynapose4d.show_colours"
    bl_label = "Show Colours"

    def execute(self, context):
        from .scene.placement import show_colours

        show_colours(context)
        runtime.STATE.colour_hint = None
        return {"FINISHED"}


CLASSES = (
    DYNAPOSE4D_OT_watch,
    DYNAPOSE4D_OT_connect,
    DYNAPOSE4D_OT_stop_backend,
    DYNAPOSE4D_OT_generate,
    DYNAPOSE4D_OT_import_job,
    DYNAPOSE4D_OT_cancel,
    DYNAPOSE4D_OT_show_candidates,
    DYNAPOSE4D_OT_choose_candidate,
    DYNAPOSE4D_OT_export_gltf,
    DYNAPOSE4D_OT_import_result,
    DYNAPOSE4D_OT_retarget,
    DYNAPOSE4D_OT_retarget_pair,
    DYNAPOSE4D_OT_retarget_preset,
    DYNAPOSE4D_OT_install_backend,
    DYNAPOSE4D_OT_install_backend_cancel,
    DYNAPOSE4D_OT_refresh_models,
    DYNAPOSE4D_OT_download_model,
    DYNAPOSE4D_OT_cancel_download,
    DYNAPOSE4D_OT_convert_poseanything,
    DYNAPOSE4D_OT_check_setup,
    DYNAPOSE4D_OT_pick_job,
    DYNAPOSE4D_OT_refresh_jobs,
    DYNAPOSE4D_OT_show_colours,
)
