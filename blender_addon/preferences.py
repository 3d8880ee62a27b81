"""Add-on preferences: where the backend runs, its environment (and the torch build for this
machine), the setup check, the models on the backend's machine and their downloads, the device.

``bl_idname`` is ``__package__``: an extension's package is ``bl_ext.<repository>.dynapose4d``.
"""

from __future__ import annotations

import os

import bpy
from bpy.props import BoolProperty, EnumProperty, StringProperty

from .format.messages import headline
from .link import job_settings
from .link.torch_build import BUILDS, OVERRIDES
from .properties import STILL, job_properties

MODE_ITEMS = (
    ("LOCAL", "Launch Local Backend", "Start the backend on this computer with the Python interpreter below"),
    ("REMOTE", "Connect to Running Backend", "Use a backend that is already running, e.g. on a GPU machine through an SSH tunnel"),
)
TORCH_ITEMS = tuple(
    (key, "Auto" if key == "AUTO" else BUILDS[key][0],
     "Detect this machine's GPU and driver and pick the build that fits" if key == "AUTO"
     else f"torch from {BUILDS[key][1] or 'PyPI (its default build)'}")
    for key in OVERRIDES
)
STATE_ICONS = {"present": "CHECKMARK", "partial": "ERROR", "missing": "X"}
LEVEL_ICONS = {"OK": "CHECKMARK", "WARNING": "ERROR", "ERROR": "CANCEL", "INFO": "INFO"}
DTYPE_ITEMS = (
    ("float32", "Float32", "Exact frames"),
    ("float16", "Float16", "Half the bytes per frame (positions to ~1e-4)"),
)


def user_dir() -> str:
    """The add-on's own folder for the backend environment and the server's address file."""
    try:
        return bpy.utils.extension_path_user(__package__, path="", create=True)
    except (ValueError, AttributeError):  # not running as an extension (tests, a legacy add-on)
        return bpy.utils.user_resource("DATAFILES", path="dynapose4d", create=True)


def default_env_dir() -> str:
    return os.path.join(user_dir(), "backend-env")


class DynaPose4DPreferences(bpy.types.AddonPreferences):
    bl_idname = __package__

    backend_mode: EnumProperty(name="Backend", items=MODE_ITEMS, default="LOCAL", options=STILL)
    # local backend
    python_path: StringProperty(name="Backend Python", subtype="FILE_PATH",
                                description="Interpreter of an environment with the dynapose4d backend "
                                            "(empty: the environment created below)")
    env_dir: StringProperty(name="Environment Folder", subtype="DIR_PATH",
                            description="Where to create the backend environment (empty: the add-on's user folder)")
    base_python: StringProperty(name="Base Python", subtype="FILE_PATH",
                                description="Python 3.10+ that creates the environment (empty: Blender's own)")
    with_diffusion: BoolProperty(name="Diffusion Models", default=True, options=STILL,
                                 description="Install the diffusion libraries that Generate needs (the demo runs without them)")
    torch_build: EnumProperty(name="Torch Build", items=TORCH_ITEMS, default="AUTO", options=STILL,
                              description="Which build of torch the environment gets (Auto: the CUDA build your NVIDIA "
                                          "driver supports, the CPU build without one, PyPI's on macOS)")
    pip_args: StringProperty(name="Extra pip Arguments", description="More arguments for pip's install of the backend")
    jobs_dir: StringProperty(name="Jobs Folder", subtype="DIR_PATH", description="Where jobs are kept (empty: the backend's default)")
    model_dir: StringProperty(name="Model Cache", subtype="DIR_PATH",
                              description="Hugging Face cache folder with the model weights (HF_HOME; empty: the default cache)")
    poseanything_file: StringProperty(name="Checkpoint", subtype="FILE_PATH",
                                      description="The PoseAnything checkpoint (.pth) you downloaded, on the backend's "
                                                  "machine: Convert makes the weights the keypoint estimator loads")
    # remote backend
    url: StringProperty(name="URL", default="http://127.0.0.1:8765", description="The backend's address (a tunnel's local end)")
    token: StringProperty(name="Token", subtype="PASSWORD", description="The token from the server's address file")
    address_file: StringProperty(name="Address File", subtype="FILE_PATH",
                                 description="A copy of the server's address file (instead of URL and token)")
    # both (the job settings held here, device and keypoints, are added from the table below)
    transfer_dtype: EnumProperty(name="Frame Precision", items=DTYPE_ITEMS, default="float32", options=STILL)

    def python(self) -> str:
        from .link.launcher import environment_python

        return bpy.path.abspath(self.python_path) if self.python_path else str(environment_python(self.env_dir_path()))

    def env_dir_path(self) -> str:
        return bpy.path.abspath(self.env_dir) if self.env_dir else default_env_dir()

    def draw(self, context):
        layout = self.layout
        layout.use_property_split = True
        layout.prop(self, "backend_mode", expand=True)
        if self.backend_mode == "LOCAL":
            col = layout.column()
            col.prop(self, "python_path")
            col.prop(self, "jobs_dir")
            col.prop(self, "model_dir")
            draw_environment(layout.box(), self)
        else:
            col = layout.column()
            col.prop(self, "url")
            col.prop(self, "token")
            col.prop(self, "address_file")
            layout.label(text="Tunnel the same port on both ends: ssh -N -L 8765:127.0.0.1:8765 gpu-box", icon="INFO")
        draw_setup(layout.box(), self)
        draw_models(layout.box(), context, self)
        layout.prop(self, "transfer_dtype")
        values = {setting.name: getattr(self, setting.name) for setting in job_settings.rows(places=(job_settings.PREFERENCES,))}
        for setting in job_settings.shown_rows(None, job_settings.PREFERENCES, values):
            layout.prop(self, setting.name)


