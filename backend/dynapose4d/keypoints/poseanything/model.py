"""The PoseAnything network (category-agnostic pose estimation, ECCV 2024) in plain PyTorch.

``PoseAnything(config)`` has the released checkpoint's exact state_dict layout (619 entries for
the demo configuration ``DEMO_B``), so a converted checkpoint loads with ``strict=True``.

Inputs (all already preprocessed, see :mod:`.preprocess`):
- ``query``: ``[B, 3, 256, 256]`` images;
- ``support``: ``[S, B, 3, 256, 256]`` support images (S shots; the demo has one);
- ``heatmaps``: ``[S, B, K, 64, 64]`` support-keypoint heatmaps;
- ``mask``: ``[B, K]`` bool, True where the support keypoint is valid;
- ``skeletons``: B edge lists of 0-based (i, j) pairs.

Output coordinates are (x, y) in [0, 1] of the 256x256 input (see :mod:`.preprocess` for the
mapping to frame pixels).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import torch
from torch import nn

from .head import PoseHead, graph_adjacency
from .swinv2 import SwinV2


@dataclass(frozen=True)
class PoseAnythingConfig:
    embed_dim: int = 96
    depths: tuple[int, ...] = (2, 2, 18, 2)
    num_heads: tuple[int, ...] = (3, 6, 12, 24)
    window_size: int = 16
    img_size: int = 256
    num_classes: int = 1000
    d_model: int = 256
    nhead: int = 8
    num_encoder_layers: int = 3
    num_decoder_layers: int = 3
    dim_feedforward: int = 768
    similarity_proj_dim: int = 256
    dynamic_proj_dim: int = 128
    num_feats: int = 128

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> "PoseAnythingConfig":
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown PoseAnything config key(s): {', '.join(unknown)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})

    @classmethod
    def from_original(cls, model_cfg: dict) -> "PoseAnythingConfig":
        """From the original code's ``model`` config dict (``encoder_config``, ``keypoint_head`` ...)."""
        enc, head = model_cfg["encoder_config"], model_cfg["keypoint_head"]
        tr = head["transformer"]
        if tr.get("graph_decoder", "pre") != "pre" or tr.get("normalize_before", False):
            raise ValueError("only graph_decoder='pre' with post-norm layers (the released models) is implemented")
        if enc.get("embed_dim", 96) * 2 ** (len(enc["depths"]) - 1) != head["in_channels"]:
            raise ValueError("keypoint_head.in_channels must equal the backbone's output width")
        return cls(
            embed_dim=enc["embed_dim"], depths=tuple(enc["depths"]), num_heads=tuple(enc["num_heads"]),
            window_size=enc["window_size"], img_size=enc["img_size"], num_classes=enc.get("num_classes", 1000),
            d_model=tr["d_model"], nhead=tr["nhead"], num_encoder_layers=tr["num_encoder_layers"],
            num_decoder_layers=tr["num_decoder_layers"], dim_feedforward=tr["dim_feedforward"],
            similarity_proj_dim=tr["similarity_proj_dim"], dynamic_proj_dim=tr["dynamic_proj_dim"],
            num_feats=head["positional_encoding"]["num_feats"],
        )


# configs/demo_b.py of the release (= the 1-shot "Small" split-1 model).
DEMO_B = PoseAnythingConfig()


class PoseAnything(nn.Module):
    def __init__(self, config: PoseAnythingConfig = DEMO_B):
        super().__init__()
        if config.d_model != 2 * config.num_feats:
            raise ValueError("d_model must be twice num_feats (the sine encodings fill d_model channels)")
        self.config = config
        self.backbone = SwinV2(config.embed_dim, config.depths, config.num_heads, config.window_size,
                               config.img_size, config.num_classes)
        self.keypoint_head = PoseHead(
            self.backbone.out_dim, config.num_feats, config.d_model, config.nhead, config.num_encoder_layers,
            config.num_decoder_layers, config.dim_feedforward, config.similarity_proj_dim, config.dynamic_proj_dim)

    def support_tokens(self, support: torch.Tensor, heatmaps: torch.Tensor, mask: torch.Tensor,
                       trace: dict | None = None) -> torch.Tensor:
        """``[B, K, d]`` support tokens; computed once and reused for every frame of a video."""
        feats = torch.stack([self.backbone(s) for s in support])
        if trace is not None:
            trace["support_features"] = feats
        return self.keypoint_head.support_tokens(feats, heatmaps, mask, trace)

    def forward(self, query, support, heatmaps, mask, skeletons, trace: dict | None = None) -> dict:
        """Dict with ``output [L, B, K, 2]`` (the last layer is the prediction), ``initial_proposals``
        ``[B, K, 2]``, ``similarity_map [B, K, 16, 16]`` raw logits. ``trace`` collects intermediates."""
        mask = mask.bool()
        feats = self.backbone(query, None if trace is None else trace.setdefault("backbone", {}))
        if trace is not None:
            trace["query_features"] = feats
        tokens = self.support_tokens(support, heatmaps, mask, trace)
        return self.predict(feats, tokens, mask, skeletons, trace)

    def predict(self, query_features, support_tokens, mask, skeletons, trace: dict | None = None) -> dict:
        """The head on precomputed backbone features and support tokens (batch of frames)."""
        adj = graph_adjacency(skeletons, mask).to(query_features.dtype)
        return self.keypoint_head(query_features, support_tokens, mask, adj, trace)
