"""Hostile recipes, checkpoints and run folders for the trainers and evaluate (issue 21, items 13, 14, 16).

Children that could allocate on a regression run under an address-space cap and a timeout
(as in tests/test_hostile.py), so a broken bound fails the test instead of taking the machine.
"""

import os
import re
import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from s2pdata.evaluate import main as evaluate_main  # noqa: E402
from s2pdata.evaluate import score  # noqa: E402
from s2pdata.train.__main__ import main as train_main  # noqa: E402
from s2pdata.train.checkpoint import CheckpointError, load_checkpoint, save_checkpoint  # noqa: E402
from s2pdata.train.config import config_fields, fields_by_name, parse_args  # noqa: E402
from s2pdata.train.draft import DraftConfig  # noqa: E402
from s2pdata.train.refine import RefineConfig  # noqa: E402
from tests.fakes import write_shards  # noqa: E402

ROOT = Path(__file__).parents[1]
AS_LIMIT = 8 << 30  # Numba, OpenCV and torch reserve far more address space than they touch
PROG = "python -m s2pdata.train draft:"


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return write_shards(tmp_path_factory.mktemp("hostile-shards"), 6, 3)


@pytest.fixture(scope="module")
def run_dir(shards, tmp_path_factory):
    """A finished dry run: width 4, depth 2, 32-pixel crops."""
    out = tmp_path_factory.mktemp("hostile-run")
    assert train_main(["draft", "--shards", str(shards), "--out", str(out), "--dry-run"]) == 0
    return out


def _capped(argv: list[str], timeout: int = 180) -> subprocess.CompletedProcess:
    """``python -m argv`` in a child under ``AS_LIMIT`` of address space and a timeout.

    The child leads its own process group, killed whole on timeout: a regression's DataLoader
    workers must not outlive the test.
    """
    p = subprocess.Popen(
        [sys.executable, "-m", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        start_new_session=True,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (AS_LIMIT, AS_LIMIT)),
    )
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        p.communicate()
        raise
    return subprocess.CompletedProcess(p.args, p.returncode, out, err)


def _one_line(proc: subprocess.CompletedProcess) -> str:
    """The child failed with status 2 and exactly one stderr line, no traceback; that line."""
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr[-2000:]
    return lines[0]


# ---------------------------------------------------------------------------------------------
# item 14: every numeric key has bounds; recipe and flag values go through one converter

RECIPE_CASES = [
    ("crop = 200000", ["crop", "200000", ">= 1 and <= 4096"]),
    ("seed = 1e23", ["seed", "1e+23", ">= 0 and <= 4294967295"]),
    ("seed = 100000000000000000000000", ["seed", "100000000000000000000000", "<= 4294967295"]),
    ("batch_size = 1e8", ["batch_size", "100000000.0", ">= 1 and <= 4096"]),
    ("batch_size = 100000000", ["batch_size", "100000000", ">= 1 and <= 4096"]),
    ("lr = inf", ["lr", "inf", "finite", "> 0.0 and <= 1.0"]),
    ("lr = nan", ["lr", "nan", "finite"]),
    ("shuffle_buffer = 1000000000", ["shuffle_buffer", "<= 10000"]),
    ("crop = 4096\nbatch_size = 4096", ["batch_size x crop^2", "<= 67108864"]),
]


@pytest.mark.parametrize("text, names", RECIPE_CASES, ids=[c[0].split("\n")[0] for c in RECIPE_CASES])
def test_huge_recipe_values_are_one_line_naming_key_value_and_range(text, names, shards, tmp_path):
    recipe = tmp_path / "r.toml"
    recipe.write_text(text + "\n")
    out = tmp_path / "run"
    # a few steps in this process alone, so that a value that slips through fails fast (exit 0 or a traceback)
    few = ["--steps", "2", "--num-workers", "0", "--out", str(out)]
    proc = _capped(["s2pdata.train", "draft", "--recipe", str(recipe), "--shards", str(shards), *few])
    line = _one_line(proc)
    assert line.startswith(PROG)
    for name in names:
        assert name in line, (name, line)
    assert not out.exists()


