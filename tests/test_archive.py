"""Damaged tars: every tarfile failure becomes a named bad-archive entry, never a crash or a silent loss."""

import tarfile

from s2pdata.sources.archive import index_tar, is_image_tar, read_member

from .fakes import add_member


def test_malformed_gnu_sparse_pax_header_costs_only_its_member(tmp_path):
    path = tmp_path / "data-0007.tar"
    bad = {"GNU.sparse.major": "1", "GNU.sparse.minor": "0", "GNU.sparse.name": "2.jpg", "GNU.sparse.realsize": "zz"}
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tf:
        add_member(tf, "1.jpg", b"x" * 600)
        add_member(tf, "2.jpg", b"y" * 100, bad)
        add_member(tf, "3.jpg", b"z" * 10)
    members, skipped = index_tar(path, label="data-0007.tar")
    # issue 21, defect 7: the listing used to end at the bad header, losing 3.jpg and all after it
    assert [m.name for m in members] == ["1.jpg", "3.jpg"]
    assert read_member(path, members[0].offset, members[0].size) == b"x" * 600
    assert read_member(path, members[1].offset, members[1].size) == b"z" * 10
    assert [(s["path"], s["reason"]) for s in skipped] == [("data-0007.tar:2.jpg", "bad-archive")]
    assert "ValueError" in skipped[0]["detail"] and "member skipped" in skipped[0]["detail"]
    assert is_image_tar(path) is True  # a probe never raises, and one bad header hides nothing


def test_a_damaged_header_mid_tar_is_stepped_over_and_reported(tmp_path):
    path = tmp_path / "data-0001.tar"
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tf:
        for i in range(1, 5):
            add_member(tf, f"{i}.jpg", bytes([i]) * 700)  # each member: one header + two data blocks
    raw = bytearray(path.read_bytes())
    raw[1536 + 3] ^= 0xFF  # a byte of 2.jpg's header name: its checksum no longer matches
    path.write_bytes(bytes(raw))
    members, skipped = index_tar(path, label="data-0001.tar")
    assert [m.name for m in members] == ["1.jpg", "3.jpg", "4.jpg"]  # members after the damage are kept
    for m in members:
        assert read_member(path, m.offset, m.size) == bytes([int(m.name[0])]) * 700
    assert len(skipped) == 1 and skipped[0]["reason"] == "bad-archive"
    assert skipped[0]["path"] == "data-0001.tar:@1536" and "1536 bytes at offset 1536" in skipped[0]["detail"]


def test_an_intact_tar_reports_nothing(tmp_path):
    path = tmp_path / "ok.tar"
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tf:
        add_member(tf, "a" * 120 + ".jpg", b"long name: a PAX header before the member")
        for i in range(3):
            add_member(tf, f"{i}.png", bytes(1000 + i))
    members, skipped = index_tar(path)
    assert skipped == [] and len(members) == 4
