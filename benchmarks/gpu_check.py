"""The trainers' GPU check: one command, one table.

    python benchmarks/gpu_check.py [--cpu] [--shards DIR] [--steps N] [--compile-backend inductor|aot_eager]
        [--rows dry,step,ddp,wait,learning] [--keep DIR] [--json FILE]

On CUDA it measures, on a demo build it makes itself (``python -m s2pdata.build --src demo:N``) or
on ``--shards``:

- ``dry run``: ``python -m s2pdata.train draft|refine --dry-run --device cuda`` end to end;
- ``step``: the paper-scale draft and refine training steps (D step + G step, batch 16, 224 crops,
  U-Net width 64, GoogLeNet-width encoder) in bf16 autocast, eager and ``torch.compile``d, on a
  fixed random batch (no data loading): images/s after warm-up, peak CUDA memory, and the
  warm-up seconds (the compile time for compiled rows);
- ``DDP``: ``torchrun --nproc-per-node <visible GPUs>`` of the draft trainer at paper scale;
- ``data wait``: the draft step fed by ``make_loader`` at ``num_workers`` 2, 4, 8 (and 16, 32, 64
  where the cores allow): the fraction of step time spent in ``next(loader)``;
- ``learning``: ``benchmarks/bench_learning.py --scale gpu`` (both claims at the recipes' widths, in
  bf16; its tables go to ``learning.log`` in the work folder, kept with ``--keep``): its wall time, and
  in how many claim-2 rows the claim holds.

``--cpu`` runs the same rows reduced (the ``--dry-run`` model sizes, batch 2, 32 crops, a few
steps, ``num_workers`` 0 and 2, DDP over 2 gloo ranks, ``bench_learning.py --scale gpu --dry-run``)
so the test suite runs it. Peak memory is ``torch.cuda.max_memory_allocated`` for in-process rows on
CUDA; otherwise the peak resident set size (``VmHWM``): of this process during the row (reset per
row, its baseline included), or of the largest child process (dry run, learning; DDP: per rank). A
row that cannot run prints why instead of numbers, and the exit code is then 1.

Cost. The compile rows pay inductor's cold compile once per machine (cached afterwards): on a busy
2-core CPU about 1 min for the draft model and 7 min for the refine model (its Inception-V1
encoder), so the whole ``--cpu`` table took 9.7 min cold; ``--compile-backend eager`` (graph capture
only) gives the table in about 2 min and is what the test suite runs. ``--rows`` splits a GPU
session's check into calls that fit its per-call limit (e.g. ``--rows step``, then
``--rows dry,ddp,wait``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from s2pdata.train.common import Nets  # noqa: E402

TINY = dict(width=4, depth=2, disc_width=4, disc_layers=2)  # the --dry-run model sizes
TINY_REFINE = dict(encoder_width=0.0625)


@dataclass
class Row:
    """One line of the table; ``None`` numbers are not measured by that kind of row."""

    check: str
    setting: str
    img_s: float | None = None
    peak_mib: float | None = None
    mem: str = ""
    wait: float | None = None
    seconds: float | None = None
    note: str = ""
    ok: bool = True


@dataclass(frozen=True)
class Profile:
    """The scale of one run of the check: the device, the model and data sizes, the counts."""

    device: str
    batch: int
    crop: int
    steps: int
    warmup: int
    workers: tuple
    ranks: int
    demo_n: int
    demo_size: int
    shard_size: int
    model: dict
    refine_model: dict


def profile(cpu: bool, steps: int | None) -> Profile:
    """The reduced CPU profile or the paper-scale CUDA one."""
    # warm-up steps >= 2: compiled D builds a second graph (its input requires grad in the G step)
    if cpu:
        return Profile("cpu", 2, 32, steps or 4, 2, (0, 2), 2, 8, 64, 2, TINY, TINY_REFINE)
    cores = os.cpu_count() or 1
    workers = tuple(w for w in (2, 4, 8, 16, 32, 64) if w <= 8 or w <= cores)
    return Profile("cuda", 16, 224, steps or 20, 3, workers, torch.cuda.device_count(), 256, 256, 16, {}, {})


# ---------------------------------------------------------------------------------------------
# memory and child processes


def _hwm_mib() -> float:
    """Peak resident set size of this process since the last ``_reset_hwm`` (Linux ``VmHWM``)."""
    with open("/proc/self/status") as f:
        return int(re.search(r"VmHWM:\s+(\d+)", f.read()).group(1)) / 1024


def _reset_hwm() -> None:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM to the current RSS


def _tree_hwm_mib(pid: int) -> float:
    """Largest ``VmHWM`` among ``pid`` and its descendants (0 for processes already gone)."""
    best, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/status") as f:
                m = re.search(r"VmHWM:\s+(\d+)", f.read())
            best = max(best, int(m.group(1)) / 1024 if m else 0.0)
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo += [int(c) for c in f.read().split()]
        except (OSError, ValueError):
            continue  # exited between the listing and the read
    return best


def run_child(cmd: list[str], log: Path, timeout: float, env: dict | None = None) -> tuple[int, float, float]:
    """Run ``cmd`` (output to ``log``); returns (exit code, wall seconds, peak RSS MiB of its largest process).

    The peak is each process's own ``VmHWM`` (its high-water mark since exec), sampled every 0.1 s
    until it exits; rusage's ``ru_maxrss`` is not used because a forked child inherits the
    parent's high-water mark.
    """
    t0, peak = time.perf_counter(), 0.0
    with open(log, "w") as out:
        env = {**os.environ, **(env or {})}
        p = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, env=env, start_new_session=True)
        while p.poll() is None:
            peak = max(peak, _tree_hwm_mib(p.pid))
            if time.perf_counter() - t0 > timeout:
                os.killpg(p.pid, signal.SIGKILL)  # its own session: torchrun's ranks go with it
            time.sleep(0.1)
    return p.returncode, time.perf_counter() - t0, peak


def _tail(log: Path) -> str:
    lines = [x.strip() for x in log.read_text(errors="replace").splitlines() if x.strip()]
    return lines[-1][:160] if lines else "no output"


def _last_rate(run_dir: Path) -> float | None:
    log = run_dir / "log.jsonl"
    if not log.exists():
        return None
    recs = [json.loads(x) for x in log.read_text().splitlines() if x.strip()]
    return float(recs[-1]["img_per_s"]) if recs else None


# ---------------------------------------------------------------------------------------------
# the rows


def make_demo(work: Path, pf: Profile) -> Path:
    """A demo build of ``pf.demo_n`` pictures (stored drafts, several shards)."""
    out = work / "demo"
    cmd = [sys.executable, "-m", "s2pdata.build", "--src", f"demo:{pf.demo_n}", "--out", str(out)]
    cmd += ["--size", str(pf.demo_size), "--shard-size", str(pf.shard_size), "--no-progress"]
    cmd += ["--workers", str(min(os.cpu_count() or 1, 16))]
    code, _, _ = run_child(cmd, work / "build.log", 1800)
    if code != 0:
        raise SystemExit(f"demo build failed ({code}): {_tail(work / 'build.log')}")
    return out


def dry_run_row(stage: str, shards: Path, work: Path, pf: Profile) -> Row:
    """``python -m s2pdata.train STAGE --dry-run`` on the profile's device."""
    out, log = work / f"dry-{stage}", work / f"dry-{stage}.log"
    cmd = [sys.executable, "-m", "s2pdata.train", stage, "--shards", str(shards), "--out", str(out), "--dry-run"]
    code, secs, rss = run_child(cmd + ["--device", pf.device], log, 600)
    row = Row("dry run", f"{stage}, --dry-run --device {pf.device}", seconds=secs, peak_mib=rss, mem="RSS")
    row.img_s = _last_rate(out)
    if code != 0 or not (out / "ckpt.pt").exists() or row.img_s is None:
        row.ok, row.note = False, f"exit {code}: {_tail(log)}"
    return row


