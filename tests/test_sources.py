"""Sources: layouts found by probing, metadata joins of both dialects, filters, opt-out,
provenance, hostile archives and the bad-input set through every source type."""

from __future__ import annotations

import argparse
import pickle
from pathlib import Path

import numpy as np
import pytest

from s2pdata.decode import DecodeError, decode_image
from s2pdata.sources import FilterConfig, FolderSource, add_source_arguments, archive, open_source, source_from_args
from s2pdata.sources.archive import index_tar, index_tars, unsafe_name
from s2pdata.sources.danbooru import DanbooruSource, probe_layout
from s2pdata.sources.filters import check_pixels, is_monochrome, read_opt_out
from s2pdata.sources.metadata import load_metadata, normalize_post

from . import fakes
from .badfiles import picture, png_header_only

FILES = {1: "png", 2: "jpg", 1001: "png", 2002: "jpg", 3003: "gif", 4: "png"}


def parse(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    add_source_arguments(p)
    return p.parse_args(list(argv))


def posts(dialect: str = "new") -> list[dict]:
    make = fakes.post_new if dialect == "new" else fakes.post_old
    safe = "g" if dialect == "new" else "s"
    return [
        make(1, rating=safe, artist=("alice",), general=("1girl", "smile")),
        make(2, rating="q", artist=("bob",), general=("1girl", "monochrome"), ext="jpg"),
        make(1001, rating="e", artist=("carol",), general=("landscape",), width=900, height=100),
        make(
            2002, rating=safe, artist=("alice", "dave"), general=("smile", "sky"), ext="jpg", score=-3, md5=f"{1:032x}"
        ),
        make(4, rating=safe, artist=("erin",), general=("sky",), deleted=True),
    ]


def items_of(src, *argv, meta=None, out=None):
    args = parse(*argv) if meta is None else parse("--metadata", str(meta), *argv)
    return source_from_args(str(src), args, seed=0, out=out or Path(src).parent / "out")


@pytest.fixture()
def gwern(tmp_path) -> Path:
    root = tmp_path / "gwern"
    fakes.write_gwern(root, FILES)
    fakes.write_jsonl(root / "metadata" / "posts000000000000.json", posts("new"))
    return root


# ---------------------------------------------------------------------------------------------
# layouts


def test_gwern_layout_variants(gwern):
    assert probe_layout(gwern)["variant"] == "original"
    src = items_of(gwern, "--include-deleted")
    assert isinstance(src, DanbooruSource)
    keys = [it.key for it in src.items()]
    assert (
        keys
        == sorted(keys)
        == [
            "danbooru-0000000001",
            "danbooru-0000000002",
            "danbooru-0000000004",
            "danbooru-0000001001",
            "danbooru-0000002002",
        ]
    )  # gif skipped by --ext
    assert all("." not in k for k in keys)
    small = items_of(gwern, "--variant", "512px", "--include-deleted")
    assert {it.locator for it in small.items()} == {f"512px/{i % 1000:04d}/{i}.jpg" for i in FILES if i != 3003} | {
        "512px/0003/3003.jpg"
    }  # 512px holds jpgs of every post, gif ones included
    # pointed at the original/ folder itself, the layout is still found
    assert probe_layout(gwern / "original")["layout"] == "gwern"
    assert "gwern original" in src.summary() and "gif 1" in src.summary()


def test_gwern_read_and_provenance(gwern):
    src = items_of(gwern)
    for it in src.items():
        assert src.read(it) == (gwern / it.meta["path"]).read_bytes()
        assert set(it.meta) == {"source", "id", "artist", "rating", "md5", "path"}
        assert it.meta["source"] == "danbooru" and it.key == f"danbooru-{it.meta['id']:010d}"
    by_id = {it.meta["id"]: it.meta for it in src.items()}
    assert by_id[2002]["artist"] == "alice dave" and by_id[2002]["rating"] == "general"
    for key in ("artist", "rating", "md5"):  # one type per key, matched post or not
        assert {type(m[key]) for m in by_id.values()} == {str}
    assert by_id[1001]["rating"] == "explicit"


@pytest.mark.parametrize("folder,pattern", [("", "data-{:04d}.tar"), ("images", "{:04d}.tar"), ("", "{:d}000.tar")])
def test_archive_layouts_read_by_seek(tmp_path, folder, pattern):
    root = tmp_path / "arch"
    tars = fakes.write_archive(root, FILES, per_tar=2, folder=folder, pattern=pattern)
    fakes.write_posts_targz(root / "posts.tar.gz", posts("old"))
    assert probe_layout(root)["layout"] == "archive"
    src = items_of(root, "--ext", "png,jpg,gif", "--include-deleted")
    its = src.items()
    assert [it.meta["id"] for it in its] == sorted(FILES)
    for it in its:
        assert it.meta["archive"] in tars and it.meta["member"] == f"{it.meta['id']}.{FILES[it.meta['id']]}"
        assert src.read(it) == fakes.image_bytes(it.meta["id"], FILES[it.meta["id"]])
    assert not any(p.suffix == ".png" for p in tmp_path.rglob("*"))  # nothing was extracted


def test_flat_and_plain_folders(tmp_path):
    flat = tmp_path / "flat"
    for pid, ext in FILES.items():
        (flat / "x").mkdir(parents=True, exist_ok=True)
        (flat / "x" / f"{pid}.{ext}").write_bytes(fakes.image_bytes(pid, ext))
    assert probe_layout(flat) == {"layout": "flat"}
    assert len(items_of(flat, "--metadata", "none").items()) == 5
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "a cat.png").write_bytes(fakes.png(1))
    (plain / "b.jpg").write_bytes(fakes.jpg(2))
    src = items_of(plain)
    assert (
        [it.key for it in src.items()] == [it.key for it in FolderSource(str(plain)).items()] == ["a_cat_png", "b_jpg"]
    )
    assert "plain image folder" in src.summary() and src.check_pixels(picture()) is None
    assert open_source(str(plain)).summary().startswith("source")


