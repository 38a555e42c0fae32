"""Trainers: CLI/recipes, dry runs, exact resume, learning, encoder weights, networks."""

import dataclasses
import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from s2pdata.train.__main__ import main as train_main  # noqa: E402
from s2pdata.train.checkpoint import load_checkpoint  # noqa: E402
from s2pdata.train.common import GRID_HEADER, variance_loss  # noqa: E402
from s2pdata.train.config import DRY_RUN, config_fields, lr_at, parse_args  # noqa: E402
from s2pdata.train.draft import DraftConfig  # noqa: E402
from s2pdata.train.draft import build_stage as draft_stage  # noqa: E402
from s2pdata.train.loop import GRID_CROP, setup_runtime, train  # noqa: E402
from s2pdata.train.nets import InceptionEncoder, UNet, load_googlenet_weights  # noqa: E402
from s2pdata.train.refine import RefineConfig  # noqa: E402
from s2pdata.train.refine import build_model as refine_model  # noqa: E402
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
    grid = cv2.imread(str(tmp_path / "samples" / "step-0000003.png"))
    columns = 4 if stage == "draft" else 5  # sketch | hints | (draft |) output | target
    side = GRID_CROP  # the dry run trains on 32-pixel crops; its grids show larger ones
    assert grid.shape == (GRID_HEADER + 4 * (GRID_HEADER + side), columns * side, 3)  # names, then key + row each
    for c in range(columns):  # every column's label drew dark text on the white band
        band = grid[:GRID_HEADER, c * side : (c + 1) * side]
        assert (band < 100).any() and (band == 255).mean() > 0.5, c


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
    """The dry-run model on exact epochs of the small test shards, saving only when asked."""
    base = {**DRY_RUN, "batch_size": 4, "mode": "exact", "sample_every": 1000, "ckpt_every": 1000}
    base.update(shards=str(shards), out=str(out), shuffle_buffer=4, lr=1e-3)
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
    torch.manual_seed(42)  # weights unlike the run's own seeded init
    enc = InceptionEncoder(0.0625)
    torch.save(enc.state_dict(), tmp_path / "enc.pth")
    argv = ["refine", "--shards", str(shards), "--out", str(tmp_path / "run"), "--dry-run", "--steps", "1"]
    assert train_main([*argv, "--encoder-weights", str(tmp_path / "enc.pth"), "--freeze-encoder"]) == 0
    saved = load_checkpoint(tmp_path / "run" / "ckpt.pt")["models"]["G"]
    torch.manual_seed(0)  # the run's own init (seed 0)
    init = refine_model(RefineConfig(width=4, depth=2, encoder_width=0.0625)).encoder.state_dict()
    for name, t in enc.state_dict().items():  # frozen: the checkpoint holds the file's tensors exactly
        torch.testing.assert_close(saved[f"encoder.{name}"], t, rtol=0, atol=0, msg=name)
    assert not torch.equal(init["conv1.conv.weight"], enc.state_dict()["conv1.conv.weight"])
    (tmp_path / "enc.pth").unlink()  # a resume takes the encoder from the checkpoint, not the file
    assert train_main(["refine", "--out", str(tmp_path / "run"), "--resume", "--steps", "2"]) == 0
    assert load_checkpoint(tmp_path / "run" / "ckpt.pt")["step"] == 2
    with pytest.raises(SystemExit, match="does not exist; make it with .*googlenet"):
        train_main([*argv, "--overwrite", "--encoder-weights", str(tmp_path / "missing.pth")])


@pytest.mark.parametrize("input_skip", [False, True])
@pytest.mark.parametrize("hw", [(17, 30), (32, 32), (9, 64)])
def test_unet_is_fully_convolutional(hw, input_skip):
    net = UNet(5, width=4, depth=3, input_skip=input_skip)
    y = net(torch.zeros(2, 5, *hw))
    assert y.shape == (2, 3, *hw) and y.abs().max() <= 1


