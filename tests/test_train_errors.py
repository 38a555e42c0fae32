"""Train and checkpoint errors are one line and exit status 2, never a traceback (issue 14, item 6).

Covers every recipe / key / value mistake through the CLI, pickle and damaged checkpoints, and a
checkpoint whose config does not match its tensors: refused before any model is allocated, for
``--resume`` and for ``s2pdata.evaluate`` (children under an address-space cap, so a regression
fails instead of allocating gigabytes).
"""

import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from s2pdata.evaluate import load_model  # noqa: E402
from s2pdata.evaluate import main as evaluate_main  # noqa: E402
from s2pdata.train.__main__ import main as train_main  # noqa: E402
from s2pdata.train.checkpoint import CheckpointError, check_shapes, load_checkpoint  # noqa: E402
from s2pdata.train.draft import DraftConfig  # noqa: E402
from s2pdata.train.draft import build_stage as draft_stage  # noqa: E402
from tests.fakes import write_shards  # noqa: E402

ROOT = Path(__file__).parents[1]
AS_CAP = 2 * 2**30  # a width-4 resume needs < 0.5 GB; the width-1024 model of the tampered config needs more
PROG = "python -m s2pdata.train draft:"
WIDTH_RANGE = "width must be >= 1 and <= 1024, got -4"


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return write_shards(tmp_path_factory.mktemp("err-shards"), 6, 3)


@pytest.fixture(scope="module")
def run_dir(shards, tmp_path_factory):
    """A finished dry run (width 4, depth 2, disc_width 4, disc_layers 2)."""
    out = tmp_path_factory.mktemp("err-run")
    assert train_main(["draft", "--shards", str(shards), "--out", str(out), "--dry-run"]) == 0
    return out


def _tampered(run_dir, dest: Path, **config) -> Path:
    """A copy of the dry run's checkpoint whose stored config says ``config``; tensors unchanged."""
    ck = load_checkpoint(run_dir / "ckpt.pt")
    ck["config"] = {**ck["config"], **config, "out": str(dest)}
    dest.mkdir(parents=True, exist_ok=True)
    torch.save(ck, dest / "ckpt.pt")
    return dest


def _touch(marker: str) -> None:
    Path(marker).touch()


class _Payload:
    """Unpickling this calls ``_touch(marker)``: the marker's absence proves nothing was unpickled."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (_touch, (self.marker,))


def _pickle_checkpoint(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    torch.save({"stage": "draft", "models": {"G": _Payload(folder / "ran")}}, folder / "ckpt.pt")
    return folder / "ckpt.pt"


def _one_line_exit_2(argv, capsys) -> str:
    """Run the train CLI in-process; it must end with status 2 and exactly one stderr line."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        train_main(argv)
    assert e.value.code == 2, e.value.code
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert str(e.value) == lines[0]
    return lines[0]


def _recipe(tmp_path, text: str | bytes, name="r.toml") -> str:
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return str(path)


CONFIG_CASES = [
    ("missing recipe", lambda t: ["--recipe", str(t / "nope.toml")], ["nope.toml", "does not exist"]),
    ("malformed recipe", lambda t: ["--recipe", _recipe(t, "width = [\n")], ["r.toml", "cannot be read"]),
    ("recipe not text", lambda t: ["--recipe", _recipe(t, b"\xff\xfe\x00w")], ["r.toml", "not UTF-8"]),
    ("recipe is a folder", lambda t: ["--recipe", str(t)], ["recipe /", "cannot be read"]),
    ("negative width in recipe", lambda t: ["--recipe", _recipe(t, "width = -4\n")], [WIDTH_RANGE]),
    ("negative width flag", lambda t: ["--width", "-4"], [WIDTH_RANGE]),
    ("unknown key in recipe", lambda t: ["--recipe", _recipe(t, "colour = 1\n")], ["'colour'", "r.toml"]),
    ("unknown flag", lambda t: ["--colour", "3"], ["'--colour'", "'colour'"]),
    ("float for int in recipe", lambda t: ["--recipe", _recipe(t, "batch_size = 1.5\n")], ["batch_size", "1.5"]),
    ("bool for int in recipe", lambda t: ["--recipe", _recipe(t, "crop = true\n")], ["crop", "True"]),
    ("string for float in recipe", lambda t: ["--recipe", _recipe(t, 'lr = "fast"\n')], ["lr", "'fast'"]),
    ("table in recipe", lambda t: ["--recipe", _recipe(t, "[train]\nwidth = 4\n")], ["train"]),
    ("bad type flag", lambda t: ["--batch-size", "many"], ["batch_size", "'many'"]),
    ("bad choice", lambda t: ["--mode", "epochs"], ["mode must be one of"]),
    ("wrong stage recipe", lambda t: ["--recipe", _recipe(t, 'stage = "refine"\n')], ["r.toml", "'refine'"]),
    ("resume and overwrite", lambda t: ["--resume", "--overwrite"], ["--resume", "--overwrite"]),
    ("resume without checkpoint", lambda t: ["--resume"], ["no checkpoint at", "ckpt.pt"]),
]


