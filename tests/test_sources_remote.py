"""Sources on object storage (the SeaweedFS server of ``tests/s3server.py``): a folder, gwern and
danbooru2023 layouts, metadata and the opt-out list read from ``s3://`` give the items, keys,
order, skips and bytes of the same files on disk; tars are indexed by ranged reads of their
headers and each member is one ranged read; a folder is listed once per build folder; hostile
objects are rejects; no credential reaches a spec, a summary or a reject."""

from __future__ import annotations

import argparse
import json
import pickle

import pytest

from s2pdata import storage
from s2pdata._safeio import ReadRefused
from s2pdata.sources import (
    FilterConfig,
    FilteredSource,
    FolderSource,
    add_source_arguments,
    describe_empty,
    folder,
    remote,
    source_from_args,
)
from s2pdata.sources.archive import index_tar

from . import fakes, remote_fakes
from .s3server import BUCKET, SECRET
from .test_sources import posts

PREFIX = f"s3://{BUCKET}/sources-remote"
IDS = {1: "png", 2: "png", 3: "jpg", 1001: "png", 2002: "png", 4: "png", 3003: "gif"}


def parse(*argv: str, options=None) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    add_source_arguments(p)
    args = p.parse_args(list(argv))
    args.storage_options = options
    return args


def member_data() -> dict[int, bytes]:
    """Members of about 48 KiB (noise PNGs of 128 px): a tar header is a small part of each."""
    return {i: remote_fakes.noisy_png(i, 128) if ext == "png" else fakes.jpg(i, 128, 128) for i, ext in IDS.items()}


@pytest.fixture(scope="module")
def trees(tmp_path_factory, s3_server):
    """Local trees and their copies under ``PREFIX``: {name: (local folder, URL)}."""
    base = tmp_path_factory.mktemp("trees")
    plain = remote_fakes.write_plain(base / "plain")
    arch = base / "arch"
    fakes.write_archive(arch, IDS, per_tar=3, data=member_data())
    expect_hostile = fakes.write_hostile_tar(arch / "data-0009.tar")
    good = (arch / "data-0000.tar").read_bytes()
    (arch / "images").mkdir()
    (arch / "images" / "cut.tar").write_bytes(good[: 512 + 4000])  # a tar cut inside its first member
    fakes.write_posts_targz(arch / "posts.tar.gz", posts("old"))
    gwern = base / "gwern"
    fakes.write_gwern(gwern, {i: e for i, e in IDS.items() if e != "gif"})
    fakes.write_jsonl(gwern / "metadata" / "posts000000000000.json", posts("new"))
    extra = base / "extra"
    fakes.write_parquet(extra / "posts.parquet", posts("new"))
    (extra / "opt-out.txt").write_text("# removed on request\nbob\n1001\n")
    out = {}
    for name, root in (("plain", plain), ("arch", arch), ("gwern", gwern), ("extra", extra)):
        out[name] = (root, s3_server.upload(root, f"{PREFIX}/{name}"))
    out["hostile"] = expect_hostile
    return out


def delta(before: dict) -> dict:
    return {k: v - before.get(k, 0) for k, v in storage.REQUESTS.items() if v - before.get(k, 0)}


def no_secret(*texts) -> None:
    for t in texts:
        assert SECRET not in (t if isinstance(t, str) else json.dumps(t, default=str))


# ---------------------------------------------------------------------------------------------
# the same items and bytes as on disk


