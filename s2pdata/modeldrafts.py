"""Drafts from a trained draft model: the stage-1 network's own output stored as a sample's draft.

Consumes a sample's line art ``(H, W) uint8`` (255 paper) and its stored hint map ``(H, W, 4)
uint8`` (the ``hint`` field, at the build's hint radius) and a checkpoint of ``python -m
s2pdata.train draft``; produces the network's draft ``(H, W, 3) uint8`` and its record
``{"style": "checkpoint", "sha256": ..., "step": ...}``. The whole picture goes through the network
in one pass, padded at the bottom and right to the network's stride and cropped back
(``s2pdata.colorize.Colorizer``, which the build shares with ``python -m s2pdata.colorize``).

A build asks for these drafts with ``--drafts-from CKPT`` (``SynthConfig.drafts_from``; each draft
is the network's with probability ``--drafts-from-p``, else a synthetic one). Nothing is drawn for
the network's draft: the record names the checkpoint, and ``replay_checkpoint_draft`` runs it again
on the sample's sketch and hint. It is not a synthetic draft: ``drafts.replay_draft`` cannot
re-create it without the checkpoint.

The network runs on CUDA when present (``$S2PDATA_DRAFTS_DEVICE`` overrides: ``cpu``, ``cuda``,
``cuda:N``), in float32 on the CPU with one torch thread, so a CPU build gives the same bytes with
any worker count. A GPU's kernels are not bit-exact across devices (and bf16, where the checkpoint
was trained with it, rounds): a build that must be byte-identical everywhere runs on the CPU. The
checkpoint is read with ``weights_only=True`` (``s2pdata.train.checkpoint.load_checkpoint``).
torch is imported only inside the functions that run the network.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

import numpy as np

from ._check import check_array
from .stages.learned import file_sha256

CHECKPOINT_STYLE = "checkpoint"  # the "style" of a draft record that is a network's output
DEVICE_ENV = "S2PDATA_DRAFTS_DEVICE"
ARG = "drafts_from (--drafts-from)"


def drafts_device() -> str:
    """Where the draft network runs: ``$S2PDATA_DRAFTS_DEVICE``, else CUDA when present, else the CPU."""
    from .evaluate import resolve_device

    return resolve_device(os.environ.get(DEVICE_ENV) or "auto")


def checkpoint_info(path) -> dict:
    """Check that ``path`` is a draft checkpoint and describe it for ``dataset.json``.

    Loads the generator once on the CPU (a damaged file, a pickle or a checkpoint of the other stage
    is refused here, before a build starts, never per sample).

    Returns
    -------
    dict
        ``sha256`` of the file, ``stage`` ("draft"), training ``step``, generator ``params``, the
        ``hint_radius`` of its config (with online hints the radius it was trained with, None for 1;
        without, it saw its training build's stored hints), the ``torch`` version and the ``device``
        type the build runs it on.

    Raises
    ------
    ValueError
        One line naming ``--drafts-from``, the file and the fix.
    """
    try:
        import torch
    except ModuleNotFoundError as exc:
        if exc.name != "torch":
            raise
        raise ValueError(f"{ARG} runs a network and needs torch: pip install 's2pdata[torch]'") from None

    from .evaluate import load_model

    if not isinstance(path, (str, Path)) or not str(path):
        raise ValueError(f"{ARG} must be the path of a draft checkpoint (RUN_DIR/ckpt.pt), got {path!r}")
    if not Path(path).is_file():
        raise ValueError(f"{ARG}: no checkpoint at {path}; give RUN_DIR/ckpt.pt of python -m s2pdata.train draft")
    try:
        _, info = load_model(str(path), "cpu")
    except (FileNotFoundError, ValueError) as exc:  # CheckpointError is a ValueError: one line naming the file
        raise ValueError(f"{ARG}: {exc}") from None
    if info["stage"] != "draft":
        raise ValueError(
            f"{ARG}: {path} is a {info['stage']} checkpoint, not a draft one; the drafts come from the "
            "draft stage: give RUN_DIR/ckpt.pt of python -m s2pdata.train draft"
        )
    try:
        device = drafts_device()
    except ValueError as exc:
        raise ValueError(f"${DEVICE_ENV}: {exc}") from None
    return {
        "sha256": file_sha256(path),
        "stage": info["stage"],
        "step": info["step"],
        "params": int(info["params"]),
        "hint_radius": info["config"].get("hint_radius"),
        "torch": torch.__version__,
        "device": device.split(":")[0],
    }


@contextmanager
def _one_thread(device: str):
    """One torch thread for the block on the CPU (the same bytes in a worker and in the parent), then
    the caller's count again."""
    import torch

    if device != "cpu":
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class CheckpointDrafter:
    """A loaded draft network: ``drafter(sketch, hint) -> (draft, record)``.

    Use ``load_drafter(path)`` (once per process) rather than this constructor.
    """

    def __init__(self, path, device: str | None = None):
        from .colorize import Colorizer

        self.path = str(path)
        self.device = device or drafts_device()
        self.colorizer = Colorizer(self.path, device=self.device)
        self.sha256 = file_sha256(self.path)  # of the file just loaded, recorded with every draft

    @property
    def record(self) -> dict:
        """The json record of every draft this network makes."""
        return {"style": CHECKPOINT_STYLE, "sha256": self.sha256, "step": self.colorizer.draft.step}

    def __call__(self, sketch: np.ndarray, hint: np.ndarray) -> tuple[np.ndarray, dict]:
        """The network's draft of ``sketch`` with the hint map ``hint``, and its record.

        Shape
        -----
        (H, W) uint8, (H, W, 4) uint8 -> (H, W, 3) uint8
        """
        sketch = check_array("sketch", sketch, dtype=np.uint8, ndim=2)
        hint = check_array("hint", hint, dtype=np.uint8, ndim=3)
        if hint.shape != (*sketch.shape, 4):
            raise ValueError(f"hint must be (H, W, 4) uint8 at the sketch's size {sketch.shape}, got {hint.shape}")
        with _one_thread(self.device):
            draft, _ = self.colorizer.run(sketch, hints=hint)
        return draft, dict(self.record)


def load_drafter(path, device: str | None = None) -> CheckpointDrafter:
    """The drafter of the checkpoint at ``path``, loaded once per process (and again if the file changes)."""
    try:
        st = Path(path).stat()
        stamp = (st.st_size, st.st_mtime_ns)
    except OSError:
        stamp = None  # the constructor names the missing file
    return _load(str(path), device, stamp)


@lru_cache(maxsize=2)
def _load(path: str, device: str | None, stamp) -> CheckpointDrafter:
    return CheckpointDrafter(path, device)


def is_checkpoint_draft(record) -> bool:
    """Whether a draft record (as ``make_draft``/``pack_draft`` write it, or as this module does) is a
    network's output rather than a synthetic draft."""
    return isinstance(record, dict) and record.get("style") == CHECKPOINT_STYLE


def replay_checkpoint_draft(record: dict, sketch: np.ndarray, hint: np.ndarray, checkpoint) -> np.ndarray:
    """Re-create a network's draft: run ``checkpoint`` on the sample's ``sketch`` and ``hint`` fields.

    ``record`` is the draft's record in the sample json (either form: ``{"style": "checkpoint",
    "sha256", "step"}`` or ``pack_draft``'s ``{"style", "params"}``). Equal bytes on the device and
    torch version of the build (``dataset.json``'s ``drafts_from`` entry names both).

    Raises
    ------
    ValueError
        ``record`` is not a network's draft, or ``checkpoint`` is not the file it names (sha256).

    Shape
    -----
    (H, W) uint8, (H, W, 4) uint8 -> (H, W, 3) uint8
    """
    from .stages.drafts import unpack_draft

    record = unpack_draft(record)
    if not is_checkpoint_draft(record):
        style = record.get("style") if isinstance(record, dict) else None
        raise ValueError(
            f"record is not a draft model's output (style {style!r}); replay a synthetic draft with "
            "s2pdata.stages.drafts.replay_draft"
        )
    sha = file_sha256(checkpoint)
    if sha != record.get("sha256"):
        raise ValueError(
            f"checkpoint {checkpoint} has sha256 {sha[:12]}..., the draft was made by "
            f"{str(record.get('sha256'))[:12]}...; give the checkpoint the build's dataset.json names "
            "(config.drafts_from)"
        )
    return load_drafter(checkpoint)(sketch, hint)[0]
