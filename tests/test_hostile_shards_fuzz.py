"""Seed-driven fuzzing of shards (issue 21): tar headers through ``iter_tar``, and sample members
through ``decode_sample``, ``open_shards`` and the torch loader's stream.

A case is one seed: ``tar_case(base, seed)`` mutates the bytes of a small shard (header bytes and
numeric fields with the checksum fixed up, type flags, PAX records, GNU sparse and long-name members,
truncations); ``member_case(raw, seed)`` mutates one sample's members (dropped, swapped, truncated,
random or flipped bytes, PNG headers rewritten with a valid CRC, other bit depths, channels and sizes,
decompression bombs, JSON of every shape). ``check_tar`` and ``check_sample`` run a case and return
``"read"`` or ``"refused"``; they raise ``Escape`` when anything but ``ShardError`` or ``ValueError``
leaves a reader, when ``iter_tar`` yields more bytes than the file holds, or when a decoded field or a
batch is not what its schema says (garbage). ``run_fuzz`` runs seeds and counts; ``benchmarks/fuzz.py``
can import these to run longer (``run_fuzz(kind, range(N), workdir)``). In CI the cases run in one child
per kind, capped in address space (``run_capped``) and counted, not timed.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import random
import signal
import struct
import sys
import tarfile
import zlib
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest

from s2pdata.shards import ShardError, _field_type, decode_sample, iter_tar, write_tar

from .test_hostile_shards import end_of_archive, fix_checksum, gnu_sparse_member, member, png_bomb, run_capped

CASE_SECONDS = 20  # a case still running after this long is a hang (an escape), never a slow pass
TAR_TYPES = b"0123456789SxgLKDMVNAIX\0"
PAX_KEYS = (
    "size",
    "path",
    "linkpath",
    "mtime",
    "uid",
    "hdrcharset",
    "GNU.sparse.major",
    "GNU.sparse.minor",
    "GNU.sparse.map",
    "GNU.sparse.size",
    "GNU.sparse.realsize",
    "GNU.sparse.numblocks",
    "GNU.sparse.offset",
    "GNU.sparse.numbytes",
    "GNU.sparse.name",
)
PAX_VALUES = (
    "-1",
    "0",
    "1",
    "abc",
    "1,2,3",
    "0,10",
    "1073741824",
    "9" * 30,
    "",
    "1.5",
    "1e9",
    "0,1073741824",
    "\udcff",
)


class Escape(AssertionError):
    """A reader let something through that the fuzz tests forbid: another exception, unbounded
    output, or garbage."""


# ---------------------------------------------------------------------------------------------
# making cases


def base_samples(n: int = 3, h: int = 24, w: int = 32) -> list[dict]:
    """``n`` encoded samples (``tests.fakes.shard_sample``, png colour, one stored draft and regions)."""
    from s2pdata.shards import Schema, encode_sample

    from .fakes import shard_sample

    schema = Schema(color_format="png", drafts=1, regions=True)
    out = []
    for k in range(n):
        s = shard_sample(k, h, w, drafts=1)
        s["regions"] = (s["sketch"] // 64).astype(np.int32)
        out.append(encode_sample(s, schema))
    return out


def _headers(data: bytes) -> list[int]:
    """Offsets of every header block in the tar ``data`` (PAX extended headers included)."""
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = tar.getmembers()
    return sorted({m.offset for m in members} | {m.offset_data - 512 for m in members})


def tar_case(base: bytes, seed: int) -> tuple[str, bytes]:
    """One mutated copy of the tar ``base``, decided by ``seed``: (kind, bytes)."""
    rng = random.Random(seed)
    heads = _headers(base)
    data = bytearray(base)
    at = rng.choice(heads)
    kind = rng.choice(
        ("header-bytes", "header-field", "type", "pax-record", "pax-bytes", "sparse", "longname", "truncate")
    )
    if kind == "header-bytes":
        for _ in range(rng.randint(1, 8)):
            data[at + rng.randrange(512)] = rng.randrange(256)
    elif kind == "header-field":
        start, size = rng.choice([(100, 8), (108, 8), (116, 8), (124, 12), (136, 12), (329, 8), (337, 8), (345, 155)])
        data[at + start : at + start + size] = rng.choice(
            [
                b"\x80" + rng.randbytes(size - 1),  # base-256
                b"\xff" * size,  # base-256, negative
                b"-1".ljust(size, b"\0"),
                b"7" * size,
                rng.randbytes(size),
                b"%0*o\0" % (size - 1, rng.choice([0, 1, 1 << 30, 1 << 33, 8**11 - 1])),
            ]
        )
    elif kind == "type":
        data[at + 156] = rng.choice(TAR_TYPES)
    elif kind == "pax-record":
        pax = {rng.choice(PAX_KEYS).replace(".", "__"): rng.choice(PAX_VALUES) for _ in range(rng.randint(1, 4))}
        try:
            extra = member(f"k{seed}.json", b'{"a": 1}', **pax)
        except (ValueError, UnicodeError):  # tarfile would not write it: put the raw record in by hand
            record = f" GNU.sparse.map={rng.choice(PAX_VALUES)}\n".encode("utf-8", "surrogateescape")
            extra = member(f"k{seed}.json", b"{}", path=f"k{seed}.json")
            extra = extra[:512] + record + extra[512 + len(record) :]
        data[at:at] = extra
    elif kind == "pax-bytes":
        pax = [h for h in heads if base[h + 156 : h + 157] in (b"x", b"g")] or heads
        at = rng.choice(pax) + 512
        for _ in range(rng.randint(1, 4)):
            data[at + rng.randrange(min(64, len(data) - at))] = rng.choice(b"0123456789 =\n\0x-")
    elif kind == "sparse":
        data[at:at] = gnu_sparse_member(f"s{seed}.color.png", rng.choice([0, 1, 1 << 20, 1 << 30, 1 << 40]))
    elif kind == "longname":
        info = tarfile.TarInfo("././@LongLink")
        info.type = rng.choice([tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK])
        body = rng.choice([b"x" * 300, b"k.color.png\0", rng.randbytes(600), b""])
        info.size = rng.choice([len(body), 1 << 30, len(body) + 512])
        data[at:at] = info.tobuf(tarfile.GNU_FORMAT)[:512] + body + b"\0" * (-len(body) % 512)
    else:
        return kind, bytes(data[: rng.randrange(len(data))])
    if kind in ("header-bytes", "header-field", "type") and rng.random() < 0.9:
        data[at : at + 512] = fix_checksum(bytearray(data[at : at + 512]))
    return kind, bytes(data)


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _png_with_ihdr(data: bytes, rng: random.Random) -> bytes:
    """``data`` (a PNG) with a rewritten IHDR (valid CRC): another size, depth, colour type or interlace."""
    w, h, depth, ctype, comp, filt, lace = struct.unpack(">IIBBBBB", data[16:29])
    field = rng.randrange(5)
    if field == 0:
        w = rng.choice([0, 1, w - 1, w + 1, 1 << 14, 1 << 31, rng.randrange(1 << 32)])
    elif field == 1:
        h = rng.choice([0, 1, h - 1, h + 1, 1 << 14, 1 << 31, rng.randrange(1 << 32)])
    elif field == 2:
        depth = rng.choice([1, 2, 4, 8, 16, 0, 255])
    elif field == 3:
        ctype = rng.choice([0, 2, 3, 4, 6, 7])
    else:
        lace = rng.choice([0, 1, 2])
    ihdr = struct.pack(">IIBBBBB", w % (1 << 32), h % (1 << 32), depth, ctype, comp, filt, lace)
    return data[:8] + _chunk(b"IHDR", ihdr) + data[33:]


def _variant(field: str, raw: dict, rng: random.Random) -> bytes:
    """Another valid image in place of ``field``: other dtype, channels, size or codec."""
    h, w = struct.unpack(">II", raw["sketch.png"][16:24])[::-1]
    shape = rng.choice([(h, w), (h, w, 3), (h, w, 4), (h, w + 1), (h - 1, w, 3), (1, 1), (w, h, 4)])
    a = np.random.default_rng(rng.randrange(1 << 30)).integers(0, 256, shape, dtype=np.uint8)
    if rng.random() < 0.3:
        a = a.astype(np.uint16) * 257
    ext = rng.choice([".png", ".png", ".jpg", ".webp", ".bmp", ".tiff"])
    if ext in (".jpg", ".webp") and a.dtype == np.uint16:
        a = (a // 257).astype(np.uint8)
    return cv2.imencode(ext, a)[1].tobytes()


@functools.cache
def _bomb(side: int, channels: int) -> bytes:
    return png_bomb(side, side, channels)


def member_case(raw: dict, seed: int) -> tuple[str, dict]:
    """One mutated copy of the encoded sample ``raw`` (``{"__key__", field: bytes}``), decided by ``seed``."""
    rng = random.Random(seed)
    out = dict(raw)
    fields = [f for f in raw if not f.startswith("__")]
    field = rng.choice(fields)
    data = raw[field]
    kind = rng.choice(
        ("drop", "swap", "truncate", "random", "flip", "ihdr", "variant", "bomb", "json", "duplicate", "rename")
    )
    if kind == "drop":
        del out[field]
    elif kind == "swap":
        out[field] = raw[rng.choice(fields)]
    elif kind == "truncate":
        out[field] = data[: rng.randrange(len(data) + 1)]
    elif kind == "random":
        out[field] = rng.randbytes(rng.choice([0, 8, 33, 500]))
    elif kind == "flip":
        b = bytearray(data)
        for _ in range(rng.randint(1, 6)):
            b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
        out[field] = bytes(b)
    elif kind == "ihdr" and data[:4] == b"\x89PNG":
        out[field] = _png_with_ihdr(data, rng)
    elif kind == "variant" and field != "json":
        out[field] = _variant(field, raw, rng)
    elif kind == "bomb" and field != "json":
        out[field] = _bomb(rng.choice([4096, 9000]), rng.choice([1, 4]))
    elif kind == "json" or field == "json":
        depth = rng.choice([10, 100_000])
        out["json"] = rng.choice(
            [b"[" * depth + b"]" * depth, b"[]", b"3", b'"s"', b"null", b"\xff\xfe", b'{"a": NaN}', b"{" * depth]
        )
    elif kind == "duplicate":
        out[field.partition(".")[0] + rng.choice([".jpg", ".png", ".webp"])] = data
    else:  # rename: the member under another extension
        out[field.partition(".")[0] + rng.choice([".jpg", ".png", ".webp", ".npy", ""])] = out.pop(field)
    return kind, out


# ---------------------------------------------------------------------------------------------
# running cases


def _alarm(signum, frame):
    raise TimeoutError(f"case ran past {CASE_SECONDS} s")


def check_tar(path: Path) -> str:
    """Read the tar at ``path`` with ``iter_tar``: "read" or "refused" (ShardError); ``Escape`` on
    anything else, or on more bytes yielded than the file holds."""
    size, got = path.stat().st_size, 0
    try:
        for s in iter_tar(str(path)):
            for name, v in s.items():
                if not name.startswith("__"):
                    if not isinstance(v, bytes):
                        raise Escape(f"member {name} is {type(v).__name__}, not bytes")
                    got += len(v)
            if got > size:
                raise Escape(f"iter_tar yielded {got} bytes from a {size}-byte file")
    except ShardError:
        return "refused"
    except Escape:
        raise
    except Exception as exc:  # noqa: BLE001 - what the fuzz test is looking for
        raise Escape(f"iter_tar raised {type(exc).__name__}: {exc}") from exc
    return "read"


def _check_fields(sample: dict) -> None:
    """Garbage check of a decoded sample: every known field of its dtype, channels and the colour's size."""
    hw = sample["color"].shape[:2] if "color" in sample else None
    for name, a in sample.items():
        kind = _field_type(name)
        if kind is None or not isinstance(a, np.ndarray):
            if name == "json" and not isinstance(a, dict):
                raise Escape(f"json decoded to a {type(a).__name__}")
            continue
        channels = a.shape[2] if a.ndim == 3 else 0
        if a.dtype != kind[0] or channels != kind[1] or (hw is not None and a.shape[:2] != hw):
            raise Escape(f"{name} decoded to {a.dtype} {a.shape} (colour {hw})")