def test_input_skip_feeds_the_input_to_the_last_block():
    """With the skip, a change of one input pixel reaches the output through the last block's 3x3
    convolutions alone: zeroing every other level's weights leaves it visible only with the skip."""
    torch.manual_seed(0)
    for skip, reaches in ((False, False), (True, True)):
        net = UNet(5, width=4, depth=2, input_skip=skip)
        with torch.no_grad():
            for m in [net.down, net.up, *net.merge[1:]]:
                for prm in m.parameters():
                    prm.zero_()
        x = torch.zeros(1, 5, 16, 16)
        x2 = x.clone()
        x2[0, 1:4, 8, 8] = 0.5  # a hint pixel
        assert (net(x2) - net(x)).abs().max().item() > 0 if reaches else torch.equal(net(x2), net(x))
    assert net.merge[0][0].in_channels == 2 * 4 + 5


def _cli_tiny(shards, out, *extra):
    """A small non-dry CLI run: every key explicit, as a user would type them."""
    return [
        "draft",
        "--shards",
        str(shards),
        "--out",
        str(out),
        "--batch-size",
        "2",
        "--crop",
        "32",
        "--width",
        "4",
        "--depth",
        "2",
        "--disc-width",
        "4",
        "--disc-layers",
        "2",
        "--num-workers",
        "0",
        "--device",
        "cpu",
        "--lr",
        "0.002",
        "--seed",
        "7",
        "--shuffle-buffer",
        "4",
        "--log-every",
        "1",
        "--ckpt-every",
        "2",
        "--sample-every",
        "2",
        *extra,
    ]


def test_resume_with_only_steps_keeps_the_runs_config(shards, tmp_path, capsys):
    assert train_main(_cli_tiny(shards, tmp_path, "--steps", "2")) == 0
    first = load_checkpoint(tmp_path / "ckpt.pt")["config"]
    out = capsys.readouterr().out
    assert out.count("CPU run:") == 1 and "recipes/draft-cpu.toml" in out and "--dry-run" in out  # the cost note
    assert "0.00835 M parameters" in out  # model size, before the first step (banner)
    assert train_main(["draft", "--out", str(tmp_path), "--resume", "--steps", "4"]) == 0
    ck = load_checkpoint(tmp_path / "ckpt.pt")
    assert ck["step"] == 4
    assert ck["config"] == {**first, "steps": 4}  # no default took over (batch 16, crop 224 ...)
    assert "config keys changed: steps 2 -> 4" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="no checkpoint"):
        train_main(["draft", "--out", str(tmp_path / "none"), "--resume"])


def test_existing_run_folder_is_refused_unless_overwrite(shards, tmp_path):
    assert train_main(_cli_tiny(shards, tmp_path, "--steps", "2")) == 0
    before = (tmp_path / "ckpt.pt").stat().st_mtime_ns
    with pytest.raises(SystemExit, match=r"holds the checkpoint of an earlier run: add --resume .*--overwrite") as e:
        train_main(_cli_tiny(shards, tmp_path, "--steps", "1"))
    assert "\n" not in str(e.value)
    assert (tmp_path / "ckpt.pt").stat().st_mtime_ns == before  # untouched
    assert train_main(_cli_tiny(shards, tmp_path, "--steps", "1", "--overwrite")) == 0
    assert load_checkpoint(tmp_path / "ckpt.pt")["step"] == 1
    assert [json.loads(line)["step"] for line in (tmp_path / "log.jsonl").read_text().splitlines()] == [1]
    assert sorted(p.name for p in (tmp_path / "samples").iterdir()) == ["step-0000001.png"]


@pytest.mark.parametrize("stage, cls", [("draft", DraftConfig), ("refine", RefineConfig)])
def test_help_lists_every_config_key_with_default(stage, cls, capsys):
    with pytest.raises(SystemExit) as e:
        train_main([stage, "--help"])
    assert e.value.code == 0
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    for opt in ("--shards", "--out", "--steps", "--resume", "--dry-run", "--recipe", "--overwrite"):
        assert opt in text
    for name in config_fields(cls):
        assert f"--{name.replace('_', '-')} " in text, name
    assert "(default: 224; >= 1 and <= 4096)" in text and "(default: runs/default)" in text  # bounds too
    if stage == "refine":  # how to make the encoder weights file
        assert "torch.save(torchvision.models.googlenet(" in text
    assert train_main(["--help"]) == 0
    assert "usage: python -m s2pdata.train draft|refine" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--width", "-4"], r"width must be >= 1 and <= 1024, got -4"),
        (["--mode", "epochs"], r"mode must be one of resampled, exact"),
        (["--lr", "0"], r"lr must be > 0"),
        (["--recipe", "no-such.toml"], r"recipe no-such.toml does not exist"),
        (["--resume", "--overwrite"], r"give one"),
    ],
)
def test_bad_config_is_one_line_naming_the_key(argv, message):
    with pytest.raises(SystemExit, match=message) as e:
        parse_args(DraftConfig, ["--shards", "x", "--out", "y", *argv])
    assert "\n" not in str(e.value)