# ---------------------------------------------------------------------------------------------
# metadata


def test_dialects_normalise_to_one_record():
    for new, old in zip(posts("new"), posts("old")):
        a, b = normalize_post(new), normalize_post(old)
        assert a == b, (a, b)
    assert normalize_post(fakes.post_old(1, rating="s"))["rating"] == "general"  # old s = safe
    assert normalize_post(fakes.post_new(1, rating="s"))["rating"] == "sensitive"
    assert normalize_post({"id": "7", "rating": "explicit", "is_deleted": "true"})["is_deleted"] is True


@pytest.mark.parametrize("fmt", ["jsonl", "gz", "targz", "parquet", "old"])
def test_metadata_formats_join_the_same(tmp_path, fmt):
    ps = posts("old" if fmt == "old" else "new")
    path = {
        "jsonl": lambda: fakes.write_jsonl(tmp_path / "posts.json", ps),
        "old": lambda: fakes.write_jsonl(tmp_path / "posts.json", ps),
        "gz": lambda: fakes.write_jsonl(tmp_path / "posts.json.gz", ps, gz=True),
        "targz": lambda: fakes.write_posts_targz(tmp_path / "posts.tar.gz", ps),
        "parquet": lambda: fakes.write_parquet(tmp_path / "posts.parquet", ps),
    }[fmt]()
    table, info = load_metadata(
        [path], [1, 2, 4, 2002, 99], tracked=frozenset({"smile", "sky"}), cache_dir=tmp_path / "cache"
    )
    assert list(table.id) == [1, 2, 4, 2002] and info["matched"] == 4 and info["cache"] == "written"
    f = table.facts(table.row(2002))
    assert f["artist"] == ["alice", "dave"] and f["tags"] == {"smile", "sky"} and f["score"] == -3
    assert table.facts(table.row(4))["is_deleted"] and table.row(1001) == -1
    again, info2 = load_metadata(
        [path], [1, 2, 4, 2002, 99], tracked=frozenset({"smile", "sky"}), cache_dir=tmp_path / "cache"
    )
    assert info2["cache"] == "hit"
    assert [again.facts(i) for i in range(len(again))] == [table.facts(i) for i in range(len(table))]


