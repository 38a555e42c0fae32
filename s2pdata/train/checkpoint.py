"""Checkpoints of a run: atomic writes, RNG states, plain state dicts, and a weight hash.

Consumes the models, optimisers and loop position of ``s2pdata.train.loop``; produces
``RUN_DIR/ckpt.pt``, one dict of tensors and plain types that loads with ``weights_only=True``.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import torch


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
    """Write ``state`` to ``path.tmp`` then rename: a kill never leaves a half checkpoint."""
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path) -> dict:
    """A checkpoint on the CPU, read with ``weights_only=True`` (nothing is unpickled)."""
    return torch.load(path, map_location="cpu", weights_only=True)


def unwrap(model):
    """The plain module under DDP / torch.compile wrappers (its state-dict keys carry no prefix)."""
    model = getattr(model, "_orig_mod", model)
    model = getattr(model, "module", model)
    return getattr(model, "_orig_mod", model)


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
