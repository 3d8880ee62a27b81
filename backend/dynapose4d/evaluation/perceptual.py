"""Metrics that need a pretrained network: LPIPS (VGG), CLIP image similarity (ViT-B/32), FVD (I3D).

Nothing here downloads anything. Each network is found on this machine (an explicit path, an
environment variable, or the cache its usual downloader fills) or reported as missing with
:class:`MetricUnavailable`, whose message says what to download and under which licence; the
caller reports "not computed: <message>" and goes on with the other metrics.

- LPIPS (Zhang et al. 2018, "lin" v0.1 on VGG16): the torchvision VGG16 ImageNet checkpoint
  (``vgg16-397923af.pth``) and the linear calibration weights ``vgg.pth`` that ship inside the
  ``lpips`` package. The network is rebuilt here (torchvision does not import beside our torch):
  VGG16's convolutions with torchvision's module indices, so its checkpoint loads as is.
- CLIP: a transformers ``CLIPModel`` folder (default hub id ``openai/clip-vit-base-patch32``,
  looked up in the Hugging Face cache offline); the score is the cosine of the image embeddings.
- FVD (Unterthiner et al. 2018): the Kinetics-400 I3D as the TorchScript file
  ``i3d_torchscript.pt`` that the StyleGAN-V / fvd-comparison ports distribute (I3D is in no
  installed library); features are the logits before the softmax, FVD the Frechet distance of
  their Gaussians.

Images are ``[N, H, W, 3]`` float in [0, 1]; videos ``[V, T, H, W, 3]``.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "MetricUnavailable",
    "WEIGHTS",
    "LPIPS",
    "CLIPSimilarity",
    "I3DFeatures",
    "find_lpips_weights",
    "find_clip",
    "find_i3d",
    "frechet_distance",
]


class MetricUnavailable(RuntimeError):
    """A metric's network is not on this machine; the message says what to get and its licence."""


@dataclass(frozen=True)
class Weights:
    """What a metric needs, where it comes from, and its licence (shown when it is missing)."""

    metric: str
    what: str
    licence: str
    env_var: str
    option: str

    def missing(self, looked: list[str]) -> MetricUnavailable:
        return MetricUnavailable(
            f"{self.what}; licence: {self.licence}. Point to it with {self.option} or {self.env_var}"
            f" (looked: {'; '.join(looked)})"
        )


WEIGHTS = {
    "lpips": Weights(
        "lpips",
        "VGG16 ImageNet weights vgg16-397923af.pth (torchvision, in torch's hub checkpoints folder) and the LPIPS"
        " v0.1 linear weights vgg.pth (inside the `lpips` pip package, or in the same folder)",
        "VGG16 weights CC BY 4.0 (Oxford VGG); lpips code and weights BSD-2-Clause",
        "DYNAPOSE4D_LPIPS",
        "--lpips FOLDER",
    ),
    "clip": Weights(
        "clip",
        "CLIP ViT-B/32, hub id openai/clip-vit-base-patch32 (e.g. `hf download openai/clip-vit-base-patch32`)",
        "MIT (OpenAI CLIP)",
        "DYNAPOSE4D_CLIP",
        "--clip FOLDER_OR_HUB_ID",
    ),
    "fvd": Weights(
        "fvd",
        "the Kinetics-400 I3D as TorchScript, i3d_torchscript.pt (distributed with StyleGAN-V / fvd-comparison),"
        " put in torch's hub checkpoints folder",
        "Apache-2.0 (DeepMind kinetics-i3d)",
        "DYNAPOSE4D_I3D",
        "--i3d FILE",
    ),
}

VGG16_FILE = "vgg16-397923af.pth"
LPIPS_LIN_FILE = "vgg.pth"
I3D_FILE = "i3d_torchscript.pt"
CLIP_HUB_ID = "openai/clip-vit-base-patch32"


def _hub_checkpoints() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints"


# -------------------------------------------------------------------------------------------------
# LPIPS

# VGG16's feature layers with torchvision's indices: conv(out) at the listed index, ReLU after each
# conv, max-pool where "M" stands. LPIPS taps the ReLU outputs relu1_2, relu2_2, relu3_3, relu4_3, relu5_3.
_VGG16 = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)
_LPIPS_TAPS = (3, 8, 15, 22, 29)  # module index of the tapped ReLUs
_LPIPS_CHANNELS = (64, 128, 256, 512, 512)
# LPIPS' input normalisation of images in [-1, 1] (per channel shift and scale).
_LPIPS_SHIFT = (-0.030, -0.088, -0.188)
_LPIPS_SCALE = (0.458, 0.448, 0.450)