def _check_batch(batch: dict, crop: int | None) -> None:
    """Garbage check of a loader batch: uint8 planes of the right channel counts, one size."""
    want = {"color": 3, "sketch": 1, "hint": 4}
    hw = batch["color"].shape[2:]
    for name, c in want.items():
        t = batch[name]
        if str(t.dtype) != "torch.uint8" or t.shape[1] != c or t.shape[2:] != hw or t.shape[0] != len(batch["__key__"]):
            raise Escape(f"batch {name} is {t.dtype} {tuple(t.shape)}")
    if crop is not None and tuple(hw) != (crop, crop):
        raise Escape(f"batch of {tuple(hw)}, crop {crop}")


def check_sample(path: Path, raws: list[dict]) -> str:
    """Read the shard at ``path`` (``raws`` written) through ``decode_sample``, ``open_shards`` and the
    torch loader (draft stage, a crop and whole images): "read" when all accept it, "refused" when
    any raises ShardError or ValueError; ``Escape`` on anything else or on garbage."""
    from s2pdata.data import open_shards

    refused = False
    steps = [
        lambda: [_check_fields(decode_sample(r)) for r in raws],
        lambda: [_check_fields(s) for s in open_shards(path)],
    ]
    try:
        from s2pdata.data.loader import DraftDataset

        for crop in (16, None):  # the stream make_loader's workers run: a window, and whole images (evaluate)
            kw = dict(mode="exact", batch_size=1, crop=crop, shuffle_buffer=0)
            steps.append(lambda kw=kw: [_check_batch(b, kw["crop"]) for b in DraftDataset(path, **kw)])
    except ModuleNotFoundError:  # no torch
        pass
    for step in steps:
        try:
            step()
        except (ShardError, ValueError):
            refused = True
        except Escape:
            raise
        except Exception as exc:  # noqa: BLE001 - what the fuzz test is looking for
            raise Escape(f"{type(exc).__name__}: {exc}") from exc
    return "refused" if refused else "read"


