"""Optimisation stages. Each takes its inputs as dataclasses, emits events, checkpoints, and
returns a result dataclass with save/load."""

from .dynamic import DynamicConfig, DynamicStage, NovelViewGuidance

__all__ = ["DynamicConfig", "DynamicStage", "NovelViewGuidance"]
