"""Damaged shards: sha256 in the stats, a resume rebuilds what does not match, and every read
(``open_shards(verify=True)``, ``make_loader(verify=True)``, ``inspect --verify``, a damaged tar
header, a member that does not decode) raises an error naming the shard (and the key)."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import tarfile
import textwrap
from pathlib import Path

import pytest

from s2pdata.build.cli import main as build_main
from s2pdata.data import ShardError, open_shards
from s2pdata.inspect import main as inspect_main
from s2pdata.shards import INDEX_JSON, iter_tar, scan_committed, shard_name, stats_name, write_tar

from .fakes import write_shards

BUILD = "--src demo:16 --size 48 --drafts 0 --shard-size 4 --workers 1 --seed 1 --no-progress".split()


def _digests(out: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(out.glob("shard-*.tar"))}


def _flip(path: Path, offset: int) -> None:
    """Invert every bit of one byte of ``path`` in place."""
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def _members(path: Path) -> list[tarfile.TarInfo]:
    with tarfile.open(path) as tar:
        return tar.getmembers()


def _flip_image_byte(path: Path) -> None:
    """One byte in the middle of the second sample's colour JPEG: the tar itself stays valid."""
    member = [m for m in _members(path) if m.name.endswith(".color.jpg")][1]
    _flip(path, member.offset_data + member.size // 2)


def _flip_header_byte(path: Path) -> int:
    """The first byte (of the name) in the header of the third sample's first member; returns the header's offset."""
    member = [m for m in _members(path) if m.name.endswith(".color.jpg")][2]
    _flip(path, member.offset)
    return member.offset


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """A 16-sample demo build in 4 shards (about 5 s), copied by each test that damages it."""
    out = tmp_path_factory.mktemp("verify") / "out"
    assert build_main([*BUILD, "--out", str(out)]) == 0
    return out


@pytest.fixture
def damaged(built, tmp_path) -> tuple[Path, dict[str, str], int]:
    """A copy of ``built`` with a flipped JPEG byte in shard 1 and a flipped header byte in shard 3."""
    out = tmp_path / "out"
    shutil.copytree(built, out)
    _flip_image_byte(out / shard_name(1))
    header = _flip_header_byte(out / shard_name(3))
    return out, _digests(built), header


def test_stats_record_the_sha256_of_the_file(built):
    index = {e["url"]: e for e in json.loads((built / INDEX_JSON).read_text())["shardlist"]}
    for i in range(4):
        data = (built / shard_name(i)).read_bytes()
        stats = json.loads((built / stats_name(i)).read_text())
        assert stats["sha256"] == hashlib.sha256(data).hexdigest() == index[shard_name(i)]["sha256"]
        assert stats["md5sum"] == hashlib.md5(data).hexdigest() and stats["filesize"] == len(data)


@pytest.mark.slow
def test_resume_rebuilds_damaged_shards_and_says_so(damaged, capsys):
    out, before, _ = damaged
    done, bad = scan_committed(out, 4)
    assert sorted(done) == [0, 2] and bad == {1: "sha256 mismatch", 3: "sha256 mismatch"}
    assert sorted(scan_committed(out, 4, verify="size")[0]) == [0, 1, 2, 3]  # size alone sees nothing
    capsys.readouterr()
    assert build_main([*BUILD, "--out", str(out)]) == 0
    said = capsys.readouterr().out
    assert "rebuilt 2 damaged shard(s): shard-000001.tar (sha256 mismatch), shard-000003.tar (sha256 mismatch)" in said
    assert "; 2 shards built" in said
    assert _digests(out) == before  # rebuilt byte for byte
    manifest = json.loads((out / "dataset.json").read_text())
    assert manifest["totals"]["built_this_run"] == 2 and len(manifest["rebuilt_damaged"]) == 2
    assert build_main([*BUILD, "--out", str(out)]) == 0  # an intact folder: nothing rebuilt, nothing said
    assert "rebuilt" not in capsys.readouterr().out


def test_resume_rebuilds_a_shard_of_another_size_or_without_its_tar(built, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(built, out)
    with open(out / shard_name(0), "ab") as f:
        f.write(b"\0" * 512)
    (out / shard_name(2)).unlink()
    (out / stats_name(3)).write_text("{not json")
    _, bad = scan_committed(out, 4)
    assert bad[0].startswith("size ") and bad[2] == "tar missing" and bad[3] == "stats file unreadable"


@pytest.mark.slow
def test_resume_rebuilds_shards_whose_stats_are_json_of_the_wrong_shape(built, tmp_path, capsys):
    """Issue 21, defect 12: a stats file holding ``[]`` (or an object lacking what a resume sums up)
    crashed the resume with AttributeError; now it is an uncommitted shard, rebuilt byte for byte."""
    out = tmp_path / "out"
    shutil.copytree(built, out)
    (out / stats_name(1)).write_text("[]")
    (out / stats_name(2)).write_text('{"nsamples": 4}')
    capsys.readouterr()
    assert build_main([*BUILD, "--out", str(out)]) == 0
    said = capsys.readouterr().out
    assert "shard-000001.tar (stats file holds a JSON list, not an object)" in said
    assert "shard-000002.tar (stats file lacks shard, index, filesize" in said
    assert _digests(out) == _digests(built)
    for i in (1, 2):
        again, before = (json.loads((d / stats_name(i)).read_text()) for d in (out, built))
        assert (again["nsamples"], again["sha256"]) == (before["nsamples"], before["sha256"])


def test_open_shards_verify_names_the_damaged_shard(damaged):
    out, _, _ = damaged
    with pytest.raises(ShardError, match=r"shard-000001\.tar.*sha256 mismatch") as info:
        list(open_shards(out, verify=True))
    assert info.value.shard.endswith(shard_name(1))
    with pytest.raises(ShardError, match=r"shard-000003\.tar.*sha256 mismatch"):
        list(open_shards(out / shard_name(3), verify=True))
    assert len(list(open_shards(out / shard_name(0), verify=True))) == 4


def test_verify_falls_back_to_the_index_and_refuses_a_tar_without_record(built, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(built, out)
    (out / stats_name(0)).unlink()
    assert len(list(open_shards(out / shard_name(0), verify=True))) == 4  # shardindex.json's sha256
    _flip(out / shard_name(0), 100)
    with pytest.raises(ShardError, match=r"shard-000000\.tar.*sha256 mismatch"):
        list(open_shards(out / shard_name(0), verify=True))
    lone = tmp_path / "lone.tar"
    shutil.copy(built / shard_name(0), lone)
    with pytest.raises(ShardError, match=r"lone\.tar.*no stats file.*verify=False"):
        list(open_shards(lone, verify=True))


def test_damaged_header_raises_naming_shard_and_offset(damaged):
    out, _, header = damaged
    keys = []
    with pytest.raises(ShardError, match=rf"shard-000003\.tar.*damaged tar header at byte offset {header}\b"):
        for raw in iter_tar(str(out / shard_name(3))):
            keys.append(raw["__key__"])
    # the first sample only: the second may lose members at the damaged header; no silent end
    assert len(keys) == 1
    with pytest.raises(ShardError, match=r"shard-000003\.tar"):
        list(open_shards(out))  # no verify: the header check alone stops the read


def test_truncated_shard_raises_naming_it(built, tmp_path):
    path = tmp_path / shard_name(0)
    data = (built / shard_name(0)).read_bytes()
    member = _members(built / shard_name(0))[5]
    path.write_bytes(data[: member.offset_data + 10])  # the header's size is checked against the file before reading
    with pytest.raises(ShardError, match=rf"shard-000000\.tar.*declares {member.size} bytes, but 10 bytes follow"):
        list(iter_tar(str(path)))
    path.write_bytes(data[: member.offset])  # cut at a header: tarfile alone reads 5 members and stops
    with pytest.raises(ShardError, match=rf"shard-000000\.tar.*truncated: it ends at byte {member.offset} "):
        list(iter_tar(str(path)))


def test_decode_errors_name_shard_and_key(built, tmp_path):
    raw = next(iter_tar(str(built / shard_name(0))))
    good = {k: v for k, v in raw.items() if k != "__url__"}
    cases = {"json": b'{"broken', "color.jpg": b"\xff\xd8 not a jpeg", "sketch.png": good["sketch.png"][:40]}
    for field, bad in cases.items():
        path = tmp_path / f"bad-{field}.tar"
        write_tar(path, [{**good, field: bad}])
        with pytest.raises(ShardError, match=rf"bad-{field}\.tar', key '{good['__key__']}'.*\.{field} does not decode"):
            list(open_shards(path))


def test_inspect_verify_names_each_damaged_shard(damaged, built, capsys, tmp_path):
    out, _, _ = damaged
    assert inspect_main([str(built), "--verify"]) == 0
    assert "verified 4 shards" in capsys.readouterr().out
    assert inspect_main([str(out), "--verify"]) == 1
    err = capsys.readouterr().err
    assert "shard-000001.tar" in err and "shard-000003.tar" in err and "2 damaged shard(s)" in err
    assert inspect_main([str(out), "--grid", str(tmp_path / "g.png"), "-n", "16"]) == 1  # reads into shard 3
    assert "shard-000003.tar" in capsys.readouterr().err
    (out / stats_name(2)).write_text("{not json")
    assert inspect_main([str(out)]) == 1
    assert "shard-000002.tar" in capsys.readouterr().err


def test_make_loader_verify_names_the_damaged_shard(tmp_path):
    pytest.importorskip("torch")
    from s2pdata.data import make_loader

    out = write_shards(tmp_path / "s", 6, 3)
    assert make_loader(out, verify=True, num_workers=0, batch_size=2) is not None
    _flip(out / shard_name(1), 2000)
    loader = make_loader(out, verify=True, num_workers=0, batch_size=2, mode="exact")  # checked while streaming
    with pytest.raises(ShardError, match=r"shard-000001\.tar.*sha256 mismatch"):
        list(loader)


def test_member_claiming_a_terabyte_is_an_error_not_an_allocation(tmp_path):
    """A hostile tar whose header claims 1 TiB: the read fails naming the shard, in 1.5 GiB of address space."""
    path = tmp_path / "huge.tar"
    info = tarfile.TarInfo("k.color.jpg")
    info.size = 1 << 40
    path.write_bytes(info.tobuf(tarfile.PAX_FORMAT) + b"\xff" * 4096)
    code = textwrap.dedent(f"""
        import resource
        resource.setrlimit(resource.RLIMIT_AS, ({3 << 29}, {3 << 29}))
        from s2pdata.shards import ShardError, iter_tar
        try:
            list(iter_tar({str(path)!r}))
        except ShardError as exc:
            print("ShardError:", exc)
    """)
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "ShardError: shard" in run.stdout and "huge.tar" in run.stdout
