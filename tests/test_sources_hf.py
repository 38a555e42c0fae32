"""Hugging Face sources: local imagefolder, parquet of embedded bytes and webdataset, decoding off,
offline; the bad-input set read as bytes and rejected by the decode stage."""

from __future__ import annotations

import argparse
import pickle
from pathlib import Path

import pytest

pytest.importorskip("datasets")

from s2pdata.decode import DecodeError, decode_image  # noqa: E402
from s2pdata.sources import add_source_arguments, source_from_args  # noqa: E402
from s2pdata.sources.hf import probe_builder  # noqa: E402

from . import fakes  # noqa: E402
from .badfiles import write_bad_folder  # noqa: E402


def hf_source(path: Path, out: Path, *argv: str):
    p = argparse.ArgumentParser()
    add_source_arguments(p)
    return source_from_args(f"hf:{path}", p.parse_args(list(argv)), seed=0, out=out)


@pytest.fixture(scope="module")
def bad(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad")
    expected = write_bad_folder(root / "imgs")
    blobs = {rel: (root / "imgs" / rel).read_bytes() for rel in expected}
    return root, expected, blobs


def _reasons(src) -> dict:
    got = {}
    for it in src.items():
        name = Path(it.meta["path"]).as_posix()
        try:
            decode_image(src.read(it))
            got[name] = None
        except DecodeError as exc:
            got[name] = exc.reason
    return got


def test_imagefolder_bad_set(bad, tmp_path):
    root, expected, _ = bad
    src = hf_source(root / "imgs", tmp_path / "out", "--ext", "jpg,png,webp,gif")
    assert probe_builder(root / "imgs") == "imagefolder"
    got = {str(Path(k).relative_to(root / "imgs").as_posix()): v for k, v in _reasons(src).items()}
    assert got == expected
    assert all(it.key.startswith("hf-") and "." not in it.key for it in src.items())
    assert "imagefolder" in src.summary() and "decode off" in src.summary()


def test_parquet_embedded_bytes_bad_set(bad, tmp_path):
    _, expected, blobs = bad
    path = fakes.write_hf_parquet(tmp_path / "pq" / "train-00000.parquet", blobs)
    src = hf_source(path.parent, tmp_path / "out", "--ext", "jpg,png,webp,gif")
    assert probe_builder(path.parent) == "parquet"
    assert _reasons(src) == expected
    # bytes come back exactly as stored, also after the source travelled to a worker
    clone = pickle.loads(pickle.dumps(src))
    for it in src.items()[:3]:
        assert clone.read(it) == blobs[it.meta["path"]]


def test_webdataset_and_filters(tmp_path):
    blobs = {f"p{i}": fakes.png(i) for i in range(4)}
    blobs["p4"] = blobs["p0"]  # an exact duplicate
    root = fakes.write_hf_webdataset(tmp_path / "wds", blobs)
    assert probe_builder(root) == "webdataset"
    src = hf_source(root, tmp_path / "out")
    its = src.items()
    assert len(its) == 5 and [src.read(it) for it in its] == [blobs[k] for k in sorted(blobs)]
    dedup = hf_source(root, tmp_path / "out", "--dedup", "sha256")
    assert len(dedup.items()) == 4 and "dedup 1" in dedup.summary()
    assert dedup.spec()["listing"]["count"] == 5 and dedup.spec()["filters"]["dedup"] == "sha256"
    with pytest.raises(ValueError, match="--rating"):
        hf_source(root, tmp_path / "out", "--rating", "general").items()
