"""DDP under torchrun: 2 CPU ranks on gloo, the trainers' dry-run models.

The ranks run ``tests/train_probe.py``: the trainer's CLI with an ``on_step`` probe. Each rank
writes ``rank{R}.json`` (keys read, shards, weight hash, checkpoints written) at the end; with
``--stop-after K`` both ranks wait after the checkpoint of step K, and the test kills them.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from s2pdata.shards import shard_name  # noqa: E402
from s2pdata.train.checkpoint import load_checkpoint, state_hash  # noqa: E402
from tests.fakes import write_shards  # noqa: E402

pytestmark = pytest.mark.slow
PER_SHARD = 3
ROOT = Path(__file__).parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(stage: str, out: Path, debug: Path, *args: str, stop_after: int | None = None) -> subprocess.Popen:
    """Start ``python -m torch.distributed.run --nproc-per-node 2 -m tests.train_probe ... STAGE ...`` on a free port.

    With ``stop_after`` both ranks wait after the checkpoint of that step, their pids in ``stopped(debug)``.
    """
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc-per-node",
        "2",
        "--master-addr",
        "127.0.0.1",
        "--master-port",
        str(_free_port()),
        "-m",
        "tests.train_probe",
        "--record",
        str(debug),
        *(["--stop-after", str(stop_after), "--stopped", str(stopped(debug))] if stop_after is not None else []),
        stage,
        "--out",
        str(out),
        *args,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def stopped(debug: Path) -> Path:
    return debug.with_name(debug.name + "-stopped")


def kill_when_stopped(proc: subprocess.Popen, debug: Path, timeout: float = 300) -> tuple[int, str]:
    """SIGKILL both ranks once each has said it waits (as a crash would end them); torchrun's status and output."""
    pids, deadline = [stopped(debug) / f"rank{r}.pid" for r in (0, 1)], time.monotonic() + timeout
    while not all(p.exists() for p in pids):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"the ranks never stopped: {proc.communicate()[0][-3000:]}")
        time.sleep(0.1)
    for p in pids:
        os.kill(int(p.read_text()), signal.SIGKILL)
    return finish(proc)


def finish(proc: subprocess.Popen) -> tuple[int, str]:
    """Exit status and output (stdout and stderr together) of a launched run."""
    out, _ = proc.communicate(timeout=300)
    return proc.returncode, out


def torchrun(*args, **kw) -> tuple[int, str]:
    return finish(launch(*args, **kw))


def ranks(debug: Path) -> list[dict]:
    return [json.loads((debug / f"rank{r}.json").read_text()) for r in (0, 1)]


def check_ranks(recs: list[dict], shards: Path, ckpt: Path) -> str:
    """Disjoint shards and keys, identical weights on both ranks and in the checkpoint; returns the hash."""
    mine = [{Path(p).name for p in r["shards"]} for r in recs]
    assert mine[0] and mine[1] and not mine[0] & mine[1]
    assert mine[0] | mine[1] == {p.name for p in shards.glob("shard-*.tar")}
    for r, names in zip(recs, mine):  # every key a rank read comes from one of its own shards
        assert r["keys"] and {shard_name(int(k[2:]) // PER_SHARD) for k in r["keys"]} <= names
    assert recs[0]["hash"] == recs[1]["hash"]  # bit-identical weights on both ranks
    ck = load_checkpoint(ckpt)
    assert state_hash(ck["models"]["G"], ck["models"]["D"]) == recs[0]["hash"]
    assert recs[0]["ckpt_writes"] >= 1 and recs[1]["ckpt_writes"] == 0  # rank 0 alone writes
    assert sorted(p.name for p in ckpt.parent.glob("ckpt*")) == ["ckpt.pt"]
    return recs[0]["hash"]


def test_ddp_draft_identical_ranks_and_kill_resume_equals_uninterrupted(tmp_path):
    shards = write_shards(tmp_path / "shards", 12, PER_SHARD, h=32, w=32)
    common = ["--dry-run", "--shards", str(shards), "--steps", "4", "--ckpt-every", "2", "--sample-every", "4"]
    # the uninterrupted run and the one killed after step 2 run side by side (wall time)
    whole = launch("draft", tmp_path / "a", tmp_path / "dbg-a", *common)
    crashed = launch("draft", tmp_path / "b", tmp_path / "dbg-b", *common, stop_after=2)
    (rc_crashed, _), (rc, log) = kill_when_stopped(crashed, tmp_path / "dbg-b"), finish(whole)
    assert rc == 0, log[-3000:]
    ck = load_checkpoint(tmp_path / "a" / "ckpt.pt")
    assert ck["step"] == 4 and len(ck["rng"]) == 2  # every rank's RNG state
    h_whole = check_ranks(ranks(tmp_path / "dbg-a"), shards, tmp_path / "a" / "ckpt.pt")

    assert rc_crashed != 0 and not (tmp_path / "dbg-b").exists()
    assert load_checkpoint(tmp_path / "b" / "ckpt.pt")["step"] == 2
    rc, log = torchrun("draft", tmp_path / "b", tmp_path / "dbg-b", "--resume")  # the run's own config
    assert rc == 0 and "resumed" in log, log[-3000:]
    h_resumed = check_ranks(ranks(tmp_path / "dbg-b"), shards, tmp_path / "b" / "ckpt.pt")
    assert h_resumed == h_whole  # kill + resume under torchrun = uninterrupted, bit for bit


def test_ddp_refine_identical_ranks(tmp_path):
    shards = write_shards(tmp_path / "shards", 12, PER_SHARD, h=32, w=32, drafts=1)
    rc, log = torchrun("refine", tmp_path / "r", tmp_path / "dbg", "--dry-run", "--shards", str(shards), "--steps", "2")
    assert rc == 0, log[-3000:]
    check_ranks(ranks(tmp_path / "dbg"), shards, tmp_path / "r" / "ckpt.pt")
