"""Hostile folders: nothing outside the source is read, nothing hangs, memory stays bounded.

Every build here runs in a child process whose address space is capped, so a regression (an
unguarded read of ``/dev/zero``, a whole 1.5 GB file read before the size check) fails the test
instead of taking the machine down.
"""

import json
import os
import subprocess
import sys
import textwrap

import cv2
import numpy as np
import pytest

from s2pdata.sources.folder import FolderSource

AS_LIMIT = 8 << 30  # address space for the child: Numba and OpenCV reserve far more than they touch
SECRET = "root:x:0:0:do-not-copy-me"


def _jpeg(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    img = np.zeros((96, 128, 3), np.uint8)
    img[:] = rng.integers(0, 255, 3)
    cv2.circle(img, (60, 48), 30, tuple(int(v) for v in rng.integers(0, 255, 3)), -1)
    return cv2.imencode(".jpg", img)[1].tobytes()


@pytest.fixture
def hostile(tmp_path):
    """A source folder with two good pictures and every kind of trap, plus a secret outside it."""
    src, outside = tmp_path / "src", tmp_path / "outside"
    src.mkdir()
    outside.mkdir()
    (src / "a.jpg").write_bytes(_jpeg(1))
    (src / "sub").mkdir()
    (src / "sub" / "b.jpg").write_bytes(_jpeg(2))
    (src / "inside-link.jpg").symlink_to(src / "a.jpg")  # a link that stays inside: followed
    (outside / "secret.jpg").write_bytes(_jpeg(3))
    (src / "p.jpg").symlink_to(outside / "secret.jpg")  # a picture, but outside the source
    (src / "z.jpg").symlink_to("/dev/zero")
    os.mkfifo(src / "f.jpg")
    with open(src / "s.jpg", "wb") as f:
        f.truncate(1536 << 20)  # 1.5 GB sparse: no disk used
    (src / "passwd.jpg").write_text(SECRET + "\n" * 3)  # a text file named like a picture
    (src / "anim.gif").write_bytes(b"GIF89a" + bytes(20))
    return src


def _build_in_child(src, out, timeout=240):
    """Run the CLI in a capped child that prints its own peak RSS (MB, Linux's VmHWM) last."""
    code = textwrap.dedent(f"""
        import resource, sys
        resource.setrlimit(resource.RLIMIT_AS, ({AS_LIMIT}, {AS_LIMIT}))
        from s2pdata.build.cli import main
        rc = main(["--src", {str(src)!r}, "--out", {str(out)!r}, "--workers", "1", "--drafts", "0"])
        # VmHWM: this process's own high-water mark (ru_maxrss would also count the pytest parent's
        # pages that the fork copied, which grow with every test run before this one)
        hwm = next(line for line in open("/proc/self/status") if line.startswith("VmHWM:"))
        print("PEAK_RSS_MB", int(hwm.split()[1]) // 1024)
        sys.exit(rc)
    """)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_hostile_folder_builds_with_bounded_memory_and_reports_every_trap(hostile, tmp_path):
    out = tmp_path / "out"
    proc = _build_in_child(hostile, out)
    assert proc.returncode == 0, proc.stderr[-2000:]
    peak = int(proc.stdout.split("PEAK_RSS_MB")[-1].split()[0])
    assert peak < 500, f"peak RSS {peak} MB; the build said:\n{proc.stderr[-3000:]}"
    rejects = {r["path"]: r for r in map(json.loads, (out / "rejects.jsonl").read_text().splitlines())}
    assert rejects["p.jpg"]["reason"] == "unsafe-path"
    assert rejects["z.jpg"]["reason"] == "unsafe-path"  # /dev/zero lies outside the source
    assert rejects["f.jpg"]["reason"] == "unsafe-member"
    assert rejects["s.jpg"]["reason"] == "too-large"
    assert rejects["passwd.jpg"]["reason"] == "not-an-image"
    assert "text" in rejects["passwd.jpg"]["detail"]
    log = (out / "rejects.jsonl").read_text()
    assert "root:x" not in log and "do-not-copy" not in log  # the detail never copies file content
    manifest = json.loads((out / "dataset.json").read_text())
    assert manifest["totals"]["samples"] == 3  # a.jpg, sub/b.jpg and the inside link
    assert "ignored  gif 1" in proc.stderr


def test_listing_never_touches_a_trap(hostile):
    src = FolderSource(str(hostile))
    assert sorted(it.locator for it in src.items()) == ["a.jpg", "inside-link.jpg", "passwd.jpg", "sub/b.jpg"]
    assert {s["path"]: s["reason"] for s in src.skipped} == {
        "f.jpg": "unsafe-member",
        "p.jpg": "unsafe-path",
        "s.jpg": "too-large",
        "z.jpg": "unsafe-path",
    }


def test_a_fifo_swapped_in_after_the_listing_is_refused_without_hanging(hostile):
    src = FolderSource(str(hostile))
    item = next(it for it in src.items() if it.locator == "a.jpg")
    os.remove(hostile / "a.jpg")
    os.mkfifo(hostile / "a.jpg")
    with pytest.raises(OSError, match="unsafe-member"):
        src.read(item)


def test_the_listing_is_not_pickled_into_tasks(hostile):
    import pickle

    src = FolderSource(str(hostile))
    src.items()
    clone = pickle.loads(pickle.dumps(src))
    assert "_listing" not in clone.__dict__ and clone.items() == src.items()
