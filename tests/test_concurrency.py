"""Concurrent, killed and interrupted builds (issue 14, item 5).

Two builds into one ``--out``: the second is refused naming the first, which finishes byte-identical
to a lone build. A SIGKILL-ed parent takes its workers with it, and its in-flight folder is removed by
the next run. A full disk ends in one message, and the same command then resumes.

Every build here runs in a child process with a capped address space. No test waits a fixed time:
each polls for the state it asserts (or sets it up: the first build is paused while the second
runs), with a generous deadline that only bounds a failure. The SIGKILL test runs with the machine
loaded by busy loops, twice as many as there are cores.
"""

import errno
import hashlib
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from s2pdata.build import cli
from s2pdata.build import worker as build_worker
from s2pdata.build.runners import INFLIGHT_PREFIX, remove_dead_inflight
from s2pdata.shards import LOCK_FILE

AS_LIMIT = 8 << 30  # address space per child: Numba and OpenCV reserve far more than they touch
BUILD = "--src demo:32 --drafts 0 --shard-size 8 --seed 3 --no-progress"  # 4 shards, a few seconds
LONG_BUILD = "--src demo:2000 --drafts 0 --shard-size 8 --seed 3 --no-progress"  # minutes: killed long before its end
MARK = "S2PDATA_TEST_BUILD"  # environment marker: finds a build's processes (workers inherit it)


def _cap_memory():
    """``preexec_fn``: cap the child's address space so a runaway build fails instead of the machine."""
    resource.setrlimit(resource.RLIMIT_AS, (AS_LIMIT, AS_LIMIT))


def _start(out, *extra, workers=1, env=None, build=BUILD):
    """The build CLI on ``out`` in a capped child process."""
    argv = [sys.executable, "-m", "s2pdata.build", *build.split(), "--out", str(out), "--workers", str(workers)]
    return subprocess.Popen(
        [*argv, *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_cap_memory,
        env={**os.environ, **(env or {})},
    )


def _finish(proc, timeout=240):
    """(exit code, stdout, stderr) of a started build, within ``timeout`` seconds."""
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    return proc.returncode, out, err


def _tar_digests(out) -> dict:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(Path(out).glob("shard-*.tar"))}


def _wait_for(condition, timeout: float, what, detail=lambda: ""):
    """Poll ``condition()`` until it is truthy and return its value; fail naming ``what`` (and
    ``detail()``, the state at that moment) after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    pytest.fail(f"timed out after {timeout} s waiting for {what} {detail()}".rstrip())


@pytest.fixture
def busy_machine():
    """Twice as many busy-loop processes as the machine has cores, spinning for the whole test, then killed."""
    spinners = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"], stdin=subprocess.DEVNULL)
        for _ in range(2 * (os.cpu_count() or 1))
    ]
    try:
        yield len(spinners)
    finally:
        for p in spinners:
            p.kill()
        for p in spinners:
            p.wait(timeout=60)


@pytest.fixture(scope="module")
def lone(tmp_path_factory):
    """The shard digests of ``BUILD`` run alone."""
    out = tmp_path_factory.mktemp("lone") / "out"
    rc, _, err = _finish(_start(out))
    assert rc == 0, err[-2000:]
    return _tar_digests(out)


@pytest.mark.slow
def test_a_second_build_into_the_same_out_is_refused_and_the_first_finishes_as_if_alone(tmp_path, lone):
    out = tmp_path / "out"
    first = _start(out)
    try:
        lock = out / LOCK_FILE
        _wait_for(lambda: lock.exists() and f"pid {first.pid} " in lock.read_text(), 300, "the first build's lock")
        # the first build is paused, holding its lock, while the second runs: it cannot end first however
        # slowly the second starts (it runs alone in its process: --workers 1)
        first.send_signal(signal.SIGSTOP)
        for extra in ((), ("--overwrite",)):
            rc, _, err = _finish(_start(out, *extra), timeout=300)
            assert first.poll() is None, "the first build ended before the second started: the test proves nothing"
            assert rc == 2, err[-2000:]
            assert "in use by another build" in err and f"pid {first.pid} on host" in err and "since" in err, err
            assert "Traceback" not in err
        first.send_signal(signal.SIGCONT)
        rc, _, err = _finish(first, timeout=300)
    finally:
        first.kill()
    assert rc == 0, err[-2000:]
    assert _tar_digests(out) == lone


def _processes_marked(marker: str) -> list[int]:
    """Live (not zombie) processes whose environment holds ``MARK=marker``."""
    found = []
    needle = f"{MARK}={marker}".encode()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes()
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if needle in environ.split(b"\0") and state != "Z":
            found.append(int(pid))
    return found


def _ppid(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError):
        return -1


def _inflight_folder(parent: int) -> Path | None:
    """The in-flight folder the build ``parent`` made in the temp dir (None before it has made one)."""
    found = sorted(Path(tempfile.gettempdir()).glob(f"{INFLIGHT_PREFIX}{parent}-*"))
    return found[0] if found else None


def _kill_all(pids) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="finds the build's processes through /proc")
def test_sigkill_of_the_parent_ends_its_workers_and_the_next_run_removes_its_inflight_folder(tmp_path, busy_machine):
    marker = uuid.uuid4().hex
    parent = _start(tmp_path / "out", workers=2, env={MARK: marker}, build=LONG_BUILD)

    def both_workers_armed():
        """The build's two pool workers, once each has opened its in-flight key slot: by then each has
        asked to die with its parent (``worker.exit_with_parent`` runs first in the worker's initializer).
        The pool starts them one after the other, and a worker's imports take seconds on a loaded machine."""
        found = [p for p in _processes_marked(marker) if _ppid(p) == parent.pid and "spawn_main" in _cmd(p)]
        folder = _inflight_folder(parent.pid)
        if len(found) == 2 and folder is not None and all((folder / str(p)).exists() for p in found):
            return found
        return None

    try:
        workers = _wait_for(both_workers_armed, 300, "the build's two workers to start")
        assert len(workers) == 2 and parent.poll() is None
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=60)
        _wait_for(
            lambda: not _processes_marked(marker),
            120,
            "the killed build's processes to end:",
            lambda: str({p: _cmd(p)[:120] for p in _processes_marked(marker)}),
        )
    finally:
        parent.kill()
        _kill_all(_processes_marked(marker))  # a failed run must not leave orphans behind
    leftovers = [n for n in os.listdir(tempfile.gettempdir()) if n.startswith(f"{INFLIGHT_PREFIX}{parent.pid}-")]
    assert leftovers, "the killed build left no in-flight folder: the clean-up below proves nothing"
    assert set(leftovers) <= set(remove_dead_inflight(tempfile.gettempdir()))
    assert not any(os.path.exists(os.path.join(tempfile.gettempdir(), n)) for n in leftovers)


