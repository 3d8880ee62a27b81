"""Every job setting the add-on knows, declared once in :data:`JOB_SETTINGS`.

The panel's properties (``properties``), where the panel draws them (``ui``, ``preferences``) and
what a job request sends (``jobs``) are all made from this table, so a new backend setting costs
one row here. Each row is one of the backend's settings (``dynapose4d.pipeline.settings.SETTINGS``,
published by the server at ``GET /v1/kinds``) under the same name and type, with a range inside the
backend's for every kind that sends it; ``tests/test_addon_job_settings.py`` holds the two sides
together. No bpy here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

GENERATE, DEMO, ANIMATE = "generate", "demo", "animate"
KINDS = (GENERATE, DEMO, ANIMATE)
ALL = KINDS
IMAGE_OR_PLY = (GENERATE, ANIMATE)  # the kinds that take a video of their own and find keypoints in it

# Where a row is drawn: beside the job's inputs, in the folded Settings or Advanced sections, in the
# add-on's preferences (held for every scene), or nowhere (the add-on always sends its default).
MAIN, SETTINGS, ADVANCED, PREFERENCES, NOWHERE = "main", "settings", "advanced", "preferences", "nowhere"
PLACES = (MAIN, SETTINGS, ADVANCED, PREFERENCES, NOWHERE)

# The longest label of a sidebar row: longer ones are cut at the sidebar's default width
# ("Static Iterati..."); the long text goes in the tooltip.
MAX_LABEL = 12

AUTO = None  # a value meaning "not set": the preset or the backend's default decides, nothing is sent
PRESET = "from preset"  # the usual words after "Auto" (see auto_text)

LEARNED_ESTIMATORS = ("poseanything", "cape+tracker")


# -- when the panel shows a row, given the values it draws (the settings plus "kind" and "has_video") ---

def with_your_video(values: dict) -> bool:
    return values["kind"] == ANIMATE or values["has_video"]


def without_your_video(values: dict) -> bool:
    return not values["has_video"]


def from_a_ply_file(values: dict) -> bool:
    """A PLY file's up axis is the user's to say; a selected splat is sent in Blender's world (+Z up)."""
    return values.get("animate_input", "FILE") == "FILE"


def learned_estimator(values: dict) -> bool:
    return values["estimator"] in LEARNED_ESTIMATORS


@dataclass(frozen=True)
class JobSetting:
    """One backend setting as the add-on shows and sends it. ``default``'s Python type is the
    setting's type. A row with ``auto`` is not sent until the user overrides it (a number) or
    fills it in (a text); its ``default`` is where an override starts."""

    name: str  # the backend's name, also the property's
    label: str  # short: at most MAX_LABEL characters in the sidebar
    kinds: tuple[str, ...]  # the job kinds that send it
    default: Any
    tooltip: str  # what it does and when to change it
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[tuple[str, str, str], ...] = ()  # (value, label, tooltip): Blender's enum items
    auto: str = ""  # the words after "Auto" while the preset or the backend decides ("" = always sent)
    place: str = SETTINGS
    shown: Callable[[dict], bool] | None = None  # None: whenever its kind is chosen
    path: str = ""  # FILE_PATH or DIR_PATH: a file on the backend's machine

    @property
    def type(self) -> type:
        return type(self.default)

    @property
    def overridable(self) -> bool:
        """A number the preset decides until the user ticks its Override box (a text is simply left empty)."""
        return bool(self.auto) and self.type in (int, float)

    @property
    def initial(self) -> Any:
        """The value sent when nothing was set: AUTO for a row the preset decides, else the default."""
        return AUTO if self.overridable else self.default

    def is_auto(self, value: Any) -> bool:
        return value is AUTO or (bool(self.auto) and value == "")

    def problem(self, value: Any) -> str | None:
        """Why ``value`` cannot be sent (None: it can), naming the setting as the panel does."""
        what = f"{self.label} ({self.name})"
        if self.type is float and type(value) is int:
            value = float(value)
        if type(value) is not self.type:
            return f"{what} must be {self.type.__name__}, got {value!r}"
        if self.choices and value not in [c[0] for c in self.choices]:
            return f"{what} must be one of {', '.join(c[0] for c in self.choices)}; got {value!r}"
        if self.minimum is not None and value < self.minimum:
            return f"{what} must be at least {self.minimum}, got {value!r}"
        if self.maximum is not None and value > self.maximum:
            return f"{what} must be at most {self.maximum}, got {value!r}"
        return None


def _items(*triples: tuple[str, str, str]) -> tuple[tuple[str, str, str], ...]:
    return tuple(triples)