def draw_environment(box, prefs) -> None:
    """Create Backend Environment: where, with what, which torch build (and why), its progress."""
    from . import runtime

    box.label(text="Backend Environment", icon="CONSOLE")
    col = box.column()
    col.prop(prefs, "env_dir")
    col.prop(prefs, "base_python")
    col.prop(prefs, "with_diffusion")
    col.prop(prefs, "torch_build")
    col.prop(prefs, "pip_args")
    choice = runtime.STATE.torch_for(prefs.torch_build)
    box.label(text=choice.text() if choice is not None else "Torch build: detecting this machine's GPU...", icon="INFO")
    build = runtime.STATE.env_progress
    if build is not None and build.state == "running":
        box.label(text=f"{build.step}/{build.steps} {build.title}")
        box.progress(factor=build.fraction, type="BAR", text=build.line[:120])
        box.operator("dynapose4d.install_backend_cancel", icon="CANCEL")
        return
    row = box.row()
    row.enabled = bpy.app.online_access
    row.operator("dynapose4d.install_backend", icon="IMPORT")
    if not bpy.app.online_access:
        box.label(text="Allow Online Access (Preferences > System > Network) to download packages", icon="INFO")
    if build is not None and build.state in ("done", "failed", "cancelled"):
        for line in (build.error or build.line or build.state).splitlines()[-6:]:
            box.label(text=line, icon="ERROR" if build.state == "failed" else "NONE")


def draw_setup(box, prefs) -> None:
    """Check Setup and what it found, in words."""
    from . import runtime

    row = box.row()
    row.label(text="Setup", icon="CHECKMARK")
    row.operator("dynapose4d.check_setup", icon="VIEWZOOM")
    check = runtime.STATE.setup.snapshot() if runtime.STATE.setup is not None else None
    if prefs.backend_mode == "REMOTE":
        box.label(text="Check Setup runs on the backend's machine, where its jobs run", icon="INFO")
    if check is None:
        box.label(text="Check Setup loads the backend and its models and says what works (up to a few minutes)")
    elif check.state == "running":
        box.label(text="Checking: the device, the renderer, the models...", icon="SORTTIME")
    elif check.state == "failed":
        wrapped(box, check.error, "ERROR", 8)
    else:
        for line in check.lines:
            wrapped(box, line.text, LEVEL_ICONS.get(line.level, "NONE"), 3)


