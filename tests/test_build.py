"""End-to-end builds: readers, reproducibility, kill + resume, bad input, refusal of a changed build."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from s2pdata.build import BuildRefused, run_build
from s2pdata.build.cli import main
from s2pdata.build.plan import pool_plan
from s2pdata.data import open_shards
from s2pdata.pool import PatchPool
from s2pdata.sources.demo import DemoSource
from s2pdata.synth import SynthConfig

from .badfiles import write_bad_folder
from .fakes import CrashingSource

CFG = SynthConfig(size=96)
FIELDS = {"color.jpg", "sketch.png", "hint.png", "regions.png", "draft0.jpg", "json"}


def tar_digests(out: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(out.glob("shard-*.tar"))}


@pytest.fixture(scope="module")
def demo_build(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("demo")
    run_build(src="demo:10", out=out, cfg=CFG, seed=3, shard_size=4, workers=1, progress=False)
    return out


@pytest.mark.slow
def test_manifest_and_samples(demo_build):
    manifest = json.loads((demo_build / "dataset.json").read_text())
    assert manifest["status"] == "complete"
    assert manifest["totals"]["samples"] == 10 and manifest["totals"]["shards"] == 3
    assert manifest["fields"] == ["color.jpg", "sketch.png", "hint.png", "regions.png", "draft0.jpg", "json"]
    pool = PatchPool.load(demo_build / "pool", verify=True)
    assert manifest["pool"]["sha256"] == pool.sha256 and len(pool) == manifest["pool"]["size"] > 0
    assert set(manifest["versions"]) >= {"numpy", "opencv", "numba", "s2pdata"}
    samples = list(open_shards(demo_build))
    assert [s["__key__"] for s in samples] == sorted(s["__key__"] for s in samples)
    for s in samples:
        h, w = s["color"].shape[:2]
        assert min(h, w) == 96 and s["color"].dtype == np.uint8
        assert s["sketch"].shape == (h, w) and s["hint"].shape == (h, w, 4)
        # lossless labels, readable by OpenCV alone, covering the image with 1..count
        assert s["regions"].dtype == np.int32 and s["regions"].shape == (h, w)
        assert s["regions"].min() == 1 and s["regions"].max() == s["json"]["regions"]["count"]
        assert s["draft0"].shape == (h, w, 3) and s["json"]["drafts"][0]["pool"]["sha256"] == pool.sha256
        assert "." not in s["__key__"] and s["json"]["key"] == s["__key__"]
        assert s["json"]["sketch"]["method"] in ("xdog", "dilate", "highpass")
        assert len(s["json"]["source"]["sha256"]) == 64
        # the hint map's alpha is exactly the union of the hints' squares
        l = s["json"]["hint_radius"]
        mask = np.zeros((h, w), bool)
        for p in json.loads(s["json"]["hints"]):
            mask[max(p["row"] - l, 0) : p["row"] + l + 1, max(p["col"] - l, 0) : p["col"] + l + 1] = True
        assert np.array_equal(s["hint"][..., 3] > 0, mask)


def json_paths(x, path=""):
    """{path: type name} of a json value; lists contribute their first element's paths."""
    if isinstance(x, dict):
        return {k: v for key, val in x.items() for k, v in json_paths(val, f"{path}.{key}").items()}
    if isinstance(x, list):
        return {path: "list", **(json_paths(x[0], path + "[]") if x else {})}
    return {path: type(x).__name__}


@pytest.mark.slow
def test_json_schema_is_the_same_for_every_sample(tmp_path):
    """Hugging Face infers one schema from the first samples: keys and types must never vary."""
    cfg = SynthConfig(size=96, sketch_style="mix", fields=("flat", "colordomain", "reference"))
    run_build(src="demo:24", out=tmp_path, cfg=cfg, seed=1, shard_size=24, progress=False)
    samples = list(open_shards(tmp_path))
    assert {s["json"]["sketch"]["style"] for s in samples} == {"rough", "clean"}
    schemas = [json_paths(s["json"]) for s in samples]
    full = max(schemas, key=len)
    assert all(schema == full for schema in schemas)
    # and Hugging Face reads a build with every optional field
    datasets = pytest.importorskip("datasets")
    files = [str(p) for p in sorted(tmp_path.glob("shard-*.tar"))]
    ds = datasets.load_dataset("webdataset", data_files={"train": files}, split="train", cache_dir=str(tmp_path / "hf"))
    assert len(ds) == 24 and {"flat.png", "colordomain.png", "reference.jpg"} <= set(ds.column_names)


