"""PoseAnything's keypoint head: encoder over image + support tokens, proposals, graph decoder.

Written from ``../shared/poseanything/README.md`` §5; module names reproduce the checkpoint's
``keypoint_head.*`` layout. Sequence tensors are sequence-first (``[L, B, C]``) as in
``nn.MultiheadAttention``'s default, image tokens row-major.

Model coordinates are (x, y) in [0, 1] over the 16x16 feature map, pixel-centre grid
``((j + 0.5) / 16, (i + 0.5) / 16)``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

_SINE_TEMPERATURE = 10000.0
_SINE_EPS = 1e-6
_INVERSE_SIGMOID_EPS = 1e-3
_HEATMAP_EPS = 1e-8
_LOCAL_SOFTMAX_EPS = 1e-10


def _dim_t(num_feats: int, device) -> torch.Tensor:
    k = torch.arange(num_feats, dtype=torch.float32, device=device)
    return _SINE_TEMPERATURE ** (2 * torch.div(k, 2, rounding_mode="floor") / num_feats)


def _interleave(pos: torch.Tensor) -> torch.Tensor:
    """sin at even channels, cos at odd ones (``pos[..., F]`` already divided by dim_t)."""
    return torch.stack((pos[..., 0::2].sin(), pos[..., 1::2].cos()), dim=-1).flatten(-2)


def image_position_encoding(h: int, w: int, num_feats: int, device=None) -> torch.Tensor:
    """``[1, 2F, h, w]`` sine encoding; coordinates are each pixel's *far* edge, (i + 1) / h, times 2*pi."""
    y = torch.arange(1, h + 1, dtype=torch.float32, device=device) / (h + _SINE_EPS) * (2 * math.pi)
    x = torch.arange(1, w + 1, dtype=torch.float32, device=device) / (w + _SINE_EPS) * (2 * math.pi)
    dim_t = _dim_t(num_feats, device)
    pos_y = _interleave(y[:, None, None] / dim_t).expand(h, w, num_feats)
    pos_x = _interleave(x[None, :, None] / dim_t).expand(h, w, num_feats)
    return torch.cat([pos_y, pos_x], dim=-1).permute(2, 0, 1)[None]


def point_position_encoding(points: torch.Tensor, num_feats: int) -> torch.Tensor:
    """``[..., 2F]`` sine encoding of (x, y) points in [0, 1], as ``[pos_y, pos_x]``."""
    dim_t = _dim_t(num_feats, points.device)
    scaled = points * (2 * math.pi)
    pos_x = _interleave(scaled[..., 0, None] / dim_t)
    pos_y = _interleave(scaled[..., 1, None] / dim_t)
    return torch.cat([pos_y, pos_x], dim=-1)


def inverse_sigmoid(x: torch.Tensor, eps: float = _INVERSE_SIGMOID_EPS) -> torch.Tensor:
    x = x.clamp(0, 1)
    return torch.log(x.clamp(min=eps) / (1 - x).clamp(min=eps))


