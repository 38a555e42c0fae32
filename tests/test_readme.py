"""The README's Python examples run as written (on the CPU, over a small demo build)."""

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


@pytest.mark.slow
def test_the_training_loop_runs_on_the_cpu(tmp_path, monkeypatch):
    pytest.importorskip("torch")
    from s2pdata.build import run_build
    from s2pdata.synth import SynthConfig

    run_build(src="demo:4", out=tmp_path / "shards", cfg=SynthConfig(size=64, drafts=0), workers=1, progress=False)
    (loop,) = [b for b in python_blocks() if "make_loader(" in b]
    # the README's sizes, cut to seconds: one epoch of 2-sample batches, 32-px crops of 64-px pictures,
    # no worker processes
    for old, new in (("range(10)", "range(1)"), ("crop=224", "crop=32"), ("num_workers=8", "num_workers=0")):
        loop = loop.replace(old, new)
    small = loop.replace("batch_size=16", "batch_size=2")
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(small, "README.md", "exec"), scope)
    assert scope["device"] == ("cuda" if scope["torch"].cuda.is_available() else "cpu")
    assert scope["loss"].isfinite()