@pytest.mark.slow
def test_plain_webdataset_reads_every_sample(demo_build):
    import webdataset as wds

    urls = [str(p) for p in sorted(demo_build.glob("shard-*.tar"))]
    rows = list(wds.WebDataset(urls, shardshuffle=False, empty_check=False))
    assert len(rows) == 10
    for row in rows:
        assert FIELDS <= set(row) and isinstance(row["color.jpg"], bytes)
        json.loads(row["json"])


@pytest.mark.slow
def test_huggingface_webdataset_reads_every_sample(demo_build, tmp_path, monkeypatch):
    datasets = pytest.importorskip("datasets")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    files = [str(p) for p in sorted(demo_build.glob("shard-*.tar"))]
    ds = datasets.load_dataset("webdataset", data_files={"train": files}, split="train", cache_dir=str(tmp_path / "hf"))
    assert len(ds) == 10
    assert FIELDS <= set(ds.column_names)
    row = ds[0]
    assert row["sketch.png"].size[::-1] == row["color.jpg"].size[::-1]


@pytest.mark.slow
def test_wids_reads_the_shard_index(demo_build):
    wids = pytest.importorskip("wids")
    ds = wids.ShardListDataset(str(demo_build / "shardindex.json"))
    assert len(ds) == 10
    sample = ds[7]
    assert {"." + f for f in FIELDS} <= set(sample)


@pytest.mark.slow
def test_same_seed_same_bytes_for_any_worker_count(demo_build, tmp_path):
    out = tmp_path / "w2"
    run_build(src="demo:10", out=out, cfg=CFG, seed=3, shard_size=4, workers=2, progress=False)
    assert tar_digests(out) == tar_digests(demo_build)
    other = tmp_path / "seed4"
    run_build(src="demo:10", out=other, cfg=CFG, seed=4, shard_size=4, workers=1, progress=False)
    assert tar_digests(other) != tar_digests(demo_build)


def list_digest(out: Path) -> str:
    """sha256 of what ``sha256sum shard-*.tar`` prints in ``out``: one digest for a whole build."""
    return hashlib.sha256("".join(f"{d}  {n}\n" for n, d in tar_digests(out).items()).encode()).hexdigest()


@pytest.mark.slow
@pytest.mark.pinned_bytes
def test_demo_build_keeps_its_recorded_bytes(demo_build):
    # recorded under constraints.txt (OpenCV 5.0.0.93, Pillow 13.0.0, numpy 2.4.6, Numba 0.68.1, zlib-ng 1.1.0);
    # the README's demo:64 --seed 1 build hashes to dcb8b528... there
    assert list_digest(demo_build) == "0656fea9e5bcfe806d65a2c6f5f0bed9c03bd297daf9da0bf347083ecde3c552"


@pytest.mark.slow
def test_resume_skips_committed_and_refuses_changed_config(demo_build, tmp_path, capsys):
    manifest = run_build(src="demo:10", out=demo_build, cfg=CFG, seed=3, shard_size=4, workers=1, progress=False)
    assert manifest["totals"]["built_this_run"] == 0
    with pytest.raises(BuildRefused, match="size"):
        run_build(src="demo:10", out=demo_build, cfg=SynthConfig(size=64), seed=3, shard_size=4, progress=False)
    rc = main(f"--src demo:10 --out {demo_build} --seed 9 --shard-size 4 --size 96 --no-progress --workers 1".split())
    assert rc == 2 and "--overwrite" in capsys.readouterr().err
    out = tmp_path / "copy"
    run_build(src="demo:10", out=out, cfg=CFG, seed=3, shard_size=4, progress=False)
    run_build(src="demo:10", out=out, cfg=SynthConfig(size=64), seed=3, shard_size=4, progress=False, overwrite=True)
    assert min(next(open_shards(out))["color"].shape[:2]) == 64


@pytest.mark.slow
def test_a_damaged_pool_is_rebuilt_on_resume(demo_build, tmp_path):
    out = tmp_path / "damaged"
    run_build(src="demo:10", out=out, cfg=CFG, seed=3, shard_size=4, workers=2, progress=False)
    for name in ("shard-000001.tar", "shard-000001.stats.json"):
        (out / name).unlink()
    npys = sorted((out / "pool").glob("patch_pool-*.npy"))
    assert npys and not (out / "pool" / "parts").exists()  # parts were moved into the pool, then cleared
    npys[-1].unlink()
    manifest = run_build(src="demo:10", out=out, cfg=CFG, seed=3, shard_size=4, workers=1, progress=False)
    assert manifest["totals"]["built_this_run"] == 1
    assert manifest["pool"]["sha256"] == PatchPool.load(out / "pool", verify=True).sha256
    assert tar_digests(out) == tar_digests(demo_build)


