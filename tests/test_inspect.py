"""inspect: the summary adds up the stats files; the contact sheet has a row per sample."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from s2pdata.build import run_build
from s2pdata.data import open_shards
from s2pdata.inspect import contact_sheet, label_colors, main, summarize
from s2pdata.synth import SynthConfig


@pytest.mark.slow
def test_summary_and_sheet(tmp_path, capsys):
    out = tmp_path / "b"
    run_build(src="demo:6", out=out, cfg=SynthConfig(size=64, drafts=2), seed=0, shard_size=3, progress=False)
    total = summarize(out)
    assert total["samples"] == 6 and total["shards"] == total["planned_shards"] == 2
    assert set(total["field_bytes"]) == {
        "color.jpg",
        "sketch.png",
        "hint.png",
        "regions.png",
        "draft0.jpg",
        "draft1.jpg",
        "json",
    }
    assert {"decode", "sketch", "hints", "regions", "drafts", "encode"} <= set(total["seconds"])
    sheet = contact_sheet(list(open_shards(out))[:2], cell=64)
    # a row per sample; columns: colour, sketch, hints, regions, two drafts
    assert sheet.shape[0] == 2 * (64 + 18 + 4) and sheet.shape[1] == 6 * 64
    png = tmp_path / "sheet.png"
    assert main([str(out), "--grid", str(png), "-n", "3"]) == 0
    assert cv2.imread(str(png)).shape[0] == 3 * (192 + 18 + 4)
    assert "6 samples" in capsys.readouterr().out


def test_label_colors_are_stable_and_black_for_zero():
    labels = np.array([[0, 1, 2], [2, 1, 0]], np.int32)
    rgb = label_colors(labels)
    assert (rgb[0, 0] == 0).all() and (rgb[0, 1] == rgb[1, 1]).all() and (rgb[0, 2] != rgb[0, 1]).any()


def test_not_a_build_folder(tmp_path, capsys):
    assert main([str(tmp_path)]) == 2
    assert "dataset.json" in capsys.readouterr().err