def find_lpips_weights(folder: str | os.PathLike | None = None, env: dict | None = None) -> tuple[Path, Path]:
    """``(vgg16 checkpoint, lpips linear weights)``: from ``folder`` (or ``$DYNAPOSE4D_LPIPS``), else
    torch's hub checkpoints folder and the installed ``lpips`` package. Raises MetricUnavailable."""
    env = os.environ if env is None else env
    folder = folder or env.get(WEIGHTS["lpips"].env_var)
    looked = []
    places = [Path(folder)] if folder else []
    places.append(_hub_checkpoints())
    spec = importlib.util.find_spec("lpips")  # finds the package without importing it (it needs torchvision)
    if spec is not None and spec.submodule_search_locations:
        places.append(Path(list(spec.submodule_search_locations)[0]) / "weights" / "v0.1")
    vgg = next((p / VGG16_FILE for p in places if (p / VGG16_FILE).is_file()), None)
    lin = next((p / LPIPS_LIN_FILE for p in places if (p / LPIPS_LIN_FILE).is_file()), None)
    if vgg is None:
        looked.append(f"{VGG16_FILE} not in {', '.join(map(str, places))}")
    if lin is None:
        looked.append(f"{LPIPS_LIN_FILE} not in {', '.join(map(str, places))}" + ("" if spec else " (lpips is not installed)"))
    if vgg is None or lin is None:
        raise WEIGHTS["lpips"].missing(looked)
    return vgg, lin


class LPIPS(nn.Module):
    """LPIPS distance ("lin", v0.1, VGG16): lower is more similar; 0 for identical images."""

    def __init__(self):
        super().__init__()
        layers, c_in = [], 3
        for v in _VGG16:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(c_in, v, 3, padding=1), nn.ReLU(inplace=False)]
                c_in = v
        self.features = nn.Sequential(*layers[: _LPIPS_TAPS[-1] + 1])
        self.lins = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in _LPIPS_CHANNELS)
        self.register_buffer("shift", torch.tensor(_LPIPS_SHIFT).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(_LPIPS_SCALE).view(1, 3, 1, 1))
        self.requires_grad_(False)
        self.eval()

    @classmethod
    def from_files(cls, vgg16: str | os.PathLike, lin: str | os.PathLike) -> "LPIPS":
        """Load torchvision's VGG16 checkpoint (``features.<i>.*`` keys) and LPIPS' ``lin<k>.model.1.weight``."""
        model = cls()
        vgg_state = torch.load(vgg16, map_location="cpu", weights_only=True)
        features = {k[len("features.") :]: v for k, v in vgg_state.items() if k.startswith("features.")}
        features = {k: v for k, v in features.items() if int(k.split(".")[0]) <= _LPIPS_TAPS[-1]}
        model.features.load_state_dict(features)
        lin_state = torch.load(lin, map_location="cpu", weights_only=True)
        model.lins.load_state_dict({f"{k}.weight": lin_state[f"lin{k}.model.1.weight"] for k in range(len(_LPIPS_CHANNELS))})
        return model

    def _taps(self, x: Tensor) -> list[Tensor]:
        out = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in _LPIPS_TAPS:
                out.append(x / (x.pow(2).sum(1, keepdim=True).sqrt() + 1e-10))  # unit length per pixel
        return out

    @torch.no_grad()
    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        """Distances ``[N]`` of images ``[N, H, W, 3]`` in [0, 1]."""
        def prep(img):
            x = img.permute(0, 3, 1, 2).float().to(self.shift.device) * 2 - 1
            return (x - self.shift) / self.scale

        total = 0.0
        for lin, a, b in zip(self.lins, self._taps(prep(pred)), self._taps(prep(target))):
            total = total + lin((a - b) ** 2).mean(dim=(2, 3))
        return total.view(-1)


# -------------------------------------------------------------------------------------------------
# CLIP


def find_clip(model: str | os.PathLike | None = None, env: dict | None = None) -> Path:
    """A CLIP folder: ``model`` (a folder, or a hub id looked up in the HF cache), ``$DYNAPOSE4D_CLIP``,
    or ``openai/clip-vit-base-patch32`` from the cache. Raises MetricUnavailable."""
    from ..weights import ModelNotFoundError, resolve_model

    env = os.environ if env is None else env
    text = str(model or env.get(WEIGHTS["clip"].env_var) or CLIP_HUB_ID)
    folder = Path(text).expanduser()
    if folder.is_dir():
        if not (folder / "config.json").is_file():
            raise WEIGHTS["clip"].missing([f"{folder} has no config.json (not a transformers CLIPModel folder)"])
        return folder
    try:
        return resolve_model(text).path  # a hub id: the cached snapshot, offline
    except (ModelNotFoundError, ValueError) as exc:
        raise WEIGHTS["clip"].missing([str(exc).splitlines()[0]]) from None


