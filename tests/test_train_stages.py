"""The stage files (s2pdata/train/draft.py, refine.py): each loss computed by hand on 2x2 pictures,
the step with and without a discriminator, and no test hooks in the production trainer."""

import ast
import math
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from s2pdata.train import draft, refine  # noqa: E402
from s2pdata.train.common import Nets  # noqa: E402

TRAIN = Path(draft.__file__).parent


class RedLogits(torch.nn.Module):
    """A discriminator whose patch logits are the red channel of the picture it judges (channel 5 of
    condition 5 + picture 3): its losses can be worked out by hand."""

    def forward(self, x):
        return x[:, 5:6]


def _pic(r, g, b):
    """(1, 3, 2, 2) from three row-major lists of 4 values."""
    return torch.tensor([r, g, b], dtype=torch.float32).reshape(1, 3, 2, 2)


# target and G's output; every value is exact in binary floating point
COLOR = _pic([0.0, 0.5, -0.5, 1.0], [0.0, 0.0, 0.0, 0.0], [0.5, 0.5, 0.5, 0.5])
FAKE = _pic([1.0, 0.5, 0.5, -1.0], [0.0, 0.0, 1.0, 1.0], [0.5, 0.5, 0.5, 0.5])
BATCH = {"color": COLOR, "sketch": torch.ones(1, 1, 2, 2), "hint": torch.zeros(1, 4, 2, 2), "draft": COLOR.clone()}

# by hand: |FAKE - COLOR| is R 1, 0, 1, 2; G 0, 0, 1, 1; B 0, 0, 0, 0 over 12 values
L1 = (1 + 0 + 1 + 2 + 0 + 0 + 1 + 1) / 12
# L_var = -(sum over channels of the variance over the 4 pixels): R mean 0.25, G mean 0.5, B flat
L_VAR = -((0.75**2 + 0.25**2 + 0.25**2 + 1.25**2) / 4 + (4 * 0.5**2) / 4 + 0)


def _softplus(z):
    return math.log(1 + math.exp(z))


# G's GAN term: BCE(logit z, real) = log(1 + e^-z), the logits being FAKE's red channel
GAN_G = (_softplus(-1.0) + 2 * _softplus(-0.5) + _softplus(1.0)) / 4
# D's loss: COLOR's red logits against real, FAKE's against fake (log(1 + e^z)), halved
LOSS_D = 0.5 * (
    (_softplus(-0.0) + _softplus(-0.5) + _softplus(0.5) + _softplus(-1.0)) / 4
    + (_softplus(1.0) + 2 * _softplus(0.5) + _softplus(-1.0)) / 4
)


def _close(got: dict, want: dict):
    assert set(got) == set(want)
    for k, v in want.items():
        assert got[k].dim() == 0 and got[k].dtype == torch.float32, k
        assert got[k].item() == pytest.approx(v, rel=1e-6, abs=1e-7), k


def test_hand_values_are_what_they_say():
    assert L1 == 0.5 and L_VAR == -0.8125  # the arithmetic above, once more by eye


def test_draft_loss_g_by_hand():
    with_d = draft.loss_g(BATCH, FAKE, Nets(None, RedLogits()), alpha=0.5, lambda_gan=0.1)
    _close(with_d, {"loss_g": L1 + 0.5 * L_VAR + 0.1 * GAN_G, "l1": L1, "l_var": L_VAR, "gan": GAN_G})
    alone = draft.loss_g(BATCH, FAKE, Nets(None, None), alpha=0.5, lambda_gan=0.1)  # no D: no GAN term
    _close(alone, {"loss_g": L1 + 0.5 * L_VAR, "l1": L1, "l_var": L_VAR})


def test_refine_loss_g_by_hand():
    with_d = refine.loss_g(BATCH, FAKE, Nets(None, RedLogits()), lambda_gan=0.1)
    _close(with_d, {"loss_g": L1 + 0.1 * GAN_G, "l1": L1, "gan": GAN_G})
    _close(refine.loss_g(BATCH, FAKE, Nets(None, None), lambda_gan=0.1), {"loss_g": L1, "l1": L1})