def test_unwanted_lines_are_not_parsed(tmp_path):
    path = tmp_path / "posts.json"
    path.write_bytes(b'{"id": 5, "md5": "x", broken\n' + b'{"id": 1, "md5": "ab", "rating": "g"}\n' + b"not json\n\n")
    table, info = load_metadata([path], [1], cache_dir=None)
    assert list(table.id) == [1] and info["records"] == 2 and info["bad_lines"] == 1


# ---------------------------------------------------------------------------------------------
# filters, opt-out


@pytest.mark.parametrize("dialect", ["new", "old"])
@pytest.mark.parametrize(
    "argv,kept,removed",
    [
        ((), [1, 2, 1001, 2002], {"ext": 1, "deleted": 1}),
        (("--include-deleted",), [1, 2, 4, 1001, 2002], {"ext": 1}),
        (("--rating", "general"), [1, 2002], {"ext": 1, "deleted": 1, "rating": 2}),
        (("--rating", "general,explicit"), [1, 1001, 2002], {"ext": 1, "deleted": 1, "rating": 1}),
        (("--include-tags", "smile"), [1, 2002], {"ext": 1, "deleted": 1, "include-tags": 2}),
        (("--include-tags", "smile,sky", "--tag-mode", "all"), [2002], {"ext": 1, "deleted": 1, "include-tags": 3}),
        (("--exclude-tags", "landscape", "--exclude-tags", "smile"), [2], {"ext": 1, "deleted": 1, "exclude-tags": 3}),
        (("--preset", "colorization"), [1, 1001, 2002], {"ext": 1, "deleted": 1, "exclude-tags": 1}),
        (("--meta-min-side", "41"), [1001], {"ext": 1, "deleted": 1, "meta-min-side": 3}),
        (("--max-aspect", "3"), [1, 2, 2002], {"ext": 1, "deleted": 1, "max-aspect": 1}),
        (("--ext", "jpg"), [2, 2002], {"ext": 4}),
        (("--min-score", "0"), [1, 2, 1001], {"ext": 1, "deleted": 1, "min-score": 1}),
        (("--id-range", "2:1001"), [2, 1001], {"ext": 1, "id-range": 2, "deleted": 1}),
        (("--id-range", ":1"), [1], {"ext": 1, "id-range": 4}),
        (("--dedup", "md5"), [1, 2, 1001], {"ext": 1, "deleted": 1, "dedup": 1}),
    ],
)
def test_each_filter_counts_what_it_removed(gwern, dialect, argv, kept, removed):
    if dialect == "old":
        fakes.write_jsonl(gwern / "metadata" / "posts000000000000.json", posts("old"))
    src = items_of(gwern, *argv)
    assert [it.meta["id"] for it in src.items()] == kept
    st = src._get()
    assert st["removed"] == removed
    assert st["listed"] - sum(removed.values()) == len(kept)
    for name, n in removed.items():
        assert f"{name} {n}" in src.summary()


def test_dedup_sha256_reads_files(tmp_path):
    root = tmp_path / "g"
    same = fakes.png(1)
    fakes.write_gwern(root, {1: "png", 2: "png", 3: "png"}, small=False, data={1: same, 3: same})
    src = items_of(root, "--dedup", "sha256")
    assert [it.meta["id"] for it in src.items()] == [1, 2] and src._get()["removed"] == {"dedup": 1}


def test_opt_out_by_artist_and_id(gwern, tmp_path):
    opt = tmp_path / "opt-out.txt"
    opt.write_text("# artists who asked to be left out\nAlice   # any post tagged alice\n\n1001\n")
    assert read_opt_out(opt) == (frozenset({"alice"}), frozenset({1001}))
    src = items_of(gwern, "--opt-out", str(opt))
    assert [it.meta["id"] for it in src.items()] == [2]
    assert src._get()["removed"] == {"ext": 1, "opt-out": 3, "deleted": 1}
    assert all("alice" not in it.meta["artist"].split() for it in src.items())
    assert src.spec()["filters"]["opt_out_tags"]["count"] == 1


