"""The loop both stages share: device and DDP set-up, the data position, the learning-rate
schedule, logging, sample grids and checkpoints. What differs between the stages (networks,
losses, the step) comes from the stage file as a ``Stage`` (``draft.py``, ``refine.py``).

Consumes a validated config (``config.py``) and ``build_stage(cfg) -> Stage``; produces
``RUN_DIR/ckpt.pt`` (models, optimisers, step, data position, config, RNG states of every rank),
``RUN_DIR/log.jsonl`` (per log step: ``samples`` seen over all ranks, ``data_epochs`` = samples /
the build's sample count, ``epoch`` in exact mode only, the losses, ``img_per_s``) and
``RUN_DIR/samples/step-XXXXXXX.png`` (crops of at least ``GRID_CROP`` pixels, each row labelled
with its sample key). At ``lambda_gan = 0`` no discriminator exists: none is built, stepped,
logged or saved.

Data position. ``exact`` mode replays the epoch and skips the batches already used. The
``resampled`` stream is infinite, so the loop re-seeds it at every periodic checkpoint (stream
``epoch`` = that step) and counts the batches drawn since: a resume re-opens that stream and
skips those batches undecoded, which is what an uninterrupted run would have read.

Ranks. Under DDP (``torchrun``) ``rank_shards`` alone splits the data: rank ``r`` streams the
shards ``r, r + world_size, ...``, disjoint from every other rank's, and its stream (run as
one rank) splits them over its workers only.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .. import storage
from .._safeio import append_line
from ..data.loader import to_model_input
from ..shards import recorded_counts, shard_paths
from .checkpoint import (
    check_layout,
    check_shapes,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
    unwrap,
)
from .common import Nets, Stage, save_grid
from .config import describe_changes, lr_at, stored_config

NOTE_AFTER = 3  # a CPU run times this many steps before saying what the run will cost


@dataclass
class Runtime:
    """Where this process trains: device, bf16 autocast and its DDP rank."""

    device: torch.device
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    bf16: bool = False

    @property
    def master(self) -> bool:
        return self.rank == 0

    def autocast(self):
        """bfloat16 autocast on this device type (CPU or CUDA) when ``bf16``, else nothing."""
        return torch.autocast(self.device.type, dtype=torch.bfloat16) if self.bf16 else nullcontext()


def setup_runtime(cfg) -> Runtime:
    """Device, bf16 and DDP (when launched by torchrun: RANK, WORLD_SIZE; nccl on CUDA, gloo on CPU).

    bf16 unset: on for CUDA that supports it, off on CPU (slower than fp32 on most CPUs); true: on
    for either device type.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    want = cfg.device if cfg.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    if want == "cuda" and not torch.cuda.is_available():
        raise SystemExit("device = cuda but CUDA is not available; use --device cpu")
    device = torch.device(f"cuda:{local}" if want == "cuda" else "cpu")
    bf16 = bool(cfg.bf16)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        if cfg.bf16 is None:
            bf16 = torch.cuda.is_bf16_supported()
        elif bf16 and not torch.cuda.is_bf16_supported():
            raise SystemExit("bf16 = true but this GPU has no bfloat16; use --bf16 false")
    if world > 1:
        if cfg.mode == "exact":
            raise SystemExit("DDP needs equal batches per rank: use mode = resampled with a step count")
        if device.type == "cuda":
            torch.cuda.set_device(device)
        torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Runtime(device, rank, world, local, bf16)


def check_shards(cfg) -> list[str]:
    """Every shard file of ``cfg.shards`` (a path or URL, listed with ``cfg.storage_options``); a
    ``SystemExit`` line, with the URL redacted, when there is none or one is missing."""
    so = cfg.storage_options
    paths = shard_paths(cfg.shards, storage_options=so)
    if not paths:
        raise SystemExit(
            f"shards = {storage.redact(cfg.shards)!r} holds no shard-*.tar; give a build folder, a tar or a glob"
        )
    missing = [p for p in paths if not storage.isfile(p, so)]  # as the loader checks: local paths or URLs
    if missing:
        raise SystemExit(
            f"shards = {storage.redact(cfg.shards)!r}: {storage.redact(missing[0])} does not exist ({len(missing)} "
            f"of {len(paths)} missing); give a build folder, a tar or a glob of shard-*.tar"
        )
    return paths