@pytest.mark.parametrize("stage", [draft, refine], ids=["draft", "refine"])
def test_loss_d_by_hand_and_it_never_reaches_g(stage):
    fake = FAKE.clone().requires_grad_(True)
    got = stage.loss_d(BATCH, fake, Nets(None, RedLogits()))
    _close(got, {"loss_d": LOSS_D})
    assert not got["loss_d"].requires_grad and fake.grad is None  # D's loss sees G's output detached


def test_loss_g_in_bf16_autocast_is_computed_in_fp32():
    nets = Nets(None, RedLogits(), lambda: torch.autocast("cpu", dtype=torch.bfloat16))
    got = draft.loss_g(BATCH, FAKE.to(torch.bfloat16), nets, alpha=0.5, lambda_gan=0.1)
    _close(got, {"loss_g": L1 + 0.5 * L_VAR + 0.1 * GAN_G, "l1": L1, "l_var": L_VAR, "gan": GAN_G})


def _tiny_cfg(cls, **kw):
    extra = {"encoder_width": 0.0625} if cls is refine.RefineConfig else {}
    return cls(width=4, depth=1, disc_width=4, disc_layers=1, **extra, **kw)


def _batch16():
    gen = torch.Generator().manual_seed(0)
    chans = {"color": 3, "sketch": 1, "hint": 4, "draft": 3}
    return {k: torch.rand(2, c, 16, 16, generator=gen) * 2 - 1 for k, c in chans.items()}


@pytest.mark.parametrize("stage, cls", [(draft, draft.DraftConfig), (refine, refine.RefineConfig)])
def test_step_without_d_at_lambda_gan_0_and_with_d_above(stage, cls):
    torch.manual_seed(0)
    st = stage.build_stage(_tiny_cfg(cls, lambda_gan=0.0))
    assert st.D is None  # nothing to build, step or save
    before = [p.detach().clone() for p in st.G.parameters()]
    opts = {"G": torch.optim.Adam(st.G.parameters(), lr=1e-2)}  # no "D": a step that wanted it would fail
    losses = st.step(_batch16(), Nets(st.G, st.D), opts)
    assert "loss_d" not in losses and "gan" not in losses
    assert any(not torch.equal(a, b) for a, b in zip(before, st.G.parameters()))  # G stepped

    st = stage.build_stage(_tiny_cfg(cls, lambda_gan=0.5))
    calls = []
    opts = {}
    for name, net in (("G", st.G), ("D", st.D)):
        opts[name] = torch.optim.Adam(net.parameters(), lr=1e-2)
        opts[name].register_step_post_hook(lambda *_, name=name: calls.append(name))
    losses = st.step(_batch16(), Nets(st.G, st.D), opts)
    assert calls == ["D", "G"]  # D first, then G against the updated D
    assert {"loss_g", "loss_d", "l1", "gan"} <= set(losses) and list(losses)[:2] == ["loss_g", "loss_d"]


def test_no_test_hooks_in_the_trainer():
    """No os._exit and no environment variable but torchrun's own (RANK, WORLD_SIZE, LOCAL_RANK) in s2pdata/train."""
    for path in sorted(TRAIN.glob("*.py")):
        tree = ast.parse(path.read_text())
        assert not [n.lineno for n in ast.walk(tree) if isinstance(n, ast.Attribute) and n.attr == "_exit"], path
        for line, name in _environment_reads(tree):
            assert name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"), f"{path.name}:{line} reads {name or 'the environment'}"


def _environment_reads(tree):
    """(line, variable name or None when not a constant) of each use of os.environ / os.getenv."""
    parent = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv", "putenv", "unsetenv")):
            continue
        up, arg = parent[node], None
        if node.attr == "environ" and isinstance(up, ast.Attribute) and up.attr == "get":
            arg = parent[up].args[0]
        elif node.attr == "environ" and isinstance(up, ast.Subscript) and isinstance(up.ctx, ast.Load):
            arg = up.slice
        elif node.attr == "getenv" and isinstance(up, ast.Call):
            arg = up.args[0]
        yield node.lineno, arg.value if isinstance(arg, ast.Constant) else None
