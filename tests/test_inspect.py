"""inspect: the summary adds up the stats files; the contact sheet has a row per sample, labelled
with its key, of the first N samples, N random ones (``--random N --seed S``) or named ones
(``--keys``); a sheet that cannot be written is an error, not a success message."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

import s2pdata.inspect as inspect_mod
from s2pdata.build import run_build
from s2pdata.data import open_shards
from s2pdata.inspect import KEY_BAND, choose_samples, contact_sheet, label_colors, main, summarize
from s2pdata.synth import SynthConfig

ROW = KEY_BAND + 18 + 4  # a row's height over its panels: the key band, the panel titles, the gap below


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
    assert sheet.shape[0] == 2 * (64 + ROW) and sheet.shape[1] == 6 * 64
    png = tmp_path / "sheet.png"
    assert main([str(out), "--grid", str(png), "-n", "3"]) == 0
    assert cv2.imread(str(png)).shape[0] == 3 * (192 + ROW)
    assert "6 samples" in capsys.readouterr().out


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    """A small build: 8 demo samples at 48 px in 3 shards (3, 3, 2), one draft."""
    out = tmp_path_factory.mktemp("inspect") / "b"
    run_build(src="demo:8", out=out, cfg=SynthConfig(size=48, drafts=1), seed=0, shard_size=3, progress=False)
    return out


@pytest.fixture(scope="module")
def keys(build):
    return [s["__key__"] for s in open_shards(build, decode=False)]


def _keys(samples):
    return [s["__key__"] for s in samples]


def test_n_is_the_first_n_samples(build, keys):
    assert _keys(choose_samples(build, n=4)) == keys[:4]
    assert _keys(choose_samples(build, n=100)) == keys


def test_random_samples_are_reproducible_from_the_seed(build, keys):
    drawn = {seed: _keys(choose_samples(build, random=3, seed=seed)) for seed in range(6)}
    for seed, got in drawn.items():
        assert len(set(got)) == 3 and set(got) <= set(keys)
        assert got == sorted(got, key=keys.index), "drawn samples come in build order"
        assert _keys(choose_samples(build, random=3, seed=seed)) == got, f"seed {seed} drew other samples"
    assert len({tuple(v) for v in drawn.values()}) > 1, "every seed drew the same samples"
    assert _keys(choose_samples(build, random=50, seed=0)) == keys  # more than there are: all of them
    # the drawn samples are decoded, not raw bytes
    s = choose_samples(build, random=1, seed=0)[0]
    assert s["color"].dtype == np.uint8 and s["color"].ndim == 3


def test_keys_are_exactly_those_samples_in_the_order_given(build, keys):
    want = [keys[6], keys[1], keys[4]]
    got = choose_samples(build, keys=want)
    assert _keys(got) == want
    assert all(s["sketch"].ndim == 2 for s in got)


def test_an_unknown_key_is_a_one_line_error_naming_it(build, keys, capsys, tmp_path):
    png = tmp_path / "sheet.png"
    assert main([str(build), "--grid", str(png), "--keys", f"{keys[0]},no-such-key"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert "--keys" in err and "'no-such-key'" in err and repr(keys[0]) not in err.split(";")[0], err
    assert not png.exists()


def test_cli_random_and_keys_draw_labelled_rows(build, keys, capsys, tmp_path):
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    assert main([str(build), "--grid", str(a), "--random", "2", "--seed", "7", "--cell", "48"]) == 0
    assert main([str(build), "--grid", str(b), "--random", "2", "--seed", "7", "--cell", "48"]) == 0
    assert a.read_bytes() == b.read_bytes()
    drawn = _keys(choose_samples(build, random=2, seed=7))
    out = capsys.readouterr().out
    assert all(k in out for k in drawn), out
    assert main([str(build), "--grid", str(a), "--keys", f"{keys[3]}, {keys[0]}", "--cell", "48"]) == 0
    assert cv2.imread(str(a)).shape[0] == 2 * (48 + ROW)
    assert f"{keys[3]}, {keys[0]}" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv",
    [["-n", "2", "--random", "2"], ["--keys", "a", "-n", "2"], ["--random", "2", "--keys", "a"], ["--seed", "3"]],
)
def test_one_way_of_choosing_samples(build, argv, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main([str(build), "--grid", str(tmp_path / "s.png"), *argv])
    assert exc.value.code == 2
    assert "Traceback" not in capsys.readouterr().err


def test_each_row_is_labelled_with_its_key(build):
    s = choose_samples(build, n=1)[0]
    sheet = contact_sheet([s], cell=64)
    band = sheet[:KEY_BAND]
    assert (band < 128).any(), "no key drawn above the row"
    other = contact_sheet([{**s, "__key__": "another-key"}], cell=64)
    assert not np.array_equal(other[:KEY_BAND], band), "the label does not depend on the key"
    np.testing.assert_array_equal(other[KEY_BAND:], sheet[KEY_BAND:])


def test_grid_in_a_missing_folder_is_written_there(build, tmp_path, capsys):
    png = tmp_path / "missing" / "dir" / "sheet.png"
    assert main([str(build), "--grid", str(png), "-n", "2", "--cell", "48"]) == 0
    assert cv2.imread(str(png)).shape[0] == 2 * (48 + ROW)
    assert str(png) in capsys.readouterr().out


@pytest.mark.parametrize("how", ["parent-is-a-file", "encode-fails", "disk-full", "no-such-codec"])
def test_grid_that_cannot_be_written_is_an_error(build, tmp_path, capsys, monkeypatch, how):
    png = tmp_path / "sheet.png"
    if how == "parent-is-a-file":
        (tmp_path / "a-file").write_text("")
        png = tmp_path / "a-file" / "sheet.png"
    elif how == "encode-fails":
        monkeypatch.setattr(inspect_mod.cv2, "imencode", lambda *a, **k: (False, None))  # OpenCV's answer to a failure
    elif how == "disk-full":

        def full(*a, **k):
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(inspect_mod, "atomic_write", full)
    else:
        png = tmp_path / "sheet.txt"
    assert main([str(build), "--grid", str(png), "-n", "2", "--cell", "48"]) == 2
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and "Traceback" not in captured.err, captured.err
    assert "--grid" in captured.err and str(png) in captured.err, captured.err
    assert "contact sheet of" not in captured.out
    assert not png.exists()


def test_grid_replaces_a_planted_link_and_never_writes_its_target(build, tmp_path):
    victim, png = tmp_path / "victim.txt", tmp_path / "sheet.png"
    victim.write_text("precious")
    png.symlink_to(victim)
    assert main([str(build), "--grid", str(png), "-n", "1", "--cell", "48"]) == 0
    assert victim.read_text() == "precious" and not png.is_symlink() and cv2.imread(str(png)) is not None


@pytest.mark.parametrize("pick, code", [(["-n", "2"], 1), (["--random", "2"], 1), (["--keys", "demo-000001"], 2)])
def test_a_build_without_samples_has_no_sheet_and_says_so(tmp_path, capsys, pick, code):
    (tmp_path / "dataset.json").write_text("{}")  # planned, nothing committed
    png = tmp_path / "sheet.png"
    assert main([str(tmp_path), "--grid", str(png), *pick]) == code
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err and "no sample" in err, err
    assert not png.exists()


def test_label_colors_are_stable_and_black_for_zero():
    labels = np.array([[0, 1, 2], [2, 1, 0]], np.int32)
    rgb = label_colors(labels)
    assert (rgb[0, 0] == 0).all() and (rgb[0, 1] == rgb[1, 1]).all() and (rgb[0, 2] != rgb[0, 1]).any()


def test_not_a_build_folder(tmp_path, capsys):
    assert main([str(tmp_path)]) == 2
    assert "dataset.json" in capsys.readouterr().err