@pytest.mark.parametrize("key, value", [("lr", "inf"), ("crop", "200000"), ("seed", "-1"), ("alpha", "1e9")])
def test_flags_and_recipes_refuse_the_same_values_with_the_same_range(key, value, tmp_path):
    recipe = tmp_path / "r.toml"
    recipe.write_text(f"{key} = {value}\n")
    lines = []
    for extra in (["--recipe", str(recipe)], [f"--{key}", value]):
        with pytest.raises(SystemExit) as e:
            parse_args(DraftConfig, ["--shards", "x", "--out", "y", *extra])
        lines.append(str(e.value))
    for line in lines:
        assert line.split(": ", 1)[1].startswith(key) and " and <= " in line, line
    assert len({re.search(r"<= ([-+.e\d]+\d)", line).group(1) for line in lines}) == 1  # one upper bound


def test_resume_refuses_a_checkpoint_whose_config_says_crop_1e6(run_dir, tmp_path):
    ck = load_checkpoint(run_dir / "ckpt.pt")
    out = tmp_path / "run"
    out.mkdir()
    ck["config"] = {**ck["config"], "crop": 1_000_000, "out": str(out)}
    save_checkpoint(out / "ckpt.pt", ck)
    proc = _capped(["s2pdata.train", "draft", "--out", str(out), "--resume", "--steps", "5"])
    line = _one_line(proc)
    assert "crop" in line and "1000000" in line and "<= 4096" in line and str(out / "ckpt.pt") in line
    # the key given as a flag is not read from the damaged config: the run goes on
    proc = _capped(["s2pdata.train", "draft", "--out", str(out), "--resume", "--steps", "4", "--crop", "32"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert load_checkpoint(out / "ckpt.pt")["step"] == 4


@pytest.mark.parametrize("cls", [DraftConfig, RefineConfig])
def test_every_numeric_key_has_a_lower_and_an_upper_bound(cls):
    for name, typ in config_fields(cls).items():
        m = fields_by_name(cls)[name].metadata
        if typ in (int, float):
            assert {"ge", "gt"} & set(m) and {"le", "lt"} & set(m), name


# ---------------------------------------------------------------------------------------------
# item 16: a recorded sha256 of the weights, finite weights, finite outputs


def _flip_bit_in_g(src: Path, dest: Path) -> str:
    """A copy of ``src`` with the lowest bit of one weight of G flipped (still finite); the tensor's name."""
    ck = load_checkpoint(src)
    name, t = next((k, v) for k, v in ck["models"]["G"].items() if v.is_floating_point() and v.numel() >= 16)
    data = src.read_bytes()
    raw = t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
    at = data.find(raw)
    assert at > 0 and data.find(raw, at + 1) == -1  # the tensor's bytes, once in the file
    flipped = bytearray(data)
    flipped[at] ^= 1  # little-endian float32: the lowest mantissa bit of the first value
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(bytes(flipped))
    return name


def test_checkpoint_records_the_sha256_of_its_weights(run_dir):
    ck = load_checkpoint(run_dir / "ckpt.pt")
    expected = set(ck["models"]) | {f"optims.{name}" for name in ck["optims"]}
    assert set(ck["sha256"]) == expected and all(len(h) == 64 for h in ck["sha256"].values())


def test_a_flipped_bit_in_the_weights_is_refused_at_load(run_dir, shards, tmp_path, capsys):
    bad = tmp_path / "run" / "ckpt.pt"
    _flip_bit_in_g(run_dir / "ckpt.pt", bad)
    raw = torch.load(bad, weights_only=True)  # torch itself reads the damaged file without a word
    assert raw["step"] == 3
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        train_main(["draft", "--out", str(bad.parent), "--resume", "--steps", "4"])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert e.value.code == 2 and len(err) == 1
    assert str(bad) in err[0] and "model G" in err[0] and "sha256" in err[0] and "damaged" in err[0]
    assert evaluate_main(["--checkpoint", str(bad), "--shards", str(shards), "--no-progress"]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith("s2pdata.evaluate: ") and "sha256" in err[0]


def test_a_flipped_bit_in_the_optimizer_state_is_refused_at_resume(run_dir, tmp_path, capsys):
    ck = load_checkpoint(run_dir / "ckpt.pt")
    assert "optims.G" in ck["sha256"]
    exp_avg = next(t for st in ck["optims"]["G"]["state"].values() for k, t in st.items() if k == "exp_avg")
    data = (run_dir / "ckpt.pt").read_bytes()
    raw = exp_avg.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
    at = data.find(raw)
    assert at > 0 and data.find(raw, at + 1) == -1
    flipped = bytearray(data)
    flipped[at] ^= 1
    bad = tmp_path / "run" / "ckpt.pt"
    bad.parent.mkdir()
    bad.write_bytes(bytes(flipped))
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        train_main(["draft", "--out", str(bad.parent), "--resume", "--steps", "4"])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert e.value.code == 2 and len(err) == 1 and "optimizer state of G" in err[0] and "sha256" in err[0], err


@pytest.mark.parametrize("rehash", [True, False], ids=["hash-matches", "no-hash"])
def test_non_finite_weights_are_refused_at_load(run_dir, tmp_path, capsys, rehash):
    """NaN weights are refused even when the recorded hash agrees (saved that way) or is absent."""
    ck = load_checkpoint(run_dir / "ckpt.pt")
    name = next(k for k, v in ck["models"]["G"].items() if v.is_floating_point())
    ck["models"]["G"][name][0] = float("nan")
    ck["config"] = {**ck["config"], "out": str(tmp_path)}
    if rehash:
        save_checkpoint(tmp_path / "ckpt.pt", {k: v for k, v in ck.items() if k != "sha256"})
    else:
        torch.save({k: v for k, v in ck.items() if k != "sha256"}, tmp_path / "ckpt.pt")
    with pytest.raises(CheckpointError, match=rf"tensor {name} of model G holds NaN or infinity"):
        from s2pdata.evaluate import load_model

        load_model(str(tmp_path / "ckpt.pt"))
    capsys.readouterr()
    with pytest.raises(SystemExit):
        train_main(["draft", "--out", str(tmp_path), "--resume", "--steps", "4"])
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "NaN or infinity" in err


def test_evaluate_refuses_non_finite_outputs(shards):
    from s2pdata.data import make_loader

    loader = make_loader(
        shards, stage="draft", batch_size=1, num_workers=0, mode="exact", crop=None, flip=False, shuffle_buffer=0
    )
    with pytest.raises(ValueError, match=r"output for sample \S+ \(no_hints\) holds NaN or infinity"):
        score(lambda b: torch.full_like(b["color"], float("nan")), loader)


# ---------------------------------------------------------------------------------------------
# item 13: a link planted on the checkpoint's write path is never written through


def test_planted_tmp_link_is_not_written_through(shards, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    (out / "ckpt.pt.tmp").symlink_to(victim)
    assert train_main(["draft", "--shards", str(shards), "--out", str(out), "--dry-run"]) == 0
    assert victim.read_text() == "precious\n"
    assert load_checkpoint(out / "ckpt.pt")["step"] == 3
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp") and p.name != "ckpt.pt.tmp"]


def test_a_link_planted_as_the_log_is_one_line_and_never_written_through(shards, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    (out / "log.jsonl").symlink_to(victim)
    with pytest.raises(SystemExit) as info:
        train_main(["draft", "--shards", str(shards), "--out", str(out), "--dry-run"])
    err = capsys.readouterr().err
    assert info.value.code == 2 and "Traceback" not in err and "log.jsonl" in err and "link" in err, err
    assert victim.read_text() == "precious\n"


def test_save_checkpoint_replaces_a_link_at_its_path_instead_of_following_it(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    (tmp_path / "ckpt.pt").symlink_to(victim)
    save_checkpoint(tmp_path / "ckpt.pt", {"models": {"G": {"w": torch.zeros(2)}}, "step": 0})
    assert victim.read_text() == "precious\n" and not (tmp_path / "ckpt.pt").is_symlink()
