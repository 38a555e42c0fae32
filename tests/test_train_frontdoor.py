"""The trainer as a new user meets it (issue 20, items 8-10): no idle discriminator, an honest
banner and data position, a clean refusal of missing shards, and readable sample grids."""

import json

import cv2
import pytest

torch = pytest.importorskip("torch")

from s2pdata.train import nets  # noqa: E402
from s2pdata.train.__main__ import main as train_main  # noqa: E402
from s2pdata.train.checkpoint import load_checkpoint  # noqa: E402
from s2pdata.train.draft import DraftConfig  # noqa: E402
from s2pdata.train.draft import build_stage as draft_stage  # noqa: E402
from s2pdata.train.loop import train  # noqa: E402
from s2pdata.train.refine import RefineConfig  # noqa: E402
from s2pdata.train.refine import build_stage as refine_stage  # noqa: E402
from tests.fakes import write_shards  # noqa: E402

TINY = dict(
    batch_size=2, crop=32, width=4, depth=2, disc_width=4, disc_layers=2, num_workers=0, device="cpu", shuffle_buffer=8
)
STAGES = {"draft": (DraftConfig, draft_stage, {}), "refine": (RefineConfig, refine_stage, {"encoder_width": 0.0625})}


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return write_shards(tmp_path_factory.mktemp("frontdoor-shards"), 8, 4)


def _run(stage, shards, out, resume=False, **kw):
    cls, build, extra = STAGES[stage]
    cfg = cls(shards=str(shards), out=str(out), **{**TINY, **extra, **kw})
    return train(cfg, build, resume=resume, log=lambda s: None, progress=False)


@pytest.mark.parametrize("stage", ["draft", "refine"])
def test_no_discriminator_is_built_or_stepped_at_lambda_gan_0(stage, shards, tmp_path, monkeypatch):
    calls = []
    forward = nets.PatchDiscriminator.forward
    monkeypatch.setattr(nets.PatchDiscriminator, "forward", lambda self, x: calls.append(1) or forward(self, x))
    steps = dict(steps=2, log_every=1, sample_every=2, ckpt_every=2)
    result = _run(stage, shards, tmp_path / "gan0", lambda_gan=0.0, **steps)
    assert calls == []  # D never ran: no step, no loss
    assert all("loss_d" not in rec and "gan" not in rec for rec in result["history"])
    ck = load_checkpoint(tmp_path / "gan0" / "ckpt.pt")
    assert set(ck["models"]) == {"G"} and set(ck["optims"]) == {"G"}
    # the control: a GAN weight trains D and logs its loss
    result = _run(stage, shards, tmp_path / "gan", lambda_gan=0.01, **steps)
    assert calls and all("loss_d" in rec for rec in result["history"])
    # a run without D resumed with a GAN term starts D afresh
    result = _run(stage, shards, tmp_path / "gan0", resume=True, lambda_gan=0.01, **{**steps, "steps": 3})
    assert result["step"] == 3 and "loss_d" in result["history"][-1]
    assert set(load_checkpoint(tmp_path / "gan0" / "ckpt.pt")["models"]) == {"G", "D"}


@pytest.mark.parametrize("shards_arg", ["/nonexistent", "{tmp}/empty-build", "{tmp}/shard-000000.tar"])
def test_missing_shards_are_one_line_and_leave_no_run_folder(shards_arg, tmp_path, capsys):
    (tmp_path / "empty-build").mkdir()
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as e:
        train_main(["draft", "--shards", shards_arg.format(tmp=tmp_path), "--out", str(out)])
    assert e.value.code == 2
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in captured.err, captured.err
    assert lines[0].startswith("python -m s2pdata.train draft: shards = ") and "give a build folder" in lines[0]
    assert "device" not in captured.out  # refused before the start banner
    assert not out.exists()


def test_cost_note_does_not_advertise_the_recipe_that_is_running(shards, tmp_path):
    said = {}
    for recipe in ("recipes/draft-cpu.toml", None):
        lines = said[recipe] = []
        cfg = DraftConfig(shards=str(shards), out=str(tmp_path / str(recipe is None)), steps=3, **TINY)
        train(cfg, draft_stage, log=lines.append, progress=False, cost_note=True, recipe=recipe)
    running = "\n".join(said["recipes/draft-cpu.toml"])
    assert "CPU run:" in running and "recipe recipes/draft-cpu.toml" in running  # the banner names it
    assert "recipes/draft-cpu.toml (small width" not in running
    assert "recipes/draft-cpu.toml (small width" in "\n".join(said[None])  # the control: advertised otherwise


def test_log_reports_samples_and_data_epochs_not_the_stream_reseed_counter(shards, tmp_path):
    steps = dict(steps=6, log_every=2, ckpt_every=2, sample_every=6, batch_size=2)
    hist = _run("draft", shards, tmp_path / "r", mode="resampled", **steps)["history"]
    assert [rec.get("epoch") for rec in hist] == [None] * 3  # resampled: no epoch 0 -> 2 -> 4 jumps
    assert [(rec["samples"], rec["data_epochs"]) for rec in hist] == [(4, 0.5), (8, 1.0), (12, 1.5)]  # 8 samples
    logged = [json.loads(line) for line in (tmp_path / "r" / "log.jsonl").read_text().splitlines()]
    assert [rec["data_epochs"] for rec in logged] == [0.5, 1.0, 1.5]
    hist = _run("draft", shards, tmp_path / "e", mode="exact", **steps)["history"]
    assert [(rec["epoch"], rec["samples"]) for rec in hist] == [(0, 4), (0, 8), (1, 12)]  # 4 batches of 2 an epoch


def test_sample_grids_show_large_crops_labelled_with_their_keys(shards, tmp_path):
    from s2pdata.train.common import GRID_HEADER
    from s2pdata.train.loop import GRID_CROP

    _run("draft", shards, tmp_path, steps=1, log_every=1, sample_every=1, ckpt_every=1)
    grid = cv2.imread(str(tmp_path / "samples" / "step-0000001.png"))
    side = max(TINY["crop"], GRID_CROP)
    assert side >= 128
    assert grid.shape == (GRID_HEADER + 4 * (GRID_HEADER + side), 4 * side, 3)  # names, then key band + row
    bands = [grid[GRID_HEADER + i * (GRID_HEADER + side) :][:GRID_HEADER] for i in range(4)]
    for band in bands:  # dark text on white
        assert (band < 100).any() and (band == 255).mean() > 0.8
    assert len({band.tobytes() for band in bands}) == 4  # four different keys