def rank_shards(cfg, rt: Runtime) -> list[str]:
    """This rank's shard files: all of them alone, every ``world_size``-th one under DDP (disjoint).

    The one place ranks split the data. The stream's own ``rank`` / ``world_size`` stay at one
    rank: in resampled mode its ranks would each draw from every shard.
    """
    paths = check_shards(cfg)
    if len(paths) < rt.world_size:
        raise SystemExit(
            f"DDP over {rt.world_size} ranks needs at least {rt.world_size} shards (one set per rank), "
            f"{storage.redact(cfg.shards)} has {len(paths)}; build with a smaller --shard-size"
        )
    return paths[rt.rank :: rt.world_size]


def claim_run_folder(out: Path, overwrite: bool) -> None:
    """Refuse a folder holding an earlier run's checkpoint unless ``overwrite`` (rank 0 then clears it)."""
    ckpt = out / "ckpt.pt"
    if not ckpt.exists():
        return
    if not overwrite:
        raise FileExistsError(
            f"{out} holds the checkpoint of an earlier run: add --resume to continue it, or --overwrite to start over"
        )
    if int(os.environ.get("RANK", "0")) == 0:
        for p in [ckpt, out / "log.jsonl", *sorted((out / "samples").glob("step-*.png"))]:
            p.unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------------
# the loop


def _millions(module: torch.nn.Module) -> float:
    return sum(p.numel() for p in module.parameters()) / 1e6


# config keys that are make_loader arguments of the same name
STREAM_KEYS = (
    "batch_size num_workers mode seed crop flip online_hints hint_p hint_radius shuffle_buffer storage_options".split()
)


@dataclass
class Run:
    """The state one process trains: networks, optimisers, data position, what it logged."""

    cfg: object
    stage: Stage
    rt: Runtime
    opts: dict[str, torch.optim.Optimizer]  # "G" [and "D": none without a discriminator, lambda_gan 0]
    shards: list[str]  # this rank's (rank_shards)
    n_samples: int | None = None  # the build's recorded sample count (all ranks); None when a stats file is missing
    n_shards: int = 0  # the build's shard count (all ranks)
    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    ckpt_writes: int = 0
    history: list[dict] = field(default_factory=list)

    def networks(self) -> dict[str, torch.nn.Module]:
        """The plain networks by checkpoint name: "G" [and "D"]."""
        return {k: m for k, m in (("G", self.stage.G), ("D", self.stage.D)) if m is not None}

    def loader(self, urls=None, **override):
        """This rank's stream at the current data position; ``override`` replaces any make_loader argument."""
        from ..data import make_loader

        kw = {key: getattr(self.cfg, key) for key in STREAM_KEYS}
        kw.update(stage=self.stage.name, epoch=self.epoch, skip_batches=self.batch_in_epoch)
        return make_loader(self.shards if urls is None else urls, **{**kw, **override})

    def restore(self, ck: dict, path: Path, log: Callable) -> None:
        """Load a checkpoint that ``_resume_checkpoint`` has checked against this run's config.

        A run saved without a discriminator (lambda_gan 0) and resumed with a GAN term starts D afresh.
        """
        changed = describe_changes(ck["config"], stored_config(self.cfg))  # credentials masked
        fresh_d = self.stage.D is not None and "D" not in ck["models"]
        for name, net in self.networks().items():
            if name in ck["models"]:
                net.load_state_dict(ck["models"][name])
                self.opts[name].load_state_dict(ck["optims"][name])
        self.step, self.epoch, self.batch_in_epoch = ck["step"], ck["epoch"], ck["batch_in_epoch"]
        set_rng_state(ck["rng"][self.rt.rank] if isinstance(ck["rng"], list) else ck["rng"])
        if self.rt.master:
            note = "; the checkpoint has no discriminator, so D starts fresh" if fresh_d else ""
            log(f"resumed {path} at step {self.step}; config keys changed: {changed or 'none'}{note}")

    def save(self, path: Path) -> None:
        """All ranks gather their RNG states; rank 0 alone writes."""
        rngs = rng_state()
        if self.rt.world_size > 1:
            gathered = [None] * self.rt.world_size
            torch.distributed.all_gather_object(gathered, rngs)
            rngs = gathered
        if not self.rt.master:
            return
        nets = self.networks()
        state = {
            "stage": self.stage.name,
            "step": self.step,
            "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch,
            "config": stored_config(self.cfg),  # storage_options redacted: a resume is given them again
            "models": {k: unwrap(m).state_dict() for k, m in nets.items()},
            "optims": {k: self.opts[k].state_dict() for k in nets},
            "rng": rngs,
        }
        save_checkpoint(path, state)
        self.ckpt_writes += 1