def test_folder_url_lists_and_reads_as_on_disk(trees, s3):
    root, url = trees["plain"]
    local, far = FolderSource(str(root)), FolderSource(url, storage_options=s3)
    before = dict(storage.REQUESTS)
    items = far.items()
    assert delta(before) == {"list": 1}
    assert items == local.items() and far.skipped == local.skipped
    assert [it.key for it in items] == sorted(it.key for it in items) and len(items) == 6  # hidden .png is a file too
    before = dict(storage.REQUESTS)
    assert [far.read(it) for it in items] == [local.read(it) for it in items]
    assert delta(before) == {"read": len(items)}  # one ranged read per file
    a, b = FilteredSource(local, FilterConfig()).spec(), FilteredSource(far, FilterConfig()).spec()
    assert {k for k in a if a[k] != b[k]} == {"root"} and b["root"] == url
    summary = far.summary()
    assert "requests listing 1 (one recursive listing)" in summary and "plain image folder: s3://" in summary
    clone = pickle.loads(pickle.dumps(far))  # a worker: settings only, reads on its own
    assert "_remote" not in clone.__dict__ and clone.read(items[0]) == local.read(items[0])
    no_secret(repr(far), b, far.summary(), far.skipped)


def test_archive_url_indexes_by_ranged_reads_and_reads_one_range_per_member(trees, s3, tmp_path):
    root, url = trees["arch"]
    every = ("--ext", "png,jpg,gif", "--include-deleted")
    local = source_from_args(str(root), parse(*every), seed=0, out=tmp_path / "local")
    before = dict(storage.REQUESTS)
    far = source_from_args(url, parse(*every, options=s3), seed=0, out=tmp_path / "far")
    items = far.items()
    made = delta(before)
    assert items == local.items() and [it.meta["id"] for it in items] == sorted([*IDS, 11, 12])
    assert far.skipped == local.skipped  # the hostile and the cut tar, reported the same way
    index = far._remote["index"]
    tars = {rel: (root / rel).stat().st_size for rel in far.layout["tars"]}
    n_members = 7 + 9 + 1  # good members, the hostile tar's nine, the cut tar's one header
    assert index.requests <= n_members + 3 * len(tars)  # about one ranged read per member header
    assert index.fetched < sum(tars.values()) / 4  # never a whole tar
    assert made["list"] == 1 and made["read"] >= index.requests
    summary = far.summary()
    assert f"tar indexing {index.requests} ranged reads" in summary and "requests listing 1" in summary
    before = dict(storage.REQUESTS)
    assert [far.read(it) for it in items] == [local.read(it) for it in items]
    assert delta(before) == {"read": len(items)}  # one ranged read per member
    # a resume: listing and tar indexes come from the build folder's cache, no request but the metadata's
    before = dict(storage.REQUESTS)
    again = source_from_args(url, parse(*every, options=s3), seed=0, out=tmp_path / "far")
    assert again.items() == items
    resumed = delta(before)
    # no listing; reads only for the layout probe (the first tar's first members) and the cut tar,
    # whose index is never cached (a damaged tar is indexed again, as locally)
    assert "list" not in resumed and resumed["read"] < made["read"] / 2
    assert "4 indexes from the cache" in again.summary()
    a, b = local.spec(), again.spec()
    assert {k for k in a if a[k] != b[k]} == {"root", "metadata"}
    assert b["metadata"] == [[f"{url}/posts.tar.gz", (root / "posts.tar.gz").stat().st_size]]
    no_secret(b, summary, far.skipped)


def test_gwern_url_with_metadata_and_opt_out_on_s3(trees, s3, tmp_path):
    root, url = trees["gwern"]
    _, extra = trees["extra"]
    for argv in ((), ("--metadata", f"{extra}/posts.parquet"), ("--opt-out", f"{extra}/opt-out.txt")):
        local_argv = [a.replace(extra, str(trees["extra"][0])) for a in argv]
        local = source_from_args(str(root), parse(*local_argv), seed=0, out=tmp_path / "l")
        far = source_from_args(url, parse(*argv, options=s3), seed=0, out=tmp_path / "f")
        assert far.items() == local.items() and far.layout == local.layout == {
            "layout": "gwern",
            "variant": "original",
            "base": "original",
        }
        assert far.items()[0].meta["artist"]  # the metadata was joined
        assert [far.read(it) for it in far.items()] == [local.read(it) for it in local.items()]
        if argv and argv[0] == "--opt-out":
            assert 1001 not in [it.meta["id"] for it in far.items()] and far.filters == local.filters
    small = source_from_args(url, parse("--variant", "512px", options=s3), seed=0, out=tmp_path / "f")
    assert small.items() == source_from_args(str(root), parse("--variant", "512px"), seed=0, out=tmp_path / "l").items()


