"""PoseAnything weights: the registry entry, the one-time checkpoint conversion, the safe loader.

The released checkpoint is an mmcv pickle (``{"meta", "state_dict", "optimizer"}``), and unpickling
can run code. :func:`convert_checkpoint` therefore

1. checks the file's size and that it is a PyTorch zip archive,
2. reads the top-level keys by *walking the pickle's opcodes without executing any* (refusing a
   file whose top level is not a dict of the expected keys),
3. prints a warning, then loads it once with PyTorch's restricted (``weights_only``) unpickler;
   only with ``trust=True`` does it fall back to a full unpickle,
4. checks every key and shape against our network and writes ``model.safetensors`` plus
   ``config.json``.

The estimator loads only that safetensors folder (:func:`load_model`).
"""

from __future__ import annotations

import hashlib
import json
import os
import pickletools
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

from .model import DEMO_B, PoseAnythingConfig

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
FORMAT = "dynapose4d-poseanything v1"
MB = 1024 * 1024


class PoseAnythingWeightsError(RuntimeError):
    """Missing, unsafe or mismatched PoseAnything weights. The message says what to do."""


@dataclass(frozen=True)
class WeightsSpec:
    """Where the weights come from and what the released file looks like."""

    name: str
    title: str
    url: str
    license_name: str
    env_var: str
    # fp32 parameters and buffers alone are 252 MB; mmcv also saves the Adam state (about 2x more).
    # The released file's exact size is not verified, hence a range.
    min_bytes: int
    max_bytes: int
    top_level_keys: frozenset
    required_key: str


POSEANYTHING = WeightsSpec(
    name="poseanything",
    title="PoseAnything demo checkpoint (1-shot, Swin-V2 'Small', MP-100 split 1)",
    url="https://drive.google.com/file/d/1RT1Q8AMEa1kj6k9ZqrtWIKyuR4Jn4Pqc (linked from github.com/orhir/PoseAnything)",
    license_name="Apache-2.0",
    env_var="DYNAPOSE4D_POSEANYTHING",
    min_bytes=240 * MB,
    max_bytes=1200 * MB,
    top_level_keys=frozenset({"meta", "state_dict", "optimizer"}),
    required_key="state_dict",
)