def draw_models(box, context, prefs) -> None:
    """The models on the backend's machine: state, sizes, licence, download and its progress."""
    from . import runtime

    view = runtime.STATE.models.snapshot()
    row = box.row()
    row.label(text="Models", icon="FILE_3D")
    row.operator("dynapose4d.refresh_models", text="", icon="FILE_REFRESH")
    if view.error:
        wrapped(box, headline(view.error), "ERROR", 3)
    if not view.rows:
        box.label(text="Connect (or press refresh) to list the backend's models. The Demo and Animate need none.")
        return
    box.label(text=f"{view.no_model_kinds}; Generate needs a view model and, without a video of yours, a video model",
              icon="INFO")
    box.prop(context.window_manager, "dynapose4d_hf_token")
    for model in view.rows:
        draw_model(box.box(), model, prefs)
    box.label(text=f"The backend keeps them in {view.cache}")


def draw_model(box, model, prefs) -> None:
    head = box.row()
    head.label(text=model.title, icon=STATE_ICONS.get(model.state, "QUESTION"))
    head.label(text=model.status_text())
    col = box.column(align=True)
    col.label(text=f"Needed by: {model.used_by}")
    col.label(text=f"Licence: {model.license}" + (" · gated: accept it on the model page" if model.gated else ""))
    col.label(text=model.license_note)
    actions = box.row(align=True)
    actions.operator("wm.url_open", text="Model Page", icon="URL").url = model.page_url
    progress = model.progress()
    if progress is not None:
        box.progress(factor=progress[0], type="BAR", text=progress[1])
        actions.operator("dynapose4d.cancel_download", text="Cancel", icon="CANCEL").name = model.name
    elif model.downloadable and model.state != "present":
        actions.operator("dynapose4d.download_model", text="Download...", icon="IMPORT").name = model.name
    elif not model.downloadable and model.state != "present":
        wrapped(box, model.how_to_get, "INFO", 3)
        row = box.row(align=True)
        row.prop(prefs, "poseanything_file")
        row.operator("dynapose4d.convert_poseanything", text="Convert")
    if model.failure:
        wrapped(box, headline(model.failure), "ERROR", 3)


def wrapped(layout, text: str, icon: str = "NONE", max_lines: int = 6, width: int = 100) -> None:
    """``text`` as labels of at most ``width`` characters, the icon on the first."""
    import textwrap

    lines = [piece for paragraph in str(text).splitlines() for piece in (textwrap.wrap(paragraph, width) or [""])]
    for number, line in enumerate(lines[:max_lines]):
        layout.label(text=line, icon=icon if number == 0 else "BLANK1")


DynaPose4DPreferences.__annotations__.update(job_properties((job_settings.PREFERENCES,)))


def get(context=None):
    """The preferences, or None where the add-on is registered without being enabled (tests)."""
    context = context or bpy.context
    addon = context.preferences.addons.get(__package__)
    return addon.preferences if addon is not None else None


def backend_settings(prefs):
    """The preferences as a plain :class:`~.link.launcher.BackendSettings`."""
    from .link.launcher import BackendSettings, environment_python

    if prefs is None:
        return BackendSettings(python=str(environment_python(default_env_dir())),
                               address_file=os.path.join(user_dir(), "server.json"))
    return BackendSettings(
        mode=prefs.backend_mode,
        python=prefs.python(),
        address_file=(bpy.path.abspath(prefs.address_file) if prefs.backend_mode == "REMOTE" and prefs.address_file
                      else os.path.join(user_dir(), "server.json")),
        url=prefs.url,
        token=prefs.token,
        jobs_dir=bpy.path.abspath(prefs.jobs_dir) if prefs.jobs_dir else "",
        model_dir=bpy.path.abspath(prefs.model_dir) if prefs.model_dir else "",
    )


CLASSES = (DynaPose4DPreferences,)
