"""s2pdata.stages.learned: the networks' key layouts, loading user weights safely, and builds that use them.

No published weights can be fetched here, so the tests build small networks of each architecture,
save them the way their projects do, and check the adapter reproduces the network's own output.
"""

from __future__ import annotations

import hashlib
import pickle

import numpy as np
import pytest
import torch

from s2pdata.build import BuildRefused, run_build
from s2pdata.stages.learned import build_net, load_extractor, parse_weights_spec
from s2pdata.stages.sketch import extract_sketch
from s2pdata.synth import SynthConfig

from .strategies import draw_cel_image


def _picture(h: int, w: int) -> np.ndarray:
    return draw_cel_image(h, w, 3)


def _net_output(net, color: np.ndarray, arch: str) -> np.ndarray:
    """What the network itself draws for an image whose sides are multiples of its stride."""
    x = torch.from_numpy(color).permute(2, 0, 1)[None].float() / 255
    with torch.inference_mode():
        y = net(x * 2 - 1 if arch == "anime2sketch" else x)[0, 0]
    if arch == "anime2sketch":
        y = (y + 1) / 2
    return (y.clamp(0, 1) * 255).round().to(torch.uint8).numpy()


def test_full_size_layouts_match_the_published_files():
    with torch.device("meta"):
        a = build_net("anime2sketch").state_dict()
        b = build_net("informative").state_dict()
    assert len(a) == 32 and len(b) == 24  # 16 convolutions with biases; 12
    inner = "model.model.1." + "model.3." * 6
    expect_a = {
        "model.model.0.weight": (64, 3, 4, 4),
        "model.model.3.weight": (128, 1, 4, 4),
        "model.model.1.model.1.weight": (128, 64, 4, 4),
        "model.model.1.model.5.weight": (256, 64, 4, 4),
        inner + "model.1.weight": (512, 512, 4, 4),
        inner + "model.3.weight": (512, 512, 4, 4),
        "model.model.1.model.3.model.3.model.5.weight": (1024, 256, 4, 4),
    }
    expect_b = {
        "model0.1.weight": (64, 3, 7, 7),
        "model1.3.weight": (256, 128, 3, 3),
        "model2.2.conv_block.5.weight": (256, 256, 3, 3),
        "model3.0.weight": (256, 128, 3, 3),
        "model3.3.weight": (128, 64, 3, 3),
        "model4.1.weight": (1, 64, 7, 7),
    }
    for state, expect in ((a, expect_a), (b, expect_b)):
        assert {k: tuple(state[k].shape) for k in expect} == expect
        assert all(k.replace(".weight", ".bias") in state for k in state if k.endswith(".weight"))


@pytest.mark.parametrize(
    "arch,shape,size",
    [("anime2sketch", {"levels": 6, "ngf": 4}, (64, 128)), ("informative", {"blocks": 2, "width": 8}, (36, 48))],
)
def test_adapter_reproduces_the_network(tmp_path, arch, shape, size):
    torch.manual_seed(0)
    net = build_net(arch, **shape).eval()
    state = net.state_dict()
    if arch == "anime2sketch":  # saved from DataParallel, as the published file is
        state = {f"module.{k}": v for k, v in state.items()}
    torch.save(state, tmp_path / "w.pth")
    ex = load_extractor(f"{arch}:{tmp_path / 'w.pth'}")
    color = _picture(*size)
    np.testing.assert_array_equal(ex(color), _net_output(net, color, arch))
    odd = _picture(size[0] - 5, size[1] + 3)  # padded to the stride and cropped back, never squashed
    out = ex(odd)
    assert out.shape == odd.shape[:2] and out.dtype == np.uint8
    assert ex.sha256 == hashlib.sha256((tmp_path / "w.pth").read_bytes()).hexdigest()


