"""Builds into object storage (``--out s3://...``) against a real S3 server (SeaweedFS, tests/s3server.py).

The promise: the same tars, byte for byte, as the same build into a local folder; a resume that
checks the store; one build per prefix; a store that goes away mid-build stops the build with one
line, and the same command finishes it once the store is back; no credential in any output.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .s3server import BUCKET, SECRET, S3Server

FLAGS = ["--seed", "1", "--size", "64", "--shard-size", "2", "--pool-size", "64"]


def _build(out, options: dict | None, *extra, src="demo:8", staging: Path, cwd: Path | None = None, wait=True):
    """The build CLI in a child process (the S3 settings only through --storage-options)."""
    cmd = [sys.executable, "-m", "s2pdata.build", "--no-progress", "--workers", "1", "--src", src, *FLAGS]
    cmd += ["--out", str(out), *extra]
    if options is not None:
        cmd += ["--storage-options", json.dumps(options)]
    env = {**os.environ, "S2PDATA_STAGING": str(staging)}
    if not wait:
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=cwd)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=cwd)


def _tars(fs, prefix: str) -> dict[str, str]:
    """Name -> sha256 of every shard tar under ``prefix`` on the store."""
    fs.invalidate_cache()
    return {
        Path(p).name: hashlib.sha256(fs.cat_file(p)).hexdigest()
        for p in sorted(fs.find(prefix))
        if p.endswith(".tar") and Path(p).name.startswith("shard-")
    }


def _local_tars(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob("shard-*.tar"))}


@pytest.fixture(scope="module")
def local_ref(tmp_path_factory):
    """The same build into a local folder: the bytes every S3 build must equal."""
    out = tmp_path_factory.mktemp("ref") / "run"
    run = _build(out, None, staging=out.parent / "staging")
    assert run.returncode == 0, run.stderr
    return out


@pytest.fixture(scope="module")
def s3_run(s3_server, local_ref, tmp_path_factory):
    """``(url, staging, CompletedProcess)`` of the demo build into the session's S3 server."""
    url = f"s3://{BUCKET}/build-remote/run"
    staging = tmp_path_factory.mktemp("staging")
    run = _build(url, s3_server.options, "--workers", "2", staging=staging)
    assert run.returncode == 0, run.stderr
    return url, staging, run


def test_build_to_s3_writes_the_local_bytes(s3_server, s3_run, local_ref):
    url, _, run = s3_run
    fs = s3_server.fs()
    prefix = url.removeprefix("s3://")
    here = _local_tars(local_ref)
    assert len(here) == 4 and _tars(fs, prefix) == here
    names = {Path(p).name for p in fs.find(prefix)}
    assert {"dataset.json", "shardindex.json", "rejects.jsonl", "patch_pool.json"} <= names
    assert ".s2pdata.lock" not in names  # released at the end
    manifest = json.loads(fs.cat_file(f"{prefix}/dataset.json"))
    assert manifest["status"] == "complete" and manifest["totals"]["samples"] == 8
    assert manifest["pool"]["sha256"] == json.loads((local_ref / "dataset.json").read_text())["pool"]["sha256"]
    index = json.loads(fs.cat_file(f"{prefix}/shardindex.json"))
    assert index == json.loads((local_ref / "shardindex.json").read_text())
    assert f"-> {url};" in run.stdout


def test_a_resume_on_s3_rebuilds_what_is_missing_or_damaged(s3_server, s3_run, local_ref):
    url, staging, _ = s3_run
    fs = s3_server.fs()
    prefix = url.removeprefix("s3://")
    fs.rm_file(f"{prefix}/shard-000001.stats.json")  # never committed
    tar = bytearray(fs.cat_file(f"{prefix}/shard-000002.tar"))
    tar[2000] ^= 0xFF  # a flipped bit: same size, another sha256
    fs.pipe_file(f"{prefix}/shard-000002.tar", bytes(tar))
    run = _build(url, s3_server.options, staging=staging)
    assert run.returncode == 0, run.stderr
    assert "2 shards built" in run.stdout and "shard-000002.tar (sha256 mismatch)" in run.stdout
    assert _tars(fs, prefix) == _local_tars(local_ref)


def test_inspect_verify_on_s3_names_a_damaged_shard(s3_server, s3_run, local_ref, tmp_path):
    url, staging, _ = s3_run
    fs = s3_server.fs()
    prefix = url.removeprefix("s3://")
    good = fs.cat_file(f"{prefix}/shard-000003.tar")
    cmd = [sys.executable, "-m", "s2pdata.inspect", url, "--verify", "--storage-options", json.dumps(s3_server.options)]
    ok = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    bad = bytearray(good)
    bad[1500] ^= 0x01
    fs.pipe_file(f"{prefix}/shard-000003.tar", bytes(bad))
    try:
        run = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path)
        assert run.returncode != 0 and "shard-000003.tar" in run.stdout + run.stderr
        assert "sha256" in run.stdout + run.stderr
    finally:
        fs.pipe_file(f"{prefix}/shard-000003.tar", good)
    assert _tars(fs, prefix) == _local_tars(local_ref)


