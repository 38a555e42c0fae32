"""Checkpoints of a run: atomic writes, RNG states, plain state dicts, and a weight hash.

Consumes the models, optimisers and loop position of ``s2pdata.train.loop``; produces
``RUN_DIR/ckpt.pt``, one dict of tensors and plain types that loads with ``weights_only=True``,
holding ``sha256``: the ``state_hash`` of each model's state dict and of each optimizer's tensors
(``optims.G``) when it was saved.

Reading one back (``--resume``, ``s2pdata.evaluate``) never unpickles: a pickle checkpoint, a
damaged file, weights or optimizer state that differ from their recorded sha256 (a flipped bit),
weights that are not finite,
or a config that does not match the tensors is a one-line ``CheckpointError``, and the config is
checked against the tensor shapes before any model is allocated. A checkpoint without ``sha256``
(written by hand, or by an older s2pdata) loads with its weights unverified.

Files are written to a fresh temporary name in their folder, created with ``O_CREAT | O_EXCL |
O_NOFOLLOW`` (``tempfile.mkstemp``), then renamed: a link planted in the run folder is never
written through, and a kill leaves the old file or the new one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import pickle
import re
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from .._safeio import atomic_write

# how to make a checkpoint s2pdata reads: the tail of every "cannot read" message
HOW_TO = (
    "give the RUN_DIR/ckpt.pt that python -m s2pdata.train writes, or re-save the weights as plain state dicts: "
    "torch.save({'stage': 'draft', 'step': 0, 'config': {...}, 'models': {'G': G.state_dict(), 'D': D.state_dict()}}, "
    "'ckpt.pt')"
)


class CheckpointError(ValueError):
    """A file that is not a checkpoint s2pdata can use; ``str()`` is one line naming the file."""


def rng_state() -> dict:
    """torch, CUDA and numpy global RNG states as tensors / plain types (loadable with weights_only)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "gauss": float(gauss),
        },
    }


def set_rng_state(state: dict) -> None:
    """Restore what ``rng_state`` returned."""
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))


def save_checkpoint(path: Path, state: dict) -> None:
    """Write ``state`` atomically (``_safeio.atomic_write``: a fresh temporary name, then a rename), with
    the ``state_hash`` of each model as ``sha256``."""
    hashes = {name: state_hash(sd) for name, sd in state["models"].items()}
    hashes |= {f"optims.{name}": state_hash(_tensors(sd)) for name, sd in state.get("optims", {}).items()}
    state = {**state, "sha256": hashes}
    atomic_write(path, lambda f: torch.save(state, f))


def load_checkpoint(path) -> dict:
    """A checkpoint on the CPU, read with ``weights_only=True`` (nothing is unpickled).

    Raises ``CheckpointError`` (one line) for a missing, unreadable, damaged or pickle file.
    """
    try:
        with warnings.catch_warnings():  # torch warns about foreign pickle protocols: the error says enough
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"no checkpoint at {path}") from None
    except pickle.UnpicklingError as exc:  # torch's safe reader refused it: never retried unsafely
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(exc))
        if not found:  # not a pickle of objects: bytes the reader cannot parse
            raise CheckpointError(f"{path} is damaged or not a torch checkpoint ({_unsupported(exc)})") from None
        raise CheckpointError(
            f"{path} is a pickle checkpoint holding the Python object {found.group(1)}; s2pdata never unpickles "
            f"checkpoints (unpickling runs code from the file), so {HOW_TO}"
        ) from None
    except OSError as exc:
        raise CheckpointError(f"cannot read checkpoint {path}: {exc.strerror or exc}") from None
    except Exception as exc:  # noqa: BLE001 - torch raises RuntimeError, EOFError, KeyError ... on damaged files
        detail = (str(exc).splitlines() or [""])[0][:160]
        raise CheckpointError(
            f"{path} is damaged or not a torch checkpoint ({type(exc).__name__}{': ' if detail else ''}{detail})"
        ) from None


def _unsupported(exc: Exception) -> str:
    """The reader's own reason (``Unsupported operand 0``), without PyTorch's advice around it."""
    found = re.search(r"Unsupported [^.\n]*", str(exc))
    return found.group(0).strip() if found else "unreadable pickle data"


RESUME_KEYS = ("step", "epoch", "batch_in_epoch", "optims", "rng")


def check_layout(ck, path, stage: str | None = None, parts: tuple[str, ...] = ("G",), resume: bool = False) -> None:
    """Refuse a loaded checkpoint that lacks what a trainer checkpoint holds (one line naming the file).

    ``stage`` (when given) must match; ``parts`` are the models needed; ``resume`` also asks for the
    optimisers, the data position and the RNG states.
    """
    if not isinstance(ck, dict) or not isinstance(ck.get("config"), dict) or not isinstance(ck.get("models"), dict):
        raise CheckpointError(f"{path} is not an s2pdata trainer checkpoint (no 'config' and 'models' dicts); {HOW_TO}")
    if ck.get("stage") not in ("draft", "refine"):
        raise CheckpointError(f"{path} names stage {ck.get('stage')!r}; a trainer checkpoint is 'draft' or 'refine'")
    if stage is not None and ck["stage"] != stage:
        raise CheckpointError(f"{path} is a {ck['stage']} checkpoint, not {stage}")
    for name in parts:
        sd = ck["models"].get(name)
        if not isinstance(sd, dict) or not all(torch.is_tensor(v) for v in sd.values()):
            raise CheckpointError(f"{path} holds no state dict of tensors for model {name}; {HOW_TO}")
    missing = [k for k in ("step", *(RESUME_KEYS[1:] if resume else ())) if k not in ck]
    if missing:
        raise CheckpointError(f"{path} lacks {', '.join(missing)}, which {'a resume' if resume else 'it'} needs")
    check_weights(ck, path)