S = JobSetting
JOB_SETTINGS: tuple[JobSetting, ...] = (
    # Beside the inputs.
    S("preset", "Preset", (GENERATE,), "standard", "How long each stage runs and how much GPU memory it may use", place=MAIN,
      choices=_items(("fast", "Fast", "Fewer steps: a first look in minutes"), ("standard", "Standard", "The paper's settings"),
                     ("high", "High", "More steps and views: the final result"),
                     ("low-vram", "Low VRAM", "Smaller batches for a GPU with little memory"))),
    S("motion", "Motion", (DEMO,), "lamp", "The demo's built-in motion", place=MAIN,
      choices=_items(("lamp", "Lamp", "The lamp-like arm lifts, turns its base and nods"),
                     ("swing", "Swing", "The arm swings fast, back and forth"), ("bend", "Bend", "The arm bends slowly"))),
    S("up_axis", "Up Axis", (ANIMATE,), "z", "The PLY's up axis: Z for a PLY exported from Blender, Y for most 3DGS tools",
      place=MAIN, shown=from_a_ply_file,
      choices=_items(("z", "Z Up", "A PLY exported from Blender"), ("y", "Y Up", "A PLY from 3DGS tools"))),
    S("video_fps", "Video FPS", IMAGE_OR_PLY, 24.0, "Frame rate of your video. Set it for a folder of frames, which has none "
      "(Auto: a video file's own rate; 7 fps for frames)", 1.0, 1000.0, auto="from file", place=MAIN, shown=with_your_video),
    S("video_candidates", "Candidates", (GENERATE,), 3, "Driving videos generated and scored; the best drives the motion. More "
      "give a better pick and cost one video-model run each (about a minute on a GPU)", 1, 8, auto=PRESET, place=MAIN,
      shown=without_your_video),
    S("choose_video", "Choose Video", (GENERATE,), "auto", "Which candidate video drives the motion", place=MAIN,
      shown=without_your_video,
      choices=_items(("auto", "Best Score", "Drive the motion with the best-scored candidate video"),
                     ("ask", "Let Me Pick", "Wait after the candidate videos until one is picked in the panel"))),
    # Settings (folded).
    S("frames", "Frames", ALL, 14, "Driving-video frames the motion is fitted to. More: smoother, longer motion; slower steps "
      "(Auto: the video model's, or 14 for your video)", 3, 64, auto=PRESET),
    S("static_iterations", "Shape Steps", (GENERATE,), 500, "Optimisation steps of the static stage, which makes the 3D shape "
      "from the image. More: a sharper shape; a longer job", 1, 100_000, auto=PRESET),
    S("iterations", "Motion Steps", ALL, 500, "Optimisation steps of the dynamic stage, which fits the motion to the video. "
      "More: a closer fit; a longer job", 1, 100_000, auto=PRESET),
    S("gaussians", "Gaussians", (DEMO,), 4000, "Gaussians in the demo's object. More: finer detail; a slower job",
      200, 200_000),
    S("num_keypoints", "Keypoints", IMAGE_OR_PLY, 14, "Support keypoints found automatically when you give none. More: finer "
      "control of the motion; more points to track", 1, 100),
    S("stabilise", "Stabilise", IMAGE_OR_PLY, "auto", "Remove the driving video's camera pan, zoom and roll so only the object "
      "moves. Turn it on for a handheld video of yours",
      choices=_items(("auto", "Auto", "Generated videos only, not yours"), ("on", "On", "Every driving video"),
                     ("off", "Off", "Never"))),
    S("segmentation_model", "Mask Model", IMAGE_OR_PLY, "", "An ONNX segmentation model (a file on the backend's machine) that "
      "cuts the object out of your video. Empty: GrabCut, no model; set one when GrabCut's masks miss parts",
      auto="GrabCut", path="FILE_PATH"),
    S("reference_elevation", "Elevation", (ANIMATE,), 0.0, "The PLY's view that matches the video: its elevation in degrees "
      "(positive: from above)", -89.0, 89.0),
    S("reference_azimuth", "Azimuth", (ANIMATE,), 0.0, "The PLY's view that matches the video: its azimuth in degrees",
      -360.0, 360.0),
    S("lambda_kml", "KML Weight", ALL, 20000.0, "How closely the motion follows the keypoints (Keypoint Match Loss). Raise it "
      "when the object drifts from the video's pose; lower it when the motion jitters", 0.0, 1e9),
    S("lambda_scl", "SCL Weight", ALL, 100.0, "How strongly neighbouring Gaussians move together (Spatio-temporal Consistency "
      "Loss). Raise it when the surface tears; lower it when the motion looks stiff", 0.0, 1e9),
    S("seed", "Seed", ALL, 0, "Random seed: change it for another result from the same inputs", 0, 2**31 - 1),
    # Advanced (folded).
    S("kml_robust_scale", "Robust Scale", ALL, 0.02, "Keypoints further off than this count less in the Keypoint Match Loss, "
      "so a few bad ones cannot drag the object. 0: the paper's squared loss", 0.0, 1.0, place=ADVANCED),
    S("frames_per_step", "Frames/Step", IMAGE_OR_PLY, 4, "Frames rendered per motion step. Fewer: faster steps on a CPU "
      "(Auto: every frame on a GPU, 4 on a CPU)", 1, 64, auto=PRESET, place=ADVANCED),
    S("dynamic_sds", "Novel Views", (GENERATE,), True, "Guide the motion with the novel-view model too (the DG4D paper's way), "
      "so the unseen side moves plausibly. Off: faster; the video's view only", place=ADVANCED),
    S("multiview_keypoints", "Depth Refine", (GENERATE,), True, "Refine the keypoints' depths on the novel views (with the "
      "CAPE keypoint estimators and Novel Views)", place=ADVANCED),
    S("svd_steps", "Video Steps", (GENERATE,), 25, "Denoising steps of the video model. Fewer: faster, rougher videos",
      1, 200, place=ADVANCED),
    S("svd_size", "Video Size", (GENERATE,), 512, "Side of the generated driving video in pixels (the paper: 512). Smaller: "
      "faster and less memory, less detail", 64, 1024, place=ADVANCED),
    S("motion_bucket", "Video Motion", (GENERATE,), 127, "How much the generated video moves (the video model's motion "
      "bucket). Raise it for a livelier motion, lower it for a calmer one", 1, 255, place=ADVANCED),
    S("zero123", "View Model", (GENERATE,), "zero123-xl", "The novel-view model: a registered name (zero123-xl, "
      "stable-zero123), a Hugging Face id or a folder on the backend's machine", place=ADVANCED),
    S("svd", "Video Model", (GENERATE,), "", "The video model: a registered name (svd, svd-xt), a Hugging Face id or a "
      "folder on the backend's machine. Empty: the preset's", auto=PRESET, place=ADVANCED),
    S("snapshot_every", "Update Every", ALL, 50, "Steps between the live snapshots that update the scene. Fewer: more "
      "frequent updates, a slightly slower job", 1, 100_000, place=ADVANCED),
    S("checkpoint_every", "Save Every", ALL, 50, "Steps between checkpoints, where a cancelled or interrupted job resumes",
      1, 100_000, place=ADVANCED),
    # The add-on's preferences.
    S("device", "Device", IMAGE_OR_PLY, "auto", "Where new jobs run", place=PREFERENCES,
      choices=_items(("auto", "Automatic", "The GPU when the backend has one, else the CPU"),
                     ("cuda", "GPU (CUDA)", "Fail when the backend has no CUDA GPU"),
                     ("cpu", "CPU", "Slow: only for small jobs and the demo"))),
    S("estimator", "Keypoints", IMAGE_OR_PLY, "tracker", "How the support keypoints are found in the driving video",
      place=PREFERENCES,
      choices=_items(("tracker", "Tracker", "Weight-free keypoint tracker (default)"),
                     ("static", "Static", "Keypoints held still (a baseline)"),
                     ("poseanything", "PoseAnything (CAPE)", "Learned one-shot keypoints per frame; needs the converted weights"),
                     ("cape+tracker", "CAPE + Tracker", "PoseAnything per frame fused with the tracker; needs the converted "
                      "weights"))),
    S("keypoint_weights", "PoseAnything Weights", IMAGE_OR_PLY, "", "Folder written by `dynapose4d models "
      "convert-poseanything` (on the backend's machine; empty: the backend's default location)", auto="default location",
      place=PREFERENCES, shown=learned_estimator, path="DIR_PATH"),
    # Never drawn: the add-on always sends these (docs/blender.md lists them as command-line only).
    S("previews", "Previews", ALL, False, "Preview GIFs at the end of a job: Blender shows the result itself, so the add-on "
      "spends no time rendering them", place=NOWHERE),
)
del S


