"""Hostile sources, second round (issue 21, defects 3-7, 17, 19): every source reads through one
guarded read, so no source reads outside its folder, hangs on a FIFO, reads a device or a file that
grew after the listing, and one damaged tar header, metadata member or parquet id costs only itself.

Whatever could hang or allocate without bound runs in a child process under an address-space cap
and a timeout, so a regression fails the test instead of stalling or exhausting the machine.
"""

from __future__ import annotations

import io
import json
import os
import resource
import subprocess
import sys
import tarfile
import textwrap
import threading
from pathlib import Path

import pytest

from s2pdata.sources.archive import index_tar, is_image_tar, read_member
from s2pdata.sources.danbooru import probe_layout
from s2pdata.sources.folder import FolderSource

from . import fakes
from .test_sources import items_of

ROOT = Path(__file__).resolve().parent.parent
AS_LIMIT = 8 << 30  # as tests/test_hostile.py: Numba and OpenCV reserve far more than they touch
SECRET = b"do-not-copy-me:outside-the-source"

# Runs in the child before the test's own lines: reads every item of a source and describes each
# outcome without ever printing file content (a leaked secret shows as "secret": true).
PRELUDE = """
import json, os, sys
SECRET = {secret!r}

def outcome(src, it):
    try:
        data = src.read(it)
    except OSError as exc:
        return {{"reason": getattr(exc, "reason", None), "error": type(exc).__name__, "detail": str(exc)[:300]}}
    return {{"bytes": len(data), "secret": SECRET in data}}

def report(obj):
    print("RESULT " + json.dumps(obj))
"""


def _cap():
    resource.setrlimit(resource.RLIMIT_AS, (AS_LIMIT, AS_LIMIT))


def run_capped(body: str, *, cwd: Path | None = None, timeout: float = 90) -> dict:
    """Run ``body`` in a capped child; returns what it passed to ``report``. A hang fails the test."""
    code = PRELUDE.format(secret=SECRET) + textwrap.dedent(body)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    try:
        run = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            cwd=cwd,
            preexec_fn=_cap,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"the child hung: no answer in {timeout} s")
    assert run.returncode == 0, run.stderr[-3000:]
    line = next(x for x in reversed(run.stdout.splitlines()) if x.startswith("RESULT "))
    return json.loads(line[len("RESULT ") :])


def _outside(tmp_path: Path) -> Path:
    """A folder beside the source holding a picture-named secret."""
    out = tmp_path / "outside"
    out.mkdir(exist_ok=True)
    for name in ("secret.jpg", "100.png", "1100.png", "b.jpg"):
        (out / name).write_bytes(SECRET + bytes(64))
    return out


# ---------------------------------------------------------------------------------------------
# defect 5: the folder source's check-then-open race


def _swap_loop(target: Path, good: bytes, link_to: Path, stop: threading.Event, swaps: list) -> None:
    """Swap ``target`` between a regular file and a link to ``link_to`` until ``stop`` is set."""
    tmp_link, tmp_file = target.with_name(".swap-link"), target.with_name(".swap-file")
    while not stop.is_set():
        os.symlink(link_to, tmp_link)
        os.replace(tmp_link, target)
        tmp_file.write_bytes(good)
        os.replace(tmp_file, target)
        swaps[0] += 1


MIN_READS, MIN_SWAPS, MAX_READS = 10000, 300, 60000


def _reads_racing(read, swaps: list):
    """Read until both ``MIN_READS`` reads and ``MIN_SWAPS`` swaps are done (at most ``MAX_READS``:
    on a loaded machine the swapping thread gets fewer turns); yields each read's bytes or None."""
    n = 0
    while n < MAX_READS and (n < MIN_READS or swaps[0] < MIN_SWAPS):
        n += 1
        try:
            yield read()
        except OSError:
            yield None


def test_a_link_swapped_in_between_check_and_open_is_never_followed(tmp_path):
    src, outside = tmp_path / "src", _outside(tmp_path)
    src.mkdir()
    good = fakes.jpg(1)
    (src / "a.jpg").write_bytes(good)
    source = FolderSource(str(src))
    (item,) = source.items()
    stop, swaps = threading.Event(), [0]
    swapper = threading.Thread(target=_swap_loop, args=(src / "a.jpg", good, outside / "secret.jpg", stop, swaps))
    swapper.start()
    got = {"good": 0, "refused": 0, "secret": 0, "other": 0}
    try:
        for data in _reads_racing(lambda: source.read(item), swaps):
            if data is None:
                got["refused"] += 1
                continue
            got["secret" if SECRET in data else "good" if data == good else "other"] += 1
    finally:
        stop.set()
        swapper.join()
    assert swaps[0] >= MIN_SWAPS, "the swap loop barely ran; the test proves nothing"
    assert got["secret"] == 0 and got["other"] == 0, got
    assert got["good"] > 0, got  # between swaps the real file is still read


