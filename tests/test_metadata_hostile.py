"""Hostile metadata (issue 14, item 3): an over-long line (a gzip bomb) is skipped and counted
with memory bounded, a field of the wrong type and a non-integral id are counted bad lines, and
neither aborts the build nor overwrites a real record."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tarfile
import textwrap
import zlib
from pathlib import Path

import pytest

from s2pdata.sources.metadata import MAX_LINE_BYTES, BadRecord, load_metadata, normalize_post

from . import fakes
from .test_sources import items_of

CAP = 3 << 29  # 1.5 GiB of address space for the process that reads the bomb
ZEROS = 1 << 30  # one line of 1 GiB of zeros: reading it whole took 2 GiB (chunks, then joined)
UNIT = 16 << 20  # zeros are compressed once per 16 MiB unit and the unit's bytes repeated
ROOT = Path(__file__).resolve().parent.parent


def _line(post: dict) -> bytes:
    return json.dumps(post).encode() + b"\n"


def _write_gzip_with_zeros(f, head: bytes, zeros: int, tail: bytes) -> None:
    """One gzip stream of ``head``, ``zeros`` zero bytes (a multiple of ``UNIT``) and ``tail``.

    Each unit is deflated once and full-flushed, so its compressed bytes can be written again
    and again: nothing near ``zeros`` bytes is ever held, and writing takes no compression time.
    """
    c = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    f.write(b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff")  # gzip header, mtime 0
    f.write(c.compress(head) + c.flush(zlib.Z_FULL_FLUSH))
    unit = bytes(UNIT)
    packed = c.compress(unit) + c.flush(zlib.Z_FULL_FLUSH)
    crc = zlib.crc32(unit, zlib.crc32(head))
    f.write(packed)
    for _ in range(zeros // UNIT - 1):
        f.write(packed)
        crc = zlib.crc32(unit, crc)
    f.write(c.compress(tail) + c.flush())
    crc = zlib.crc32(tail, crc)
    f.write(crc.to_bytes(4, "little") + ((len(head) + zeros + len(tail)) & 0xFFFFFFFF).to_bytes(4, "little"))


def _bomb(path: Path, fmt: str, first: bytes, last: bytes) -> None:
    """``first`` line, a line of zeros far above the memory cap, then ``last`` line."""
    with open(path, "wb") as f:
        if fmt == "json":  # sparse: the zeros are read from a hole, no disk used
            f.write(first)
            f.seek(len(first) + ZEROS)
            f.write(b"\n" + last)
        elif fmt == "json.gz":
            _write_gzip_with_zeros(f, first, ZEROS, b"\n" + last)
        else:  # posts.json inside a .tar.gz, read as a stream
            info = tarfile.TarInfo("posts.json")
            info.size = len(first) + ZEROS + 1 + len(last)
            pad = -info.size % 512
            head = info.tobuf(tarfile.GNU_FORMAT) + first
            _write_gzip_with_zeros(f, head, ZEROS, b"\n" + last + bytes(pad + 1024))


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["json.gz", "json", "tar.gz"])
def test_overlong_line_is_skipped_under_a_memory_cap(tmp_path, fmt):
    """The issue's 5 GB bomb, scaled to 1 GiB: the reader before the fix hit MemoryError on each
    format under this cap (and at 5.4 GB uncapped)."""
    path = tmp_path / f"posts.{fmt}"
    _bomb(path, fmt, _line(fakes.post_new(1, artist=("alice",))), _line(fakes.post_new(2, artist=("bob",))))
    code = textwrap.dedent(f"""
        import json
        from s2pdata.sources.metadata import load_metadata
        table, info = load_metadata([{str(path)!r}], [1, 2], cache_dir=None)
        print(json.dumps({{"ids": table.id.tolist(), "artists": table.artist.tolist(), **info}}))
    """)
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    run = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (CAP, CAP)),
    )
    assert run.returncode == 0, run.stderr[-2000:]
    info = json.loads(run.stdout.splitlines()[-1])
    assert info["ids"] == [1, 2] and info["artists"] == ["alice", "bob"]
    assert info["bad_lines"] == 1 and info["long_lines"] == 1 and info["records"] == 2


def test_line_at_the_cap_is_read_and_one_byte_more_is_skipped(tmp_path):
    post = fakes.post_new(1)
    pad = MAX_LINE_BYTES - len(_line(post)) - len(', "x": ""') + 1  # the line with its newline: cap + 1
    fits = json.dumps({**post, "x": "a" * pad}).encode()
    assert len(fits) == MAX_LINE_BYTES
    path = tmp_path / "posts.jsonl"
    path.write_bytes(fits + b"\n" + fits + b" \n" + _line(fakes.post_new(2)))
    table, info = load_metadata([path], [1, 2], cache_dir=None)
    assert table.id.tolist() == [1, 2] and info["bad_lines"] == info["long_lines"] == 1
    root = tmp_path / "gwern"
    fakes.write_gwern(root, {1: "png", 2: "png"})
    (root / "metadata").mkdir()
    path.rename(root / "metadata" / "posts.jsonl")
    assert "2 records, 2 matched listed ids, 1 bad lines (1 over 1 MiB, skipped unread)" in items_of(root).summary()


NEW_BAD = [
    {"id": 1000, "tag_string_artist": 12345},
    {"id": 1000, "tag_string_artist": ["bob"]},
    {"id": 1000, "tag_string_general": {"a": 1}},
    {"id": 1000, "tag_string": 7, "rating": "g"},
    {"id": 1000, "rating": ["g"]},
    {"id": 1000, "md5": 5},
    {"id": 1000, "file_ext": ["png"]},
    {"id": 1000, "image_width": "wide"},
    {"id": 1000, "score": [1]},
    {"id": 1000, "score": 1e300},
    {"id": 1000, "image_height": 2**70},
    {"id": 1000, "is_deleted": [True]},
]
OLD_BAD = [
    {"id": "1000", "tags": [{"id": "1", "name": 5, "category": "1"}]},
    {"id": "1000", "tags": ["bob"]},
    {"id": "1000", "tags": [{"id": "1", "name": "bob", "category": "artist"}]},
    {"id": "1000", "tags": [{"id": "1", "name": "bob", "category": [1]}]},
    {"id": "1000", "score": "lots"},
    {"id": "1000", "image_width": "12.5"},
    {"id": "1000", "rating": {"s": 1}},
]


@pytest.mark.parametrize("dialect", ["new", "old"])
def test_wrong_field_types_are_counted_bad_lines(tmp_path, dialect):
    make = fakes.post_new if dialect == "new" else fakes.post_old
    good = [make(1000, rating="e", artist=("alice",)), make(1001, artist=("carol",))]
    bad = [{**make(1000, rating="g", artist=("bob",)), **b} for b in (NEW_BAD if dialect == "new" else OLD_BAD)]
    deep = b'{"id": 1000, "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}\n"  # RecursionError in json
    path = tmp_path / "posts.json"
    path.write_bytes(b"".join(_line(p) for p in good + bad) + deep)
    for b in bad:
        with pytest.raises(BadRecord):
            normalize_post(b)
    table, info = load_metadata([path], [1000, 1001], cache_dir=None)
    assert info["bad_lines"] == len(bad) + 1 and info["duplicates"] == 0 and info["records"] == len(good)
    assert table.id.tolist() == [1000, 1001]
    f = table.facts(table.row(1000))
    assert f["artist"] == ["alice"] and f["rating"] == "explicit"
    assert table.facts(table.row(1001))["artist"] == ["carol"]


def test_non_integral_id_is_a_bad_line_and_overwrites_nothing(tmp_path):
    root = tmp_path / "gwern"
    fakes.write_gwern(root, {1000: "png", 1001: "png", 1002: "png"})
    real = fakes.post_new(1000, rating="e", artist=("alice",))
    fake = fakes.post_new(1000, rating="g", artist=("bob",))
    bad = [{**fake, "id": v} for v in (1000.9, "1000.9", 999.5, True, 1e20, "1e3", "", None, [1000], "١٠٠٠")]
    ok = [fakes.post_old(1001, artist=("carol",)), {**fakes.post_new(1002, artist=("dave",)), "id": 1002.0}]
    fakes.write_jsonl(root / "metadata" / "posts.json", [real, *bad, *ok])
    opt = tmp_path / "opt-out.txt"
    opt.write_text("alice\n")
    for argv, kept in [
        ((), [1000, 1001, 1002]),
        (("--rating", "general"), [1001, 1002]),
        (("--opt-out", str(opt)), [1001, 1002]),
    ]:
        src = items_of(root, *argv)
        assert [it.meta["id"] for it in src.items()] == kept, argv
        m = src._get()["metadata"]
        assert m["bad_lines"] == len(bad) and m["duplicates"] == 0 and m["records"] == 3
        assert f"{len(bad)} bad lines" in src.summary()
    assert [it.meta["artist"] for it in items_of(root).items()] == ["alice", "carol", "dave"]