@pytest.mark.slow
def test_sigkill_then_rerun_gives_the_uninterrupted_bytes(tmp_path):
    ref = tmp_path / "ref"
    run_build(src="demo:24", out=ref, cfg=CFG, seed=3, shard_size=2, workers=1, progress=False)
    out = tmp_path / "killed"
    flags = f"--src demo:24 --out {out} --seed 3 --shard-size 2 --size 96 --workers 1 --no-progress"
    cmd = [sys.executable, "-m", "s2pdata.build", *flags.split()]
    proc = subprocess.Popen(cmd)
    deadline = time.monotonic() + 120
    while not (out / "shard-000000.stats.json").exists():
        assert proc.poll() is None and time.monotonic() < deadline, "build ended before the first commit"
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "shard-000011.stats.json").exists(), "the kill landed after the build finished"
    subprocess.run(cmd, check=True)
    assert not list(out.glob("*.tmp"))
    assert tar_digests(out) == tar_digests(ref)
    assert json.loads((out / "dataset.json").read_text())["status"] == "complete"


@pytest.mark.slow
def test_bad_files_are_reported_and_good_ones_kept(tmp_path):
    src = tmp_path / "src"
    expected = write_bad_folder(src)
    out = tmp_path / "out"
    rc = main(
        ["--src", str(src), "--out", str(out), "--size", "64", "--shard-size", "3", "--workers", "2", "--no-progress"]
    )
    assert rc == 0
    from s2pdata.sources import FolderSource

    keys = {it.locator: it.key for it in FolderSource(str(src)).items()}
    suffixes = tuple(FolderSource(str(src)).exts)
    expected = {p: r for p, r in expected.items() if p.lower().endswith(suffixes)}
    good = {keys[p] for p, reason in expected.items() if reason is None}
    bad = {keys[p]: reason for p, reason in expected.items() if reason is not None}
    assert {s["__key__"] for s in open_shards(out)} == good
    rejects = [json.loads(line) for line in (out / "rejects.jsonl").read_text().splitlines()]
    assert {r["key"]: r["reason"] for r in rejects} == bad
    totals = json.loads((out / "dataset.json").read_text())["totals"]
    assert totals["rejected"] == len(bad) and totals["samples"] == len(good)
    assert sum(totals["reasons"].values()) == len(bad)


@pytest.mark.slow
def test_a_file_that_kills_its_worker_is_rejected_and_the_build_finishes(tmp_path):
    items = DemoSource(12).items()
    killer = pool_plan(items, 3, CFG.pool_size)[0][0].key  # dies in the pool pre-pass first, then is
    out = tmp_path / "crash"  # kept out of the shard phase up front
    manifest = run_build(
        src=CrashingSource(n=12, crash_key=killer), out=out, cfg=CFG, seed=3, shard_size=4, workers=2, progress=False
    )
    t = manifest["totals"]
    assert t["samples"] == 11 and t["rejected"] == 1 and t["reasons"] == {"worker-crashed": 1}
    (reject,) = [json.loads(line) for line in (out / "rejects.jsonl").read_text().splitlines()]
    assert reject["key"] == killer and reject["reason"] == "worker-crashed"
    ref = tmp_path / "ref"
    run_build(src=DemoSource(12), out=ref, cfg=CFG, seed=3, shard_size=4, workers=1, progress=False)
    colors = {s["__key__"]: s["color"].tobytes() for s in open_shards(out)}
    assert colors == {s["__key__"]: s["color"].tobytes() for s in open_shards(ref) if s["__key__"] != killer}
    assert not list(out.glob("*.tmp"))


@pytest.mark.slow
def test_a_source_folder_that_changed_is_refused_on_resume(tmp_path):
    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    import cv2

    from .badfiles import picture

    for i in range(3):
        cv2.imwrite(str(src / f"p{i}.png"), picture(48, 64, seed=i))
    run_build(src=str(src), out=out, cfg=CFG, progress=False)
    cv2.imwrite(str(src / "p1.png"), picture(48, 64, seed=99))  # same names, new content
    with pytest.raises(BuildRefused, match="source"):
        run_build(src=str(src), out=out, cfg=CFG, progress=False)