def test_a_folder_link_repointed_out_is_never_followed(tmp_path):
    """``sub`` is a link to a folder inside the source (followed), atomically repointed outside and back."""
    src, outside = tmp_path / "src", _outside(tmp_path)
    (src / "real-sub").mkdir(parents=True)
    good = fakes.jpg(2)
    (src / "real-sub" / "b.jpg").write_bytes(good)
    (src / "sub").symlink_to("real-sub")
    stop, swaps = threading.Event(), [0]

    def swap():
        tmp = src / ".swap"
        while not stop.is_set():
            for target in (outside, "real-sub"):  # the outside folder holds its own b.jpg: the secret
                os.symlink(target, tmp)
                os.replace(tmp, src / "sub")
            swaps[0] += 1

    source = FolderSource(str(src))
    item = next(it for it in source.items() if it.locator == "real-sub/b.jpg")
    item = item._replace(locator="sub/b.jpg")
    swapper = threading.Thread(target=swap)
    swapper.start()
    leaked = good_reads = reads = 0
    try:
        for data in _reads_racing(lambda: source.read(item), swaps):
            reads += 1
            leaked += data is not None and SECRET in data
            good_reads += data == good
    finally:
        stop.set()
        swapper.join()
    assert swaps[0] >= MIN_SWAPS and good_reads > 0
    assert leaked == 0, f"{leaked} of {reads} reads returned the outside file"


# ---------------------------------------------------------------------------------------------
# defect 4: Danbooru sources


def _gwern(tmp_path: Path) -> Path:
    root = tmp_path / "db"
    fakes.write_gwern(root, {100: "png", 1100: "png", 102: "png"}, small=False)
    return root


def test_danbooru_fifo_and_device_are_never_listed_and_never_hang(tmp_path):
    root = _gwern(tmp_path)
    (root / "original" / "0101").mkdir()
    os.mkfifo(root / "original" / "0101" / "101.jpg")
    (root / "original" / "0103").mkdir()
    try:
        os.mknod(root / "original" / "0103" / "103.jpg", 0o600 | 0o020000, os.makedev(1, 5))  # /dev/zero's numbers
        device = True
    except OSError:  # not allowed here (no CAP_MKNOD): the FIFO cases still run
        device = False
    res = run_capped(f"""
        from s2pdata.sources.danbooru import DanbooruSource
        src = DanbooruSource({str(root)!r}, metadata="none")
        items = src.items()
        ids = [it.meta["id"] for it in items]
        skipped = {{s["path"]: s["reason"] for s in src.skipped}}
        # after the listing, a listed file becomes a FIFO (and, where allowed, a device node)
        os.remove({str(root / "original/0100/100.png")!r})
        os.mkfifo({str(root / "original/0100/100.png")!r})
        if {device}:
            os.remove({str(root / "original/0102/102.png")!r})
            os.mknod({str(root / "original/0102/102.png")!r}, 0o600 | 0o020000, os.makedev(1, 5))
        report({{"ids": ids, "skipped": skipped, "read": {{str(it.meta["id"]): outcome(src, it) for it in items}}}})
    """)
    assert res["ids"] == [100, 102, 1100]
    assert res["skipped"]["original/0101/101.jpg"] == "unsafe-member"
    if device:
        assert res["skipped"]["original/0103/103.jpg"] == "unsafe-member"
        assert res["read"]["102"]["reason"] == "unsafe-member"
    assert res["read"]["100"]["reason"] == "unsafe-member" and "FIFO" in res["read"]["100"]["detail"]
    assert res["read"]["1100"]["bytes"] > 0