def ddp_row(shards: Path, work: Path, pf: Profile) -> Row:
    """torchrun over every visible GPU (CUDA, paper scale) or over 2 gloo ranks (CPU, dry-run sizes)."""
    setting = f"draft, torchrun {pf.ranks} ranks, {'nccl' if pf.device == 'cuda' else 'gloo'}"
    if pf.ranks < 2:
        return Row("DDP", setting, ok=False, note=f"cannot run: {pf.ranks} visible GPU(s); DDP needs 2 or more")
    out, log = work / "ddp", work / "ddp.log"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={pf.ranks}"]
    cmd += ["-m", "s2pdata.train", "draft", "--shards", str(shards), "--out", str(out), "--device", pf.device]
    steps = 2 * pf.steps  # two log records: the second covers the last pf.steps steps, start-up excluded
    cmd += ["--steps", str(steps), "--log-every", str(pf.steps)]
    if pf.device == "cpu":
        cmd += ["--dry-run"]
    else:
        cmd += ["--sample-every", str(steps), "--ckpt-every", str(steps), "--num-workers", "4"]
    code, secs, rss = run_child(cmd, log, 900, env={"OMP_NUM_THREADS": "1"})
    row = Row("DDP", setting, img_s=_last_rate(out), peak_mib=rss, mem="RSS/rank", seconds=secs)
    row.note = "img/s of all ranks over the last steps, data loading included; bf16 auto (on for CUDA, off on CPU)"
    if code != 0 or not (out / "ckpt.pt").exists() or row.img_s is None:
        row.ok, row.note = False, f"exit {code}: {_tail(log)}"
    return row


