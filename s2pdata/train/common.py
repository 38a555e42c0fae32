"""Shared pieces of the two trainers: config from recipe + flags, device/DDP set-up, the data
stream, atomic checkpoints with RNG states, the sample grid, and the training loop.

Consumes a frozen config dataclass and a ``Stage`` (networks + loss of one stage); produces
``RUN_DIR/ckpt.pt`` (one dict: models, optimisers, step, data position, config, RNG states),
``RUN_DIR/log.jsonl`` and ``RUN_DIR/samples/step-XXXXXXX.png``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import time
import typing
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import tomllib
import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class TrainConfig:
    """Knobs both stages share; paper defaults (Adam 0.9/0.99, lr 1e-5, batch 16, 224 crops)."""

    shards: str = ""
    out: str = "runs/default"
    steps: int = 100_000
    batch_size: int = 16
    crop: int = 224
    lr: float = 1e-5
    beta1: float = 0.9
    beta2: float = 0.99
    width: int = 64  # U-Net channels at full resolution
    depth: int = 4  # U-Net sub-sampling steps
    disc_width: int = 64
    disc_layers: int = 3
    lambda_gan: float = 0.01
    mode: str = "resampled"  # data: "resampled" (infinite) or "exact" (epochs)
    num_workers: int = 4
    shuffle_buffer: int = 256
    online_hints: bool = False
    flip: bool = True
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    bf16: bool = True  # autocast to bfloat16 where CUDA supports it
    compile: bool = False
    log_every: int = 50
    sample_every: int = 1000
    ckpt_every: int = 1000


def config_fields(cls) -> dict[str, type]:
    """Field name -> type of a config dataclass (string annotations resolved, never eval'd by hand)."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in fields(cls)}


def _convert(cls, key: str, value, origin: str):
    types = config_fields(cls)
    if key not in types:
        raise ValueError(f"unknown config key {key!r} in {origin}; known keys: {', '.join(sorted(types))}")
    t = types[key]
    if isinstance(value, str) and t is not str:
        if t is bool:
            if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(f"{key} in {origin} must be true or false, got {value!r}")
            return value.lower() in ("true", "1", "yes")
        try:
            return t(value)
        except ValueError:
            raise ValueError(f"{key} in {origin} must be {t.__name__}, got {value!r}") from None
    if t is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, t) or (t is int and isinstance(value, bool)):
        raise ValueError(f"{key} in {origin} must be {t.__name__}, got {value!r}")
    return value


def load_recipe(path: str, cls) -> dict:
    """A TOML recipe (flat ``key = value`` of config fields, optional ``stage``) -> overrides."""
    with open(path, "rb") as f:
        data = tomllib.load(f)
    stage = data.pop("stage", None)
    if stage is not None and stage != cls.stage:
        raise ValueError(f"recipe {path} is for stage {stage!r}, not {cls.stage!r}")
    return {k: _convert(cls, k, v, f"recipe {path}") for k, v in data.items()}


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


def parse_args(cls, argv: list[str]) -> tuple[object, argparse.Namespace]:
    """``--shards DIR --out RUN_DIR [--steps N] [--resume] [--dry-run] [--recipe FILE] [--key value ...]``.

    Precedence: dataclass defaults < recipe < ``--dry-run`` presets < explicit flags.
    """
    p = argparse.ArgumentParser(prog=f"python -m s2pdata.train {cls.stage}", description=cls.__doc__)
    p.add_argument("--recipe", help="TOML file of config keys")
    p.add_argument("--resume", action="store_true", help="continue from RUN_DIR/ckpt.pt")
    p.add_argument("--dry-run", action="store_true", help="tiny model, a few steps on CPU")
    args, rest = p.parse_known_args(argv)
    flags: dict = {}
    i = 0
    while i < len(rest):
        tok = rest[i]
        if not tok.startswith("--"):
            raise SystemExit(f"{p.prog}: expected --key value, got {tok!r}")
        key = tok[2:].replace("-", "_")
        if "=" in key:
            key, value = key.split("=", 1)
            i += 1
        elif config_fields(cls).get(key) is bool and (i + 1 == len(rest) or rest[i + 1].startswith("--")):
            value, i = "true", i + 1  # a bare boolean flag: --compile
        elif i + 1 < len(rest):
            value, i = rest[i + 1], i + 2
        else:
            raise SystemExit(f"{p.prog}: --{key.replace('_', '-')} needs a value")
        try:
            flags[key] = _convert(cls, key, value, "the command line")
        except ValueError as exc:
            raise SystemExit(f"{p.prog}: {exc}") from None
    try:
        values = load_recipe(args.recipe, cls) if args.recipe else {}
    except ValueError as exc:
        raise SystemExit(f"{p.prog}: {exc}") from None
    if args.dry_run:
        values.update({k: v for k, v in {**DRY_RUN, **getattr(cls, "DRY_RUN", {})}.items()})
    values.update(flags)
    cfg = cls(**values)
    if not cfg.shards:
        raise SystemExit(f"{p.prog}: --shards DIR is required (a build folder of shard-*.tar)")
    return cfg, args