def test_danbooru_bucket_folder_swapped_for_a_link_out_is_refused(tmp_path):
    root, outside = _gwern(tmp_path), _outside(tmp_path)
    res = run_capped(f"""
        from s2pdata.sources.danbooru import DanbooruSource
        src = DanbooruSource({str(root)!r}, metadata="none")
        items = src.items()
        os.rename({str(root / "original/0100")!r}, {str(tmp_path / "moved")!r})
        os.symlink({str(outside)!r}, {str(root / "original/0100")!r})
        report({{str(it.meta["id"]): outcome(src, it) for it in items}})
    """)
    assert res["100"]["reason"] == "unsafe-path" and res["1100"]["reason"] == "unsafe-path"
    assert not any(r.get("secret") for r in res.values())
    assert res["102"]["bytes"] > 0


def test_danbooru_file_grown_after_listing_is_refused_unread(tmp_path):
    root = _gwern(tmp_path)
    res = run_capped(f"""
        import resource
        from s2pdata.sources.danbooru import DanbooruSource
        src = DanbooruSource({str(root)!r}, metadata="none")
        items = src.items()
        with open({str(root / "original/0100/100.png")!r}, "r+b") as f:
            f.truncate(3 << 30)  # 3 GiB, sparse: no disk used
        out = {{str(it.meta["id"]): outcome(src, it) for it in items}}
        hwm = next(line for line in open("/proc/self/status") if line.startswith("VmHWM:"))
        report({{"read": out, "peak_mb": int(hwm.split()[1]) // 1024}})
    """)
    assert res["read"]["100"]["reason"] == "too-large", res
    assert res["peak_mb"] < 500 and res["read"]["102"]["bytes"] > 0


def test_danbooru_tar_swapped_after_listing_is_refused(tmp_path):
    root, outside = tmp_path / "arch", _outside(tmp_path)
    fakes.write_archive(root, {1: "png", 2: "png", 3: "png", 4: "png"}, per_tar=2)
    # the same tar layout outside, whose members hold the secret at the same offsets
    evil = {i: SECRET + bytes(len(fakes.png(i)) - len(SECRET)) for i in (1, 2)}
    fakes.write_archive(outside / "t", {1: "png", 2: "png"}, per_tar=2, data=evil)
    res = run_capped(f"""
        from s2pdata.sources.danbooru import DanbooruSource
        src = DanbooruSource({str(root)!r}, metadata="none")
        items = src.items()
        os.remove({str(root / "data-0000.tar")!r})
        os.symlink({str(outside / "t" / "data-0000.tar")!r}, {str(root / "data-0000.tar")!r})
        os.remove({str(root / "data-0001.tar")!r})
        os.mkfifo({str(root / "data-0001.tar")!r})
        report({{str(it.meta["id"]): outcome(src, it) for it in items}})
    """)
    assert res["1"]["reason"] == res["2"]["reason"] == "unsafe-path"
    assert res["3"]["reason"] == res["4"]["reason"] == "unsafe-member"
    assert not any(r.get("secret") for r in res.values())


# ---------------------------------------------------------------------------------------------
# defect 3: hf: paths