def learning_row(work: Path, pf: Profile, keep: Path | None = None) -> Row:
    """``bench_learning.py --scale gpu`` (``--dry-run`` on the CPU profile) as a child process."""
    dry = pf.device == "cpu"
    row = Row("learning", f"bench_learning --scale gpu{' --dry-run' if dry else ''}", mem="RSS")
    log = (keep or work) / "learning.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, str(ROOT / "benchmarks" / "bench_learning.py"), "--scale", "gpu", "--tag", "gpu"]
    cmd += ["--work", str((keep or work) / "learning")] + (["--dry-run"] if dry else [])
    code, row.seconds, row.peak_mib = run_child(cmd, log, 600 if not dry else 300)
    text = log.read_text(errors="replace")
    rows = [x for x in text.splitlines() if x.startswith("| ") and ("**holds**" in x or "| no: " in x)]
    row.note = f"claim 2 holds in {sum('**holds**' in x for x in rows)} of {len(rows)} rows; tables in {log}"
    if code != 0 or not rows:
        row.ok, row.note = False, f"exit {code}: {_tail(log)}"
    return row


def build(stage: str, pf: Profile, device: torch.device):
    """The stage's networks at the profile's scale and their Adam optimisers."""
    if stage == "draft":
        from s2pdata.train.draft import DraftConfig as Cfg
        from s2pdata.train.draft import build_stage
    else:
        from s2pdata.train.refine import RefineConfig as Cfg
        from s2pdata.train.refine import build_stage
    torch.manual_seed(0)
    cfg = Cfg(**pf.model, **(pf.refine_model if stage == "refine" else {}))
    st = build_stage(cfg)
    st.G.to(device).train(), st.D.to(device).train()
    opts = [torch.optim.Adam(m.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2)) for m in (st.G, st.D)]
    return st, opts


def step_fn(st, opts, device: torch.device, *, compile_backend: str | None):
    """One training step of the trainer (its stage's ``step``: D then G, bf16 autocast), as a function of a batch."""
    g, d = st.G, st.D
    if compile_backend:
        g, d = torch.compile(g, backend=compile_backend), torch.compile(d, backend=compile_backend)
    nets = Nets(g, d, lambda: torch.autocast(device.type, dtype=torch.bfloat16))
    optims = dict(zip(("G", "D"), opts))

    def step(batch: dict) -> tuple:
        losses = st.step(batch, nets, optims)  # read once per row (.item() syncs), see check_finite
        return losses["loss_g"].detach(), losses["loss_d"].detach()

    return step


