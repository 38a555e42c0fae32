"""benchmarks/bench_learning.py --dry-run: both claims' code paths end to end, at both scales, on the CPU."""

import importlib.util
import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "bench_learning.py"
MEMORY_CAP = 8 * 2**30  # bytes of address space per run


def load_script():
    spec = importlib.util.spec_from_file_location("bench_learning", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _cap_memory():
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))


def dry_run(work: Path, *flags: str) -> str:
    cmd = [sys.executable, str(SCRIPT), "--dry-run", "--work", str(work), *flags]
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}  # the gpu scale's CPU fallback, even on a GPU machine
    proc = subprocess.run(
        cmd, cwd=ROOT, capture_output=True, text=True, timeout=600, preexec_fn=_cap_memory, env=env
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def table_rows(out: str, title: str) -> list[str]:
    """The data rows of the markdown table printed after the line starting with ``title``."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(title))
    rows = []
    for line in lines[start + 3 :]:
        if not line.startswith("| "):
            break
        rows.append(line)
    return rows


@pytest.mark.slow
def test_dry_run_prints_every_table_at_both_scales(tmp_path):
    # one work folder: the gpu scale's run reuses the builds; its models differ (lr is in their names)
    for scale in ("cpu", "gpu"):
        out = dry_run(tmp_path, "--scale", scale)
        assert ("CUDA is not available: --scale gpu runs on the CPU in float32" in out) == (scale == "gpu")
        assert f"scale {scale} (dry run) on cpu, float32" in out
        assert len(table_rows(out, "Claim 1:")) == 3  # two seeds and their mean
        claim2 = table_rows(out, "Claim 2:")
        assert len(claim2) == 2 * 5  # two draft seeds x (a), (a'), (a''), (b), the other seed's (a'')
        for row, label in zip(claim2, ["(a)", "(a')", "(a'')", "(b)", "(a'') trained on draft seed"] * 2):
            cells = row.split(" | ")
            assert cells[2].startswith(label) and "[" in cells[4] and cells[-1].strip(" |")
        realism = table_rows(out, "Draft realism:")
        assert [r.split(" | ")[1].split(" ")[0] for r in realism] == ["paper", "mix"] * 2
        assert "wall " in out
    figures = sorted(p.name for p in (tmp_path / "figures").iterdir())
    assert figures == ["drafts-real-vs-synthetic.png", "learning-loss.png", "learning-samples.png"]


def test_scales_fix_the_settings_and_flags_override_them():
    bl = load_script()
    args = bl.parse_args(["--scale", "gpu"])
    assert (args.width, args.depth, args.encoder_width, args.crop, args.batch) == (64, 4, 1.0, 224, 16)
    args = bl.parse_args(["--scale", "gpu", "--dry-run", "--width", "6"])
    assert args.width == 6 and args.crop == bl.DRY["crop"]
    args = bl.parse_args([])
    assert (args.width, args.lr, args.draft_steps, args.refine_steps, args.seeds) == (8, 4e-3, 1000, 800, 3)


def test_shuffled_drafts_come_from_other_pictures_and_are_resized():
    import torch

    bl = load_script()
    for n in range(2, 9):
        p = bl.partners(n)
        assert sorted(p) == list(range(n)) and all(p[i] != i for i in range(n))
    drafts = [torch.full((1, 3, 4, 5 + i), float(i) / 4) for i in range(3)]
    fed = bl.fed_drafts(drafts)
    for i, (d, s, g) in enumerate(zip(drafts, fed["shuffled"], fed["grey"])):
        assert s.shape == d.shape and g.shape == d.shape and not g.any()
        assert torch.allclose(s, drafts[bl.partners(3)[i]].mean().expand_as(s))


def test_the_verdict_needs_every_interval_below_zero():
    bl = load_script()
    good, zero, bad = (-0.01, -0.02, -0.005), (0.0, -0.01, 0.01), (0.01, 0.005, 0.02)
    assert bl.verdict(good, good, good) == "**holds**"
    assert bl.verdict(bad, good, good) == "no: worse than the draft"
    assert bl.verdict(good, zero, bad) == "no: a grey draft does as well; a shuffled draft does better"