def _hf_paths(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A parquet dataset whose image column gives only paths, most of them hostile."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    outside = _outside(tmp_path)
    ds = tmp_path / "ds"
    (ds / "imgs").mkdir(parents=True)
    (ds / "imgs" / "good.png").write_bytes(fakes.png(1))
    os.mkfifo(ds / "imgs" / "fifo.png")
    (ds / "imgs" / "out.png").symlink_to(outside / "secret.jpg")
    (tmp_path / "cwd").mkdir()
    (tmp_path / "cwd" / "secret.jpg").write_bytes(SECRET)  # only the working directory has it
    rows = {
        "dev-zero": ("/dev/zero", "unsafe-path"),
        "fifo": (str(ds / "imgs" / "fifo.png"), "unsafe-member"),
        "outside-abs": (str(outside / "secret.jpg"), "unsafe-path"),
        "outside-dotdot": ("../outside/secret.jpg", "unsafe-path"),
        "cwd-relative": ("secret.jpg", "read-error"),  # relative to the dataset, where it is not
        "link-out": ("imgs/out.png", "unsafe-path"),
        "good-relative": ("imgs/good.png", None),
        "good-absolute": (str(ds / "imgs" / "good.png"), None),
    }
    names = list(rows)
    pq.write_table(
        pa.table(
            {
                "image": [{"bytes": None, "path": rows[n][0]} for n in names],
                "label": list(range(len(names))),
            }
        ),
        ds / "train-00000.parquet",
    )
    return ds, {n: rows[n][1] for n in names}


def test_hf_paths_are_read_only_beneath_the_dataset_folder(tmp_path):
    pytest.importorskip("datasets")
    ds, expected = _hf_paths(tmp_path)
    res = run_capped(
        f"""
        from s2pdata.sources.hf import HFSource
        src = HFSource({str(ds)!r}, cache_dir={str(tmp_path / "cache")!r})
        report([outcome(src, it) for it in src.items()])
        """,
        cwd=tmp_path / "cwd",
    )
    got = dict(zip(expected, res))
    for name, reason in expected.items():
        assert got[name].get("reason") == reason, (name, got[name])
        assert not got[name].get("secret"), name
    assert got["good-relative"]["bytes"] == got["good-absolute"]["bytes"] == len(fakes.png(1))


# ---------------------------------------------------------------------------------------------
# defect 19: hf: on a DatasetDict.save_to_disk folder


def test_hf_datasetdict_folder_reads_the_split_asked_for(tmp_path):
    datasets = pytest.importorskip("datasets")
    splits = {
        "train": [fakes.png(i) for i in range(3)],
        "test": [fakes.png(10 + i) for i in range(2)],
    }
    dd = datasets.DatasetDict(
        {
            name: datasets.Dataset.from_dict({"image": [{"bytes": b, "path": None} for b in blobs]}).cast_column(
                "image", datasets.Image()
            )
            for name, blobs in splits.items()
        }
    )
    dd.save_to_disk(str(tmp_path / "dd"))
    from .test_sources_hf import hf_source

    train = hf_source(tmp_path / "dd", tmp_path / "out")
    assert [train.read(it) for it in train.items()] == splits["train"]
    test = hf_source(tmp_path / "dd", tmp_path / "out", "--hf-split", "test")
    assert [test.read(it) for it in test.items()] == splits["test"]
    with pytest.raises(ValueError, match=r"--hf-split 'valid'.*test, train"):
        hf_source(tmp_path / "dd", tmp_path / "out", "--hf-split", "valid").items()


# ---------------------------------------------------------------------------------------------
# defect 7: a malformed PAX header in a source tar


BAD_PAX = {
    "realsize": {
        "GNU.sparse.major": "1",
        "GNU.sparse.minor": "0",
        "GNU.sparse.name": "x.jpg",
        "GNU.sparse.realsize": "zz",
    },
    "sparse-size": {"GNU.sparse.size": "x"},
    "sparse-map": {"GNU.sparse.map": "1,2,x"},
}


def _tar_with_bad_pax(path: Path, n: int, bad_at: int, pax: dict) -> None:
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tf:
        for i in range(1, n + 1):
            fakes.add_member(tf, f"{i}.jpg", bytes([i % 256]) * (300 + 7 * i), pax if i == bad_at else None)


@pytest.mark.parametrize("kind", sorted(BAD_PAX))
@pytest.mark.parametrize("bad_at", [1, 3, 17, 40])
def test_one_malformed_pax_header_costs_only_its_member(tmp_path, kind, bad_at):
    path = tmp_path / "data-0000.tar"
    _tar_with_bad_pax(path, 40, bad_at, BAD_PAX[kind])
    members, skipped = index_tar(path, label="data-0000.tar")
    assert [m.name for m in members] == [f"{i}.jpg" for i in range(1, 41) if i != bad_at]
    for m in members:
        i = int(m.name.split(".")[0])
        assert read_member(path, m.offset, m.size) == bytes([i % 256]) * (300 + 7 * i)
    assert len(skipped) == 1 and skipped[0]["reason"] == "bad-archive", skipped
    assert "ValueError" in skipped[0]["detail"] and "skipped" in skipped[0]["detail"]
    assert is_image_tar(path)  # also when the bad header sits among the 16 members the probe reads
    assert probe_layout(tmp_path) == {"layout": "archive", "tars": ["data-0000.tar"]}


def test_the_issue_case_23_of_40_images_are_no_longer_dropped(tmp_path):
    root = tmp_path / "arch"
    root.mkdir()
    with tarfile.open(root / "data-0000.tar", "w", format=tarfile.PAX_FORMAT) as tf:
        for i in range(1, 41):
            fakes.add_member(tf, f"{i}.png", fakes.png(i), BAD_PAX["realsize"] if i == 18 else None)
    src = items_of(root, "--metadata", "none", out=tmp_path / "out")
    assert [it.meta["id"] for it in src.items()] == [i for i in range(1, 41) if i != 18]
    assert [s["reason"] for s in src.skipped] == ["bad-archive"] and "bad-archive 1" in src.summary()
    for it in src.items():
        assert src.read(it) == fakes.png(it.meta["id"])


# ---------------------------------------------------------------------------------------------
# defect 6: metadata that expands without bound


def _sparse_posts_targz(path: Path, good: bytes, declared: int = 10**15) -> None:
    """``posts.tar.gz`` holding a GNU sparse 1.0 ``posts.json`` declaring ``declared`` bytes (one
    short line of data, the rest a hole), then an ordinary ``posts-2.json`` holding ``good``."""
    sparse_map = b"1\n0\n5\n"
    data = sparse_map + bytes(-len(sparse_map) % 512) + b'{"a":'
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        info = tarfile.TarInfo("GNUSparseFile.0/posts.json")
        info.size = len(data)
        info.pax_headers = {
            "GNU.sparse.major": "1",
            "GNU.sparse.minor": "0",
            "GNU.sparse.name": "posts.json",
            "GNU.sparse.realsize": str(declared),
        }
        tf.addfile(info, io.BytesIO(data))
        fakes.add_member(tf, "posts-2.json", good)
    import gzip

    path.write_bytes(gzip.compress(buf.getvalue(), mtime=0))


def test_a_sparse_metadata_member_declaring_a_petabyte_is_refused_at_once(tmp_path):
    root = tmp_path / "db"
    fakes.write_gwern(root, {1: "png", 2: "png"}, small=False)
    good = json.dumps(fakes.post_new(2, artist=("bob",))).encode() + b"\n"
    _sparse_posts_targz(root / "posts.tar.gz", good)
    res = run_capped(
        f"""
        from s2pdata.sources.danbooru import DanbooruSource
        src = DanbooruSource({str(root)!r})
        items = src.items()
        report({{"artists": {{str(it.meta["id"]): it.meta["artist"] for it in items}},
                 "skipped": src.skipped, "summary": src.summary()}})
        """,
        timeout=60,
    )
    assert res["artists"] == {"1": "", "2": "bob"}  # the good member after the bomb is still read
    (bad,) = [s for s in res["skipped"] if "posts.json" in s["path"]]
    assert bad["reason"] == "too-large" and "1000000000000000" in bad["detail"], bad
    assert "refused 1" in res["summary"]


def test_a_sparse_member_under_the_absolute_cap_is_held_to_the_files_size(tmp_path):
    # 20 GB declared in a file of a few hundred bytes: under MAX_METADATA_BYTES, but far past what
    # MAX_EXPANSION allows a file that small; it streamed about 9 s of NUL bytes before the ratio cap
    from s2pdata.sources import metadata

    path = tmp_path / "posts.tar.gz"
    good = json.dumps(fakes.post_new(2, artist=("bob",))).encode() + b"\n"
    _sparse_posts_targz(path, good, declared=2 * 10**10)
    assert 2 * 10**10 < metadata.MAX_METADATA_BYTES and path.stat().st_size < 1000
    table, info = metadata.load_metadata([path], [1, 2], cache_dir=None)
    assert table.id.tolist() == [2]
    (bad,) = info["refused"]
    assert bad["reason"] == "too-large" and "20000000000" in bad["detail"] and "x the file's size" in bad["detail"]


def test_a_plain_metadata_file_over_the_cap_is_refused_unread(tmp_path):
    root = tmp_path / "db"
    fakes.write_gwern(root, {1: "png"}, small=False)
    with open(root / "posts.json", "wb") as f:
        f.write(json.dumps(fakes.post_new(1, artist=("alice",))).encode() + b"\n")
        f.truncate(1 << 40)  # 1 TiB, sparse: hours of NUL bytes to read
    res = run_capped(
        f"""
        from s2pdata.sources.danbooru import DanbooruSource
        src = DanbooruSource({str(root)!r})
        items = src.items()
        report({{"n": len(items), "skipped": src.skipped}})
        """,
        timeout=60,
    )
    assert res["n"] == 1 and [s["reason"] for s in res["skipped"]] == ["too-large"]


def test_gzip_metadata_expanding_past_the_cap_stops_there(tmp_path, monkeypatch):
    from s2pdata.sources import metadata

    monkeypatch.setattr(metadata, "MAX_METADATA_BYTES", 64 << 10)
    first = json.dumps(fakes.post_new(1, artist=("alice",))).encode() + b"\n"
    last = json.dumps(fakes.post_new(2, artist=("bob",))).encode() + b"\n"
    path = fakes.write_jsonl(tmp_path / "posts.json.gz", [], gz=True)
    import gzip

    path.write_bytes(gzip.compress(first + b"\n" * (1 << 20) + last, mtime=0))
    table, info = metadata.load_metadata([path], [1, 2], cache_dir=None)
    assert table.id.tolist() == [1]  # what came before the cap is kept
    (bad,) = info["refused"]
    assert bad["reason"] == "too-large" and str(64 << 10) in bad["detail"]


def test_metadata_link_out_of_the_source_is_refused(tmp_path):
    root, outside = tmp_path / "db", tmp_path / "elsewhere"
    fakes.write_gwern(root, {1: "png"}, small=False)
    fakes.write_jsonl(outside / "posts.json", [fakes.post_new(1, artist=("mallory",))])
    (root / "posts.json").symlink_to(outside / "posts.json")
    src = items_of(root, out=tmp_path / "out")
    assert [it.meta["artist"] for it in src.items()] == [""]
    assert [s["reason"] for s in src.skipped] == ["unsafe-path"]
    assert "--metadata" in src.skipped[0]["detail"]  # the fix: name the file explicitly
    named = items_of(root, "--metadata", str(outside / "posts.json"), out=tmp_path / "out2")
    assert [it.meta["artist"] for it in named.items()] == ["mallory"]


# ---------------------------------------------------------------------------------------------
# defect 17: parquet ids of the wrong type


def _parquet(path: Path, ids, artists) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"id": ids, "tag_string_artist": artists, "rating": ["g"] * len(artists)}), path)
    return path