def test_metadata_filters_need_metadata(tmp_path):
    root = tmp_path / "g"
    fakes.write_gwern(root, {1: "png"}, small=False)
    with pytest.raises(ValueError, match="--rating.*--metadata"):
        items_of(root, "--rating", "general").items()
    with pytest.raises(ValueError, match="--id-range"):
        items_of(root, "--id-range", "12")
    with pytest.raises(ValueError, match="--rating"):
        FilterConfig(ratings=("safe",))


def test_monochrome_pixels():
    color = picture(64, 64, seed=3)
    gray = np.repeat(color.mean(axis=2, keepdims=True).astype(np.uint8), 3, axis=2)
    assert not is_monochrome(color) and is_monochrome(gray)
    tinted = np.clip(gray.astype(int) + [6, 0, -6], 0, 255).astype(np.uint8)  # faint scan tint
    assert is_monochrome(tinted)
    cfg = FilterConfig(preset="colorization")
    assert check_pixels(gray, cfg) == "monochrome" and check_pixels(color, cfg) is None
    assert check_pixels(gray, FilterConfig()) is None


def test_check_pixels_through_a_source(gwern):
    src = items_of(gwern, "--drop-monochrome")
    gray = np.full((40, 40, 3), 128, np.uint8)
    assert src.check_pixels(gray) == "monochrome" and src.check_pixels(picture()) is None


# ---------------------------------------------------------------------------------------------
# hostile input, fingerprints, pickling


def test_hostile_tar_writes_nothing_and_logs(tmp_path):
    root = tmp_path / "arch"
    fakes.write_archive(root, {1: "png", 2: "png"})
    expect = fakes.write_hostile_tar(root / "data-0001.tar")
    before = sorted(p for p in tmp_path.parent.rglob("*") if "evil" in p.name or p.name == "abs.png")
    out = tmp_path / "out"
    src = items_of(root, "--metadata", "none", out=out)
    its = src.items()
    assert [it.meta["id"] for it in its] == [1, 2, 11, 12]
    for it in its:
        decode_image(src.read(it))
    skipped = {s["path"].split(":", 1)[1]: s["reason"] for s in src.skipped}
    assert skipped == expect
    assert "unsafe-path 3" in src.summary() and "unsafe-member 4" in src.summary()
    after = sorted(p for p in tmp_path.parent.rglob("*") if "evil" in p.name or p.name == "abs.png")
    assert before == after == []
    assert not Path("/abs.png").exists()
    assert unsafe_name("a/../../b") and unsafe_name("C:/x") and unsafe_name("ok/1.png") is None


def test_tar_indexes_are_cached_and_renewed_when_a_tar_changes(tmp_path, monkeypatch):
    root = tmp_path / "arch"
    fakes.write_archive(root, FILES, per_tar=2)
    fakes.write_hostile_tar(root / "data-0009.tar")
    out = tmp_path / "out"
    first = items_of(root, "--metadata", "none", out=out)
    items, skipped = first.items(), first.skipped
    assert "0 indexes from the cache" in first.summary()
    cached = sorted((out / ".s2pdata-cache" / "tars").glob("tar-*.json"))
    assert len(cached) == len(list(root.glob("*.tar")))

    def no_tar_reading(*a, **k):
        raise AssertionError("a cached tar was indexed again")

    monkeypatch.setattr(archive, "index_tar", no_tar_reading)
    again = items_of(root, "--metadata", "none", out=out)
    assert again.items() == items and again.skipped == skipped
    assert f"{len(cached)} indexes from the cache" in again.summary()
    monkeypatch.undo()
    fakes.write_archive(root, {1: "png", 2: "jpg", 5: "png"}, per_tar=3)  # rewrites data-0000.tar
    changed = items_of(root, "--metadata", "none", out=out)
    assert 5 in [it.meta["id"] for it in changed.items()]
    results, n_cached = index_tars(sorted(root.glob("*.tar")), cache_dir=out / ".s2pdata-cache" / "tars")
    assert n_cached == len(results)


