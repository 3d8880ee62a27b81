"""The diffusers folder layout: which files a component folder holds, and what a model folder lacks."""

from __future__ import annotations

from pathlib import Path

from .registry import _CONFIG_FILE, _SVD_COMPONENTS, _WEIGHT_STEMS, _ZERO123_COMPONENTS


def weight_file_names(storage: str, variant: str | None, *, sharded: bool = False) -> tuple[str, ...]:
    """A component's weights file names for ``variant`` (None or "fp16"), in order of preference:
    safetensors, then the legacy .bin (transformers calls it ``pytorch_model``); with ``sharded``
    also the index files of sharded weights."""
    stem = _WEIGHT_STEMS[storage]
    legacy = "pytorch_model" if storage == "transformers" else stem
    suffix = "" if variant is None else f".{variant}"
    names = (f"{stem}{suffix}.safetensors", f"{legacy}{suffix}.bin")
    return names + tuple(n + ".index.json" for n in names) if sharded else names


def weights_variant(component_dir: str | Path, storage: str = "diffusers") -> str | None:
    """Which weights a component folder holds: ``None`` (full precision) or ``"fp16"``.

    Full-precision files win when both exist. Raises FileNotFoundError when there are none.
    """
    folder = Path(component_dir)
    for variant in (None, "fp16"):
        if any((folder / n).is_file() for n in weight_file_names(storage, variant, sharded=True)):
            return variant
    stem = _WEIGHT_STEMS[storage]
    raise FileNotFoundError(f"{folder} has no weights ({stem}.safetensors or {stem}.fp16.safetensors)")


def missing_files(folder: str | Path, kind: str) -> list[str]:
    """What a folder lacks to be a ``kind`` model in the diffusers layout (empty = complete)."""
    folder = Path(folder)
    if not folder.is_dir():
        return [f"{folder} (not a folder)"]
    components = _ZERO123_COMPONENTS if kind == "zero123" else _SVD_COMPONENTS
    missing = []
    for component, storage in components.items():
        sub = folder / component
        config = sub / _CONFIG_FILE[storage]
        if not config.is_file():
            missing.append(f"{component}/{config.name}")
        if storage in _WEIGHT_STEMS:
            try:
                weights_variant(sub, storage)
            except FileNotFoundError:
                missing.append(f"{component}/{_WEIGHT_STEMS[storage]}[.fp16].safetensors")
    return missing