@pytest.mark.parametrize(
    "ids, kept, bad",
    [
        ([[1], [2], [3]], [], 3),  # a list column: ArrowNotImplementedError before
        (["1", "abc", "3"], [1, 3], 1),  # one string that is no id: refused the whole build before
        (["1", "2.5", " 3 "], [1, 3], 1),  # " 3 " is a decimal id, as in JSON
        ([1.0, 2.5, float("nan")], [1], 2),  # NaN is a missing id, like null in JSON
        ([{"a": 1}, {"a": 2}, {"a": 3}], [], 3),  # a struct column
    ],
)
def test_parquet_ids_of_the_wrong_type_are_counted_bad_lines(tmp_path, ids, kept, bad):
    root = tmp_path / "db"
    fakes.write_gwern(root, {1: "png", 2: "png", 3: "png"}, small=False)
    meta = _parquet(tmp_path / "meta" / "posts.parquet", ids, ["alice", "bob", "carol"])
    src = items_of(root, "--metadata", str(meta), out=tmp_path / "out")
    items = src.items()
    assert [it.meta["id"] for it in items if it.meta["artist"]] == kept
    assert src._get()["metadata"]["bad_lines"] == bad
    assert f"{bad} bad lines" in src.summary()


# ---------------------------------------------------------------------------------------------
# links that stay inside the folder are still followed; loops end