def pixel_centre_grid(h: int, w: int, device=None) -> torch.Tensor:
    """``[h*w, 2]`` normalised (x, y) of each cell's centre, row-major."""
    ys, xs = torch.meshgrid(torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij")
    return torch.stack([(xs.flatten() + 0.5) / w, (ys.flatten() + 0.5) / h], dim=-1).float()


def graph_adjacency(skeletons, mask: torch.Tensor) -> torch.Tensor:
    """``[B, 2, K, K]`` GCN kernels ``[diag(valid), A / rowsum(A)]``.

    ``skeletons``: one edge list per sample, 0-based (i, j); ``mask``: ``[B, K]`` bool, True = valid.
    A is symmetrised with max (a reversed duplicate does not count twice) and loses the masked
    keypoints' rows and columns before the row normalisation.
    """
    b, k = mask.shape
    adj = torch.zeros(b, k, k)  # filled on the CPU: one element per edge
    for i, edges in enumerate(skeletons):
        for u, v in edges:
            adj[i, int(u), int(v)] = 1.0
    adj = adj.to(mask.device)
    adj = torch.maximum(adj, adj.transpose(1, 2))
    valid = mask.float()
    adj = adj * valid[:, :, None] * valid[:, None, :]
    rowsum = adj.sum(-1, keepdim=True)
    adj = torch.where(rowsum > 0, adj / rowsum.clamp(min=1e-12), torch.zeros_like(adj))
    return torch.stack([torch.diag_embed(valid), adj], dim=1)


class EncoderLayer(nn.Module):
    def __init__(self, d_model: int, nhead: int, dim_ff: int):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, nhead)
        self.linear1 = nn.Linear(d_model, dim_ff)
        self.linear2 = nn.Linear(dim_ff, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)

    def forward(self, src, pos, key_padding_mask):
        # The positional encoding joins the stream itself (queries, keys, values and the residual),
        # so it accumulates over the layers: that is what the checkpoint was trained with.
        src = src + pos
        src = self.norm1(src + self.self_attn(src, src, src, key_padding_mask=key_padding_mask, need_weights=False)[0])
        return self.norm2(src + self.linear2(F.relu(self.linear1(src))))


class Encoder(nn.Module):
    def __init__(self, d_model, nhead, dim_ff, num_layers):
        super().__init__()
        self.layers = nn.ModuleList(EncoderLayer(d_model, nhead, dim_ff) for _ in range(num_layers))

    def forward(self, src, pos, key_padding_mask):
        for layer in self.layers:
            src = layer(src, pos, key_padding_mask)
        return src


class GraphConv(nn.Module):
    """Two-kernel graph convolution; node w receives ``sum_v adj[k, v, w] * W_k x_v``."""

    def __init__(self, in_dim: int, out_dim: int, kernels: int = 2):
        super().__init__()
        self.kernels = kernels
        self.conv = nn.Conv1d(in_dim, out_dim * kernels, kernel_size=1)

    def forward(self, x: torch.Tensor, adj: torch.Tensor) -> torch.Tensor:
        """``x [K, B, C]``, ``adj [B, kernels, K, K]`` -> ``[K, B, out]``."""
        y = self.conv(x.permute(1, 2, 0))  # [B, kernels*out, K]
        b, _, k = y.shape
        y = y.view(b, self.kernels, -1, k)
        return torch.einsum("bncv,bnvw->bcw", y, adj).permute(2, 0, 1)


