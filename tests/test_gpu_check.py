"""benchmarks/gpu_check.py: the reduced CPU table has every row, each measured (finite numbers)."""

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"

# (check, start of setting) of every row of the --cpu table, in order
ROWS = [
    ("dry run", "draft, --dry-run --device cpu"),
    ("dry run", "refine, --dry-run --device cpu"),
    ("step", "draft, bf16, eager"),
    ("step", "draft, bf16, compile (eager)"),
    ("step", "refine, bf16, eager"),
    ("step", "refine, bf16, compile (eager)"),
    ("DDP", "draft, torchrun 2 ranks, gloo"),
    ("data wait", "draft, bf16, eager, num_workers 0"),
    ("data wait", "draft, bf16, eager, num_workers 2"),
    ("learning", "bench_learning --scale gpu --dry-run"),
]
MEASURED = {"dry run": ("img_s", "peak_mib", "seconds"), "step": ("img_s", "peak_mib", "seconds")}
MEASURED |= {"DDP": ("img_s", "peak_mib", "seconds"), "data wait": ("img_s", "peak_mib", "seconds", "wait")}
MEASURED |= {"learning": ("peak_mib", "seconds")}


def load_script():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = mod  # dataclasses look their module up while the script runs
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.slow
def test_cpu_table_has_every_row_measured(tmp_path):
    # compile rows use the "eager" dynamo backend here: inductor's cold C++ build of even the tiny
    # models takes about 100 s on 2 cores (the trainer's compile test covers inductor on CPU)
    out = tmp_path / "rows.json"
    cmd = [sys.executable, str(SCRIPT), "--cpu", "--compile-backend", "eager", "--json", str(out)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = json.loads(out.read_text())
    assert [(r["check"], r["setting"][: len(s)]) for r, (_, s) in zip(rows, ROWS)] == ROWS and len(rows) == len(ROWS)
    for r in rows:
        assert r["ok"], r
        for key in MEASURED[r["check"]]:
            assert math.isfinite(r[key]) and r[key] > 0, (key, r)
        assert r["wait"] is None or r["wait"] < 1
    table = [line for line in proc.stdout.splitlines() if line.startswith("| ") and "---" not in line]
    assert len(table) == 1 + len(ROWS) and "NOT RUN" not in proc.stdout
    for line, (check, setting) in zip(table[1:], ROWS):
        assert line.startswith(f"| {check} | {setting}")


def test_a_row_that_cannot_run_says_why():
    gc = load_script()
    pf = gc.profile(True, None)
    row = gc.ddp_row(Path("unused"), Path("unused"), gc.Profile(**{**pf.__dict__, "ranks": 1, "device": "cuda"}))
    assert not row.ok and row.note == "cannot run: 1 visible GPU(s); DDP needs 2 or more"
    failed = gc.guarded(lambda: 1 / 0, check="step", setting="draft")
    table = gc.format_table([row, failed], "header")
    assert "| DDP | draft, torchrun 1 ranks, nccl | - | - | - | - | NOT RUN: cannot run: 1 visible GPU(s)" in table
    assert "| step | draft | - | - | - | - | NOT RUN: failed: ZeroDivisionError: division by zero |" in table