GRID_CROP = 256  # the sample grids show crops at least this large: a 64-pixel training crop is mostly background


def _fixed_batch(run: Run):
    """The build's first 4 samples, unflipped, hinted as in training (epoch 0), in crops of at least
    ``GRID_CROP`` pixels (the networks are fully convolutional): the sample grids' rows."""
    crop = max(run.cfg.crop, GRID_CROP)
    fixed = dict(batch_size=4, num_workers=0, mode="exact", epoch=0, flip=False, crop=crop)
    batch = next(iter(run.loader(run.cfg.shards, **fixed, shuffle_buffer=0, skip_batches=0)), None)
    return None if batch is None else to_model_input(batch, run.rt.device)


def _sample(run: Run, fixed: dict | None, out: Path) -> None:
    if fixed is None:
        return
    G = run.stage.G  # plain: every rank's copy is the same, and rank 0 alone draws
    G.eval()
    with torch.no_grad(), run.rt.autocast():
        pred = run.stage.forward(G, fixed)
    G.train()
    save_grid(out / "samples" / f"step-{run.step:07d}.png", run.stage.grid(fixed, pred), keys=fixed["__key__"])


def _on(flag: bool) -> str:
    return "on" if flag else "off"


def _banner(run: Run, cfg, resume: bool, recipe: str | None) -> str:
    rt, stage = run.rt, run.stage
    disc = "no D (lambda_gan 0)" if stage.D is None else f"D {_millions(stage.D):.3g} M"
    n = "?" if run.n_samples is None else run.n_samples
    return (
        f"{stage.name}: device {rt.device}, bf16 {_on(rt.bf16)}, compile {_on(cfg.compile)}, {rt.world_size} "
        f"rank(s){f', recipe {recipe}' if recipe else ''}\n"
        f"  model: G {_millions(stage.G):.3g} M parameters, {disc}\n"
        f"  data: {storage.redact(cfg.shards)}: {run.n_shards} shards, {n} samples; batch {cfg.batch_size} per rank, "
        f"crop {cfg.crop}, mode {cfg.mode}, {cfg.num_workers} workers\n"
        f"  steps: {run.step} -> {cfg.steps}{' (resumed)' if resume else ''}; log every {cfg.log_every}, samples "
        f"every {cfg.sample_every}, checkpoint every {cfg.ckpt_every} into {cfg.out}"
    )


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def _cost_note(run: Run, cfg, seconds: float, recipe: str | None) -> str:
    left = cfg.steps - run.step
    note = (
        f"CPU run: G has {_millions(run.stage.G):.3g} M parameters and a step (batch {cfg.batch_size}, crop "
        f"{cfg.crop}) computes in {seconds:.2f} s, so the {left} steps left take at least {_duration(left * seconds)}."
    )
    cpu_recipe = f"{run.stage.name}-cpu.toml"
    if recipe and Path(recipe).name == cpu_recipe:  # already running it: advertising it would be noise
        return note
    return (
        f"{note} --dry-run checks a set-up in seconds; recipes/{cpu_recipe} (small width, small crops) trains a "
        "small model on a laptop in minutes."
    )


def _resume_checkpoint(cfg, build_stage: Callable) -> tuple[dict, Path]:
    """``cfg.out/ckpt.pt``, refused (one line) unless its layout and tensor shapes fit ``cfg``.

    Checked before any model is built, so a config that does not match its tensors (width 2048
    over width-4 weights) allocates nothing.
    """
    path = Path(cfg.out) / "ckpt.pt"
    if not path.exists():
        raise SystemExit(f"--resume: no checkpoint at {path}")
    ck = load_checkpoint(path)
    check_layout(ck, path, cfg.stage, resume=True)
    # D is checked when this run trains one and the file holds one (else it is dropped or starts fresh)
    parts = ("G", "D") if cfg.lambda_gan > 0 and "D" in ck["models"] else ("G",)
    check_shapes(cfg, build_stage, ck["models"], path, parts=parts)
    return ck, path