# ---------------------------------------------------------------------------------------------
# device, DDP, RNG, checkpoint


@dataclass
class Runtime:
    device: torch.device
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    autocast: Callable = nullcontext

    @property
    def master(self) -> bool:
        return self.rank == 0


def setup_runtime(cfg) -> Runtime:
    """Device, bf16 autocast where CUDA supports it, DDP when launched by torchrun (RANK, WORLD_SIZE)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    want = cfg.device if cfg.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    if want == "cuda" and not torch.cuda.is_available():
        raise SystemExit("device = cuda but CUDA is not available; use --device cpu")
    device = torch.device(f"cuda:{local}" if want == "cuda" else "cpu")
    if world > 1:
        if cfg.mode == "exact":
            raise SystemExit("DDP needs equal batches per rank: use mode = resampled with a step count")
        if device.type == "cuda":
            torch.cuda.set_device(device)
        torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo")
    rt = Runtime(device, rank, world, local)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        if cfg.bf16 and torch.cuda.is_bf16_supported():
            rt.autocast = lambda: torch.autocast("cuda", dtype=torch.bfloat16)
    return rt


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


def load_checkpoint(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def unwrap(model):
    """The plain module under DDP / torch.compile wrappers."""
    model = getattr(model, "module", model)
    return getattr(model, "_orig_mod", model)


# ---------------------------------------------------------------------------------------------
# losses and images


def variance_loss(x: torch.Tensor) -> torch.Tensor:
    """L_var(x) = -sum_c mean_i (x_ci - mean_i x_ci)^2, averaged over the batch, in fp32 (paper).

    Shape
    -----
    (B, C, H, W) -> scalar
    """
    x = x.float().flatten(2)
    return -((x - x.mean(2, keepdim=True)) ** 2).mean(2).sum(1).mean()


def gan_loss(logits: torch.Tensor, real: bool) -> torch.Tensor:
    """BCE-with-logits against all-ones (real) or all-zeros (fake), in fp32."""
    logits = logits.float()
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, 1.0 if real else 0.0))


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """(B, C, H, W) in [-1, 1] -> (B, H, W, 3) uint8 RGB (1 channel repeated)."""
    x = ((x.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    if x.shape[1] == 1:
        x = x.repeat(1, 3, 1, 1)
    return x.permute(0, 2, 3, 1).numpy()


def hints_image(hint: torch.Tensor) -> np.ndarray:
    """Hint tensor (B, 4, H, W) -> hint colours on white (B, H, W, 3) uint8."""
    a = hint[:, 3:].float().cpu()
    rgb = torch.where(a > 0, hint[:, :3].float().cpu() / a.clamp_min(1e-6), torch.ones_like(hint[:, :3].cpu()))
    return to_uint8(rgb)


def save_grid(path: Path, columns: list[np.ndarray]) -> None:
    """Rows = samples, columns = images (each (B, H, W, 3) uint8) -> one PNG."""
    import cv2

    rows = [np.concatenate([c[i] for c in columns], 1) for i in range(len(columns[0]))]
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(np.concatenate(rows, 0), cv2.COLOR_RGB2BGR))  # cv2 writes BGR


# ---------------------------------------------------------------------------------------------
# the loop


@dataclass
class Stage:
    """What differs between the stages: the networks, how a batch feeds them, and the G loss."""

    name: str
    G: torch.nn.Module
    D: torch.nn.Module
    forward: Callable  # (G, batch) -> prediction (B, 3, H, W)
    condition: Callable  # batch -> D's conditioning tensor (B, c, H, W)
    g_loss: Callable  # (pred, batch, d_fake_logits) -> (loss, {name: tensor})
    grid: Callable  # (batch, pred) -> list of (B, H, W, 3) uint8 columns
    extra_state: Callable = lambda: {}


def _to(batch: dict, device) -> dict:
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}


def train(cfg, build_stage: Callable, *, resume: bool = False, log: Callable = print) -> dict:
    """Run ``cfg.steps`` optimisation steps of ``build_stage(cfg)`` (built after seeding, so the
    initial weights depend on ``cfg.seed`` only); returns ``{"step", "history", "out"}``.

    Per step: D on (condition, real) vs (condition, G(x).detach()), then G on its stage loss.
    Loss values are read (``.item()``) only at log steps.
    """
    from ..data import make_loader

    rt = setup_runtime(cfg)
    torch.manual_seed(cfg.seed)  # same initial weights on every rank
    stage = build_stage(cfg)
    torch.manual_seed(cfg.seed + rt.rank)
    out = Path(cfg.out)
    ckpt_path = out / "ckpt.pt"
    if rt.master:
        out.mkdir(parents=True, exist_ok=True)
    G, D = stage.G.to(rt.device), stage.D.to(rt.device)
    opt_g = torch.optim.Adam(G.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))
    opt_d = torch.optim.Adam(D.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))
    step, epoch, batch_in_epoch = 0, 0, 0
    if resume:
        if not ckpt_path.exists():
            raise SystemExit(f"--resume: no checkpoint at {ckpt_path}")
        ck = load_checkpoint(ckpt_path)
        if ck["stage"] != stage.name:
            raise SystemExit(f"{ckpt_path} is a {ck['stage']} checkpoint, not {stage.name}")
        changed = {k: (ck["config"].get(k), v) for k, v in dataclasses.asdict(cfg).items() if ck["config"].get(k) != v}
        if changed and rt.master:
            log(f"resume: config differs from the checkpoint's: {changed}")
        G.load_state_dict(ck["models"]["G"])
        D.load_state_dict(ck["models"]["D"])
        opt_g.load_state_dict(ck["optims"]["G"])
        opt_d.load_state_dict(ck["optims"]["D"])
        step, epoch, batch_in_epoch = ck["step"], ck["epoch"], ck["batch_in_epoch"]
        set_rng_state(ck["rng"][rt.rank] if isinstance(ck["rng"], list) else ck["rng"])
        if rt.master:
            log(f"resumed {ckpt_path} at step {step}")
    g_run, d_run = G, D
    if rt.world_size > 1:
        ids = [rt.device.index] if rt.device.type == "cuda" else None
        g_run = torch.nn.parallel.DistributedDataParallel(G, device_ids=ids)
        d_run = torch.nn.parallel.DistributedDataParallel(D, device_ids=ids)
    if cfg.compile:
        g_run, d_run = torch.compile(g_run), torch.compile(d_run)

    def loader(epoch: int, skip: int):
        # resampled streams are infinite: a resume starts a fresh stream seeded by the step instead of
        # replaying; exact mode replays the epoch and skips the batches already used (undecoded)
        return make_loader(
            cfg.shards,
            stage=stage.name,
            batch_size=cfg.batch_size,
            num_workers=cfg.num_workers,
            world_size=rt.world_size,
            rank=rt.rank,
            mode=cfg.mode,
            epoch=epoch,
            seed=cfg.seed,
            crop=cfg.crop,
            flip=cfg.flip,
            online_hints=cfg.online_hints,
            shuffle_buffer=cfg.shuffle_buffer,
            skip_batches=skip,
        )

    if cfg.mode == "resampled" and step > 0:
        epoch, batch_in_epoch = step, 0
    fixed = next(
        iter(
            make_loader(
                cfg.shards,
                stage=stage.name,
                batch_size=4,
                num_workers=0,
                mode="exact",
                seed=cfg.seed,
                crop=cfg.crop,
                flip=False,
                shuffle_buffer=0,
            )
        )
    )
    history: list[dict] = []
    dl = loader(epoch, batch_in_epoch)
    it = iter(dl)
    t0, n_img = time.perf_counter(), 0
    G.train(), D.train()
    while step < cfg.steps:
        try:
            batch = next(it)
        except StopIteration:  # exact mode: next epoch
            epoch, batch_in_epoch = epoch + 1, 0
            dl.set_epoch(epoch)
            it = iter(dl)
            continue
        batch = _to(batch, rt.device)
        real, cond = batch["color"], stage.condition(batch)
        with rt.autocast():
            pred = stage.forward(g_run, batch)
            d_logits = d_run(torch.cat([torch.cat([cond, real], 1), torch.cat([cond, pred.detach()], 1)], 0))
        n = real.shape[0]
        loss_d = 0.5 * (gan_loss(d_logits[:n], True) + gan_loss(d_logits[n:], False))
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()
        with rt.autocast():
            d_fake = d_run(torch.cat([cond, pred], 1))
        loss_g, parts = stage.g_loss(pred, batch, d_fake)
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        step, batch_in_epoch, n_img = step + 1, batch_in_epoch + 1, n_img + n
        if step % cfg.log_every == 0 or step == cfg.steps:
            dt = time.perf_counter() - t0
            rec = {
                "step": step,
                "epoch": epoch,
                "loss_g": loss_g.item(),
                "loss_d": loss_d.item(),
                **{k: v.item() for k, v in parts.items()},
                "img_per_s": n_img * rt.world_size / max(dt, 1e-9),
            }
            history.append(rec)
            if rt.master:
                log(" ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in rec.items()))
                with open(out / "log.jsonl", "a") as f:
                    f.write(json.dumps(rec) + "\n")
            t0, n_img = time.perf_counter(), 0
        if rt.master and (step % cfg.sample_every == 0 or step == cfg.steps):
            G.eval()
            with torch.no_grad(), rt.autocast():
                fb = _to(fixed, rt.device)
                fp = stage.forward(G, fb)
            G.train()
            save_grid(out / "samples" / f"step-{step:07d}.png", stage.grid(fixed, fp))
        if step % cfg.ckpt_every == 0 or step == cfg.steps:
            rngs = rng_state()
            if rt.world_size > 1:
                gathered = [None] * rt.world_size
                torch.distributed.all_gather_object(gathered, rngs)
                rngs = gathered
            if rt.master:
                save_checkpoint(
                    ckpt_path,
                    {
                        "stage": stage.name,
                        "step": step,
                        "epoch": epoch,
                        "batch_in_epoch": batch_in_epoch,
                        "config": dataclasses.asdict(cfg),
                        "models": {"G": unwrap(G).state_dict(), "D": unwrap(D).state_dict()},
                        "optims": {"G": opt_g.state_dict(), "D": opt_d.state_dict()},
                        "rng": rngs,
                        **stage.extra_state(),
                    },
                )
    if rt.world_size > 1:
        torch.distributed.destroy_process_group()
    return {"step": step, "history": history, "out": str(out)}


def main_for(cls, build_stage: Callable, argv: list[str] | None = None) -> int:
    """CLI entry of one stage: parse, build, train."""
    cfg, args = parse_args(cls, sys.argv[2:] if argv is None else argv)
    t0 = time.perf_counter()
    result = train(cfg, build_stage, resume=args.resume)
    if int(os.environ.get("RANK", "0")) == 0:
        last = result["history"][-1] if result["history"] else {}
        print(
            f"{cls.stage}: {result['step']} steps in {time.perf_counter() - t0:.1f} s; "
            f"last loss_g {last.get('loss_g', math.nan):.4g}; checkpoint {Path(cfg.out) / 'ckpt.pt'}"
        )
    return 0