def test_a_second_build_into_a_busy_prefix_is_refused(s3_server, tmp_path):
    """A live holder's lock object refuses the build (exit 2, naming it); one of a dead process is taken over."""
    url = f"s3://{BUCKET}/build-remote/busy"
    fs = s3_server.fs()
    lock = f"{BUCKET}/build-remote/busy/.s2pdata.lock"
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        import socket

        body = {"pid": holder.pid, "host": socket.gethostname(), "since": "now", "token": "t"}
        fs.pipe_file(lock, json.dumps(body).encode())
        run = _build(url, s3_server.options, staging=tmp_path / "staging", cwd=tmp_path)
        lines = run.stderr.strip().splitlines()
        assert run.returncode == 2 and len(lines) == 1, run.stderr
        assert "in use by another build" in lines[0] and f"pid {holder.pid}" in lines[0]
        fs.invalidate_cache()
        assert [Path(p).name for p in fs.find(f"{BUCKET}/build-remote/busy")] == [".s2pdata.lock"]
    finally:
        holder.kill()
        holder.wait()
    run = _build(url, s3_server.options, staging=tmp_path / "staging", cwd=tmp_path)  # the holder is gone
    assert run.returncode == 0, run.stderr
    fs.invalidate_cache()
    assert not fs.exists(lock)


def test_two_builds_started_together_one_is_refused(s3_server, tmp_path):
    url = f"s3://{BUCKET}/build-remote/race"
    runs = [_build(url, s3_server.options, staging=tmp_path / f"s{i}", cwd=tmp_path, wait=False) for i in range(2)]
    results = [(p.wait(timeout=300), p.communicate()) for p in runs]
    codes = sorted(code for code, _ in results)
    assert codes in ([0, 2], [0, 0]), results
    if codes == [0, 0]:  # the second started after the first finished: both complete, nothing mixed
        pytest.skip("the two builds did not overlap on this machine")
    refused = next(err for code, (_, err) in results if code == 2)
    assert "in use by another build" in refused


def test_unknown_scheme_writes_nothing(tmp_path):
    run = _build("nosuch://bucket/x", None, staging=tmp_path / "staging", cwd=tmp_path)
    lines = run.stderr.strip().splitlines()
    assert run.returncode == 2 and len(lines) == 1 and "nosuch" in lines[0], run.stderr
    assert list(tmp_path.iterdir()) == []  # no local folder named 'nosuch:', no staging folder


def test_no_credential_in_any_output(s3_server, s3_run):
    url, staging, run = s3_run
    fs = s3_server.fs()
    prefix = url.removeprefix("s3://")
    assert SECRET not in run.stdout + run.stderr
    for p in fs.find(prefix):
        if p.endswith((".json", ".jsonl")):
            assert SECRET.encode() not in fs.cat_file(p), p
    for p in Path(staging).rglob("*"):
        if p.is_file():
            assert SECRET.encode() not in p.read_bytes(), p
    for p in fs.find(prefix):
        if p.endswith(".tar"):
            assert SECRET.encode() not in fs.cat_file(p)  # the sample json members included


@pytest.fixture
def own_server():
    server = S3Server()
    try:
        yield server.start()
    finally:
        server.close()


def test_the_store_stopping_mid_build_stops_it_and_the_same_command_finishes(own_server, local_ref, tmp_path):
    url = f"s3://{BUCKET}/stopped/run"
    fs = own_server.fs()
    options = {**own_server.options, "config_kwargs": {"retries": {"max_attempts": 2}, "connect_timeout": 2}}
    proc = _build(url, options, staging=tmp_path / "staging", cwd=tmp_path, wait=False)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        fs.invalidate_cache()
        if fs.exists(f"{BUCKET}/stopped/run/shard-000000.stats.json"):
            break
        time.sleep(0.05)
    own_server.stop()
    out, err = proc.communicate(timeout=300)
    if proc.returncode == 0:
        pytest.skip("the build finished before the server stopped")
    lines = err.strip().splitlines()
    assert proc.returncode == 1 and len(lines) == 1 and "Traceback" not in err, err
    assert "run the same command again" in lines[0] and SECRET not in err
    own_server.start()
    run = _build(url, options, staging=tmp_path / "staging", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert _tars(own_server.fs(), f"{BUCKET}/stopped/run") == _local_tars(local_ref)


def test_a_folder_source_on_s3_built_into_s3_gives_the_local_bytes(s3_server, tmp_path):
    """``--src s3://.../folder --out s3://...`` from the command line: the tars of the same folder built locally."""
    from .remote_fakes import write_plain

    folder = write_plain(tmp_path / "pictures")
    src = s3_server.upload(folder, f"s3://{BUCKET}/build-remote/pictures")
    here = _build(tmp_path / "local", None, "--drafts", "1", src=str(folder), staging=tmp_path / "s0", cwd=tmp_path)
    assert here.returncode == 0, here.stderr
    url = f"s3://{BUCKET}/build-remote/from-folder"
    there = _build(url, s3_server.options, "--drafts", "1", src=src, staging=tmp_path / "s1", cwd=tmp_path)
    assert there.returncode == 0, there.stderr
    assert _tars(s3_server.fs(), url.removeprefix("s3://")) == _local_tars(tmp_path / "local")
    assert len(_local_tars(tmp_path / "local")) == 3  # five pictures (the text and hidden files are not)


def test_a_missing_extra_is_named_and_nothing_is_written(tmp_path):
    """Without s3fs (blocked in the child), ``--out s3://`` is one line naming the extra; no folder appears."""
    code = (
        "import sys; sys.modules['s3fs'] = None\n"
        "from s2pdata.build.cli import main\n"
        f"sys.exit(main(['--src', 'demo:2', '--out', 's3://{BUCKET}/x', '--no-progress']))\n"
    )
    env = {**os.environ, "S2PDATA_STAGING": str(tmp_path / "staging")}
    run = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env
    )
    lines = run.stderr.strip().splitlines()
    assert run.returncode == 2 and len(lines) == 1, run.stderr
    assert 'pip install "s2pdata[s3]"' in lines[0]
    assert list(tmp_path.iterdir()) == []