def _prepare(cfg, build_stage: Callable, rt: Runtime, resume: bool, log: Callable) -> Run:
    ck = _resume_checkpoint(cfg, build_stage) if resume else None
    torch.manual_seed(cfg.seed)  # same initial weights on every rank
    if resume and getattr(cfg, "encoder_weights", ""):  # the checkpoint holds the encoder's weights
        stage = build_stage(dataclasses.replace(cfg, encoder_weights=""))
    else:
        stage = build_stage(cfg)
    torch.manual_seed(cfg.seed + rt.rank)
    nets = {k: m.to(rt.device) for k, m in (("G", stage.G), ("D", stage.D)) if m is not None}
    opts = {k: torch.optim.Adam(m.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2)) for k, m in nets.items()}
    every = shard_paths(cfg.shards, storage_options=cfg.storage_options)
    counts = recorded_counts(every, storage_options=cfg.storage_options)
    run = Run(cfg, stage, rt, opts, rank_shards(cfg, rt), None if None in counts else sum(counts), len(every))
    if ck is not None:
        run.restore(*ck, log)
    if rt.master:
        Path(cfg.out).mkdir(parents=True, exist_ok=True)
    return run


def _wrap(run: Run, cfg) -> Nets:
    """The networks a step runs: G and D in their DDP and torch.compile wrappers, and the run's
    autocast; checkpoints always save the plain modules."""
    ids = [run.rt.device.index] if run.rt.device.type == "cuda" else None

    def wrap(module):
        if module is None:
            return None
        if run.rt.world_size > 1:
            module = torch.nn.parallel.DistributedDataParallel(module, device_ids=ids)
        return torch.compile(module) if cfg.compile else module

    return Nets(wrap(run.stage.G), wrap(run.stage.D), run.rt.autocast)


