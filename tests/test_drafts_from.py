"""--drafts-from CKPT: a trained draft model's output stored as a sample's draft (s2pdata.modeldrafts).

A tiny draft network (the CPU recipe's U-Net at width 8, depth 3: stride 8, so the 64-px demo
pictures are padded) with seeded random weights is saved in the trainer's checkpoint layout. The
stored drafts are compared with the network run by hand on the stored sketch and hint (PNG colour,
so nothing is lossy), the records with the draws that chose them.
"""

import dataclasses
import hashlib
import json
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

torch = pytest.importorskip("torch")

from s2pdata._rng import sample_rng  # noqa: E402
from s2pdata.build import BuildRefused, run_build  # noqa: E402
from s2pdata.build.cli import main  # noqa: E402
from s2pdata.data import open_shards  # noqa: E402
from s2pdata.demo import demo_bytes, demo_key  # noqa: E402
from s2pdata.modeldrafts import (  # noqa: E402
    CHECKPOINT_STYLE,
    checkpoint_info,
    is_checkpoint_draft,
    load_drafter,
    replay_checkpoint_draft,
)
from s2pdata.pool import PatchPool  # noqa: E402
from s2pdata.stages.drafts import pack_draft, replay_draft, unpack_draft  # noqa: E402
from s2pdata.synth import SynthConfig, make_sample  # noqa: E402
from s2pdata.train.draft import DraftConfig, build_networks  # noqa: E402
from s2pdata.train.refine import RefineConfig, Refiner  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SEED = 3
P = 0.5  # the mix build's share of checkpoint drafts
BASE = dict(size=64, color_format="png", drafts=2)


def save_draft_ckpt(path, seed: int = 0) -> str:
    """A draft checkpoint of the CPU recipe's shape (width 8, depth 3, input skip) with seeded weights."""
    torch.manual_seed(seed)
    cfg = DraftConfig(width=8, depth=3, input_skip=True, lambda_gan=0.0)
    G, _ = build_networks(cfg)
    with torch.no_grad():
        for p in G.parameters():
            p.add_(0.05 * torch.randn_like(p))  # biases too: an output that is not grey
    torch.save({"stage": "draft", "step": 11, "config": dataclasses.asdict(cfg), "models": {"G": G.state_dict()}}, path)
    return str(path)


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    root = tmp_path_factory.mktemp("ckpts")
    rcfg = RefineConfig(width=8, depth=2, lambda_gan=0.0, encoder_width=0.0625)
    R = Refiner(width=8, depth=2, encoder_width=0.0625, concat_draft=True)
    refine = root / "refine.pt"
    torch.save(
        {"stage": "refine", "step": 1, "config": dataclasses.asdict(rcfg), "models": {"G": R.state_dict()}}, refine
    )
    draft = save_draft_ckpt(root / "draft.pt")
    damaged = root / "damaged.pt"
    damaged.write_bytes(open(draft, "rb").read()[:3000])
    return {
        "draft": draft,
        "other": save_draft_ckpt(root / "other.pt", seed=1),
        "refine": str(refine),
        "damaged": str(damaged),
    }


@pytest.fixture(scope="module")
def builds(tmp_path_factory, ckpts):
    """demo:8 at 64 px, two drafts each from the checkpoint with probability P: with 1 and with 2 workers."""
    root = tmp_path_factory.mktemp("drafts-from")
    cfg = SynthConfig(**BASE, drafts_from=ckpts["draft"], drafts_from_p=P)
    for workers in (1, 2):
        run_build(
            src="demo:8", out=root / f"w{workers}", cfg=cfg, seed=SEED, shard_size=4, workers=workers, progress=False
        )
    return root


def by_hand(ckpt: str, sketch: np.ndarray, hint: np.ndarray) -> np.ndarray:
    """The draft network run directly: paper / no hint padded to its stride, cropped back."""
    from s2pdata.evaluate import load_model
    from s2pdata.train.common import to_uint8

    model_fn, info = load_model(ckpt)
    stride = 2 ** info["config"]["depth"]
    H, W = sketch.shape
    ph, pw = -H % stride, -W % stride
    sk = np.pad(sketch, ((0, ph), (0, pw)), constant_values=255).astype(np.float32) / 127.5 - 1
    rgb = np.pad(hint[..., :3], ((0, ph), (0, pw), (0, 0))).astype(np.float32) / 127.5 - 1
    a = np.pad(hint[..., 3:], ((0, ph), (0, pw), (0, 0))).astype(np.float32) / 255
    batch = {
        "sketch": torch.from_numpy(sk)[None, None],
        "hint": torch.from_numpy(np.concatenate([rgb * a, a], -1).transpose(2, 0, 1).copy())[None],
    }
    with torch.no_grad():
        return to_uint8(model_fn(batch))[0, :H, :W]