def test_exported_scripted_and_wrapped_networks(tmp_path):
    torch.manual_seed(1)
    net = build_net("informative", blocks=1, width=4).eval()
    torch.jit.script(net).save(str(tmp_path / "m.pt"))
    h, w = torch.export.Dim("h", min=2, max=1024), torch.export.Dim("w", min=2, max=1024)
    program = torch.export.export(net, (torch.rand(1, 3, 40, 44),), dynamic_shapes={"x": {2: 4 * h, 3: 4 * w}})
    torch.export.save(program, str(tmp_path / "m.pt2"))
    torch.save({"state_dict": net.state_dict()}, tmp_path / "wrapped.pth")
    for size in ((40, 44), (64, 32)):
        color = _picture(*size)
        want = _net_output(net, color, "informative")
        np.testing.assert_array_equal(load_extractor(f"export:{tmp_path / 'm.pt2'}")(color), want)
    np.testing.assert_array_equal(load_extractor(f"torchscript:{tmp_path / 'm.pt'}")(color), want)
    np.testing.assert_array_equal(load_extractor(f"informative:{tmp_path / 'wrapped.pth'}")(color), want)


class _Payload:
    """Unpickling this creates a file: the proof that code ran."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_bad_weights_are_refused_with_the_reason(tmp_path):
    torch.save(build_net("anime2sketch", levels=5, ngf=2).state_dict(), tmp_path / "a.pth")
    with pytest.raises(ValueError, match="not an informative state dict"):
        load_extractor(f"informative:{tmp_path / 'a.pth'}")
    state = build_net("informative", blocks=1, width=4).state_dict()
    state["model4.9.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "extra.pth")
    with pytest.raises(ValueError, match="unexpected keys"):
        load_extractor(f"informative:{tmp_path / 'extra.pth'}")
    with pytest.raises(ValueError, match="does not exist"):
        load_extractor(f"informative:{tmp_path / 'missing.pth'}")
    for spec in ("netG.pth", "sketchkeras:/m.h5", "anime2sketch:"):
        with pytest.raises(ValueError, match="sketch_weights"):
            parse_weights_spec(spec)
    (tmp_path / "payload.pth").write_bytes(pickle.dumps({"w": _Payload(tmp_path / "ran")}))
    with pytest.raises(pickle.UnpicklingError):
        load_extractor(f"informative:{tmp_path / 'payload.pth'}")  # weights_only: no code runs
    assert not (tmp_path / "ran").exists()


def test_extract_sketch_runs_the_extractor_then_the_augmentations():
    color = _picture(24, 28)
    ink = np.full(color.shape[:2], 255, np.uint8)
    ink[8:12] = 0
    seen = set()
    for seed in range(40):
        s, p = extract_sketch(color, method="learned", rng=np.random.default_rng(seed), extractor=lambda c: ink)
        assert p["method"] == p["requested"] == "learned"
        level = int(np.floor(255 * (1 - p["lighten_r"]) + 0.5))
        assert (s[8:12] == level).all() and (s[:8] == 255).all()
        seen.add(p["binarize"])
    assert seen == {True, False}
    with pytest.raises(ValueError, match="extractor"):
        extract_sketch(color, method="learned", rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match="extractor"):
        extract_sketch(color, method="xdog", rng=np.random.default_rng(0), extractor=lambda c: ink)
    with pytest.raises(ValueError, match="uint8"):
        extract_sketch(color, method="learned", rng=np.random.default_rng(0), extractor=lambda c: ink[:5])
    with pytest.raises(ValueError, match="sketch='learned'"):
        SynthConfig(sketch="xdog", sketch_weights="informative:/w.pth")
    with pytest.raises(ValueError, match="ARCH:PATH"):
        SynthConfig(sketch="learned")


@pytest.mark.slow
def test_build_with_a_learned_extractor(tmp_path):
    torch.manual_seed(2)
    weights = tmp_path / "tiny.pth"
    torch.save(build_net("informative", blocks=1, width=4).state_dict(), weights)
    cfg = SynthConfig(size=64, sketch="learned", sketch_weights=f"informative:{weights}")
    outs = []
    for workers in (1, 2):
        out = tmp_path / f"w{workers}"
        manifest = run_build(src="demo:6", out=out, cfg=cfg, seed=1, shard_size=3, workers=workers, progress=False)
        assert manifest["totals"]["samples"] == 6 and "torch" in manifest["versions"]
        assert manifest["config"]["sketch_weights_sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
        outs.append({p.name: p.read_bytes() for p in sorted(out.glob("shard-*.tar"))})
    assert outs[0] == outs[1]
    torch.save(build_net("informative", blocks=1, width=4).state_dict(), weights)  # new weights, same path
    with pytest.raises(BuildRefused, match="sketch_weights_sha256"):
        run_build(src="demo:6", out=tmp_path / "w1", cfg=cfg, seed=1, shard_size=3, progress=False)