def check_weights(ck: dict, path) -> None:
    """Refuse model weights that differ from the sha256 recorded at save, or that hold NaN or infinity.

    Every model that is a state dict of tensors is checked. Without a ``sha256`` entry the hashes
    are not checked (a hand-made or older checkpoint); finiteness always is.
    """
    recorded = ck.get("sha256", {})
    if not isinstance(recorded, dict):
        raise CheckpointError(f"{path}: its sha256 entry is {type(recorded).__name__}, not a dict; the file is damaged")
    for name, sd in ck.get("optims", {}).items() if isinstance(ck.get("optims"), dict) else ():
        key = f"optims.{name}"
        if key in recorded and state_hash(_tensors(sd)) != recorded[key]:
            raise CheckpointError(
                f"{path}: the optimizer state of {name} differs from the sha256 recorded when it was saved, so the "
                "file is damaged (a changed bit on disk or in a copy); use an intact copy of the checkpoint"
            )
    for name, sd in ck["models"].items():
        if not isinstance(sd, dict) or not all(torch.is_tensor(v) for v in sd.values()):
            continue  # a part no caller asked for (check_layout refuses the ones they need)
        if name in recorded and state_hash(sd) != recorded[name]:
            raise CheckpointError(
                f"{path}: the weights of model {name} differ from the sha256 recorded when it was saved, so the file "
                "is damaged (a changed bit on disk or in a copy); use an intact copy of the checkpoint"
            )
        bad = next((k for k, t in sd.items() if t.is_floating_point() and not bool(torch.isfinite(t).all())), None)
        if bad is not None:
            raise CheckpointError(
                f"{path}: tensor {bad} of model {name} holds NaN or infinity; the run diverged before it was saved "
                "(lower lr) or the file was altered: use an earlier checkpoint"
            )


def _unet_prefix(sd: dict) -> str:
    return "unet." if "unet.down.0.0.weight" in sd else ""


def implied_keys(models: dict) -> dict:
    """Config values the tensors fix: ``width``, ``depth`` (G's U-Net), ``disc_width``, ``disc_layers`` (D)."""
    out = {}
    G, D = models.get("G") or {}, models.get("D") or {}
    pre = _unet_prefix(G)
    if f"{pre}down.0.0.weight" in G:
        out["width"] = int(G[f"{pre}down.0.0.weight"].shape[0])
        levels = {k[len(pre) + len("down.") :].split(".")[0] for k in G if k.startswith(pre + "down.")}
        out["depth"] = len(levels) - 1  # down.0 is the full-resolution block, then one per sub-sampling
    convs = sorted(int(k.split(".")[1]) for k in D if re.fullmatch(r"net\.\d+\.weight", k))
    if convs:
        out["disc_width"] = int(D[f"net.{convs[0]}.weight"].shape[0])
        out["disc_layers"] = len(convs) - 2  # n strided convs, then two 3x3 convs
    return out


def check_shapes(cfg, build_stage: Callable, models: dict, path, parts: tuple[str, ...] = ("G", "D")) -> None:
    """Refuse ``cfg`` when the networks it builds do not match the tensors of ``models``.

    First the keys the tensors fix (``implied_keys``: "config says width 2048, the tensors are width
    4"), then every tensor's shape against a model built on the meta device, which allocates no
    memory. Nothing real is built before this passes.
    """
    implied = implied_keys({k: models[k] for k in parts if k in models})
    wrong = {k: v for k, v in implied.items() if getattr(cfg, k, v) != v}
    if wrong:
        says = ", ".join(f"{k} {getattr(cfg, k)}" for k in wrong)
        are = ", ".join(f"{k} {v}" for k, v in wrong.items())
        raise CheckpointError(f"{path}: the config says {says} but the tensors are {are}; refusing to build the model")
    if getattr(cfg, "encoder_weights", ""):  # shapes only: never read a weights file here
        cfg = dataclasses.replace(cfg, encoder_weights="")
    with torch.device("meta"):
        stage = build_stage(cfg)
    for name in parts:
        want = {k: tuple(v.shape) for k, v in getattr(stage, name).state_dict().items()}
        have = {k: tuple(v.shape) for k, v in models[name].items()}
        bad = sorted(set(want) ^ set(have)) or sorted(k for k in want if want[k] != have[k])
        if bad:
            k = bad[0]
            raise CheckpointError(
                f"{path}: model {name} does not match its config: {k} is {have.get(k, 'absent')} in the file, "
                f"{want.get(k, 'absent')} for the config ({len(bad)} tensor(s) differ); refusing to build the model"
            )


def unwrap(model):
    """The plain module under DDP / torch.compile wrappers (its state-dict keys carry no prefix)."""
    model = getattr(model, "_orig_mod", model)
    model = getattr(model, "module", model)
    return getattr(model, "_orig_mod", model)


def _tensors(obj, prefix: str = "") -> dict:
    """Every tensor in a nested optimizer state dict, by its dotted path (what ``state_hash`` hashes)."""
    if torch.is_tensor(obj):
        return {prefix: obj}
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, (list, tuple)) else ()
    return {k: t for key, v in items for k, t in _tensors(v, f"{prefix}.{key}" if prefix else str(key)).items()}


def state_hash(*state_dicts: dict) -> str:
    """SHA-256 over the names, dtypes, shapes and bytes of every tensor, in key order.

    Equal hashes mean bit-identical weights (used to compare DDP ranks and runs).
    """
    h = hashlib.sha256()
    for sd in state_dicts:
        for name in sorted(sd):
            t = sd[name].detach().cpu().contiguous()
            h.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()
