"""Trainers: CLI/recipes, dry runs, exact resume, learning, encoder weights, networks."""

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from s2pdata.train.__main__ import main as train_main  # noqa: E402
from s2pdata.train.common import load_checkpoint, parse_args, train, variance_loss  # noqa: E402
from s2pdata.train.draft import DraftConfig  # noqa: E402
from s2pdata.train.draft import build_stage as draft_stage  # noqa: E402
from s2pdata.train.nets import InceptionEncoder, UNet, load_googlenet_weights  # noqa: E402
from s2pdata.train.refine import RefineConfig  # noqa: E402
from tests.fakes import write_shards  # noqa: E402

# training recipes name their stage; the others in recipes/ are build recipes (tests/test_recipes.py)
RECIPES = sorted(p for p in (Path(__file__).parents[1] / "recipes").glob("*.toml") if '\nstage = "' in p.read_text())


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return write_shards(tmp_path_factory.mktemp("train-shards"), 10, 3)


@pytest.mark.parametrize("stage", ["draft", "refine"])
def test_dry_run(stage, shards, tmp_path):
    assert train_main([stage, "--shards", str(shards), "--out", str(tmp_path), "--dry-run"]) == 0
    ck = load_checkpoint(tmp_path / "ckpt.pt")
    assert ck["step"] == 3 and ck["stage"] == stage
    assert set(ck["rng"]) == {"torch", "cuda", "numpy"}
    assert (tmp_path / "samples" / "step-0000003.png").exists()


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.name)
def test_every_recipe_runs_one_dry_run_step(recipe, shards, tmp_path):
    stage = recipe.name.split("-")[0]
    assert (
        train_main(
            [
                stage,
                "--recipe",
                str(recipe),
                "--shards",
                str(shards),
                "--out",
                str(tmp_path),
                "--dry-run",
                "--steps",
                "1",
                "--online-hints",
                "false",
            ]
        )
        == 0
    )
    assert load_checkpoint(tmp_path / "ckpt.pt")["step"] == 1


def test_flags_override_recipe_and_unknown_keys_are_named(tmp_path):
    recipe = tmp_path / "r.toml"
    recipe.write_text('stage = "draft"\nlr = 0.5\nbatch_size = 3\n')
    cfg, _ = parse_args(DraftConfig, ["--shards", "x", "--recipe", str(recipe), "--lr", "0.25", "--compile"])
    assert cfg.lr == 0.25 and cfg.batch_size == 3 and cfg.compile is True
    with pytest.raises(SystemExit, match="learning_rate"):
        parse_args(DraftConfig, ["--shards", "x", "--learning-rate", "1"])
    recipe.write_text("colour = 1\n")
    with pytest.raises(SystemExit, match="colour"):
        parse_args(DraftConfig, ["--shards", "x", "--recipe", str(recipe)])
    recipe.write_text('stage = "refine"\n')
    with pytest.raises(SystemExit, match="refine"):
        parse_args(DraftConfig, ["--shards", "x", "--recipe", str(recipe)])
    with pytest.raises(SystemExit, match="batch_size"):
        parse_args(DraftConfig, ["--shards", "x", "--batch-size", "many"])


def _tiny(shards, out, **kw):
    base = dict(
        shards=str(shards),
        out=str(out),
        batch_size=4,
        crop=32,
        width=4,
        depth=2,
        disc_width=4,
        disc_layers=2,
        num_workers=0,
        mode="exact",
        device="cpu",
        log_every=1,
        sample_every=1000,
        ckpt_every=1000,
        shuffle_buffer=4,
        lr=1e-3,
    )
    return DraftConfig(**{**base, **kw})


