"""The one guarded read (``s2pdata._safeio``) on its own: every way out of the root, every kind of
inode, a file larger than its inode said, and refusals that keep their reason across processes."""

from __future__ import annotations

import errno
import os
import pickle
import socket

import pytest

from s2pdata._safeio import MAX_LINKS, ReadRefused, open_beneath, read_beneath

CAP = 1 << 20


@pytest.fixture
def tree(tmp_path):
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "d" / "e").mkdir(parents=True)
    outside.mkdir()
    (root / "d" / "e" / "f.bin").write_bytes(b"inside")
    (outside / "f.bin").write_bytes(b"outside")
    return root, outside


def _reason(root, rel, **kw) -> str:
    with pytest.raises(ReadRefused) as err:
        read_beneath(root, rel, max_bytes=kw.pop("max_bytes", CAP), **kw)
    assert str(err.value).startswith(f"{rel}: {err.value.reason}: ")  # the reason is in the message too
    return err.value.reason


def test_paths_inside_are_read(tree):
    root, _ = tree
    for rel in ("d/e/f.bin", "./d//e/./f.bin", "d/e/../e/f.bin", str(root / "d/e/f.bin")):
        assert read_beneath(root, rel, max_bytes=CAP) == b"inside", rel


@pytest.mark.parametrize(
    "make, rel",
    [
        (lambda r, o: None, "../outside/f.bin"),
        (lambda r, o: None, "d/../../outside/f.bin"),
        (lambda r, o: None, "/etc/hostname"),
        (lambda r, o: (r / "l.bin").symlink_to(o / "f.bin"), "l.bin"),  # absolute link out
        (lambda r, o: (r / "l.bin").symlink_to("../outside/f.bin"), "l.bin"),  # relative link out
        (lambda r, o: (r / "d" / "l").symlink_to(o), "d/l/f.bin"),  # a folder link out
        (lambda r, o: (r / "d" / "l").symlink_to("../../outside"), "d/l/f.bin"),
        (lambda r, o: (r / "l.bin").symlink_to("/dev/zero"), "l.bin"),
        (lambda r, o: (r / "d" / "up").symlink_to("../../root/d"), "d/up/e/f.bin"),  # out and back in
        (lambda r, o: None, "d/e/f.bin/x"),  # a file used as a folder
    ],
)
def test_ways_out_are_refused(tree, make, rel):
    root, outside = tree
    make(root, outside)
    assert _reason(root, rel) == "unsafe-path"


def test_a_dangling_link_inside_is_a_read_error_keeping_its_errno(tree):
    root, _ = tree
    (root / "l.bin").symlink_to("missing.bin")
    with pytest.raises(ReadRefused) as err:
        read_beneath(root, "l.bin", max_bytes=CAP)
    assert err.value.reason == "read-error" and err.value.errno == errno.ENOENT


def test_links_inside_are_followed(tree):
    root, _ = tree
    (root / "rel.bin").symlink_to("d/e/f.bin")
    (root / "abs.bin").symlink_to(root / "d" / "e" / "f.bin")
    (root / "dl").symlink_to("d")
    (root / "d" / "e" / "up").symlink_to("..")
    for rel in ("rel.bin", "abs.bin", "dl/e/f.bin", "d/e/up/e/f.bin", "dl/e/up/e/../e/f.bin"):
        assert read_beneath(root, rel, max_bytes=CAP) == b"inside", rel


def test_link_loops_and_long_chains_end(tree):
    root, _ = tree
    (root / "a").symlink_to("b")
    (root / "b").symlink_to("a")
    assert _reason(root, "a") == "unsafe-path"
    (root / "c0").write_bytes(b"end")
    for i in range(1, MAX_LINKS + 2):
        (root / f"c{i}").symlink_to(f"c{i - 1}")
    assert read_beneath(root, f"c{MAX_LINKS}", max_bytes=CAP) == b"end"
    assert _reason(root, f"c{MAX_LINKS + 1}") == "unsafe-path"


def test_inodes_that_are_not_files_are_refused_without_blocking(tree):
    root, _ = tree
    os.mkfifo(root / "fifo")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(root / "sock"))
    try:
        assert _reason(root, "fifo") == "unsafe-member"
        assert _reason(root, "sock") == "unsafe-member"
        assert _reason(root, "d") == "unsafe-member"
        assert _reason(root, ".") == "unsafe-member"  # the root itself
        (root / "to-fifo").symlink_to("fifo")
        assert _reason(root, "to-fifo") == "unsafe-member"
        try:
            os.mknod(root / "zero", 0o600 | 0o020000, os.makedev(1, 5))
        except OSError:
            return  # no CAP_MKNOD here
        assert _reason(root, "zero") == "unsafe-member"
    finally:
        sock.close()


def test_size_is_capped_on_the_descriptor_and_on_what_is_read(tree, tmp_path):
    root, _ = tree
    with open(root / "big", "wb") as f:
        f.truncate(CAP + 1)
    assert _reason(root, "big") == "too-large"
    (root / "fits").write_bytes(b"x" * CAP)
    assert len(read_beneath(root, "fits", max_bytes=CAP)) == CAP
    # /proc files announce 0 bytes and hold more: as a file that grew after the check, read no further
    with pytest.raises(ReadRefused) as err:
        read_beneath("/proc/self", "status", max_bytes=64)
    assert err.value.reason == "too-large" and "grew" in err.value.detail


def test_a_span_reads_exactly_its_bytes_or_refuses(tree):
    root, _ = tree
    (root / "t").write_bytes(bytes(range(200)))
    assert read_beneath(root, "t", max_bytes=CAP, offset=10, length=5) == bytes(range(10, 15))
    assert read_beneath(root, "t", max_bytes=CAP, offset=0, length=0) == b""
    assert _reason(root, "t", offset=190, length=20) == "read-error"  # runs past the end
    assert _reason(root, "t", offset=0, length=100, max_bytes=50) == "too-large"


def test_refusals_pickle_with_their_reason():
    exc = ReadRefused("read-error", "a/b.jpg", "No such file", errno.ENOENT)
    back = pickle.loads(pickle.dumps(exc))
    assert isinstance(back, OSError) and (back.reason, back.path, back.detail, back.errno) == (
        "read-error",
        "a/b.jpg",
        "No such file",
        errno.ENOENT,
    )
    assert str(back) == str(exc) and exc.reject() == {
        "path": "a/b.jpg",
        "reason": "read-error",
        "detail": "No such file",
    }


def test_open_beneath_gives_a_descriptor_of_the_file(tree):
    root, _ = tree
    fd = open_beneath(root, "d/e/f.bin")
    try:
        assert os.read(fd, 100) == b"inside"
    finally:
        os.close(fd)


def test_opt_out_file_goes_through_the_guarded_read(tmp_path):
    from s2pdata.sources.filters import read_opt_out

    (tmp_path / "list.txt").write_text("Alice Smith\n123 # a post\n")
    (tmp_path / "link.txt").symlink_to(tmp_path / "list.txt")  # named by the user: followed
    assert read_opt_out(tmp_path / "link.txt") == (frozenset({"alice_smith"}), frozenset({123}))
    os.mkfifo(tmp_path / "fifo.txt")
    for name, reason in (("fifo.txt", "unsafe-member"), ("missing.txt", "read-error"), (".", "unsafe-member")):
        with pytest.raises(ValueError, match=f"--opt-out .*{reason}"):
            read_opt_out(tmp_path / name)
