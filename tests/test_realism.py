"""s2pdata.realism: the statistics on pictures with known answers and against loop references, the
AUC formula, the fixed classifier, and ``python -m s2pdata.inspect --draft-realism`` end to end."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from s2pdata.realism import (
    CHROMA_MIN,
    FEATURES,
    HF_SIGMA,
    HUE_WRONG,
    MIN_REGION_AREA,
    STATISTICS,
    classify,
    colour_histogram,
    draft_statistics,
    fit_logistic,
    format_realism,
    hf_energy,
    hue_difference,
    line_regions,
    region_statistics,
    roc_auc,
    split_pictures,
    to_lab,
)
from tests.reference import ref_hf_energy, ref_region_statistics, ref_roc_auc
from tests.strategies import draw_cel_image, draw_label_picture

H, W = 32, 40


def two_regions(left=(220, 40, 40), right=(40, 90, 220)) -> tuple[np.ndarray, np.ndarray]:
    """A picture of two flat halves (red and blue by default) and its labels 1 | 2."""
    img = np.empty((H, W, 3), np.uint8)
    img[:, : W // 2], img[:, W // 2 :] = left, right
    labels = np.ones((H, W), np.int32)
    labels[:, W // 2 :] = 2
    return img, labels


def rotate_hue(rgb, degrees: float) -> tuple[int, int, int]:
    """``rgb`` with its CIELab hue turned by ``degrees`` (L* and C*ab kept, up to the uint8 rounding)."""
    lab = to_lab(np.array([[rgb]], np.uint8))[0, 0].astype(np.float64)
    a = math_rad(degrees)
    lab[1], lab[2] = lab[1] * np.cos(a) - lab[2] * np.sin(a), lab[1] * np.sin(a) + lab[2] * np.cos(a)
    out = cv2.cvtColor(lab.astype(np.float32)[None, None], cv2.COLOR_Lab2RGB)[0, 0]  # RGB order
    return tuple(int(v) for v in np.clip(np.rint(out * 255), 0, 255))


def math_rad(degrees: float) -> float:
    return float(np.radians(degrees))


# ---------------------------------------------------------------------------------------------
# known answers


def test_the_target_scores_the_target_values():
    img = draw_cel_image(H, W, 3)
    stats = draft_statistics(img, img, line_regions(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)))
    assert stats["chroma_ratio"] == pytest.approx(1.0)
    assert stats["hf_ratio_lightness"] == pytest.approx(1.0) and stats["hf_ratio_colour"] == pytest.approx(1.0)
    assert stats["region_error"] == pytest.approx(0.0, abs=1e-9)
    assert stats["wrong_hue"] == 0.0 and stats["grey_regions"] == 0.0


def test_a_grey_draft_has_chroma_ratio_zero_and_every_hued_region_grey():
    img, labels = two_regions()
    grey = np.repeat(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)[..., None], 3, -1)
    stats = draft_statistics(grey, img, labels)
    assert stats["chroma_ratio"] == pytest.approx(0.0, abs=1e-3)  # OpenCV's Lab of a grey: a*, b* ~ 0
    assert stats["grey_regions"] == 1.0 and stats["wrong_hue"] == 0.0
    assert stats["region_error"] > 20


def test_a_blurred_draft_has_less_high_frequency_energy():
    img = draw_cel_image(64, 64, 5)
    blurred = cv2.GaussianBlur(img, (0, 0), 2.0)
    stats = draft_statistics(blurred, img, np.ones((64, 64), np.int32))
    assert stats["hf_ratio_lightness"] < 0.5 and stats["hf_ratio_colour"] < 0.5
    sharpened = np.clip(img.astype(np.int16) * 2 - blurred, 0, 255).astype(np.uint8)
    assert draft_statistics(sharpened, img, np.ones((64, 64), np.int32))["hf_ratio_lightness"] > 1


@pytest.mark.parametrize(("turn", "wrong"), [(90.0, 0.5), (180.0, 0.5), (HUE_WRONG / 2, 0.0)])
def test_a_hue_rotated_region_counts_as_wrong(turn, wrong):
    img, labels = two_regions()
    draft, _ = two_regions(left=rotate_hue((220, 40, 40), turn))
    stats = draft_statistics(draft, img, labels)
    assert stats["wrong_hue"] == wrong and stats["grey_regions"] == 0.0
    assert stats["region_error"] > 0


def test_small_regions_and_lines_are_left_out():
    img, labels = two_regions()
    labels[0, 0] = 3  # one pixel: under MIN_REGION_AREA
    labels[:, 0] = 0  # lines
    d, t = to_lab(img), to_lab(img)
    got = region_statistics(d, t, labels)
    assert got["regions"] == 2 and got["hue_regions"] == 2
    assert region_statistics(d, t, np.zeros((H, W), np.int32))["region_error"] is None


def test_a_grey_target_has_no_chroma_ratio_and_no_hued_regions():
    grey = np.full((H, W, 3), 128, np.uint8)
    stats = draft_statistics(draw_cel_image(H, W, 1), grey, np.ones((H, W), np.int32))
    assert stats["chroma_ratio"] is None and stats["wrong_hue"] is None and stats["grey_regions"] is None


def test_hue_difference_wraps_around():
    assert hue_difference(350, 10) == pytest.approx(20) and hue_difference(-170, 170) == pytest.approx(20)
    assert hue_difference(0, 180) == pytest.approx(180)


def test_line_regions_are_the_paper_between_lines():
    sketch = np.full((20, 20), 255, np.uint8)
    sketch[:, 10] = 0
    labels = line_regions(sketch)
    assert labels.dtype == np.int32 and set(np.unique(labels)) == {0, 1, 2} and (labels[:, 10] == 0).all()


def test_colour_histogram_shares():
    img, _ = two_regions(left=(128, 128, 128))
    h = colour_histogram(to_lab(img))
    assert h.shape == (len(FEATURES) - len(STATISTICS),)
    assert h[:5].sum() == pytest.approx(1.0) and h[0] == pytest.approx(0.5)  # half grey: C*ab < 5
    assert h[5:].sum() == pytest.approx(0.5)  # the blue half has a hue, in one sector
    assert np.count_nonzero(h[5:]) == 1


def test_bad_inputs_name_the_argument():
    img, labels = two_regions()
    with pytest.raises(ValueError, match="draft must have the target's shape"):
        draft_statistics(img[:, :-1], img, labels)
    with pytest.raises(ValueError, match="labels must have the images' shape"):
        draft_statistics(img, img, labels[:-1])
    with pytest.raises(TypeError, match="labels must be int32"):
        draft_statistics(img, img, labels.astype(np.int64))


# ---------------------------------------------------------------------------------------------
# against the loop references


@st.composite
def draft_cases(draw):
    h, w = draw(st.integers(12, 40)), draw(st.integers(12, 40))
    target = draw_cel_image(h, w, draw(st.integers(0, 2**32 - 1)))
    draft = draw_cel_image(h, w, draw(st.integers(0, 2**32 - 1)))
    labels = draw_label_picture(h, w, draw(st.integers(0, 2**32 - 1)), draw(st.integers(0, 6)))
    return draft, target, labels


@settings(max_examples=40)
@given(case=draft_cases())
def test_region_statistics_equal_the_loop_reference(case):
    draft, target, labels = case
    d, t = to_lab(draft), to_lab(target)
    got = region_statistics(d, t, labels)
    want = ref_region_statistics(d, t, labels, min_area=MIN_REGION_AREA, chroma_min=CHROMA_MIN, hue_wrong=HUE_WRONG)
    assert got["regions"] == want["regions"] and got["hue_regions"] == want["hue_regions"]
    for k in ("region_error", "wrong_hue", "grey_regions"):
        assert (got[k] is None) == (want[k] is None)
        if got[k] is not None:
            assert got[k] == pytest.approx(want[k], rel=1e-9, abs=1e-9)


@settings(max_examples=40)
@given(case=draft_cases())
def test_hf_energy_equals_the_scipy_residual(case):
    _, target, _ = case
    lab = to_lab(target)
    for planes in (lab[..., 0], lab[..., 1:]):
        want = ref_hf_energy(planes, HF_SIGMA)
        assert hf_energy(planes) == pytest.approx(want, rel=1e-4, abs=1e-6)


@settings(max_examples=60)
@given(
    scores=st.lists(st.integers(0, 5), min_size=2, max_size=30),
    positive=st.lists(st.booleans(), min_size=30, max_size=30),
)
def test_roc_auc_equals_pair_counting(scores, positive):
    positive = positive[: len(scores)]
    if all(positive) or not any(positive):
        with pytest.raises(ValueError, match="needs both classes"):
            roc_auc(scores, positive)
        return
    assert roc_auc(scores, positive) == pytest.approx(ref_roc_auc(scores, positive), abs=1e-12)


def test_roc_auc_known_answers():
    pos = [True, True, False, False]
    assert roc_auc([0.9, 0.8, 0.1, 0.2], pos) == 1.0  # perfect separation
    assert roc_auc([0.1, 0.2, 0.9, 0.8], pos) == 0.0  # reversed
    assert roc_auc([0.5, 0.5, 0.5, 0.5], pos) == 0.5  # all tied
    assert roc_auc([0.9, 0.1, 0.5, 0.5], pos) == 0.5


# ---------------------------------------------------------------------------------------------
# the classifier


def toy_features(separation: float, pictures: int = 12, seed: int = 0):
    """Per picture one model row and two synthetic rows; synthetic rows are shifted by ``separation``."""
    rng = np.random.default_rng(seed)
    X, y, keys = [], [], []
    for p in range(pictures):
        for synthetic in (False, True, True):
            X.append(rng.normal(size=len(FEATURES)) + separation * synthetic)
            y.append(synthetic)
            keys.append(f"pic-{p:03d}")
    return np.array(X), np.array(y), keys


def test_classifier_tells_trivially_separable_drafts_apart():
    got = classify(*toy_features(10.0), seed=1)
    assert got["auc"] == 1.0 and got["ci95"] == [1.0, 1.0]
    assert got["test_pictures"] == 6 and got["train_pictures"] == 6
    assert got["test_model_drafts"] == 6 and got["test_synthetic_drafts"] == 12


def test_classifier_is_near_chance_on_one_distribution():
    aucs = [classify(*toy_features(0.0, pictures=40, seed=s), seed=s)["auc"] for s in range(4)]
    assert 0.3 < np.mean(aucs) < 0.7


def test_classifier_is_deterministic_for_a_seed():
    X, y, keys = toy_features(0.5, seed=3)
    assert classify(X, y, keys, seed=2) == classify(X, y, keys, seed=2)
    assert split_pictures(keys, 2) == split_pictures(list(reversed(keys)), 2)
    assert len({frozenset(split_pictures(keys, s)) for s in range(5)}) > 1  # the seed moves the split


def test_the_split_keeps_each_picture_on_one_side():
    keys = [f"k{i}" for i in range(9)]
    test = split_pictures(keys + keys, 0)
    assert len(test) == 5 and test <= set(keys)


def test_logistic_fit_separates_and_ignores_constant_features():
    X = np.array([[0.0, 1.0], [1.0, 1.0], [2.0, 1.0], [3.0, 1.0]])
    y = np.array([False, False, True, True])
    mean, scale, w, b = fit_logistic(X, y)
    assert scale[1] == 1.0 and w[0] > 0 and abs(w[1]) < 1e-9


def test_classifier_needs_four_pictures():
    X, y, keys = toy_features(1.0, pictures=3)
    with pytest.raises(ValueError, match="at least 4 pictures"):
        classify(X, y, keys)


# ---------------------------------------------------------------------------------------------
# the report and the CLI


@pytest.fixture(scope="module")
def builds(tmp_path_factory):
    """A demo build with 2 drafts and one without drafts (64 px), and fake shards with drafts but no regions."""
    from s2pdata.build import run_build
    from s2pdata.synth import SynthConfig
    from tests.fakes import write_shards

    root = tmp_path_factory.mktemp("realism")
    run_build(
        src="demo:6", out=root / "drafts", cfg=SynthConfig(size=64, drafts=2), seed=2, shard_size=3, progress=False
    )
    run_build(src="demo:2", out=root / "none", cfg=SynthConfig(size=64, drafts=0), seed=2, progress=False)
    write_shards(root / "fake", 5, 5, drafts=1)
    return root


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory, builds):
    """A draft and a refine checkpoint of one dry-run step; torch in one thread while the module's tests
    run (tiny convolutions: on a busy 2-core machine two threads spin-wait each other)."""
    torch = pytest.importorskip("torch")
    from s2pdata.train.__main__ import main as train_main

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("realism-runs")
    for stage in ("draft", "refine"):
        argv = [stage, "--shards", str(builds / "fake"), "--out", str(root / stage), "--dry-run", "--steps", "1"]
        assert train_main(argv) == 0
    yield {stage: root / stage / "ckpt.pt" for stage in ("draft", "refine")}
    torch.set_num_threads(threads)


def test_cli_prints_the_table_and_writes_the_json(builds, checkpoints, tmp_path, capsys):
    from s2pdata.inspect import main

    out = tmp_path / "deep" / "realism.json"
    argv = [str(builds / "drafts"), "--draft-realism", "--checkpoint", str(checkpoints["draft"])]
    assert main(argv + ["--seed", "1", "--json", str(out), "--device", "cpu"]) == 0
    text = capsys.readouterr().out
    report = json.loads(out.read_text())
    assert report["checkpoint"] == str(checkpoints["draft"]) and report["step"] == 1
    assert f"draft checkpoint {checkpoints['draft']} (step 1)" in text
    assert report["pictures"] == 6 and report["model_drafts"] == 6 and report["synthetic_drafts"] == 12
    assert report["regions"] == "the build's trapped-ball regions"
    assert set(report["statistics"]) == set(STATISTICS) == set(report["statistic_auc"])
    for name, s in report["statistics"].items():
        assert s["n_model"] == 6 or name in ("wrong_hue", "grey_regions")  # a picture may have no hued region
        assert name in report["units"]
    c = report["classifier"]
    assert 0 <= c["auc"] <= 1 and c["test_pictures"] == 3 and c["train_pictures"] == 3
    assert "logistic regression" in c["description"] and "seed 1" in c["description"]
    assert format_realism(report) in text and f"-> {out}" in text
    # the same inputs and seed give the same report
    again = tmp_path / "again.json"
    assert main(argv + ["--seed", "1", "--json", str(again), "--device", "cpu"]) == 0
    assert again.read_text() == out.read_text()
    assert main(argv + ["-n", "4", "--device", "cpu"]) == 0
    assert "on 4 pictures" in capsys.readouterr().out


def test_a_model_that_returns_the_target_scores_the_target_values(builds, checkpoints):
    from s2pdata.realism import TARGET_VALUES, compare_drafts

    report = compare_drafts(lambda batch: batch["color"], builds / "drafts", n=4)
    assert report["checkpoint"] is None and report["pictures"] == 4 and "a draft model" in format_realism(report)
    for name, s in report["statistics"].items():
        assert s["model"] == pytest.approx(TARGET_VALUES[name], abs=1e-9), name
    grey = compare_drafts(lambda batch: batch["color"].mean(1, keepdim=True).expand(-1, 3, -1, -1), builds / "drafts")
    assert grey["statistics"]["chroma_ratio"]["model"] < 0.01 and grey["statistics"]["wrong_hue"]["model"] == 0
    assert grey["statistic_auc"]["chroma_ratio"] == 1.0  # every synthetic draft has more chroma than a grey one


def test_report_falls_back_to_regions_between_lines(builds, checkpoints):
    from s2pdata.realism import draft_realism

    report = draft_realism(checkpoints["draft"], builds / "fake", device="cpu")
    assert report["regions"].startswith("connected paper pixels between sketch lines")
    assert report["pictures"] == 5 and report["synthetic_drafts"] == 5


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err[-1:]) == 1 and err[-1].startswith("s2pdata.inspect: --draft-realism: ")
    return err[-1]


def test_missing_checkpoint_is_one_line(builds, tmp_path, capsys):
    from s2pdata.inspect import main

    assert main([str(builds / "drafts"), "--draft-realism", "--checkpoint", str(tmp_path / "no.pt")]) == 2
    assert f"no checkpoint at {tmp_path / 'no.pt'}" in _one_line_error(capsys)


def test_refine_checkpoint_is_refused(builds, checkpoints, capsys):
    from s2pdata.inspect import main

    assert main([str(builds / "drafts"), "--draft-realism", "--checkpoint", str(checkpoints["refine"])]) == 2
    line = _one_line_error(capsys)
    assert "is a refine checkpoint" in line and "python -m s2pdata.train draft" in line


def test_shards_without_drafts_say_rebuild_with_drafts(builds, checkpoints, capsys):
    from s2pdata.inspect import main

    assert main([str(builds / "none"), "--draft-realism", "--checkpoint", str(checkpoints["draft"])]) == 2
    line = _one_line_error(capsys)
    assert "no stored synthetic drafts" in line and "--drafts 1" in line


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--draft-realism"], "go together"),
        (["--checkpoint", "x.pt"], "go together"),
        (["--json", "r.json"], "add --draft-realism"),
        (["--draft-realism", "--checkpoint", "x.pt", "--random", "2"], "leave out --random"),
    ],
)
def test_flag_misuse_is_a_usage_error(builds, flags, message, capsys):
    from s2pdata.inspect import main

    with pytest.raises(SystemExit) as exc:
        main([str(builds / "drafts"), *flags])
    assert exc.value.code == 2 and message in capsys.readouterr().err