def test_metadata_url_refusals_are_one_redacted_line(trees, s3, tmp_path):
    root, url = trees["gwern"]
    with pytest.raises(ValueError, match="does not exist"):
        source_from_args(url, parse("--metadata", f"{PREFIX}/nowhere.jsonl", options=s3), seed=0, out=tmp_path)
    with pytest.raises(ValueError, match="holds no objects"):
        source_from_args(f"{PREFIX}/nothing-here", parse(options=s3), seed=0, out=tmp_path)
    with pytest.raises(ValueError, match="cannot be read") as err:
        source_from_args(url, parse("--opt-out", f"{PREFIX}/no-list.txt", options=s3), seed=0, out=tmp_path)
    no_secret(str(err.value))


# ---------------------------------------------------------------------------------------------
# the listing cache


def test_listing_is_made_once_per_build_folder(trees, s3, tmp_path):
    _, url = trees["plain"]
    first = remote.list_folder(url, s3, tmp_path / "listings")
    before = dict(storage.REQUESTS)
    second = remote.list_folder(url + "/", s3, tmp_path / "listings")
    assert delta(before) == {} and second.cached and not first.cached
    assert second.files == first.files and first.requests == 1 and second.requests == 0
    (cached,) = (tmp_path / "listings").glob("list-*.json")
    no_secret(cached.read_text())
    other = remote.list_folder(url, {**s3, "secret": "rotated"}, tmp_path / "listings")  # secrets are not the key
    assert other.cached
    elsewhere = remote.list_folder(url, {**s3, "endpoint_url": s3["endpoint_url"] + "/"}, tmp_path / "listings")
    assert not elsewhere.cached  # another endpoint is another store
    empty = FolderSource(url, exts=(".xyz",), storage_options=s3)
    words = describe_empty(empty)
    assert empty.items() == [] and f"--src {url} holds no file this source reads (.xyz)" in words
    assert "6 files (jpg 1, png 4, txt 1)" in words  # hidden files left out, as locally


# ---------------------------------------------------------------------------------------------
# hostile objects


def test_hostile_objects_become_rejects(trees, s3, tmp_path, monkeypatch):
    root, url = trees["arch"]
    far = source_from_args(url, parse("--metadata", "none", options=s3), seed=0, out=tmp_path)
    by_member = {s["path"]: s["reason"] for s in far.skipped}
    for name, reason in trees["hostile"].items():  # '../evil.png' and friends: never listed
        assert by_member[f"data-0009.tar:{name}"] == reason
    assert by_member["images/cut.tar:"] == "bad-archive" or any(p.startswith("images/cut.tar") for p in by_member)
    # a tar replaced by a shorter one after indexing: the member's range comes back short
    item = next(it for it in far.items() if it.meta["archive"] == "data-0000.tar")
    fs = storage.filesystem(url, s3)[0]
    cut = tmp_path / "short.tar"
    cut.write_bytes((root / "data-0000.tar").read_bytes()[:1000])
    fs.put_file(str(cut), f"{url[5:]}/data-0000.tar")
    try:
        with pytest.raises(ReadRefused) as err:
            far.read(item)
        assert err.value.reason == "read-error" and "cut short" in str(err.value)
    finally:
        fs.put_file(str(root / "data-0000.tar"), f"{url[5:]}/data-0000.tar")
    # an object over the cap, known from the listing; a key that leaves the folder; a missing object
    proot, purl = trees["plain"]
    monkeypatch.setattr(folder, "MAX_BYTES", 10_000)
    real_list = storage.list_files
    monkeypatch.setattr(storage, "list_files", lambda u, o=None: {**real_list(u, o), "sub/../../etc.png": 10})
    src = FolderSource(purl, storage_options=s3)
    reasons = {s["path"]: s["reason"] for s in src.skipped}
    assert reasons["sub/../../etc.png"] == "unsafe-path"
    images = [p for p in proot.rglob("*") if p.suffix in (".png", ".jpg")]
    assert (
        {p for p, r in reasons.items() if r == "too-large"}
        == {p.relative_to(proot).as_posix() for p in images if p.stat().st_size > 10_000}
        != set()
    )
    before = dict(storage.REQUESTS)
    with pytest.raises(ReadRefused) as err:
        remote.read_beneath(purl, "sub/../../etc.png", storage_options=s3, max_bytes=100)
    assert err.value.reason == "unsafe-path" and delta(before) == {}  # refused before any request
    with pytest.raises(ReadRefused) as err:
        remote.read_beneath(purl, "a_b.png", storage_options=s3, max_bytes=100)  # grew past the cap
    assert err.value.reason == "too-large"
    with pytest.raises(ReadRefused) as err:
        remote.read_beneath(purl, "gone.png", storage_options=s3, max_bytes=100)
    assert err.value.reason == "read-error"
    no_secret(src.skipped, str(err.value))


