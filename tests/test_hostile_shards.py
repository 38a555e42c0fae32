"""Hostile shards and build folders (issue 21, defects 8-13): what a damaged or planted file does to
``iter_tar``, ``decode_sample``, ``open_shards``, the torch loader, a resume, ``verify`` and the writers.

Each case is a ``ShardError`` (or a one-line ``ManifestError``) naming the shard, key or file, never a
traceback, a hang, an allocation the file does not pay for, or garbage in a batch. Cases that could
allocate or hang run in a child process under an address-space cap and a timeout (``run_capped``).
"""

from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
import tarfile
import textwrap
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from s2pdata import _safeio
from s2pdata._safeio import atomic_write, create_new
from s2pdata.data import open_shards
from s2pdata.shards import (
    SAMPLE_FIELDS,
    ManifestError,
    ShardError,
    commit_stats,
    decode_sample,
    file_sha256,
    iter_tar,
    read_manifest,
    scan_committed,
    shard_name,
    shard_record,
    stats_name,
    verify_shard,
    write_tar,
)

from .fakes import write_shards

AS_CAP = 3 << 30  # the child's address space: Numba, OpenCV and torch reserve more than they touch


def run_capped(code: str, *, cap: int = AS_CAP, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run ``code`` in a child whose address space is capped at ``cap`` bytes; it prints its own peak
    RSS (MB, Linux's VmHWM) last, as ``PEAK_RSS_MB n``."""
    prologue = f"import resource\nresource.setrlimit(resource.RLIMIT_AS, ({cap}, {cap}))\n"
    epilogue = (
        '\nhwm = next(line for line in open("/proc/self/status") if line.startswith("VmHWM:"))'
        '\nprint("PEAK_RSS_MB", int(hwm.split()[1]) // 1024)\n'
    )
    return subprocess.run(
        [sys.executable, "-c", prologue + textwrap.dedent(code) + epilogue],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=Path(__file__).resolve().parents[1],
    )


def peak_mb(proc: subprocess.CompletedProcess) -> int:
    return int(proc.stdout.split("PEAK_RSS_MB")[-1].split()[0])


# ---------------------------------------------------------------------------------------------
# tar building blocks (also used by the fuzz tests)


def fix_checksum(header: bytearray) -> bytearray:
    """Recompute a 512-byte tar header's checksum in place (the field counts as spaces)."""
    header[148:156] = b" " * 8
    header[148:156] = b"%06o\0 " % sum(header[:512])
    return header


def gnu_sparse_member(name: str, realsize: int, data: bytes = b"x" * 512) -> bytes:
    """A GNU sparse ('S') member: ``data`` stored, expanding to ``realsize`` bytes (the rest holes)."""
    info = tarfile.TarInfo(name)
    info.size = len(data)
    header = bytearray(info.tobuf(tarfile.GNU_FORMAT))
    header[156:157] = tarfile.GNUTYPE_SPARSE
    header[386:410] = b"%011o\0%011o\0" % (0, len(data))  # one map entry: (offset 0, numbytes)
    header[482] = 0  # no extension blocks
    header[483:495] = b"%011o\0" % realsize
    pad = -len(data) % 512
    return bytes(fix_checksum(header)) + data + b"\0" * pad


def member(name: str, data: bytes, **pax) -> bytes:
    """One PAX member (header(s) and padded data), with extra PAX records ``pax``."""
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.pax_headers = {k.replace("__", "."): str(v) for k, v in pax.items()}
    return info.tobuf(tarfile.PAX_FORMAT) + data + b"\0" * (-len(data) % 512)


def end_of_archive() -> bytes:
    return b"\0" * 1024


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Path:
    """Three committed shards of three 40x48 samples each (png colour; ``tests.fakes``)."""
    return write_shards(tmp_path_factory.mktemp("hostile-shards"), 9, 3)


def raw_samples(path) -> list[dict]:
    return [{k: v for k, v in s.items() if k != "__url__"} for s in iter_tar(str(path))]


def rewrite(path: Path, samples: list[dict]) -> Path:
    """Write ``samples`` as the tar ``path`` and commit it with fresh stats (so verify passes)."""
    info = write_tar(path, samples)
    index = int(path.name.split("-")[1].split(".")[0])
    commit_stats(path.parent, index, {"shard": path.name, "index": index, **info})
    return path


# ---------------------------------------------------------------------------------------------
# defect 8: sparse, non-regular and malformed members


def test_sparse_member_is_refused_before_it_expands(tmp_path, small):
    """Issue case: a 140 KB-class shard whose sparse member expands to 1 GiB; verify passes (the sha256
    is the file's), the read must not. Before the fix the read allocated the whole GiB."""
    good = (small / shard_name(0)).read_bytes()
    body = good[: good.rindex(b"\0" * 1024)]  # the members, without the end-of-archive blocks
    body = body.rstrip(b"\0")
    body += b"\0" * (-len(body) % 512)
    path = tmp_path / shard_name(0)
    data = body + gnu_sparse_member("zz-000000.color.png", 1 << 30) + end_of_archive()
    atomic_write(path, data)
    info = {"nsamples": 4, "filesize": len(data), "sha256": file_sha256(path)}
    commit_stats(tmp_path, 0, {"shard": path.name, "index": 0, **info})
    assert verify_shard(path)["sha256"] == info["sha256"]  # the file is what its stats say
    proc = run_capped(f"""
        from s2pdata.data import open_shards
        from s2pdata.shards import ShardError
        try:
            keys = [s["__key__"] for s in open_shards({str(path)!r}, decode=False, verify=True)]
            print("READ", keys)
        except ShardError as exc:
            print("ShardError:", exc)
    """)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "ShardError: shard" in proc.stdout and "sparse file entry" in proc.stdout, proc.stdout
    assert shard_name(0) in proc.stdout and "zz-000000.color.png" in proc.stdout
    assert peak_mb(proc) < 700, proc.stdout


@pytest.mark.parametrize(
    "kind",
    ["pax-sparse", "symlink", "directory", "fifo", "hardlink"],
)
def test_members_that_are_not_regular_files_are_refused(tmp_path, kind):
    info = tarfile.TarInfo("k.color.png")
    if kind == "pax-sparse":
        sparse = dict(GNU__sparse__size=1 << 40, GNU__sparse__map="0,10")  # PAX sparse format 0.1
        blob = member("k.color.png", b"x" * 10, **sparse)
    else:
        info.type = {
            "symlink": tarfile.SYMTYPE,
            "directory": tarfile.DIRTYPE,
            "fifo": tarfile.FIFOTYPE,
            "hardlink": tarfile.LNKTYPE,
        }[kind]
        info.linkname = "/etc/passwd"
        blob = info.tobuf(tarfile.PAX_FORMAT)
    path = tmp_path / "x.tar"
    path.write_bytes(member("a.json", b"{}") + blob + end_of_archive())
    with pytest.raises(ShardError, match=r"x\.tar.*member 'k\.color\.png' is a .*entry .*regular files only"):
        list(iter_tar(str(path)))


def test_malformed_pax_number_is_a_shard_error_not_a_bare_value_error(tmp_path):
    """Before the fix: ``ValueError: invalid literal for int() with base 10: '1,2,3'`` escaped iter_tar."""
    path = tmp_path / "pax.tar"
    blob = member("k.json", b"{}", GNU__sparse__realsize="1,2,3", GNU__sparse__size="abc")
    path.write_bytes(blob + end_of_archive())
    with pytest.raises(ShardError, match=r"pax\.tar'.*(unreadable tar|not a regular|sparse)"):
        list(iter_tar(str(path)))


def test_member_declaring_more_than_the_file_holds_is_refused_before_reading(tmp_path):
    path = tmp_path / "big.tar"
    info = tarfile.TarInfo("k.color.png")
    info.size = 50_000
    path.write_bytes(member("k.json", b"{}") + info.tobuf(tarfile.PAX_FORMAT) + b"\1" * 2048 + end_of_archive())
    with pytest.raises(ShardError, match=r"big\.tar.*'k\.color\.png'.*declares 50000 bytes, but 3072 bytes follow"):
        list(iter_tar(str(path)))


# ---------------------------------------------------------------------------------------------
# defect 9: a sample missing a member


@pytest.fixture
def missing_sketch(small, tmp_path) -> Path:
    """Issue case: shard 0 with ``t-00001.sketch.png`` removed (stats recommitted, so verify passes)."""
    samples = raw_samples(small / shard_name(0))
    del samples[1]["sketch.png"]
    return rewrite(tmp_path / shard_name(0), samples)


def test_missing_member_fails_the_loader_naming_shard_and_key(missing_sketch):
    """Before the fix: the batch's sketch plane for t-00001 was np.empty memory (mean 29 or 109, not 241)."""
    pytest.importorskip("torch")
    from s2pdata.data import make_loader

    for crop in (16, None):  # the windowed path, and evaluate's whole-image path
        kw = dict(num_workers=0, mode="exact", batch_size=3 if crop else 1, crop=crop, shuffle_buffer=0)
        with pytest.raises(ShardError, match=r"shard-000000\.tar', key 't-00001'.*no member for sketch") as info:
            list(make_loader(missing_sketch, drop_last=False, **kw))
        assert info.value.key == "t-00001" and info.value.shard.endswith(shard_name(0))


def test_missing_member_is_not_needed_with_online_hints(small, tmp_path):
    pytest.importorskip("torch")
    from s2pdata.data import make_loader

    samples = raw_samples(small / shard_name(0))
    del samples[1]["hint.png"]  # online hints never read the stored map
    path = rewrite(tmp_path / shard_name(0), samples)
    batch = next(iter(make_loader(path, num_workers=0, mode="exact", batch_size=3, crop=16, online_hints=True)))
    assert batch["hint"].shape == (3, 4, 16, 16)
    with pytest.raises(ShardError, match="no member for hint"):
        list(make_loader(path, num_workers=0, mode="exact", batch_size=3, crop=16))


def test_decode_sample_requires_what_it_is_told(missing_sketch):
    raw = list(iter_tar(str(missing_sketch)))[1]
    with pytest.raises(ShardError, match=r"'t-00001': sample has no member for sketch \(it holds color.png, hint.png"):
        decode_sample(raw, require=SAMPLE_FIELDS)
    assert "sketch" not in decode_sample(raw)  # nothing required: what is there, decoded


def test_open_shards_and_inspect_refuse_a_sample_missing_a_member(missing_sketch):
    with pytest.raises(ShardError, match=r"key 't-00001'.*no member for sketch"):
        list(open_shards(missing_sketch))
    from s2pdata.inspect import choose_samples  # what inspect --grid draws its rows from

    for pick in ({"n": 3}, {"random": 3, "seed": 0}, {"keys": ["t-00001"]}):
        with pytest.raises(ShardError, match=r"key 't-00001'.*no member for sketch"):
            choose_samples(missing_sketch.parent, **pick)


# ---------------------------------------------------------------------------------------------
# defect 10: maps of the wrong type or size


def _replace(small, tmp_path, field: str, data: bytes, index: int = 1) -> Path:
    samples = raw_samples(small / shard_name(0))
    samples[index][field] = data
    return rewrite(tmp_path / shard_name(0), samples)


def _png(a: np.ndarray) -> bytes:
    return cv2.imencode(".png", a)[1].tobytes()


@pytest.mark.parametrize(
    "field, array, why",
    [
        # issue: a 16-bit sketch became a constant; a 3-channel hint a (1, 3, H, W) tensor
        ("sketch.png", np.full((40, 48), 60000, np.uint16), "bit depth 16, colour type 0; sketch is stored at 8, 0"),
        ("hint.png", np.zeros((40, 48, 3), np.uint8), "bit depth 8, colour type 2"),
        ("sketch.png", np.zeros((40, 47), np.uint8), "declares 40x47, but the sample's colour is 40x48"),
        ("regions.png", np.zeros((40, 48), np.uint8), "bit depth 8, colour type 0"),
        ("color.png", np.zeros((40, 48), np.uint8), "bit depth 8, colour type 0"),
        ("color.png", np.zeros((40, 48, 4), np.uint8), "bit depth 8, colour type 6"),
    ],
)
def test_maps_of_another_type_or_size_are_refused(small, tmp_path, field, array, why):
    path = _replace(small, tmp_path, field, _png(array))
    with pytest.raises(ShardError, match=rf"key 't-00001'.*{field.split('.')[0]}.*{why}"):
        list(open_shards(path))
    if field.startswith(("sketch", "hint", "color")):
        pytest.importorskip("torch")
        from s2pdata.data import make_loader

        for crop in (16, None):
            with pytest.raises(ShardError, match=rf"key 't-00001'.*{why}"):
                list(make_loader(path, num_workers=0, mode="exact", batch_size=1, crop=crop))


def test_decoded_channels_are_checked_after_decoding_too(small, tmp_path):
    """A JPEG colour stored grey: its header cannot say, the decoded array can."""
    path = _replace(small, tmp_path, "color.png", cv2.imencode(".jpg", np.zeros((40, 48), np.uint8))[1].tobytes())
    with pytest.raises(ShardError, match=r"t-00001.*color.png.*uint8 with 1 channel\(s\); this field is uint8 with 3"):
        list(open_shards(path))


def png_bomb(h: int, w: int, channels: int = 4) -> bytes:
    """A valid PNG of ``h`` x ``w`` zero pixels, 8-bit RGBA (or gray), a few MB on disk: the deflate
    stream repeats one independently flushed segment instead of compressing every row."""
    ctype = {1: 0, 3: 2, 4: 6}[channels]
    row = 1 + w * channels
    rows = max(1, (16 << 20) // row)
    while h % rows:
        rows -= 1
    chunk = bytes(row * rows)
    co = zlib.compressobj(1, zlib.DEFLATED, -15)
    segment = co.compress(chunk) + co.flush(zlib.Z_FULL_FLUSH)
    adler = 1
    for _ in range(h // rows):
        adler = zlib.adler32(chunk, adler)
    stream = b"\x78\x01" + segment * (h // rows) + co.flush() + struct.pack(">I", adler)

    def chunk_of(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", w, h, 8, ctype, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk_of(b"IHDR", ihdr) + chunk_of(b"IDAT", stream) + chunk_of(b"IEND", b"")


def test_hint_bomb_is_refused_from_its_header(small, tmp_path):
    """Issue case: a 16384^2 hint map in a shard of 40x48 samples cost 1.7 GB resident before the fix."""
    bomb = png_bomb(16384, 16384)
    assert len(bomb) < 8 << 20
    path = _replace(small, tmp_path, "hint.png", bomb)
    proc = run_capped(f"""
        from s2pdata.data import open_shards
        from s2pdata.shards import ShardError
        for code in ("open_shards", "loader"):
            try:
                if code == "open_shards":
                    list(open_shards({str(path)!r}))
                else:
                    from s2pdata.data import make_loader
                    list(make_loader({str(path)!r}, num_workers=0, mode="exact", batch_size=1, crop=16))
                print(code, "READ")
            except ShardError as exc:
                print(code, "ShardError:", exc)
    """)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.count("ShardError: shard") == 2, proc.stdout
    assert "key 't-00001'" in proc.stdout and "declares 16384x16384 pixels (at most 67108864" in proc.stdout
    assert peak_mb(proc) < 1000, proc.stdout


def test_colour_past_the_pixel_bound_is_refused_from_its_header(small, tmp_path):
    bomb = png_bomb(8192, 8200, 3)  # 67.2 M pixels: one more row of 8200 than MAX_SAMPLE_PIXELS allows
    path = _replace(small, tmp_path, "color.png", bomb)
    proc = run_capped(f"""
        from s2pdata.data import open_shards
        from s2pdata.shards import ShardError
        try:
            list(open_shards({str(path)!r}))
        except ShardError as exc:
            print("ShardError:", exc)
    """)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "ShardError: shard" in proc.stdout and "declares 8192x8200 pixels (at most 67108864" in proc.stdout


# ---------------------------------------------------------------------------------------------
# defect 11 (loader part): a build without samples


def _empty_build(tmp_path, *, stats: bool) -> Path:
    out = tmp_path / "empty"
    out.mkdir()
    for i in range(2):
        info = write_tar(out / shard_name(i), [])
        if stats:
            commit_stats(out, i, {"shard": shard_name(i), "index": i, **info})
    return out


@pytest.mark.parametrize("stats", [True, False])
def test_loader_over_a_build_without_samples_raises_instead_of_spinning(tmp_path, stats):
    """Before the fix the resampled stream drew empty shards forever (this child timed out)."""
    pytest.importorskip("torch")
    out = _empty_build(tmp_path, stats=stats)
    proc = run_capped(
        f"""
        from s2pdata.data import make_loader
        try:
            batch = next(iter(make_loader({str(out)!r}, num_workers=0, batch_size=2)))
            print("BATCH", batch["__key__"])
        except ValueError as exc:
            print("ValueError:", exc)
        """,
        timeout=90,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "ValueError: urls" in proc.stdout and "hold no samples" in proc.stdout, proc.stdout


# ---------------------------------------------------------------------------------------------
# defect 12: valid JSON of the wrong shape


@pytest.mark.parametrize(
    "content, why",
    [
        ("[]", "stats file holds a JSON list, not an object"),
        ("{}", "stats file lacks shard, index, nsamples"),
        ('{"nsamples": "3"}', "stats file lacks shard"),
        ("[" * 100_000 + "]" * 100_000, "stats file unreadable"),
    ],
)
def test_stats_of_the_wrong_shape_mean_an_uncommitted_shard(small, tmp_path, content, why):
    """Before the fix ``[]`` raised AttributeError from scan_committed (a resume), verify and inspect."""
    out = tmp_path / "out"
    out.mkdir()
    for i in range(3):  # stats with every key a build writes (tests.fakes writes only what a reader uses)
        info = write_tar(out / shard_name(i), raw_samples(small / shard_name(i)))
        extra = {"rejected": 0, "reasons": {}, "rejects": [], "bytes": {"json": 1}, "seconds": {"write": 0.1}}
        commit_stats(out, i, {"shard": shard_name(i), "index": i, **info, **extra})
    assert sorted(scan_committed(out, 3)[0]) == [0, 1, 2]
    (out / stats_name(1)).write_text(content)
    done, damaged = scan_committed(out, 3)
    assert sorted(done) == [0, 2] and damaged[1].startswith(why), damaged
    with pytest.raises(ShardError, match=r"shard-000001\.tar.*(its stats file|does not match its stats)"):
        verify_shard(out / shard_name(1))


def test_stats_entries_of_the_wrong_type_are_named(tmp_path):
    out = write_shards(tmp_path / "out", 3, 3)
    record = json.loads((out / stats_name(0)).read_text())
    (out / stats_name(0)).write_text(json.dumps({**record, "nsamples": [3]}))
    with pytest.raises(ShardError, match=r"shard-000000\.tar.*its stats file has nsamples = \[3\], not an int"):
        shard_record(out / shard_name(0))
    (out / stats_name(0)).unlink()
    (out / "shardindex.json").write_text("[]")
    with pytest.raises(ShardError, match=r"shard-000000\.tar.*shardindex\.json does not parse \(no shardlist"):
        shard_record(out / shard_name(0))


@pytest.mark.parametrize(
    "content, why",
    [("[]", "it holds a JSON list, not an object"), ('{"plan": []}', "it has plan = \\[\\], not a dict"), ("{", "")],
)
def test_read_manifest_is_a_one_line_error(tmp_path, content, why):
    (tmp_path / "dataset.json").write_text(content)
    with pytest.raises(ManifestError, match=rf"dataset\.json is damaged.*{why}.*--overwrite") as info:
        read_manifest(tmp_path)
    assert "\n" not in str(info.value)
    with pytest.raises(FileNotFoundError):
        read_manifest(tmp_path / "nowhere")
    (tmp_path / "dataset.json").write_text('{"plan": {"shards": 2}, "status": "complete"}')
    assert read_manifest(tmp_path)["plan"] == {"shards": 2}


def test_json_member_of_the_wrong_shape_is_a_shard_error(small, tmp_path):
    """Before the fix 100,000 nested brackets raised RecursionError from decode_sample."""
    for bad, why in ((b"[" * 100_000 + b"]" * 100_000, "RecursionError"), (b"[]", "a JSON list, not an object")):
        path = _replace(small, tmp_path, "json", bad)
        with pytest.raises(ShardError, match=rf"key 't-00001': member t-00001\.json does not decode .*{why}"):
            list(open_shards(path))


# ---------------------------------------------------------------------------------------------
# defect 13: links planted on write paths


def test_create_new_never_opens_what_is_planted(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("keep")
    (tmp_path / "link").symlink_to(victim)
    with pytest.raises(FileExistsError):
        create_new(tmp_path / "link")
    with pytest.raises(OSError):  # ELOOP: a link is not followed even where an existing file may be reused
        create_new(tmp_path / "link", exclusive=False)
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(OSError, match="not a regular file"):
        create_new(tmp_path / "fifo", exclusive=False)
    with create_new(tmp_path / "lock", exclusive=False) as f:
        f.write(b"pid 1")
    with create_new(tmp_path / "lock", exclusive=False) as f:  # reused, not truncated
        assert f.read() == b"pid 1"
    assert victim.read_text() == "keep"


def test_writers_never_write_through_planted_links(tmp_path, monkeypatch):
    """Links at the targets and at the temporary names (the old predictable ``NAME.PID.tmp`` and a
    guessed fresh one): every victim keeps its bytes; the targets become regular files."""
    out = tmp_path / "out"
    out.mkdir()
    victims = []

    def plant(name: str) -> None:
        victim = tmp_path / f"victim-{len(victims)}"
        victim.write_text("keep")
        victims.append(victim)
        (out / name).symlink_to(victim)

    for name in (shard_name(0), stats_name(0), "shardindex.json"):
        plant(name)
        plant(f"{name}.{os.getpid()}.tmp")  # what the writers used to open, following any link there
    guessed = iter([out / "guessed.tmp"])
    plant("guessed.tmp")
    real = _safeio._tmp_path
    monkeypatch.setattr(_safeio, "_tmp_path", lambda path: next(guessed, None) or real(path))
    info = write_tar(out / shard_name(0), [{"__key__": "k", "json": b"{}"}])  # draws the planted name first
    commit_stats(out, 0, {"shard": shard_name(0), "index": 0, **info})
    atomic_write(out / "shardindex.json", b"{}")
    assert [v.read_text() for v in victims] == ["keep"] * len(victims)
    for name in (shard_name(0), stats_name(0), "shardindex.json"):
        assert not (out / name).is_symlink()
    assert [s["__key__"] for s in iter_tar(str(out / shard_name(0)))] == ["k"]


def test_pool_save_never_writes_through_planted_links(tmp_path):
    from s2pdata.pool import Patch, PatchPool

    pool = PatchPool([Patch(np.zeros((4, 5, 3), np.uint8), np.ones((4, 5), bool), "rect", "k")])
    d = tmp_path / "pool"
    d.mkdir()
    victim = tmp_path / "victim"
    victim.write_text("keep")
    for name in ("patch_pool.npy.tmp", "patch_pool.json.tmp", "patch_pool.json"):  # the old fixed names, the target
        (d / name).symlink_to(victim)
    pool.save(d)
    assert victim.read_text() == "keep"
    assert len(PatchPool.load(d)) == 1 and not (d / "patch_pool.json").is_symlink()


def test_pool_index_of_the_wrong_shape_is_a_value_error(tmp_path):
    from s2pdata.pool import PatchPool

    for content, why in (("[]", "holds a JSON list, not an object"), ("[" * 100_000, "not valid JSON")):
        (tmp_path / "patch_pool.json").write_text(content)
        with pytest.raises(ValueError, match=why):
            PatchPool.load(tmp_path)


def test_shard_bytes_do_not_depend_on_the_temporary_name(tmp_path):
    samples = [{"__key__": "k", "json": b"{}", "color.png": b"\x89PNG"}]
    a, b = write_tar(tmp_path / "a.tar", samples), write_tar(tmp_path / "b.tar", samples)
    assert a == b and (tmp_path / "a.tar").read_bytes() == (tmp_path / "b.tar").read_bytes()
    assert not list(tmp_path.glob("*.tmp"))


def test_member_helpers_make_what_tarfile_reads(tmp_path):
    """The helpers above (and the fuzz tests') build tars that tarfile parses as intended."""
    with tarfile.open(fileobj=io.BytesIO(gnu_sparse_member("s.png", 1 << 20) + end_of_archive())) as tar:
        (m,) = tar.getmembers()
    assert m.issparse() and m.size == 1 << 20


def test_append_line_never_writes_through_a_link_or_into_a_fifo(tmp_path):
    from s2pdata._safeio import append_line

    victim = tmp_path / "victim"
    victim.write_text("keep")
    (tmp_path / "link.jsonl").symlink_to(victim)
    os.mkfifo(tmp_path / "fifo.jsonl")
    for name in ("link.jsonl", "fifo.jsonl"):
        with pytest.raises(OSError):
            append_line(tmp_path / name, "{}")  # the FIFO fails at once (no reader), never blocks
    assert victim.read_text() == "keep"
    append_line(tmp_path / "log.jsonl", '{"a": 1}')
    append_line(tmp_path / "log.jsonl", '{"a": 2}')
    assert (tmp_path / "log.jsonl").read_text() == '{"a": 1}\n{"a": 2}\n'
