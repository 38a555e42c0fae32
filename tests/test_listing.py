"""Empty or surprising listings (issue 14, item 7): a build that lists nothing says what the folder
holds and exits non-zero; the summary counts the files a source passed over."""

import io
import tarfile

import cv2
import numpy as np
import pytest

from s2pdata.build import NothingToBuild, cli, run_build
from s2pdata.build.cli import default_args
from s2pdata.shards import DATASET_JSON
from s2pdata.sources import source_from_args
from s2pdata.synth import SynthConfig


def _tar(path, names):
    """A tar of one-byte members named ``names``."""
    with tarfile.open(path, "w") as tf:
        for name in names:
            info = tarfile.TarInfo(name)
            info.size = 1
            tf.addfile(info, io.BytesIO(b"x"))


def _jpeg() -> bytes:
    img = np.full((64, 80, 3), (200, 120, 40), np.uint8)
    cv2.circle(img, (40, 32), 20, (30, 160, 220), -1)
    return cv2.imencode(".jpg", img)[1].tobytes()


def test_a_folder_holding_only_a_non_danbooru_tar_is_refused_saying_what_it_holds(tmp_path, capsys):
    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    _tar(src / "photos.tar", ["holiday.txt", "notes.md", "7.jpg"])  # one ID.ext name in three: not an archive
    assert cli.main(["--src", str(src), "--out", str(out), "--workers", "1", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.startswith("s2pdata.build: nothing to build"), err
    assert "holds 1 file (tar 1)" in err
    assert "1 .tar file that is not a Danbooru archive (photos.tar)" in err
    assert "at least half of its first 16 members named ID.ext" in err
    assert not (out / DATASET_JSON).exists()


def test_an_extension_the_source_does_not_read_is_named_when_nothing_is_listed(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name in ("a.jpg", "b.jpg", "c.gif"):
        (src / name).write_bytes(_jpeg())
    args = default_args()
    args.ext = ["png"]
    source = source_from_args(str(src), args, seed=0, out=tmp_path / "out")
    with pytest.raises(NothingToBuild, match=r"reads \(\.png\); it holds 3 files \(gif 1, jpg 2\)"):
        run_build(src=source, out=tmp_path / "out", cfg=SynthConfig(drafts=0), progress=False)


@pytest.mark.slow
def test_the_summary_counts_ignored_extensions(tmp_path, capsys):
    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    (src / "a.jpg").write_bytes(_jpeg())
    (src / "anim.gif").write_bytes(b"GIF89a" + bytes(20))
    (src / ".hidden.gif").write_bytes(b"GIF89a")  # hidden files are neither listed nor counted
    assert cli.main(["--src", str(src), "--out", str(out), "--workers", "1", "--drafts", "0"]) == 0
    err = capsys.readouterr().err
    assert "listed   1 files (jpg 1)" in err, err
    assert "ignored  gif 1 (extensions this source does not read" in err, err