class CLIPSimilarity:
    """Cosine similarity of CLIP image embeddings (higher is more similar; 1 for identical images)."""

    def __init__(self, folder: str | os.PathLike, device: torch.device | str = "cpu"):
        import json

        from transformers import CLIPModel

        folder = Path(folder)
        self.device = torch.device(device)
        self.model = CLIPModel.from_pretrained(folder).to(self.device).eval().requires_grad_(False)
        vision = self.model.config.vision_config
        self.size = int(vision.image_size)
        mean, std = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
        processor = folder / "preprocessor_config.json"
        if processor.is_file():
            cfg = json.loads(processor.read_text())
            mean, std = cfg.get("image_mean", mean), cfg.get("image_std", std)
        self.mean = torch.tensor(mean, device=self.device).view(1, 3, 1, 1)
        self.std = torch.tensor(std, device=self.device).view(1, 3, 1, 1)

    @torch.no_grad()
    def embed(self, images: Tensor) -> Tensor:
        """Unit embeddings ``[N, D]`` of square images ``[N, H, W, 3]`` in [0, 1] (CLIP's resize
        to the encoder size, bicubic; a square image needs no crop)."""
        x = images.permute(0, 3, 1, 2).float().to(self.device)
        x = F.interpolate(x, (self.size, self.size), mode="bicubic", align_corners=False, antialias=True).clamp(0, 1)
        pooled = self.model.vision_model(pixel_values=(x - self.mean) / self.std).pooler_output
        return F.normalize(self.model.visual_projection(pooled), dim=-1)

    def __call__(self, pred: Tensor, target: Tensor) -> Tensor:
        """Similarities ``[N]``."""
        return (self.embed(pred) * self.embed(target)).sum(-1)


# -------------------------------------------------------------------------------------------------
# FVD


def find_i3d(path: str | os.PathLike | None = None, env: dict | None = None) -> Path:
    """The I3D TorchScript file: ``path``, ``$DYNAPOSE4D_I3D``, or torch's hub checkpoints folder."""
    env = os.environ if env is None else env
    given = path or env.get(WEIGHTS["fvd"].env_var)
    candidate = Path(given) if given else _hub_checkpoints() / I3D_FILE
    if candidate.is_dir():
        candidate = candidate / I3D_FILE
    if not candidate.is_file():
        raise WEIGHTS["fvd"].missing([f"{candidate} does not exist"])
    return candidate


class I3DFeatures:
    """Kinetics-400 I3D logits of videos, for FVD.

    The TorchScript detector takes ``[B, 3, T, H, W]`` videos with values in [0, 255] and, with
    ``rescale=True, resize=True``, does the reference implementation's own preprocessing (bilinear
    resize to 224x224, values to [-1, 1]); ``return_features=True`` gives the 400 logits.
    """

    def __init__(self, path: str | os.PathLike, device: torch.device | str = "cpu"):
        self.device = torch.device(device)
        self.detector = torch.jit.load(str(path), map_location=self.device).eval()

    @torch.no_grad()
    def __call__(self, videos: Tensor) -> np.ndarray:
        """Features ``[V, 400]`` (float64) of videos ``[V, T, H, W, 3]`` in [0, 1]."""
        x = (videos.float().clamp(0, 1) * 255.0).permute(0, 4, 1, 2, 3).contiguous().to(self.device)
        feats = self.detector(x, rescale=True, resize=True, return_features=True)
        return feats.detach().cpu().double().numpy()


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Frechet distance of Gaussians fitted to feature sets ``a [N, D]`` and ``b [M, D]``:
    ``|mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2))``."""
    try:
        from scipy import linalg
    except ImportError:
        raise MetricUnavailable("FVD needs scipy (pip install scipy, or the backend's eval extra); BSD-3-Clause") from None

    if len(a) < 2 or len(b) < 2:
        raise ValueError("FVD needs at least two videos on each side")
    mu_a, mu_b = a.mean(0), b.mean(0)
    s_a, s_b = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))
    root = linalg.sqrtm(s_a @ s_b)
    root = np.real(root)  # imaginary parts are round-off for PSD products
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(s_a + s_b - 2.0 * root))