def test_overwrite_lists_a_source_url_anew(s3_server, tmp_path):
    """The listing of a folder URL is cached in the build folder (a resume lists nothing); an object
    added later is seen by --overwrite, which drops the cached listings."""
    from .remote_fakes import noisy_png

    fs = s3_server.fs()
    prefix = f"{BUCKET}/build-remote/growing"
    for i in range(3):
        fs.pipe_file(f"{prefix}/p{i}.png", noisy_png(i))
    src = f"s3://{prefix}"
    out = tmp_path / "out"

    def build(*extra):
        run = _build(out, s3_server.options, "--drafts", "0", *extra, src=src, staging=tmp_path / "s", cwd=tmp_path)
        assert run.returncode == 0, run.stderr
        return json.loads((out / "dataset.json").read_text())["totals"]["samples"]

    assert build() == 3
    fs.pipe_file(f"{prefix}/p3.png", noisy_png(3))
    assert build() == 3  # resumed from the cached listing: the new object is not seen
    assert build("--overwrite") == 4


def test_a_cache_file_rewritten_at_the_same_size_is_published(s3_server, tmp_path):
    """The staging folder's caches go to the store when this run wrote them, not only when the size differs."""
    from s2pdata.build.remote import RemoteOut

    url = f"s3://{BUCKET}/build-remote/caches"
    remote = RemoteOut(url, s3_server.options, staging=tmp_path / "staging")
    remote.pull(overwrite=True)
    cache = tmp_path / "staging" / ".s2pdata-cache" / "listings"
    cache.mkdir(parents=True)
    (cache / "a.json").write_bytes(b'{"n": 1}')
    remote.publish_tree(".s2pdata-cache")
    (cache / "a.json").write_bytes(b'{"n": 2}')  # same size, other content
    remote.publish_tree(".s2pdata-cache")
    assert s3_server.fs().cat_file(f"{BUCKET}/build-remote/caches/.s2pdata-cache/listings/a.json") == b'{"n": 2}'


def test_a_failed_background_pool_upload_stops_the_build(s3_server, local_ref, tmp_path, monkeypatch):
    """The patch pool is uploaded while the shards build: an upload that fails stops the build (one
    StorageError, as BuildStopped) once the shards are done, the lock object is released, and the
    same build run again publishes the pool and gives the local bytes."""
    from s2pdata import storage
    from s2pdata.build import BuildStopped, run_build
    from s2pdata.synth import SynthConfig

    url = f"s3://{BUCKET}/build-remote/pool-upload"
    upload = storage.upload

    def failing(source, path, storage_options=None):
        if "/pool/" in str(path):
            raise storage.StorageError(f"path {path!r}: the store refused the upload (test)")
        return upload(source, path, storage_options)

    kw = dict(src="demo:8", out=url, cfg=SynthConfig(size=64, pool_size=64), seed=1, shard_size=2)
    kw.update(workers=1, progress=False, storage_options=s3_server.options, staging=tmp_path / "staging")
    monkeypatch.setattr(storage, "upload", failing)
    with pytest.raises(BuildStopped, match="refused the upload"):
        run_build(**kw)
    fs = s3_server.fs()
    fs.invalidate_cache()
    assert not fs.exists(f"{BUCKET}/build-remote/pool-upload/.s2pdata.lock")
    assert not fs.exists(f"{BUCKET}/build-remote/pool-upload/pool")
    monkeypatch.setattr(storage, "upload", upload)
    manifest = run_build(**kw)
    assert manifest["status"] == "complete"
    fs.invalidate_cache()
    assert fs.find(f"{BUCKET}/build-remote/pool-upload/pool")
    assert _tars(fs, f"{BUCKET}/build-remote/pool-upload") == _local_tars(local_ref)