def check_finite(losses) -> None:
    """Raise when the last step's G or D loss is not finite (a row must not time a diverged run)."""
    g, d = (float(x) for x in losses)
    if not (math.isfinite(g) and math.isfinite(d)):
        raise FloatingPointError(f"non-finite loss: G {g}, D {d}")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    else:
        _reset_hwm()


def _peak(device: torch.device) -> tuple[float, str]:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20, "CUDA alloc"
    return _hwm_mib(), "RSS"


def step_row(stage: str, pf: Profile, compile_backend: str | None) -> Row:
    """Images/s of the training step on a fixed random batch, after ``pf.warmup`` steps."""
    device = torch.device(pf.device)
    how = f"compile ({compile_backend})" if compile_backend else "eager"
    row = Row("step", f"{stage}, bf16, {how}, batch {pf.batch}, crop {pf.crop}")
    torch._dynamo.reset()
    _reset_peak(device)
    st, opts = build(stage, pf, device)
    gen = torch.Generator().manual_seed(0)
    chans = {"color": 3, "sketch": 1, "hint": 4, "draft": 3}
    batch = {k: (torch.rand(pf.batch, c, pf.crop, pf.crop, generator=gen) * 2 - 1).to(device) for k, c in chans.items()}
    step = step_fn(st, opts, device, compile_backend=compile_backend)
    t0 = time.perf_counter()
    for _ in range(pf.warmup):
        step(batch)
    _sync(device)
    t1 = time.perf_counter()
    for _ in range(pf.steps):
        losses = step(batch)
    _sync(device)
    check_finite(losses)
    row.img_s = pf.steps * pf.batch / (time.perf_counter() - t1)
    row.peak_mib, row.mem = _peak(device)
    row.seconds = t1 - t0
    row.note = f"seconds: the {pf.warmup} warm-up step(s){', compile included' if compile_backend else ''}"
    return row


def wait_row(shards: Path, pf: Profile, workers: int) -> Row:
    """The draft step fed by make_loader: share of step time spent waiting for the next batch."""
    from s2pdata.data import make_loader, to_model_input

    device = torch.device(pf.device)
    row = Row("data wait", f"draft, bf16, eager, num_workers {workers}, batch {pf.batch}, crop {pf.crop}")
    _reset_peak(device)
    st, opts = build("draft", pf, device)
    step = step_fn(st, opts, device, compile_backend=None)
    loader = make_loader(shards, stage="draft", batch_size=pf.batch, num_workers=workers, crop=pf.crop, seed=0)
    it = iter(loader)
    waited = total = 0.0
    for i in range(pf.warmup + pf.steps):
        t0 = time.perf_counter()
        batch = to_model_input(next(it), device)
        t1 = time.perf_counter()
        losses = step(batch)
        _sync(device)
        if i >= pf.warmup:  # the first batches include the workers' start-up
            waited, total = waited + t1 - t0, total + time.perf_counter() - t0
    del it
    check_finite(losses)
    row.wait, row.seconds, row.img_s = waited / total, total, pf.steps * pf.batch / total
    row.peak_mib, row.mem = _peak(device)
    row.note = f"over {pf.steps} steps after {pf.warmup} warm-up; img/s includes the waits"
    return row


def guarded(fn, *args, check: str, setting: str) -> Row:
    """``fn(*args)``, or a row saying why it could not run."""
    try:
        return fn(*args)
    except Exception as exc:  # a row that fails says why; the other rows still run
        msg = f"{type(exc).__name__}: {exc}".splitlines()[0][:160]
        return Row(check, setting, ok=False, note=f"failed: {msg}")


# ---------------------------------------------------------------------------------------------
# the table


def _num(x: float | None, fmt: str) -> str:
    return "-" if x is None else format(x, fmt)