@pytest.mark.parametrize("make_argv, names", [c[1:] for c in CONFIG_CASES], ids=[c[0] for c in CONFIG_CASES])
def test_config_mistake_is_one_line_exit_2(make_argv, names, tmp_path, capsys):
    """Not a dry run: every value is checked as given, and the line names the key or the file."""
    line = _one_line_exit_2(["draft", "--shards", "x", "--out", str(tmp_path / "o"), *make_argv(tmp_path)], capsys)
    assert line.startswith(PROG)
    for name in names:
        assert name in line, (name, line)


def _capped(argv: list[str], timeout=120) -> subprocess.CompletedProcess:
    """A CLI in a child under ``AS_CAP``: allocating a paper-scale model there fails the test, not the machine."""
    return subprocess.run(
        [sys.executable, "-m", *argv],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (AS_CAP, AS_CAP)),
    )


def _assert_cli_line(proc: subprocess.CompletedProcess, *names: str) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    for name in names:
        assert name in lines[0], (name, lines[0])
    return lines[0]


@pytest.mark.parametrize(
    "extra, names",
    [
        (["--recipe", "no-such-recipe.toml"], ["no-such-recipe.toml", "does not exist"]),
        (["--width", "-4"], [WIDTH_RANGE]),
    ],
    ids=["missing recipe", "width -4"],
)
def test_cli_process_exits_2_with_one_line(extra, names, tmp_path):
    """The real interpreter path: status 2, one stderr line, no traceback."""
    proc = _capped(["s2pdata.train", "draft", "--shards", "x", "--out", str(tmp_path / "o"), *extra])
    _assert_cli_line(proc, *names)


def _assert_pickle_message(line: str, path: Path) -> None:
    assert str(path) in line and "pickle checkpoint" in line and "never unpickles" in line
    assert "tests.test_train_errors._touch" in line  # what the file holds
    assert "torch.save(" in line and "state_dict()" in line  # how to make a proper one
    assert "weights_only" not in line and "safe_globals" not in line  # not PyTorch's advice


def test_pickle_checkpoint_is_refused_on_resume_with_own_message(tmp_path, capsys):
    path = _pickle_checkpoint(tmp_path / "run")
    line = _one_line_exit_2(["draft", "--out", str(tmp_path / "run"), "--resume", "--steps", "4"], capsys)
    _assert_pickle_message(line, path)
    assert not (tmp_path / "run" / "ran").exists()  # nothing was unpickled