class DecoderLayer(nn.Module):
    def __init__(self, d_model: int, nhead: int, dim_ff: int):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, nhead)
        # Cross-attention over [content, position] concatenations; values are the 256-d memory.
        self.multihead_attn = nn.MultiheadAttention(2 * d_model, nhead, vdim=d_model)
        self.choker = nn.Linear(2 * d_model, d_model)
        self.ffn1 = GraphConv(d_model, dim_ff)
        self.ffn2 = nn.Linear(dim_ff, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.norm3 = nn.LayerNorm(d_model)

    def forward(self, tgt, memory, pos, query_pos, tgt_key_padding_mask, adj):
        q = tgt + query_pos
        sa = self.self_attn(q, q, tgt, key_padding_mask=tgt_key_padding_mask, need_weights=False)[0]
        tgt = self.norm1(tgt + sa)
        ca = self.multihead_attn(torch.cat([tgt, query_pos], -1), torch.cat([memory, pos], -1), memory,
                                 need_weights=False)[0]
        tgt = self.norm2(tgt + self.choker(ca))
        ff = self.ffn2(F.relu(self.ffn1(tgt, adj)))
        return self.norm3(tgt + ff)


class RefPointHead(nn.Module):
    def __init__(self, d_model: int):
        super().__init__()
        self.layers = nn.ModuleList([nn.Linear(d_model, d_model), nn.Linear(d_model, d_model)])

    def forward(self, x):
        return self.layers[1](F.gelu(self.layers[0](x)))


class Decoder(nn.Module):
    def __init__(self, d_model, nhead, dim_ff, num_layers):
        super().__init__()
        self.layers = nn.ModuleList(DecoderLayer(d_model, nhead, dim_ff) for _ in range(num_layers))
        self.norm = nn.LayerNorm(d_model)
        self.ref_point_head = RefPointHead(d_model)
        self.d_model = d_model

    def forward(self, tgt, memory, pos, start_points, tgt_key_padding_mask, adj, kpt_branch, trace=None):
        """Returns the normalised per-layer outputs ``[L, K, B, C]`` and the reference points b_0..b_L."""
        points = [start_points]
        normed = []
        for i, layer in enumerate(self.layers):
            query_pos = self.ref_point_head(point_position_encoding(points[-1], self.d_model // 2)).transpose(0, 1)
            tgt = layer(tgt, memory, pos, query_pos, tgt_key_padding_mask, adj)
            normed.append(self.norm(tgt))
            if trace is not None:
                trace.setdefault("ref_point_head", []).append(query_pos)
                trace.setdefault("layer_out", []).append(tgt)
            # The next reference comes from the *un-normalised* features (the returned points use
            # the normalised ones, so the two differ slightly).
            delta = kpt_branch[i](tgt.transpose(0, 1))
            points.append(torch.sigmoid(inverse_sigmoid(points[-1]) + delta).detach())
        return torch.stack(normed), points


class ProposalGenerator(nn.Module):
    def __init__(self, d_model: int, proj_dim: int, dynamic_dim: int):
        super().__init__()
        self.support_proj = nn.Linear(d_model, proj_dim)
        self.query_proj = nn.Linear(d_model, proj_dim)
        self.dynamic_proj = nn.Sequential(nn.Linear(proj_dim, dynamic_dim), nn.ReLU(), nn.Linear(dynamic_dim, proj_dim))

    def forward(self, memory: torch.Tensor, support: torch.Tensor, hw: tuple[int, int]):
        """``memory [B, HW, C]``, ``support [B, K, C]`` -> (similarity logits [B,K,h,w], soft-argmax, local max)."""
        h, w = hw
        s = self.support_proj(support)
        s = (torch.tanh(self.dynamic_proj(s)) + 1) * s
        sim = torch.einsum("bnc,bkc->bkn", self.query_proj(memory), s)  # raw logits, no temperature
        prob = sim.softmax(dim=-1)
        grid = pixel_centre_grid(h, w, sim.device).to(sim.dtype)
        soft_argmax = prob @ grid
        # The decoder starts from the soft-argmax restricted to the 3x3 cells around the peak.
        peak = F.one_hot(sim.argmax(dim=-1), h * w).to(sim.dtype).view(-1, 1, h, w)
        near = F.max_pool2d(peak, 3, stride=1, padding=1).view(sim.shape)
        local = prob * near
        local = local / (local.sum(-1, keepdim=True) + _LOCAL_SOFTMAX_EPS)
        return sim.view(*sim.shape[:2], h, w), soft_argmax, local @ grid


class Transformer(nn.Module):
    def __init__(self, d_model=256, nhead=8, num_encoder_layers=3, num_decoder_layers=3, dim_feedforward=768,
                 similarity_proj_dim=256, dynamic_proj_dim=128):
        super().__init__()
        self.encoder = Encoder(d_model, nhead, dim_feedforward, num_encoder_layers)
        self.decoder = Decoder(d_model, nhead, dim_feedforward, num_decoder_layers)
        self.proposal_generator = ProposalGenerator(d_model, similarity_proj_dim, dynamic_proj_dim)


class KptBranch(nn.Module):
    def __init__(self, d_model: int):
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(d_model, d_model), nn.GELU(), nn.Linear(d_model, d_model), nn.GELU(),
            nn.Linear(d_model, d_model), nn.GELU(), nn.Linear(d_model, 2),
        )

    def forward(self, x):
        return self.mlp(x)


class PoseHead(nn.Module):
    def __init__(self, in_channels=768, num_feats=128, d_model=256, nhead=8, num_encoder_layers=3,
                 num_decoder_layers=3, dim_feedforward=768, similarity_proj_dim=256, dynamic_proj_dim=128):
        super().__init__()
        self.num_feats = num_feats
        self.transformer = Transformer(d_model, nhead, num_encoder_layers, num_decoder_layers, dim_feedforward,
                                       similarity_proj_dim, dynamic_proj_dim)
        self.input_proj = nn.Conv2d(in_channels, d_model, kernel_size=1)
        self.query_proj = nn.Linear(in_channels, d_model)
        self.kpt_branch = nn.ModuleList(KptBranch(d_model) for _ in range(num_decoder_layers))

    def support_tokens(self, support_features: torch.Tensor, heatmaps: torch.Tensor, mask: torch.Tensor,
                       trace: dict | None = None) -> torch.Tensor:
        """``[S, B, C, h, w]`` support features of S shots, ``[S, B, K, H, W]`` heatmaps, ``[B, K]`` mask -> ``[B, K, d]``."""
        tokens = []
        for feat, hm in zip(support_features, heatmaps):
            feat = F.interpolate(feat, size=hm.shape[-2:], mode="bilinear", align_corners=False)
            hm = hm / (hm.sum(dim=(-1, -2), keepdim=True) + _HEATMAP_EPS)
            tokens.append(torch.einsum("bkhw,bchw->bkc", hm, feat))
        tokens = torch.stack(tokens).mean(0) * mask[..., None].to(support_features.dtype)
        if trace is not None:
            trace["support_tokens_in"] = tokens
        return self.query_proj(tokens)

    def forward(self, query_features, support_tokens, mask, adj, trace: dict | None = None):
        """``query_features [B, Cin, h, w]``, ``support_tokens [B, K, d]``, ``mask [B, K]`` bool, ``adj [B, 2, K, K]``.

        Returns a dict with ``output [L, B, K, 2]``, ``initial_proposals [B, K, 2]`` and
        ``similarity_map [B, K, h, w]`` (raw logits).
        """
        x = self.input_proj(query_features)
        b, c, h, w = x.shape
        k = support_tokens.shape[1]
        pos = image_position_encoding(h, w, self.num_feats, x.device).to(x.dtype)
        if trace is not None:
            trace.update({"input_proj": x, "pos_embed": pos, "support_tokens": support_tokens})
        src = x.flatten(2).permute(2, 0, 1)  # [hw, B, d]
        pos_seq = pos.flatten(2).permute(2, 0, 1).expand(-1, b, -1)
        tokens = support_tokens.transpose(0, 1)  # [K, B, d]
        invalid = ~mask
        enc_pos = torch.cat([pos_seq, torch.zeros_like(tokens)])
        enc_mask = torch.cat([torch.zeros(b, h * w, dtype=torch.bool, device=x.device), invalid], dim=1)
        out = self.transformer.encoder(torch.cat([src, tokens]), enc_pos, enc_mask)
        memory, refined = out[: h * w], out[h * w:]
        if trace is not None:
            trace.update({"memory": memory, "support": refined})
        sim, soft_argmax, local_max = self.transformer.proposal_generator(
            memory.transpose(0, 1), refined.transpose(0, 1), (h, w))
        if trace is not None:
            trace.update({"similarity": sim, "soft_argmax": soft_argmax, "local_max": local_max, "adj": adj})
        # A sample with every keypoint masked keeps index 0 as a key, so its attention stays defined.
        dec_mask = invalid.clone()
        dec_mask[dec_mask.all(dim=1), 0] = False
        normed, points = self.transformer.decoder(refined, memory, pos_seq, local_max, dec_mask, adj,
                                                  self.kpt_branch, trace)
        outputs = torch.stack([
            torch.sigmoid(self.kpt_branch[i](normed[i].transpose(0, 1)) + inverse_sigmoid(points[i]))
            for i in range(len(normed))
        ])
        if trace is not None:
            trace.update({"outs_normed": normed, "query_points": points})
        return {"output": outputs, "initial_proposals": soft_argmax, "similarity_map": sim}