@pytest.mark.slow
def test_a_resume_under_other_library_versions_is_refused(demo_build, tmp_path, capsys):
    out = tmp_path / "upgraded"
    run_build(src="demo:10", out=out, cfg=CFG, seed=3, shard_size=4, workers=1, progress=False)
    manifest = json.loads((out / "dataset.json").read_text())
    assert {"s2pdata", "numpy", "opencv", "numba", "pillow", "zlib-ng"} <= set(manifest["versions"])
    (out / "shard-000001.stats.json").unlink()  # a killed build: one shard left to do
    recorded = manifest["versions"]["opencv"]
    manifest["versions"]["opencv"] = "4.0.0"  # as if OpenCV was upgraded since the folder was made
    (out / "dataset.json").write_text(json.dumps(manifest))
    rc = main(f"--src demo:10 --out {out} --seed 3 --shard-size 4 --size 96 --no-progress --workers 1".split())
    err = capsys.readouterr().err
    assert rc == 2 and f"opencv: folder has 4.0.0, this run has {recorded}" in err
    assert "--overwrite" in err and "constraints.txt" in err and len(err.strip().splitlines()) == 3
    assert not (out / "shard-000001.stats.json").exists()  # nothing was built or touched
    manifest["versions"]["python"] = "2.7.18"  # Python is recorded, not compared
    manifest["versions"]["opencv"] = recorded
    (out / "dataset.json").write_text(json.dumps(manifest))
    assert main(f"--src demo:10 --out {out} --seed 3 --shard-size 4 --size 96 --no-progress --workers 1".split()) == 0
    assert tar_digests(out) == tar_digests(demo_build)


@pytest.mark.slow
def test_hostile_tar_members_are_logged_and_nothing_escapes(tmp_path):
    from .fakes import write_archive, write_hostile_tar

    src, out = tmp_path / "archive", tmp_path / "work" / "out"
    write_archive(src, {1: "png", 2: "jpg"})
    expected = write_hostile_tar(src / "data-0001.tar")
    before = {p for p in tmp_path.rglob("*")}
    assert main(["--src", str(src), "--out", str(out), "--size", "48", "--workers", "1", "--no-progress"]) == 0
    written = {p for p in tmp_path.rglob("*")} - before
    assert all(out in p.parents or p == out or p == out.parent for p in written)  # nothing outside --out
    assert not (tmp_path / "evil.png").exists() and not Path("/abs.png").exists()
    keys = [s["__key__"] for s in open_shards(out)]
    assert keys == ["danbooru-0000000001", "danbooru-0000000002", "danbooru-0000000011", "danbooru-0000000012"]
    rejects = [json.loads(line) for line in (out / "rejects.jsonl").read_text().splitlines()]
    logged = {r["path"].split(":", 1)[1]: r["reason"] for r in rejects}
    assert logged == expected


@pytest.mark.slow
def test_a_cold_kernel_cache_is_announced_once(tmp_path, capsys, monkeypatch):
    import s2pdata.build as build

    cfg = SynthConfig(size=48, drafts=0)
    monkeypatch.setattr(build, "kernel_cache_is_cold", lambda: True)
    run_build(src="demo:2", out=tmp_path / "cold", cfg=cfg, progress=True)
    assert capsys.readouterr().err.count(build.KERNELS_NOTICE) == 1
    run_build(src="demo:2", out=tmp_path / "quiet", cfg=cfg, progress=False)
    assert build.KERNELS_NOTICE not in capsys.readouterr().err
    monkeypatch.setattr(build, "kernel_cache_is_cold", lambda: False)
    run_build(src="demo:2", out=tmp_path / "warm", cfg=cfg, progress=True)
    assert build.KERNELS_NOTICE not in capsys.readouterr().err


def test_the_kernel_cache_check_tells_an_empty_cache_from_a_warm_one(tmp_path):
    """In a fresh process, as a build's parent runs it; this session's warm-up filled the usual cache."""
    code = "from s2pdata._jit import kernel_cache_is_cold; print(kernel_cache_is_cold())"

    def cold(env):
        return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout

    assert cold({**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "empty")}).strip() == "True"
    assert cold(dict(os.environ)).strip() == "False"


@pytest.mark.parametrize(
    "kwargs,name",
    [
        ({"workers": 0}, "workers"),
        ({"shard_size": True}, "shard_size"),
        ({"limit": -1}, "limit"),
        ({"distributor": "spark"}, "distributor"),
    ],
)
def test_bad_arguments_are_refused_before_anything_is_written(tmp_path, kwargs, name):
    with pytest.raises(ValueError, match=f"^{name} must be"):
        run_build(src="demo:2", out=tmp_path / "o", cfg=CFG, progress=False, **kwargs)
    assert not (tmp_path / "o").exists()