def _log_step(run: Run, losses: dict, seconds: float, n_img: int, out: Path, say: Callable) -> dict:
    # the data position in samples and passes over the build; resampled mode's stream ``epoch`` is a
    # re-seeding counter (the step of the last checkpoint), so only exact mode logs its epoch
    seen = run.step * run.cfg.batch_size * run.rt.world_size
    rec = {
        "step": run.step,
        **({"epoch": run.epoch} if run.cfg.mode == "exact" else {}),
        "samples": seen,
        "data_epochs": None if not run.n_samples else round(seen / run.n_samples, 3),
        **{k: v.item() for k, v in losses.items()},
        "img_per_s": n_img * run.rt.world_size / max(seconds, 1e-9),
    }
    run.history.append(rec)
    if run.rt.master:
        say(" ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in rec.items() if v is not None))
        append_line(out / "log.jsonl", json.dumps(rec))  # never through a link planted at that name
    return rec


def _loop(
    run: Run,
    nets: Nets,
    *,
    say: Callable,
    progress: bool,
    cost_note: bool,
    recipe: str | None,
    on_step: Callable | None,
) -> None:
    from tqdm import tqdm

    cfg, rt, out = run.cfg, run.rt, Path(run.cfg.out)
    fixed = _fixed_batch(run) if rt.master else None
    show = rt.master and progress
    bar = tqdm(total=cfg.steps, initial=run.step, unit="step", desc=run.stage.name, disable=not show)
    it, t0, n_img, timed = None, time.perf_counter(), 0, []
    for net in run.networks().values():
        net.train()
    while run.step < cfg.steps:
        if it is None:
            it = iter(run.loader())
        batch = next(it, None)
        if batch is None:  # exact mode: the epoch is over
            if run.batch_in_epoch == 0:  # a whole fresh epoch gave nothing: looping on would hang
                raise SystemExit(
                    f"{storage.redact(cfg.shards)} gave rank {rt.rank} no batch of {cfg.batch_size}; lower batch_size"
                )
            run.epoch, run.batch_in_epoch, it = run.epoch + 1, 0, None
            continue
        t_step = time.perf_counter()
        for opt in run.opts.values():
            for group in opt.param_groups:
                group["lr"] = lr_at(cfg, run.step)
        batch = to_model_input(batch, rt.device)
        losses = run.stage.step(batch, nets, run.opts)
        run.step, run.batch_in_epoch, n_img = run.step + 1, run.batch_in_epoch + 1, n_img + len(batch["color"])
        if cost_note and rt.device.type == "cpu" and rt.master and len(timed) < NOTE_AFTER:
            timed.append(time.perf_counter() - t_step)
            if len(timed) == min(NOTE_AFTER, cfg.steps - run.step + len(timed)):
                say(_cost_note(run, cfg, min(timed), recipe))  # the fastest: the first step pays warm-ups
        bar.update(1)
        if run.step % cfg.log_every == 0 or run.step == cfg.steps:
            rec = _log_step(run, losses, time.perf_counter() - t0, n_img, out, say)
            bar.set_postfix(loss_g=f"{rec['loss_g']:.4g}", refresh=False)
            t0, n_img = time.perf_counter(), 0
        if rt.master and (run.step % cfg.sample_every == 0 or run.step == cfg.steps):
            _sample(run, fixed, out)
        periodic = run.step % cfg.ckpt_every == 0
        if periodic and cfg.mode == "resampled":
            run.epoch, run.batch_in_epoch, it = run.step, 0, None  # re-seed the stream: a resume here is exact
        if periodic or run.step == cfg.steps:
            run.save(out / "ckpt.pt")
        if on_step is not None:
            on_step(run, batch)
    bar.close()


def train(
    cfg,
    build_stage: Callable,
    *,
    resume: bool = False,
    overwrite: bool = False,
    log: Callable | None = None,
    progress: bool = True,
    cost_note: bool = False,
    recipe: str | None = None,
    on_step: Callable | None = None,
) -> dict:
    """Run ``cfg.steps`` optimisation steps of ``build_stage(cfg)``.

    Parameters
    ----------
    cfg : TrainConfig
        A validated stage config (``DraftConfig`` / ``RefineConfig``).
    build_stage : callable
        ``cfg -> Stage``; called after seeding, so the initial weights depend on ``cfg.seed`` only.
    resume : bool
        Continue ``cfg.out/ckpt.pt`` (models, optimisers, data position, RNG states).
    overwrite : bool
        Without ``resume``, a run folder holding a checkpoint is refused (``FileExistsError``)
        unless this is set; then its checkpoint, log and sample grids are removed first.
    log : callable, optional
        Receives each log line (default: printed above the progress bar, rank 0 only).
    progress : bool
        Show a tqdm progress bar (rate, ETA) on rank 0.
    cost_note : bool
        On CPU, say after the first steps what a step costs and, unless it is running, where the CPU recipe is.
    recipe : str, optional
        The recipe file the config came from, named in the banner.
    on_step : callable, optional
        ``on_step(run, batch)``, called on every rank after each step once its log line, sample
        grid and checkpoint are written, with the ``Run`` (``step``, ``shards``, ``stage.G`` ...) and
        the batch it trained on (``__key__`` holds its sample keys). For tools and tests that
        watch a run; the step's result does not depend on it.

    Returns
    -------
    dict
        ``{"step", "history", "out"}``; loss values are read (``.item()``) only at log steps.
    """
    from tqdm import tqdm

    check_shards(cfg)  # before anything is printed or made
    out = Path(cfg.out)
    made = not out.exists()
    if not resume:
        claim_run_folder(out, overwrite)
    rt = setup_runtime(cfg)
    say = log if log is not None else tqdm.write
    try:
        run = _prepare(cfg, build_stage, rt, resume, say)
        nets = _wrap(run, cfg)
        if rt.master:
            say(_banner(run, cfg, resume, recipe))
        _loop(run, nets, say=say, progress=progress, cost_note=cost_note, recipe=recipe, on_step=on_step)
    except BaseException:
        if made and rt.master and out.is_dir() and not any(out.iterdir()):
            out.rmdir()  # a run that failed before writing anything leaves no empty folder behind
        raise
    finally:
        if rt.world_size > 1:
            torch.distributed.destroy_process_group()
    return {"step": run.step, "history": run.history, "out": str(cfg.out)}