def test_bf16_on_cpu_finite_losses_and_resume(shards, tmp_path):
    rt = setup_runtime(_tiny(shards, tmp_path, bf16=True))
    with rt.autocast():  # autocast is generic over the device type: bf16 on the CPU when asked
        assert torch.nn.Conv2d(3, 3, 1)(torch.zeros(1, 3, 4, 4)).dtype == torch.bfloat16
    assert not setup_runtime(_tiny(shards, tmp_path)).bf16  # unset: off on the CPU
    cfg = _tiny(shards, tmp_path, bf16=True, steps=2, mode="resampled", ckpt_every=2)
    hist = train(cfg, draft_stage, log=lambda s: None, progress=False)["history"]
    resumed = train(dataclasses.replace(cfg, steps=4), draft_stage, resume=True, log=lambda s: None)["history"]
    assert [h["step"] for h in hist + resumed] == [1, 2, 3, 4]
    assert all(math.isfinite(h[k]) for h in hist + resumed for k in ("loss_g", "loss_d", "l1"))
    assert load_checkpoint(tmp_path / "ckpt.pt")["config"]["bf16"] is True


@pytest.mark.slow
def test_compiled_run_checkpoint_loads_into_plain_model(tmp_path):
    # inductor on 2 busy CPU cores: 75 s with a cold cache, 13 s warm (/tmp/torchinductor_$USER); kept tiny
    shards = write_shards(tmp_path / "s", 4, 2, h=16, w=16)
    cfg = _tiny(shards, tmp_path / "run", compile=True, steps=1, batch_size=2, crop=16, depth=1, disc_layers=1)
    train(cfg, draft_stage, log=lambda s: None, progress=False)
    ck = load_checkpoint(tmp_path / "run" / "ckpt.pt")
    assert not any("_orig_mod" in k or k.startswith("module.") for k in ck["models"]["G"])
    plain = draft_stage(cfg).G
    plain.load_state_dict(ck["models"]["G"])  # strict: every key of the uncompiled model
    x = torch.rand(2, 5, 16, 16) * 2 - 1
    compiled = torch.compile(plain)
    torch.testing.assert_close(compiled(x), plain(x), rtol=1e-4, atol=1e-5)


def test_lr_schedule_warms_up_decays_and_is_applied(shards, tmp_path):
    cfg = _tiny(shards, tmp_path, lr=1e-3, steps=10, warmup=2, lr_schedule="cosine", ckpt_every=10)
    assert [lr_at(cfg, s) for s in (0, 1)] == pytest.approx([1e-4, 5.5e-4])  # linear from lr/10
    assert lr_at(cfg, 2) == pytest.approx(1e-3) and lr_at(cfg, 6) == pytest.approx(5.5e-4)  # cosine midpoint
    assert lr_at(cfg, 10) == pytest.approx(1e-4) and lr_at(cfg, 50) == pytest.approx(1e-4)  # floor lr/10
    assert lr_at(dataclasses.replace(cfg, lr_schedule="constant"), 7) == 1e-3
    train(cfg, draft_stage, log=lambda s: None, progress=False)
    ck = load_checkpoint(tmp_path / "ckpt.pt")
    for opt in ("G", "D"):  # both optimisers stepped their last step at the schedule's rate
        assert ck["optims"][opt]["param_groups"][0]["lr"] == pytest.approx(lr_at(cfg, 9))


def test_hint_radius_key_reaches_the_loader(shards, tmp_path):
    from s2pdata.train.loop import _fixed_batch, _prepare

    def hinted(**kw):
        cfg = _tiny(shards, tmp_path, online_hints=True, hint_p=0.05, **kw)
        run = _prepare(cfg, draft_stage, setup_runtime(cfg), False, lambda s: None)
        return int((_fixed_batch(run)["hint"][:, 3] > 0).sum())

    assert hinted() == hinted(hint_radius=1) < hinted(hint_radius=3)  # auto is 3x3 squares for draft
