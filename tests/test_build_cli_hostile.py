"""The build CLI on values and folders a user or an attacker may give it: one line and an exit code,
never a traceback, an allocation of gigabytes, or a write through a planted link.

Each command runs in a child process with a capped address space and a timeout, so a regression (a
44 GB allocation for ``--size 100000``) fails the test instead of taking the machine down.
"""

import os
import resource
import subprocess
import sys

import pytest

AS_LIMIT = 8 << 30  # Numba and OpenCV reserve far more address space than they touch


def _cap():
    resource.setrlimit(resource.RLIMIT_AS, (AS_LIMIT, AS_LIMIT))


def build(*args, cwd=None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "s2pdata.build", "--no-progress", "--workers", "1", *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, preexec_fn=_cap, cwd=cwd)


def one_line(run: subprocess.CompletedProcess) -> str:
    """The single line the build printed on stderr (no traceback)."""
    lines = run.stderr.strip().splitlines()
    assert "Traceback" not in run.stderr and len(lines) == 1, run.stderr
    return lines[0]


@pytest.mark.parametrize(
    "flag, value, bound",
    [
        ("--size", 100000, "0..4096"),
        ("--drafts", 100000, "0..16"),
        ("--pool-size", 0, "1..1000000"),
        ("--color-quality", 1000, "1..100"),
        ("--max-pixels", 0, "1..67108864"),
        ("--workers", 100000, "1..1024"),
        ("--seed", -1, "0..2**64-1"),
    ],
)
def test_out_of_bounds_flags_are_refused_with_the_bound(tmp_path, flag, value, bound):
    run = build("--src", "demo:2", "--out", tmp_path / "out", flag, value)
    line = one_line(run)
    assert run.returncode == 2 and flag[2:].replace("-", "_") in line and str(value) in line and bound in line
    assert not (tmp_path / "out").exists()  # refused before the folder was made


def test_the_help_states_each_bound():
    text = build("--help").stdout
    for flag_bound in ("0..4096", "0..16", "1..1000000", "1..100", "1..1024"):
        assert flag_bound in text


def test_a_quoted_number_in_a_recipe_is_refused(tmp_path):
    (tmp_path / "r.toml").write_text('size = "64"\n')
    run = build("--recipe", tmp_path / "r.toml", "--src", "demo:2", "--out", tmp_path / "out")
    assert run.returncode == 2 and "drop the quotes" in one_line(run)


def test_an_unusable_out_is_one_line(tmp_path):
    (tmp_path / "file").write_text("not a folder")
    run = build("--src", "demo:2", "--out", tmp_path / "file")
    assert run.returncode == 2 and "is a file, not a folder" in one_line(run)
    run = build("--src", "demo:2", "--out", "/sys/s2pdata-cannot-write-here")  # refused even for root
    assert run.returncode == 2 and "cannot use --out" in one_line(run)


def test_a_link_planted_as_the_lock_is_never_written_through(tmp_path):
    out, victim = tmp_path / "out", tmp_path / "victim.txt"
    out.mkdir()
    victim.write_text("precious")
    os.symlink(victim, out / ".s2pdata.lock")
    run = build("--src", "demo:2", "--out", out)
    assert run.returncode == 2 and "is a link or not a regular file" in one_line(run)
    assert victim.read_text() == "precious"


def test_a_failed_build_leaves_no_empty_out(tmp_path):
    run = build("--src", tmp_path / "no-such-folder", "--out", tmp_path / "a" / "out")
    assert run.returncode == 2 and not (tmp_path / "a" / "out").exists()
    (tmp_path / "kept").mkdir()  # a folder the user made is left where it was, as it was
    build("--src", tmp_path / "no-such-folder", "--out", tmp_path / "kept")
    assert (tmp_path / "kept").is_dir() and not any((tmp_path / "kept").iterdir())


@pytest.mark.slow
def test_a_build_where_every_item_is_rejected_exits_non_zero(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "empty.png").write_bytes(b"")
    (src / "text.jpg").write_bytes(b"this is not a picture" * 20)
    run = build("--src", src, "--out", tmp_path / "out", "--size", 64)
    line = one_line(run)
    assert run.returncode == 3 and "no sample was built" in line and "empty-file" in line and "rejects.jsonl" in line