def test_pickle_checkpoint_is_refused_by_evaluate(shards, tmp_path, capsys):
    path = _pickle_checkpoint(tmp_path / "run")
    with pytest.raises(CheckpointError) as e:
        load_model(str(path))
    _assert_pickle_message(str(e.value), path)
    assert evaluate_main(["--checkpoint", str(path), "--shards", str(shards), "--no-progress"]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and "never unpickles" in err[0]
    assert not (tmp_path / "run" / "ran").exists()


@pytest.mark.parametrize(
    "content, words",
    [(b"", "EOFError"), (b"not a checkpoint at all", "damaged or not a torch checkpoint")],
    ids=["empty", "junk"],
)
def test_damaged_checkpoint_is_one_line(content, words, tmp_path, capsys):
    (tmp_path / "ckpt.pt").write_bytes(content)
    line = _one_line_exit_2(["draft", "--out", str(tmp_path), "--resume"], capsys)
    assert str(tmp_path / "ckpt.pt") in line and words in line


def test_truncated_checkpoint_is_one_line(run_dir, tmp_path, capsys):
    data = (run_dir / "ckpt.pt").read_bytes()
    (tmp_path / "ckpt.pt").write_bytes(data[: len(data) // 2])
    line = _one_line_exit_2(["draft", "--out", str(tmp_path), "--resume"], capsys)
    assert "damaged or not a torch checkpoint" in line


def test_checkpoint_without_models_is_one_line(tmp_path, capsys):
    torch.save({"stage": "draft", "config": {}, "step": 1}, tmp_path / "ckpt.pt")
    line = _one_line_exit_2(["draft", "--out", str(tmp_path), "--resume"], capsys)
    assert "not an s2pdata trainer checkpoint" in line


def test_checkpoint_config_of_wrong_type_is_one_line(run_dir, tmp_path, capsys):
    out = _tampered(run_dir, tmp_path / "run", width="wide")
    line = _one_line_exit_2(["draft", "--out", str(out), "--resume"], capsys)
    assert "width" in line and "'wide'" in line and "checkpoint" in line


def test_resume_of_lying_config_is_refused_before_allocating(run_dir, tmp_path):
    """Config width 1024 over width-4 tensors: one line naming both, in a child that cannot hold the big model."""
    out = _tampered(run_dir, tmp_path / "run", width=1024)
    before = (out / "ckpt.pt").read_bytes()
    proc = _capped(["s2pdata.train", "draft", "--out", str(out), "--resume", "--steps", "5"])
    _assert_cli_line(proc, "width 1024", "width 4", str(out / "ckpt.pt"))
    assert (out / "ckpt.pt").read_bytes() == before  # untouched
    # the control: the untampered checkpoint resumes in the same capped child
    good = _tampered(run_dir, tmp_path / "good")
    proc = _capped(["s2pdata.train", "draft", "--out", str(good), "--resume", "--steps", "4", "--num-workers", "0"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert load_checkpoint(good / "ckpt.pt")["step"] == 4


def test_evaluate_of_lying_config_is_refused_before_allocating(run_dir, shards, tmp_path):
    out = _tampered(run_dir, tmp_path / "run", width=1024)
    proc = _capped(["s2pdata.evaluate", "--checkpoint", str(out / "ckpt.pt"), "--shards", str(shards), "--no-progress"])
    _assert_cli_line(proc, "s2pdata.evaluate", "width 1024", "width 4")


@pytest.mark.parametrize(
    "config, names",
    [
        ({"depth": 5}, ["depth 5", "depth 2"]),
        ({"disc_width": 1024}, ["disc_width 1024", "disc_width 4"]),
        ({"disc_layers": 3}, ["disc_layers 3", "disc_layers 2"]),
    ],
    ids=["depth", "disc_width", "disc_layers"],
)
def test_resume_names_every_key_the_tensors_contradict(run_dir, tmp_path, capsys, config, names):
    out = _tampered(run_dir, tmp_path / "run", **config)
    line = _one_line_exit_2(["draft", "--out", str(out), "--resume", "--steps", "4"], capsys)
    for name in names:
        assert name in line, (name, line)


def test_resume_flag_that_contradicts_the_tensors_is_refused(run_dir, tmp_path, capsys):
    """An explicit --width on resume is checked against the tensors too, before building anything."""
    out = _tampered(run_dir, tmp_path / "run")
    line = _one_line_exit_2(["draft", "--out", str(out), "--resume", "--width", "8"], capsys)
    assert "width 8" in line and "width 4" in line


def test_check_shapes_builds_only_on_the_meta_device(run_dir):
    """Shapes no key names (here the U-Net's input channels) are compared with a model on the meta device."""
    ck = load_checkpoint(run_dir / "ckpt.pt")
    cfg = DraftConfig(width=4, depth=2, disc_width=4, disc_layers=2)
    devices = []

    def counting(c):
        stage = draft_stage(c)
        devices.append(next(stage.G.parameters()).device.type)
        return stage

    check_shapes(cfg, counting, ck["models"], "ckpt.pt")  # matches
    models = {**ck["models"], "G": {**ck["models"]["G"], "down.0.0.weight": torch.zeros(4, 7, 3, 3)}}
    with pytest.raises(CheckpointError, match=r"down\.0\.0\.weight is \(4, 7, 3, 3\) in the file, \(4, 5, 3, 3\)"):
        check_shapes(cfg, counting, models, "ckpt.pt")
    assert devices == ["meta", "meta"]