def tar_digests(out) -> dict:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(out.glob("shard-*.tar"))}


def test_stored_drafts_are_the_networks_output_or_replay_as_synthetic(builds, ckpts):
    out = builds / "w1"
    pool = PatchPool.load(out / "pool")
    sha = hashlib.sha256(open(ckpts["draft"], "rb").read()).hexdigest()
    styles, padded = [], False
    for s in open_shards(out):
        padded |= any(n % 8 for n in s["sketch"].shape)
        for k, rec in enumerate(s["json"]["drafts"]):
            assert set(rec) == {"style", "params"} and isinstance(rec["params"], str)  # one schema
            drawn = sample_rng(SEED, s["__key__"], "drafts-from", k).random() < P
            assert is_checkpoint_draft(unpack_draft(rec)) == drawn == (rec["style"] == CHECKPOINT_STYLE)
            styles.append(rec["style"])
            if drawn:
                assert unpack_draft(rec) == {"style": CHECKPOINT_STYLE, "sha256": sha, "step": 11}
                want = by_hand(ckpts["draft"], s["sketch"], s["hint"])
                assert np.array_equal(s[f"draft{k}"], want), (s["__key__"], k)
                again = replay_checkpoint_draft(rec, s["sketch"], s["hint"], ckpts["draft"])
                assert np.array_equal(again, want)
                assert want.std() > 1  # not a flat picture: the test would pass for any constant
            else:
                again = replay_draft(s["color"], pool, rec, regions=s["regions"], sketch=s["sketch"])
                assert np.array_equal(again, s[f"draft{k}"])
    assert set(styles) == {CHECKPOINT_STYLE, "paper"} and padded


def test_dataset_json_names_the_checkpoint(builds, ckpts):
    manifest = json.loads((builds / "w1" / "dataset.json").read_text())
    config = manifest["config"]
    assert config["drafts_from"] == ckpts["draft"] and config["drafts_from_p"] == P
    assert config["drafts_from_checkpoint"] == {
        "sha256": hashlib.sha256(open(ckpts["draft"], "rb").read()).hexdigest(),
        "stage": "draft",
        "step": 11,
        "params": checkpoint_info(ckpts["draft"])["params"],
        "hint_radius": None,
        "device": "cpu",
    }
    assert manifest["versions"]["torch"] == torch.__version__


def test_one_and_two_workers_write_the_same_bytes(builds):
    assert tar_digests(builds / "w1") == tar_digests(builds / "w2") != {}


def test_default_config_records_nothing_new():
    assert not {"drafts_from", "drafts_from_p"} & set(SynthConfig().to_json())


def sample(cfg: SynthConfig, index: int = 0) -> dict:
    data, _ = demo_bytes(index)
    return make_sample(data, key=demo_key(index), seed=SEED, cfg=cfg)


def test_the_synthetic_drafts_of_a_mix_are_those_of_the_build_without_the_checkpoint(ckpts):
    for style in ("paper", "model"):
        plain = SynthConfig(**{**BASE, "drafts": 4}, draft_style=style)
        mixed = dataclasses.replace(plain, drafts_from=ckpts["draft"], drafts_from_p=P)
        for index in range(3):
            a, b = sample(plain, index), sample(mixed, index)
            for k, rec in enumerate(b["json"]["drafts"]):
                if rec["style"] != CHECKPOINT_STYLE:
                    assert np.array_equal(a[f"draft{k}"], b[f"draft{k}"])
                    assert unpack_draft(rec) == unpack_draft(a["json"]["drafts"][k])
            for name in ("color", "sketch", "hint", "regions"):
                assert np.array_equal(a[name], b[name])


def test_every_draft_is_the_networks_by_default_and_the_share_is_honoured(ckpts):
    s = sample(SynthConfig(**BASE, drafts_from=ckpts["draft"]))
    assert [r["style"] for r in s["json"]["drafts"]] == [CHECKPOINT_STYLE] * 2
    assert np.array_equal(s["draft0"], s["draft1"])  # one network, one output per sample
    for p in (0.1, 0.5, 0.9):
        share = np.mean([sample_rng(SEED, demo_key(i), "drafts-from", 0).random() < p for i in range(4000)])
        assert abs(share - p) < 0.03


def test_replay_draft_does_not_take_a_network_draft_for_a_synthetic_one(ckpts):
    s = sample(SynthConfig(**BASE, drafts_from=ckpts["draft"]))
    rec = s["json"]["drafts"][0]
    with pytest.raises(ValueError, match="a draft model.s output.*replay_checkpoint_draft"):
        replay_draft(s["color"], None, rec, regions=s["regions"], sketch=s["sketch"])
    with pytest.raises(ValueError, match=r"has sha256 .*the draft was made by"):
        replay_checkpoint_draft(rec, s["sketch"], s["hint"], ckpts["other"])
    with pytest.raises(ValueError, match="not a draft model's output"):
        replay_checkpoint_draft(pack_draft({"style": "model"}), s["sketch"], s["hint"], ckpts["draft"])