def run_fuzz(kind: str, seeds, workdir: Path) -> dict:
    """Run ``kind`` ("tar" or "member") cases for ``seeds`` in ``workdir``; returns counts per
    (mutation, outcome) and the escapes as ``[(seed, mutation, message)]``."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    if kind == "member":  # import torch before any case's alarm: a first import can take longer than a case may
        with contextlib.suppress(ModuleNotFoundError):
            import s2pdata.data.loader  # noqa: F401
    samples = base_samples()
    base_path = workdir / "base.tar"
    write_tar(base_path, samples)
    base = base_path.read_bytes()
    counts: Counter = Counter()
    escapes = []
    old = signal.signal(signal.SIGALRM, _alarm)
    try:
        for seed in seeds:
            path = workdir / "case.tar"
            signal.alarm(CASE_SECONDS)
            try:
                if kind == "tar":
                    mutation, data = tar_case(base, seed)
                    path.write_bytes(data)
                    outcome = check_tar(path)
                else:
                    i = seed % len(samples)
                    mutation, raw = member_case(samples[i], seed)
                    raws = samples[:i] + [raw] + samples[i + 1 :]
                    write_tar(path, raws)
                    outcome = check_sample(path, [{**r, "__url__": str(path)} for r in raws])
            except (Escape, TimeoutError) as exc:
                escapes.append((seed, mutation, str(exc)[:300]))
                outcome = "escape"
            finally:
                signal.alarm(0)
            counts[f"{mutation}:{outcome}"] += 1
    finally:
        signal.signal(signal.SIGALRM, old)
    return {"counts": dict(sorted(counts.items())), "escapes": escapes}


# ---------------------------------------------------------------------------------------------
# the tests

CASES = {"tar": 800, "member": 90}  # about 8 s and 12 s on one core, each child's start included


@pytest.mark.parametrize("kind", sorted(CASES))
def test_fuzzed_shards_raise_only_shard_errors_and_never_yield_garbage(kind, tmp_path):
    proc = run_capped(
        f"""
        import json
        from pathlib import Path
        from tests.test_hostile_shards_fuzz import run_fuzz
        result = run_fuzz({kind!r}, range({CASES[kind]}), Path({str(tmp_path)!r}))
        print("RESULT", json.dumps(result))
        """,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.split("RESULT", 1)[1].split("\nPEAK_RSS_MB")[0])
    assert result["escapes"] == [], result["escapes"][:5]
    counts = result["counts"]
    assert sum(counts.values()) == CASES[kind]
    outcomes = Counter(k.rsplit(":", 1)[1] for k in counts)
    assert outcomes["refused"] and outcomes["read"], counts  # the cases reach both sides


def test_cases_are_reproducible_and_varied():
    base = b"".join(member(f"k.{f}", b"x" * 10) for f in ("color.png", "json")) + end_of_archive()
    assert tar_case(base, 7) == tar_case(base, 7)
    assert len({tar_case(base, s)[0] for s in range(200)}) == 8
    raw = base_samples(1)[0]
    assert member_case(raw, 3) == member_case(raw, 3)
    assert len({member_case(raw, s)[0] for s in range(300)}) >= 10


def test_the_checks_catch_an_escape_and_garbage(tmp_path, monkeypatch):
    import s2pdata.shards.tario as shards_mod

    raw = base_samples(1)[0]
    path = tmp_path / "s.tar"
    write_tar(path, [raw])
    raws = [{**raw, "__url__": str(path)}]
    assert check_sample(path, raws) == "read" and check_tar(path) == "read"
    real = decode_sample
    garbage = np.zeros((24, 32), np.uint16)  # a decoder that let a 16-bit sketch through
    monkeypatch.setattr(sys.modules[__name__], "decode_sample", lambda r, **kw: {**real(r, **kw), "sketch": garbage})
    with pytest.raises(Escape, match="sketch decoded to uint16"):
        check_sample(path, raws)
    monkeypatch.setattr(shards_mod, "_member_problem", lambda m, size: None)
    sparse = tmp_path / "sparse.tar"
    sparse.write_bytes(gnu_sparse_member("k.color.png", 1 << 20) + end_of_archive())
    with pytest.raises(Escape, match="yielded 1048576 bytes from a 2048-byte file"):
        check_tar(sparse)