def format_table(rows: list[Row], header: str) -> str:
    """One markdown table: check | setting | img/s | peak MiB | data wait | seconds | note."""
    lines = [
        header,
        "",
        "| check | setting | img/s | peak MiB | data wait | seconds | note |",
        "| --- | --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in rows:
        mem = "-" if r.peak_mib is None else f"{r.peak_mib:.0f} ({r.mem})"
        wait = "-" if r.wait is None else f"{100 * r.wait:.1f}%"
        note = r.note if r.ok else f"NOT RUN: {r.note}"
        lines.append(
            f"| {r.check} | {r.setting} | {_num(r.img_s, '.1f')} | {mem} | {wait} | {_num(r.seconds, '.1f')} | {note} |"
        )
    return "\n".join(lines)


GROUPS = ("dry", "step", "ddp", "wait", "learning")


def run_rows(pf: Profile, shards: Path, work: Path, backend: str, groups=GROUPS, keep: Path | None = None) -> list[Row]:
    """The rows of ``groups`` (all by default), in table order; a line on stderr as each one ends."""
    jobs = []
    if "dry" in groups:
        jobs += [(dry_run_row, (stage, shards, work, pf), "dry run", stage) for stage in ("draft", "refine")]
    for stage in ("draft", "refine") if "step" in groups else ():
        for cb in (None, backend):
            jobs.append((step_row, (stage, pf, cb), "step", f"{stage}, bf16, {f'compile ({cb})' if cb else 'eager'}"))
    if "ddp" in groups:
        jobs.append((ddp_row, (shards, work, pf), "DDP", "draft"))
    if "wait" in groups:
        jobs += [(wait_row, (shards, pf, w), "data wait", f"num_workers {w}") for w in pf.workers]
    if "learning" in groups:
        jobs.append((learning_row, (work, pf, keep), "learning", "bench_learning --scale gpu"))
    rows = []
    for i, (fn, args, check, setting) in enumerate(jobs, 1):
        t0 = time.perf_counter()
        rows.append(guarded(fn, *args, check=check, setting=setting))
        print(f"gpu_check: {i}/{len(jobs)} {check}, {setting}: {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return rows


def main(argv: list[str] | None = None) -> int:
    """Parse, run every row, print the table; exit 1 when a row could not run."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cpu", action="store_true", help="the reduced table on CPU (the test suite's run)")
    p.add_argument("--shards", default=None, help="a build to read (default: a demo build made here)")
    p.add_argument("--steps", type=int, default=None, help="timed steps per row (default: 20 on CUDA, 4 on CPU)")
    p.add_argument("--compile-backend", default="inductor", help="torch.compile backend of the compile rows")
    p.add_argument("--json", default=None, help="also write the rows as JSON here")
    p.add_argument("--rows", default=",".join(GROUPS), help="comma list of row groups to run: " + ", ".join(GROUPS))
    p.add_argument("--keep", default=None, help="keep the learning row's tables, builds and models in this folder")
    args = p.parse_args(argv)
    groups = tuple(args.rows.split(","))
    if not groups or set(groups) - set(GROUPS):
        p.error(f"--rows takes a comma list of {', '.join(GROUPS)}, got {args.rows!r}")
    if not args.cpu and not torch.cuda.is_available():
        print("gpu_check: CUDA is not available; run with --cpu for the reduced table", file=sys.stderr)
        return 2
    pf = profile(args.cpu, args.steps)
    name = torch.cuda.get_device_name(0) if pf.device == "cuda" else f"CPU ({os.cpu_count()} cores)"
    header = f"gpu_check on {name}, torch {torch.__version__}, {torch.get_num_threads()} threads"
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        needs_data = bool({"dry", "ddp", "wait"} & set(groups))
        shards = Path(args.shards) if args.shards else (make_demo(work, pf) if needs_data else None)
        keep = Path(args.keep) if args.keep else None
        rows = run_rows(pf, shards, work, args.compile_backend, groups, keep)
    data = args.shards or (f"demo:{pf.demo_n} at {pf.demo_size} px" if needs_data else "none (random batches)")
    header += f"; data {data}; {time.perf_counter() - t0:.0f} s"
    print(format_table(rows, header))
    if args.json:
        Path(args.json).write_text(json.dumps([asdict(r) for r in rows], indent=1))
    return 0 if all(r.ok for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