def test_resume_equals_uninterrupted(shards, tmp_path):
    k = 4  # 10 samples / batch 4 = 3 batches per epoch: the resumed half crosses an epoch boundary
    train(_tiny(shards, tmp_path / "a", steps=2 * k), draft_stage, log=lambda s: None)
    train(_tiny(shards, tmp_path / "b", steps=k), draft_stage, log=lambda s: None)
    torch.manual_seed(123)  # the resumed run must not depend on the process's RNG state
    train(_tiny(shards, tmp_path / "b", steps=2 * k), draft_stage, resume=True, log=lambda s: None)
    a, b = load_checkpoint(tmp_path / "a" / "ckpt.pt"), load_checkpoint(tmp_path / "b" / "ckpt.pt")
    assert a["step"] == b["step"] == 2 * k and a["epoch"] == b["epoch"]
    for net in ("G", "D"):
        for name, t in a["models"][net].items():
            torch.testing.assert_close(t, b["models"][net][name], rtol=0, atol=1e-6, msg=f"{net}.{name}")


def test_tiny_model_halves_l1_on_fixed_samples(tmp_path):
    shards = write_shards(tmp_path / "s", 8, 8, h=32, w=32)
    # pure regression (alpha = lambda_gan = 0), lr far above the paper's 1e-5
    cfg = _tiny(
        shards,
        tmp_path / "run",
        steps=200,
        batch_size=8,
        width=16,
        lr=2e-3,
        flip=False,
        alpha=0.0,
        lambda_gan=0.0,
        log_every=1,
    )
    hist = train(cfg, draft_stage, log=lambda s: None)["history"]
    first, last = hist[0]["l1"], min(h["l1"] for h in hist[-3:])
    assert last <= 0.5 * first, (first, last)


def test_variance_loss_matches_formula():
    x = torch.randn(2, 3, 5, 7)
    a = x.numpy().reshape(2, 3, -1)
    ref = -((a - a.mean(2, keepdims=True)) ** 2).mean(2).sum(1).mean()
    assert variance_loss(x.to(torch.bfloat16)).dtype == torch.float32  # computed in fp32
    np.testing.assert_allclose(variance_loss(x).item(), ref, rtol=1e-5)


def test_encoder_weights_round_trip_and_mismatch(tmp_path):
    torch.manual_seed(0)
    enc = InceptionEncoder()
    state = dict(enc.state_dict())
    state["fc.weight"] = torch.zeros(1000, 1024)  # torchvision extras are ignored
    state["aux1.conv.conv.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "googlenet.pth")
    other = InceptionEncoder()
    info = load_googlenet_weights(other, str(tmp_path / "googlenet.pth"))
    assert info["ignored"] == ["aux1.conv.conv.weight", "fc.weight"]
    x = torch.rand(1, 3, 64, 64) * 2 - 1
    enc.eval(), other.eval()
    torch.testing.assert_close(enc(x), other(x))
    assert enc(x).shape == (1, 1024)
    del state["conv1.conv.weight"]
    state["extra.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match=r"missing keys 1 \['conv1.conv.weight'\].*unexpected keys 1 \['extra"):
        load_googlenet_weights(InceptionEncoder(), str(tmp_path / "bad.pth"))
    assert RefineConfig().encoder_weights == ""  # random init unless a file is given


def test_refine_cli_loads_encoder_weights(shards, tmp_path):
    enc = InceptionEncoder(0.0625)
    torch.save(enc.state_dict(), tmp_path / "enc.pth")
    assert (
        train_main(
            [
                "refine",
                "--shards",
                str(shards),
                "--out",
                str(tmp_path / "run"),
                "--dry-run",
                "--steps",
                "1",
                "--encoder-weights",
                str(tmp_path / "enc.pth"),
            ]
        )
        == 0
    )


@pytest.mark.parametrize("hw", [(17, 30), (32, 32), (9, 64)])
def test_unet_is_fully_convolutional(hw):
    net = UNet(5, width=4, depth=3)
    y = net(torch.zeros(2, 5, *hw))
    assert y.shape == (2, 3, *hw) and y.abs().max() <= 1