@pytest.mark.parametrize(
    ("which", "extra", "message"),
    [
        ("missing", [], r"drafts_from \(--drafts-from\): no checkpoint at .*missing\.pt"),
        ("damaged", [], r"drafts_from \(--drafts-from\): .*damaged\.pt is damaged or not a torch checkpoint"),
        ("refine", [], r"drafts_from \(--drafts-from\): .*refine\.pt is a refine checkpoint, not a draft one"),
        ("draft", ["--drafts", "0"], r"drafts=0; set drafts to 1 or more"),
        (None, ["--drafts-from-p", "0.5"], r"drafts_from_p=0\.5 is only used with drafts_from"),
        ("draft", ["--drafts-from-p", "1.5"], r"drafts_from_p must be a probability in \[0, 1\], got 1\.5"),
    ],
)
def test_bad_checkpoints_are_one_line_at_the_start(ckpts, tmp_path, capsys, which, extra, message):
    out = tmp_path / "out"
    path = ckpts.get(which, str(tmp_path / "missing.pt"))
    flags = ["--drafts-from", path] if which else []
    argv = ["--src", "demo:8", "--out", str(out), "--size", "64", "--workers", "1", "--no-progress"]
    assert main(argv + flags + extra) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert re.search(message, err), err
    assert not out.exists()  # nothing was built, nor a folder left


def test_a_resume_with_another_checkpoint_is_refused(ckpts, tmp_path):
    ckpt, out = tmp_path / "ckpt.pt", tmp_path / "out"
    shutil.copy(ckpts["draft"], ckpt)
    cfg = SynthConfig(**BASE, drafts_from=str(ckpt))
    run_build(src="demo:8", out=out, cfg=cfg, seed=SEED, limit=2, workers=1, progress=False)
    again = run_build(src="demo:8", out=out, cfg=cfg, seed=SEED, limit=2, workers=1, progress=False)
    assert again["totals"]["built_this_run"] == 0  # the same checkpoint resumes
    shutil.copy(ckpts["other"], ckpt)  # the same path, other weights
    with pytest.raises(BuildRefused, match=r"drafts_from_checkpoint\.sha256: folder has"):
        run_build(src="demo:8", out=out, cfg=cfg, seed=SEED, limit=2, workers=1, progress=False)


@settings(max_examples=12)
@given(h=st.integers(1, 40), w=st.integers(1, 40), seed=st.integers(0, 2**32 - 1))
def test_any_size_is_padded_to_the_stride_and_cropped_back(ckpts, h, w, seed):
    rng = np.random.default_rng(seed)
    sketch = np.where(rng.random((h, w)) < 0.2, 0, 255).astype(np.uint8)
    hint = np.zeros((h, w, 4), np.uint8)
    hint[rng.random((h, w)) < 0.1] = [*rng.integers(0, 256, 3), 255]
    draft, rec = load_drafter(ckpts["draft"], "cpu")(sketch, hint)
    assert draft.shape == (h, w, 3) and draft.dtype == np.uint8 and rec["style"] == CHECKPOINT_STYLE
    assert np.array_equal(draft, by_hand(ckpts["draft"], sketch, hint))


def test_the_build_and_synth_modules_do_not_import_torch():
    code = "import sys, s2pdata.synth, s2pdata.build.cli; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_checkpoint_gone_during_the_build_stops_it_instead_of_rejecting_every_item(ckpts, tmp_path, monkeypatch):
    import s2pdata.build.plan as plan
    from s2pdata.build import BuildStopped

    info = checkpoint_info(ckpts["draft"])
    monkeypatch.setattr(plan, "checkpoint_info", lambda path: info)  # checked at the start, gone by the shards
    cfg = SynthConfig(**BASE, drafts_from=str(tmp_path / "gone.pt"))
    with pytest.raises(BuildStopped, match=r"--drafts-from .*gone\.pt cannot be loaded any more .*resume"):
        run_build(src="demo:8", out=tmp_path / "out", cfg=cfg, seed=SEED, limit=2, workers=1, progress=False)
    assert not list((tmp_path / "out").glob("*.stats.json"))  # no shard committed


def test_without_torch_the_flag_says_which_extra_to_install(ckpts, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch now fails as where it is not installed
    with pytest.raises(ValueError, match=r"--drafts-from\) runs a network and needs torch: pip install"):
        checkpoint_info(ckpts["draft"])