def test_remote_tar_index_matches_local_and_refuses_a_failed_request(trees, s3):
    root, url = trees["arch"]
    for rel in ("data-0000.tar", "data-0001.tar", "data-0009.tar", "images/cut.tar"):
        fetches = remote.Fetches()
        got = index_tar(f"{url}/{rel}", label=rel, storage_options=s3, fetches=fetches)
        assert got == index_tar(root / rel, label=rel)
        if rel.startswith("data-000") and rel != "data-0009.tar":  # members of 48 KiB (the hostile tar's: 2 KiB)
            members = len(got[0])
            assert fetches.requests <= members + 6  # a header each, and the tar's zero-filled tail
            assert fetches.fetched < (root / rel).stat().st_size / 4
    members, skipped = index_tar(f"{url}/gone.tar", label="gone.tar", storage_options=s3, size=100_000)
    assert members == [] and skipped == [{"path": "gone.tar:", "reason": "read-error", "detail": "no such object"}]
    no_secret(skipped)


def test_hf_urls_take_the_url_path_and_hf_paths_stay_local(tmp_path, monkeypatch):
    seen = []

    def fake_listing(url, storage_options=None, cache_dir=None):
        seen.append(url)
        return remote.Listing({"images/cat.png": 10}, 1, False)

    monkeypatch.setattr(remote, "list_folder", fake_listing)
    src = source_from_args("hf://datasets/owner/name/", parse(), seed=0, out=tmp_path)
    assert seen == ["hf://datasets/owner/name"] and src.inner.root == "hf://datasets/owner/name"
    assert [it.key for it in src.items()] == ["images_cat_png"]
    with pytest.raises((ValueError, ImportError)):  # hf:PATH: the local datasets source, never a URL
        source_from_args(f"hf:{tmp_path / 'missing'}", parse(), seed=0, out=tmp_path)
    assert len(seen) == 1


# ---------------------------------------------------------------------------------------------
# a whole build


def test_build_from_a_folder_on_s3_is_byte_identical(trees, s3, tmp_path):
    from s2pdata.build import run_build
    from s2pdata.synth import SynthConfig

    root, url = trees["plain"]
    cfg = SynthConfig(size=64, drafts=0)
    built = {}
    for name, src in (
        ("local", FilteredSource(FolderSource(str(root)), FilterConfig())),
        ("s3", FilteredSource(FolderSource(url, storage_options=s3), FilterConfig())),
    ):
        out = tmp_path / name
        manifest = run_build(src=src, out=out, cfg=cfg, seed=5, shard_size=4, workers=1, progress=False)
        built[name] = remote_fakes.tar_digests(out)
        assert manifest["totals"]["samples"] == 6
        no_secret((out / "dataset.json").read_text(), *(p.read_text() for p in out.glob("*.jsonl")))
    assert built["s3"] == built["local"] and len(built["local"]) == 2