def default_folder(env: dict | None = None) -> Path:
    """Where converted weights live: ``$DYNAPOSE4D_POSEANYTHING``, else the user cache."""
    env = os.environ if env is None else env
    if env.get(POSEANYTHING.env_var):
        return Path(env[POSEANYTHING.env_var]).expanduser()
    cache = Path(env.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "dynapose4d" / "poseanything"


def how_to_get() -> str:
    return (
        f"Download the {POSEANYTHING.title} ({POSEANYTHING.license_name}) from {POSEANYTHING.url}, then run\n"
        f"  dynapose4d models convert-poseanything FILE\n"
        f"which writes {WEIGHTS_FILE} + {CONFIG_FILE} to {default_folder()} (or --out DIR; point "
        f"{POSEANYTHING.env_var} or the estimator's weights setting to that folder)."
    )


# -------------------------------------------------------------------------------------------------
# reading a pickle's top level without running it


class _Mark:
    pass


class _TopDict:
    pass


_MARK = _Mark()
_STRING_OPS = {"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "SHORT_BINSTRING", "BINSTRING", "STRING"}


def pickle_top_level_keys(data: bytes) -> list | None:
    """The top-level dict's keys of a pickle, found by simulating its stack over the opcodes.

    Nothing is constructed or imported: every object other than strings and the top dict is an
    opaque placeholder. Returns None when the top-level object is not a dict.
    """
    stack: list = []
    memo: dict = {}
    keys: list = []
    top = None
    for op, arg, _pos in pickletools.genops(data):
        name = op.name
        if name == "MARK":
            stack.append(_MARK)
            continue
        if name == "STOP":
            break
        if name in ("PUT", "BINPUT", "LONG_BINPUT"):
            memo[arg] = stack[-1]
            continue
        if name == "MEMOIZE":
            memo[len(memo)] = stack[-1]
            continue
        if name in ("GET", "BINGET", "LONG_BINGET"):
            stack.append(memo.get(arg))
            continue
        before = op.stack_before
        items = []
        if pickletools.stackslice in before or pickletools.markobject in before:
            while stack and stack[-1] is not _MARK:
                items.append(stack.pop())
            if stack:
                stack.pop()
            items.reverse()
            n_plain = len([b for b in before if b not in (pickletools.stackslice, pickletools.markobject)])
        else:
            n_plain = len(before)
        popped = [stack.pop() for _ in range(min(n_plain, len(stack)))][::-1]
        if name == "SETITEMS" and popped and isinstance(popped[-1], _TopDict):
            keys.extend(items[0::2])
        elif name == "SETITEM" and len(popped) == 3 and isinstance(popped[0], _TopDict):
            keys.append(popped[1])
        if name == "EMPTY_DICT" and top is None and not stack:
            top = _TopDict()
            stack.append(top)
            continue
        if name in _STRING_OPS:
            stack.append(arg if isinstance(arg, str) else str(arg))
            continue
        if name in ("SETITEMS", "SETITEM", "APPENDS", "APPEND", "BUILD", "ADDITEMS") and popped:
            stack.append(popped[0])  # the container stays on the stack
            continue
        stack.extend(object() for _ in op.stack_after)
    return keys if top is not None and stack and stack[0] is top else None


def _checkpoint_pickle(path: Path) -> bytes:
    if not zipfile.is_zipfile(path):
        raise PoseAnythingWeightsError(
            f"{path} is not a PyTorch zip checkpoint (files saved by torch >= 1.6). The released PoseAnything "
            "file is one; re-download it, or re-save an older file with torch.save on a trusted machine."
        )
    with zipfile.ZipFile(path) as z:
        names = [n for n in z.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
        if len(names) != 1:
            raise PoseAnythingWeightsError(f"{path} has {len(names)} data.pkl entries; expected one (not a torch checkpoint)")
        return z.read(names[0])


def inspect_checkpoint(path: str | Path, spec: WeightsSpec = POSEANYTHING) -> list[str]:
    """Size and top-level-key checks (nothing unpickled). Returns the top-level keys."""
    path = Path(path)
    if not path.is_file():
        raise PoseAnythingWeightsError(f"checkpoint {path} does not exist.\n{how_to_get()}")
    size = path.stat().st_size
    if not spec.min_bytes <= size <= spec.max_bytes:
        raise PoseAnythingWeightsError(
            f"{path} is {size / MB:.1f} MB, outside the {spec.min_bytes / MB:.0f}-{spec.max_bytes / MB:.0f} MB "
            f"expected of the {spec.title}; is it the right (complete) file?"
        )
    keys = pickle_top_level_keys(_checkpoint_pickle(path))
    if keys is None:
        raise PoseAnythingWeightsError(f"{path}: the top level of the checkpoint is not a dict; refusing to unpickle it")
    bad = [k for k in keys if not isinstance(k, str) or k not in spec.top_level_keys]
    if bad or spec.required_key not in keys:
        raise PoseAnythingWeightsError(
            f"{path} has top-level keys {sorted(map(str, keys))}; an mmcv PoseAnything checkpoint has "
            f"{sorted(spec.top_level_keys)} with {spec.required_key!r} required"
            + (f" (unexpected: {', '.join(map(repr, bad))})" if bad else "")
            + ". Refusing to unpickle an unknown file."
        )
    return keys


# -------------------------------------------------------------------------------------------------
# layout checks


def expected_layout(config: PoseAnythingConfig) -> dict:
    """name -> (shape, dtype) of our network's state_dict for ``config`` (built on the meta device)."""
    import torch

    from .model import PoseAnything

    with torch.device("meta"):
        model = PoseAnything(config)
    return {k: (tuple(v.shape), v.dtype) for k, v in model.state_dict().items()}


def check_layout(state: dict, config: PoseAnythingConfig, what: str) -> None:
    """Raise naming the first differing keys/shapes/dtypes between ``state`` and our network."""
    want = expected_layout(config)
    missing = [k for k in want if k not in state]
    extra = [k for k in state if k not in want]
    shapes = [f"{k}: {tuple(state[k].shape)} (expected {want[k][0]})" for k in want
              if k in state and tuple(state[k].shape) != want[k][0]]
    dtypes = [f"{k}: {state[k].dtype} (expected {want[k][1]})" for k in want
              if k in state and tuple(state[k].shape) == want[k][0] and state[k].dtype != want[k][1]]
    problems = []
    for label, items in (("missing keys", missing), ("unexpected keys", extra), ("shape mismatches", shapes),
                         ("dtype mismatches", dtypes)):
        if items:
            problems.append(f"{len(items)} {label}: " + "; ".join(items[:5]) + (" ..." if len(items) > 5 else ""))
    if problems:
        raise PoseAnythingWeightsError(
            f"{what} does not match the PoseAnything layout ({len(want)} entries, embed_dim {config.embed_dim}, "
            f"depths {list(config.depths)}):\n  " + "\n  ".join(problems)
        )


# -------------------------------------------------------------------------------------------------
# conversion and loading


def convert_checkpoint(path: str | Path, out: str | Path | None = None, *, config: PoseAnythingConfig = DEMO_B,
                       trust: bool = False, spec: WeightsSpec = POSEANYTHING, log=None) -> Path:
    """Convert the released mmcv checkpoint into ``out/model.safetensors`` + ``out/config.json``."""
    import torch

    log = sys.stderr if log is None else log
    path = Path(path)
    inspect_checkpoint(path, spec)
    print(
        f"WARNING: {path.name} is a pickle, and unpickling a file can run code. Convert only a file you\n"
        f"downloaded from the official link ({spec.url}). It is loaded once, with PyTorch's restricted\n"
        "weights-only unpickler" + (" (falling back to a full unpickle: --trust was given)." if trust else "."),
        file=log,
    )
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # the restricted unpickler names the global it refused
        if not trust:
            raise PoseAnythingWeightsError(
                f"the restricted unpickler refused {path}: {str(exc).strip().splitlines()[0]}\n"
                "If the file is the official download, run again with --trust to unpickle it fully."
            ) from None
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    state = ckpt.get(spec.required_key, ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict):
        raise PoseAnythingWeightsError(f"{path}: {spec.required_key!r} is not a dict of tensors")
    # mmcv strips a DataParallel prefix; so do we.
    state = {(k[len("module."):] if k.startswith("module.") else k): v for k, v in state.items()}
    not_tensors = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if not_tensors:
        raise PoseAnythingWeightsError(f"{path}: state_dict entries that are not tensors: {', '.join(not_tensors[:5])}")
    check_layout(state, config, str(path))
    out = default_folder() if out is None else Path(out)
    return save_folder(state, config, out, source={"file": path.name, "sha256": _sha256(path),
                                                   "bytes": path.stat().st_size})


def save_folder(state: dict, config: PoseAnythingConfig, out: str | Path, source: dict | None = None) -> Path:
    """Write ``model.safetensors`` + ``config.json`` (also used for tests' random weights)."""
    from safetensors.torch import save_file

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().contiguous().cpu() for k, v in state.items()}, str(out / WEIGHTS_FILE),
              metadata={"format": FORMAT})
    meta = {"format": FORMAT, "model": "PoseAnything", "config": config.to_dict(), "source": source or {}}
    (out / CONFIG_FILE).write_text(json.dumps(meta, indent=1))
    return out


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def resolve_folder(weights: str | Path | None = None) -> Path:
    """The converted-weights folder (a folder, or its ``model.safetensors``); actionable error if absent."""
    folder = default_folder() if weights in (None, "") else Path(weights).expanduser()
    if folder.is_file() and folder.name == WEIGHTS_FILE:
        folder = folder.parent
    elif folder.is_file():
        raise PoseAnythingWeightsError(
            f"{folder} is a file, not a converted PoseAnything folder; if it is the released checkpoint, convert it "
            f"first: dynapose4d models convert-poseanything {folder}"
        )
    for name in (WEIGHTS_FILE, CONFIG_FILE):
        if not (folder / name).is_file():
            raise PoseAnythingWeightsError(f"PoseAnything weights not found: {folder / name} is missing.\n{how_to_get()}")
    return folder


def load_config(folder: Path) -> PoseAnythingConfig:
    try:
        meta = json.loads((folder / CONFIG_FILE).read_text())
        if meta.get("format") != FORMAT:
            raise ValueError(f"format {meta.get('format')!r}, expected {FORMAT!r}")
        return PoseAnythingConfig.from_dict(meta["config"])
    except (ValueError, KeyError, TypeError) as exc:
        raise PoseAnythingWeightsError(f"{folder / CONFIG_FILE} is not a PoseAnything config: {exc}") from None


def load_model(weights: str | Path | None = None, device="cpu"):
    """Our network with converted weights (safetensors only; never a pickle), in eval mode."""
    import torch
    from safetensors.torch import load_file

    from .model import PoseAnything

    folder = resolve_folder(weights)
    config = load_config(folder)
    try:
        state = load_file(str(folder / WEIGHTS_FILE))
    except Exception as exc:  # truncated or not a safetensors file
        raise PoseAnythingWeightsError(
            f"{folder / WEIGHTS_FILE} cannot be read as safetensors ({exc}); convert the checkpoint again"
        ) from None
    check_layout(state, config, str(folder / WEIGHTS_FILE))
    with torch.device("meta"):
        model = PoseAnything(config)
    model.load_state_dict(state, strict=True, assign=True)
    return model.to(device).eval()


def status_line(env: dict | None = None) -> str:
    """One line for ``dynapose4d models list|check``."""
    folder = default_folder(env)
    head = f"{POSEANYTHING.name:<15} {'(manual download)':<48}        "
    if (folder / WEIGHTS_FILE).is_file() and (folder / CONFIG_FILE).is_file():
        state = f"converted: {folder}"
    else:
        state = f"not converted (looked in {folder})"
    return (f"{head}{state}\n{'':<15} CAPE keypoint estimator weights; licence: {POSEANYTHING.license_name}; "
            f"get them from {POSEANYTHING.url}, then `dynapose4d models convert-poseanything FILE`")


def cli_convert(args) -> int:
    """``dynapose4d models convert-poseanything FILE [--out DIR] [--trust]``."""
    try:
        folder = convert_checkpoint(args.file, args.out, trust=args.trust, log=sys.stderr)
    except PoseAnythingWeightsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {folder / WEIGHTS_FILE} and {folder / CONFIG_FILE}")
    return 0
