"""Add-on preferences: where the backend runs, its environment, models and device.

``bl_idname`` is ``__package__``: an extension's package is ``bl_ext.<repository>.dynapose4d``.
"""

from __future__ import annotations

import os

import bpy
from bpy.props import BoolProperty, EnumProperty, StringProperty

from .link import job_settings
from .properties import STILL, job_properties

MODE_ITEMS = (
    ("LOCAL", "Launch Local Backend", "Start the backend on this computer with the Python interpreter below"),
    ("REMOTE", "Connect to Running Backend", "Use a backend that is already running, e.g. on a GPU machine through an SSH tunnel"),
)
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
    pip_args: StringProperty(name="Extra pip Arguments",
                             description="e.g. an extra index URL for the CUDA build of torch that matches your driver")
    jobs_dir: StringProperty(name="Jobs Folder", subtype="DIR_PATH", description="Where jobs are kept (empty: the backend's default)")
    model_dir: StringProperty(name="Model Cache", subtype="DIR_PATH",
                              description="Hugging Face cache folder with the model weights (HF_HOME; empty: the default cache)")
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
        from . import runtime

        layout = self.layout
        layout.use_property_split = True
        layout.prop(self, "backend_mode", expand=True)
        if self.backend_mode == "LOCAL":
            col = layout.column()
            col.prop(self, "python_path")
            col.prop(self, "jobs_dir")
            col.prop(self, "model_dir")
            box = layout.box()
            box.label(text="Backend Environment", icon="CONSOLE")
            col = box.column()
            col.prop(self, "env_dir")
            col.prop(self, "base_python")
            col.prop(self, "with_diffusion")
            col.prop(self, "pip_args")
            build = runtime.STATE.env_progress
            if build is not None and build.state == "running":
                box.progress(factor=build.fraction, type="BAR", text=build.text())
                box.operator("dynapose4d.install_backend_cancel", icon="CANCEL")
            else:
                row = box.row()
                row.enabled = bpy.app.online_access
                row.operator("dynapose4d.install_backend", icon="IMPORT")
                if not bpy.app.online_access:
                    box.label(text="Allow Online Access (Preferences > System > Network) to download packages", icon="INFO")
                if build is not None and build.state in ("done", "failed", "cancelled"):
                    for line in (build.error or build.line or build.state).splitlines()[-6:]:
                        box.label(text=line, icon="ERROR" if build.state == "failed" else "NONE")
        else:
            col = layout.column()
            col.prop(self, "url")
            col.prop(self, "token")
            col.prop(self, "address_file")
            layout.label(text="Tunnel the same port on both ends: ssh -N -L 8765:127.0.0.1:8765 gpu-box", icon="INFO")
        layout.prop(self, "transfer_dtype")
        values = {setting.name: getattr(self, setting.name) for setting in job_settings.rows(places=(job_settings.PREFERENCES,))}
        for setting in job_settings.shown_rows(None, job_settings.PREFERENCES, values):
            layout.prop(self, setting.name)


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