def test_inflight_folders_of_live_or_unnamed_processes_are_kept(tmp_path):
    (tmp_path / f"{INFLIGHT_PREFIX}{os.getpid()}-abc").mkdir()  # this process: alive
    (tmp_path / f"{INFLIGHT_PREFIX}xyz").mkdir()  # the old naming, without a pid: cannot be proved dead
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait(timeout=30)
    (tmp_path / f"{INFLIGHT_PREFIX}{dead.pid}-def").mkdir()
    assert remove_dead_inflight(str(tmp_path)) == [f"{INFLIGHT_PREFIX}{dead.pid}-def"]
    assert sorted(os.listdir(tmp_path)) == sorted([f"{INFLIGHT_PREFIX}{os.getpid()}-abc", f"{INFLIGHT_PREFIX}xyz"])


def _cmd(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


@pytest.mark.slow
def test_a_full_disk_in_the_shard_phase_prints_one_message_and_the_same_command_resumes(
    tmp_path, lone, monkeypatch, capsys
):
    out = tmp_path / "out"
    argv = [*BUILD.split(), "--out", str(out), "--workers", "1"]
    real_write_tar = build_worker.write_tar

    def full_after_two(path, samples, **kw):
        """The real writer for the first two shards, then a full disk (with a half-written file left)."""
        if len(list(out.glob("shard-*.stats.json"))) >= 2:
            Path(str(path) + ".tmp").write_bytes(b"half a tar")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write_tar(path, samples, **kw)

    monkeypatch.setattr(build_worker, "write_tar", full_after_two)
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("\n") == 1, err
    assert "no space left on the device while writing shards" in err
    assert "2 committed shard(s) there are safe" in err and "free space and run the same command again" in err.lower()
    assert not list(out.glob("*.tmp")), "the half-written file is left behind"
    monkeypatch.setattr(build_worker, "write_tar", real_write_tar)
    assert cli.main(argv) == 0
    assert "; 2 shards built" in capsys.readouterr().out  # the two committed before the disk filled are kept
    assert _tar_digests(out) == lone


@pytest.mark.slow
def test_a_full_disk_in_the_pool_phase_prints_one_message_and_the_same_command_resumes(tmp_path, monkeypatch, capsys):
    from s2pdata.pool import PatchPool

    out = tmp_path / "out"
    argv = f"--src demo:8 --drafts 1 --pool-size 32 --workers 1 --no-progress --out {out}".split()

    def full(self, directory):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(directory))

    with monkeypatch.context() as m:
        m.setattr(PatchPool, "save", full)
        assert cli.main(argv) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("\n") == 1, err
    assert f"no space left on the device while writing the patch pool ({out / 'pool'})" in err
    assert "the 0 committed shard(s) there are safe" in err and "run the same command again" in err
    assert cli.main(argv) == 0
    assert "8 samples in 1 shards" in capsys.readouterr().out