def row(name: str) -> JobSetting:
    for setting in JOB_SETTINGS:
        if setting.name == name:
            return setting
    raise KeyError(f"no job setting {name!r} in the add-on's table (blender_addon/link/job_settings.py)")


def rows(kind: str | None = None, places: tuple[str, ...] = PLACES) -> list[JobSetting]:
    """The table's rows a job of ``kind`` sends (every row when None) that live in ``places``."""
    return [s for s in JOB_SETTINGS if (kind is None or kind in s.kinds) and s.place in places]


def shown_rows(kind: str | None, place: str, values: dict) -> list[JobSetting]:
    """What the panel draws in ``place`` for a ``kind`` job (None: any kind, the preferences),
    given the values it shows (the settings' values; the panel adds ``kind`` and ``has_video``:
    a video of the user's is chosen)."""
    return [s for s in rows(kind, (place,)) if s.shown is None or s.shown(values)]


def auto_text(setting: JobSetting, kind: str) -> str:
    """What the panel shows while the preset or the backend decides a value."""
    if setting.auto == PRESET and kind != GENERATE:  # only Generate has presets
        return "Auto (default)"
    return f"Auto ({setting.auto})"


def override_name(name: str) -> str:
    """The Override checkbox's property for an overridable row."""
    return f"override_{name}"


def choices(name: str) -> tuple[str, ...]:
    return tuple(c[0] for c in row(name).choices)