def test_corrupt_tar_keeps_members_before_the_damage(tmp_path):
    path = tmp_path / "0000.tar"
    fakes.write_archive(tmp_path, {1: "png", 2: "png", 3: "png"}, pattern="{:04d}.tar")
    data = path.read_bytes()
    path.write_bytes(data[:1600] + b"\xff" * 700)  # the second header is garbage
    members, skipped = index_tar(path)
    assert [m.name for m in members] == ["1.png"] and skipped[0]["reason"] == "bad-archive"


def test_huge_header_rejected_through_sources(tmp_path):
    root = tmp_path / "g"
    fakes.write_gwern(root, {7: "png"}, small=False, data={7: png_header_only(30000, 30000)})
    fakes.write_archive(tmp_path / "a", {7: "png"}, data={7: png_header_only(30000, 30000)})
    for src in (items_of(root), items_of(tmp_path / "a")):
        (it,) = src.items()
        with pytest.raises(DecodeError) as err:
            decode_image(src.read(it))  # the file holds no pixels: only the header check can answer
        assert err.value.reason == "too-many-pixels"


def test_spec_detects_a_changed_source(gwern, tmp_path):
    a = items_of(gwern).spec()
    assert items_of(gwern).spec() == a
    (gwern / "original" / "0005").mkdir()
    (gwern / "original" / "0005" / "5.png").write_bytes(fakes.png(5))
    b = items_of(gwern).spec()
    assert b["listing"] != a["listing"] and b["filters"] == a["filters"]
    assert items_of(gwern, "--rating", "general").spec()["filters"] != b["filters"]
    root = tmp_path / "arch"
    fakes.write_archive(root, {1: "png", 2: "png"})
    c = items_of(root).spec()
    fakes.write_archive(root, {1: "png", 2: "jpg"})
    assert items_of(root).spec()["listing"] != c["listing"]


def test_spec_detects_a_changed_plain_folder(tmp_path):
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "a.png").write_bytes(fakes.png(1))
    a = items_of(tmp_path / "p").spec()
    (tmp_path / "p" / "a.png").write_bytes(fakes.png(2, h=60))
    b = items_of(tmp_path / "p").spec()
    assert a["kind"] == "folder" and a["listing"]["count"] == 1 and a["listing"] != b["listing"]


def test_sources_pickle_small_and_read_after(gwern):
    src = items_of(gwern)
    its = src.items()
    blob = pickle.dumps(src)
    assert len(blob) < 4000
    clone = pickle.loads(blob)
    assert clone.read(its[0]) == src.read(its[0])


# ---------------------------------------------------------------------------------------------
# the bad-input set through every source type


def _check_bad_set(src, reasons_by_id):
    seen = {}
    for it in src.items():
        try:
            decode_image(src.read(it))
            seen[it.meta["id"]] = None
        except DecodeError as exc:
            seen[it.meta["id"]] = exc.reason
    assert seen == reasons_by_id


def test_bad_set_through_gwern_and_archive(tmp_path):
    data, exts, reasons = fakes.bad_by_id(tmp_path / "raw")
    fakes.write_gwern(tmp_path / "g", exts, small=False, data=data)
    fakes.write_archive(tmp_path / "a", exts, per_tar=7, data=data)
    every = ("--ext", "jpg,png,webp,gif", "--metadata", "none")
    _check_bad_set(items_of(tmp_path / "g", *every), reasons)
    _check_bad_set(items_of(tmp_path / "a", *every), reasons)


def test_bad_set_through_plain_folder(tmp_path):
    from .badfiles import write_bad_folder

    expected = write_bad_folder(tmp_path / "bad")
    src = items_of(tmp_path / "bad", "--ext", "jpg,png,webp,gif")
    got = {}
    for it in src.items():
        try:
            decode_image(src.read(it))
            got[it.locator] = None
        except DecodeError as exc:
            got[it.locator] = exc.reason
    assert got == expected
