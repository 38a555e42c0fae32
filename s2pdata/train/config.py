"""Trainer config: one frozen dataclass per stage whose fields are the recipe keys and the flags.

Consumes a TOML recipe, ``--dry-run`` presets, command-line flags and, with ``--resume``, the
config stored in ``RUN_DIR/ckpt.pt``; produces a validated config. Every field is declared with
``opt`` (its help line and bounds: ``ge``, ``gt``, ``lt``, ``choices``) and read as a
``s2pdata._config.Key``, the build's config system too: one recipe reader (``crop-size`` or
``crop_size``), one converter, one ``--help`` generator. A bad value is a one-line error naming the key.

Precedence: dataclass defaults (or, with ``--resume``, the checkpoint's config) < recipe <
``--dry-run`` presets < explicit flags.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from dataclasses import dataclass, fields
from pathlib import Path

from .. import storage
from .._config import RECIPE_HELP, dataclass_keys, opt, parse_flags, read_recipe  # opt: the stages' fields too

MODES = ("resampled", "exact")
BIG = 10**9  # ceiling of the step counts: far above any run, far below an overflow
PIXELS_PER_STEP = 2**26  # ceiling of batch_size x crop^2 (paper: 16 x 224^2 = 0.8 M; this is 84x that)
DEVICES = ("auto", "cpu", "cuda")
SCHEDULES = ("constant", "cosine")


@dataclass(frozen=True)
class TrainConfig:
    """Knobs both stages share; paper defaults (Adam 0.9/0.99, lr 1e-5, batch 16, 224 crops)."""

    shards: str = opt(
        "", "build folder, tar or glob of shard-*.tar to train on, a local path or URL (required)", metavar="DIR|URL"
    )
    storage_options: dict | None = opt(
        None,
        f"--shards URL: {storage.STORAGE_OPTIONS_HELP}; in a recipe a TOML table. Its secret values are never "
        "stored in ckpt.pt, so --resume needs these options again",
        metavar="JSON",
        default_text="none",
        parse=storage.parse_options,  # never echoes the text: it may hold a secret
    )
    out: str = opt("runs/default", "run folder: ckpt.pt, log.jsonl, samples/step-*.png", metavar="RUN_DIR")
    steps: int = opt(
        100_000, "total optimisation steps (a resumed run continues up to this count)", ge=0, le=BIG, metavar="N"
    )
    batch_size: int = opt(16, "samples per step on each rank (paper: 16)", ge=1, le=4096)
    crop: int = opt(224, "side of the random square training crop in pixels (paper: 224)", ge=1, le=4096)
    lr: float = opt(1e-5, "Adam learning rate of G and D (paper: 1e-5)", gt=0.0, le=1.0)
    lr_schedule: str = opt(
        "constant",
        "constant, or cosine: decays to lr/10 at `steps` (a resume to more steps stretches it)",
        choices=SCHEDULES,
    )
    warmup: int = opt(0, "steps of linear learning-rate warm-up from lr/10 (before the schedule)", ge=0, le=BIG)
    beta1: float = opt(0.9, "Adam beta1 (paper: 0.9)", ge=0.0, lt=1.0)
    beta2: float = opt(0.99, "Adam beta2 (paper: 0.99)", ge=0.0, lt=1.0)
    width: int = opt(64, "U-Net channels at full resolution (paper scale: 64; CPU recipes: 8-16)", ge=1, le=1024)
    depth: int = opt(4, "U-Net sub-sampling steps", ge=1, le=10)
    disc_width: int = opt(64, "discriminator channels of its first layer", ge=1, le=1024)
    disc_layers: int = opt(3, "discriminator strided layers", ge=1, le=10)
    lambda_gan: float = opt(
        0.01, "weight of the GAN term in G's loss (paper: 0.01); 0 builds no discriminator", ge=0.0, le=1000.0
    )
    mode: str = opt("resampled", "data stream: resampled (infinite, count steps) or exact (epochs)", choices=MODES)
    num_workers: int = opt(4, "DataLoader worker processes per rank", ge=0, le=256)
    shuffle_buffer: int = opt(256, "samples held by each worker's shuffle buffer (0: file order)", ge=0, le=10_000)
    online_hints: bool = opt(False, "draw fresh hints per sample and epoch instead of the stored ones")
    hint_p: float = opt(
        0.125, "online hints: stop probability of the hint count (mean 1/p - 1; paper 1/8)", gt=0.0, le=1.0
    )
    hint_radius: int | None = opt(
        None,
        "online hints: half-side of each hint square; auto: 1 (3x3) for draft, 2 (5x5) for refine",
        ge=0,
        le=64,
        metavar="INT|auto",
    )
    flip: bool = opt(True, "random horizontal flips")
    seed: int = opt(0, "seed of the initial weights and of every data draw", ge=0, le=2**32 - 1)
    device: str = opt("auto", "auto (CUDA when available) | cpu | cuda", choices=DEVICES)
    bf16: bool | None = opt(
        None, "bfloat16 autocast; auto: on for CUDA that supports it, off on CPU", metavar="true|false|auto"
    )
    compile: bool = opt(False, "torch.compile G and D (inductor)")
    log_every: int = opt(50, "steps between log lines (log.jsonl)", ge=1, le=BIG)
    sample_every: int = opt(1000, "steps between sample grids (samples/step-*.png)", ge=1, le=BIG)
    ckpt_every: int = opt(1000, "steps between checkpoints (ckpt.pt, replaced atomically)", ge=1, le=BIG)

    def __post_init__(self):
        for name, key in dataclass_keys(type(self)).items():
            key.check(getattr(self, name))
        if self.batch_size * self.crop**2 > PIXELS_PER_STEP:  # each key within bounds, the product still huge
            raise ValueError(
                f"batch_size x crop^2 must be <= {PIXELS_PER_STEP} pixels a step, got {self.batch_size} x "
                f"{self.crop}^2 = {self.batch_size * self.crop**2}; lower batch_size or crop"
            )

    def check_files(self) -> None:
        """Files the config names must exist (checked by the CLI, not when a checkpoint is read back)."""


def lr_at(cfg: TrainConfig, step: int) -> float:
    """Learning rate of the step after ``step`` steps: a linear warm-up from lr/10 over ``warmup``
    steps, then ``lr`` (constant) or a cosine from lr down to lr/10 at ``steps``. A pure function of
    the step, so a resumed run continues the same curve."""
    if step < cfg.warmup:
        return cfg.lr * (0.1 + 0.9 * step / cfg.warmup)
    if cfg.lr_schedule == "constant":
        return cfg.lr
    t = min(1.0, (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup))
    return cfg.lr * (0.1 + 0.45 * (1.0 + math.cos(math.pi * t)))


def config_fields(cls) -> dict[str, type]:
    """Field name -> value type of a config dataclass (``bool | None`` -> ``bool``)."""
    return {name: key.type for name, key in dataclass_keys(cls).items()}


def fields_by_name(cls) -> dict[str, dataclasses.Field]:
    """Field name -> ``dataclasses.Field`` of a config dataclass."""
    return {f.name: f for f in fields(cls)}


def _prog(cls) -> str:
    return f"python -m s2pdata.train {cls.stage}"


def load_recipe(path: str, cls) -> dict:
    """A TOML recipe (flat ``key = value`` of config fields, optional ``stage``) -> overrides.

    Read by ``s2pdata._config.read_recipe``, as the build reads its recipes: ``batch-size`` and
    ``batch_size`` are one key, and an unknown key names the closest known one."""
    return read_recipe(path, dataclass_keys(cls), cli=_prog(cls), stage=cls.stage)


# a tiny model and a few CPU steps: the --dry-run overrides (explicit flags still win)
DRY_RUN = dict(
    steps=3,
    batch_size=2,
    crop=32,
    width=4,
    depth=2,
    disc_width=4,
    disc_layers=2,
    num_workers=0,
    device="cpu",
    compile=False,
    log_every=1,
    sample_every=3,
    ckpt_every=3,
    shuffle_buffer=8,
)


def _default_text(value) -> str:
    if value is None:
        return "auto"
    if isinstance(value, bool):
        return str(value).lower()
    return '""' if value == "" else str(value)


def build_parser(cls) -> argparse.ArgumentParser:
    """The stage's argparse parser: run options, then one ``--key`` per config field, its help from
    the field's ``Key`` (the generator the build's --help uses)."""
    p = argparse.ArgumentParser(
        prog=_prog(cls),
        description=cls.__doc__,
        allow_abbrev=False,
        epilog=f"{RECIPE_HELP} Precedence: defaults (or the checkpoint's config with --resume) < --recipe < "
        f"--dry-run < flags. On a machine without CUDA start from recipes/{cls.stage}-cpu.toml.",
    )
    p.add_argument("--recipe", metavar="FILE", help="TOML file of config keys (recipes/*.toml)")
    p.add_argument("--resume", action="store_true", help="continue RUN_DIR/ckpt.pt with its own config; flags override")
    p.add_argument("--overwrite", action="store_true", help="start over in a run folder that holds a checkpoint")
    p.add_argument("--dry-run", action="store_true", help="tiny model, 3 steps on CPU: checks the set-up in seconds")
    g = p.add_argument_group("config keys (flag --key-name, recipe key-name; key_name works too)")
    for key in dataclass_keys(cls).values():
        key.add_to(g)
    return p


def parse_args(cls, argv: list[str]) -> tuple[object, argparse.Namespace]:
    """``--shards DIR --out RUN_DIR [--steps N] [--resume | --overwrite] [--dry-run] [--recipe FILE] [--key v ...]``.

    Returns the config and the namespace (``resume``, ``overwrite``, ``dry_run``, ``recipe``). Any
    mistake is a ``SystemExit`` with one line that names the key. ``--batch-size`` and
    ``--batch_size`` are one flag.
    """
    p = build_parser(cls)
    try:
        flags, args = parse_flags(p, argv, dataclass_keys(cls))
        if args.resume and args.overwrite:
            raise ValueError("--resume continues a run and --overwrite starts it over; give one")
        values = base_config(cls, flags) if args.resume else {}
        if args.recipe:
            values.update(load_recipe(args.recipe, cls))
        if args.dry_run:
            values.update({**DRY_RUN, **getattr(cls, "DRY_RUN", {})})
        values.update(flags)
        cfg = cls(**values)
        if not args.resume:  # a resumed run takes its weights from the checkpoint
            cfg.check_files()
    except (ValueError, FileNotFoundError) as exc:
        raise SystemExit(f"{p.prog}: {exc}") from None
    if not cfg.shards:
        raise SystemExit(f"{p.prog}: --shards DIR is required (a build folder of shard-*.tar, or its URL)")
    return cfg, args


def base_config(cls, flags: dict) -> dict:
    """With ``--resume``: the config stored in the checkpoint of ``--out`` (keys this version lacks dropped)."""
    from .checkpoint import check_layout, load_checkpoint

    if "out" not in flags:
        raise ValueError("--resume needs --out RUN_DIR (the folder holding ckpt.pt)")
    path = Path(flags["out"]) / "ckpt.pt"
    if not path.exists():
        raise ValueError(f"--resume: no checkpoint at {path}")
    stored = load_checkpoint(path)
    check_layout(stored, path, cls.stage, resume=True)
    # a key the flags set is not read from the file: --crop 64 rescues a checkpoint whose crop is damaged
    return checkpoint_config(cls, {k: v for k, v in stored["config"].items() if k not in flags}, path)


NOT_RESUMED = ("storage_options",)  # keys a checkpoint holds redacted, so never read back


def checkpoint_config(cls, stored: dict, path) -> dict:
    """The config keys of a checkpoint that this version knows, type-checked like a recipe's.

    ``storage_options`` is never read back: the checkpoint holds them redacted (``stored_config``),
    so a resume is given them again."""
    keys = dataclass_keys(cls)
    return {
        k: keys[k].convert(v, f"checkpoint {path}") for k, v in stored.items() if k in keys and k not in NOT_RESUMED
    }


def stored_config(cfg) -> dict:
    """``cfg`` as the dict a checkpoint stores and logs show: ``storage_options`` with its credential
    values masked (``storage.redact_options``), so no secret reaches ckpt.pt or a log line."""
    values = dataclasses.asdict(cfg)
    if values.get("storage_options") is not None:
        values["storage_options"] = storage.redact_options(values["storage_options"])
    return values


def describe_changes(old: dict, new: dict) -> str:
    """``key old -> new`` for every key whose value differs; "" when none does."""
    keys = sorted(k for k in new if k in old and old[k] != new[k])
    return ", ".join(f"{k} {_default_text(old[k])} -> {_default_text(new[k])}" for k in keys)
