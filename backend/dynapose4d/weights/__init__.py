"""Model registry and management: which diffusion models we use, where they live, how to get them.

Every model has a short name (``zero123-xl``, ``stable-zero123``, ``svd``, ``svd-xt``), a default
Hugging Face hub id, an environment variable that points to a local folder, its licence, and
whether the hub gates it behind a licence agreement. A model resolves, in this order, from

1. an explicit folder (a command-line option such as ``--zero123 /path``, or a config value),
2. its environment variable (``DYNAPOSE4D_ZERO123=/path/to/folder``),
3. the local Hugging Face cache (offline: nothing is fetched while resolving).

Folders use the diffusers layout of the public repositories (one subfolder per component:
``unet/``, ``vae/``, ``image_encoder/``, ``feature_extractor/``, ``scheduler/`` and, for
Zero-1-to-3, ``clip_camera_projection/``). A model that cannot be found raises
:class:`ModelNotFoundError`, whose message says how to download it and how to point to a folder.

Downloading (``dynapose4d models download <name>``, or the server's ``/v1/models`` routes, which
run :mod:`.fetch` as a child process through :mod:`.downloads`) is the only step that uses the
network. We never redistribute weights; the licence is shown before each download.
"""

from .download import DownloadPlan, DownloadRefused, download_model, format_bytes, plan_download, select_download_files
from .layout import missing_files, weights_variant
from .registry import MODELS, NO_MODEL_KINDS, ModelDownloadError, ModelNotFoundError, ModelSpec, get_spec
from .resolve import ModelStatus, OnDisk, ResolvedModel, check_model, list_models, model_on_disk, resolve_model

__all__ = [
    "MODELS",
    "ModelSpec",
    "ModelStatus",
    "ResolvedModel",
    "ModelNotFoundError",
    "ModelDownloadError",
    "get_spec",
    "list_models",
    "check_model",
    "resolve_model",
    "download_model",
    "plan_download",
    "DownloadPlan",
    "DownloadRefused",
    "format_bytes",
    "NO_MODEL_KINDS",
    "OnDisk",
    "model_on_disk",
    "select_download_files",
    "missing_files",
    "weights_variant",
]