def test_inside_links_are_followed_and_loops_end(tmp_path):
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    (src / "d" / "a.jpg").write_bytes(fakes.jpg(1))
    (src / "rel.jpg").symlink_to("d/a.jpg")
    (src / "abs.jpg").symlink_to(src / "d" / "a.jpg")
    (src / "d" / "up.jpg").symlink_to("../d/./a.jpg")
    (src / "loop1.jpg").symlink_to("loop2.jpg")
    (src / "loop2.jpg").symlink_to("loop1.jpg")
    (src / "d" / "climb.jpg").symlink_to("../../src/d/a.jpg")  # leaves the folder, comes back: refused
    source = FolderSource(str(src))
    res = run_capped(
        f"""
        from s2pdata.sources.folder import FolderSource, Item
        src = FolderSource({str(src)!r})
        names = ["rel.jpg", "abs.jpg", "d/up.jpg", "d/a.jpg", "loop1.jpg", "d/climb.jpg"]
        report({{n: outcome(src, Item("k", n, {{}})) for n in names}})
        """,
        timeout=30,
    )
    size = len(fakes.jpg(1))
    assert all(res[n]["bytes"] == size for n in ("rel.jpg", "abs.jpg", "d/up.jpg", "d/a.jpg"))
    assert res["loop1.jpg"]["reason"] == "unsafe-path" and res["d/climb.jpg"]["reason"] == "unsafe-path"
    assert {s["path"] for s in source.skipped} >= {"loop1.jpg", "loop2.jpg"}
