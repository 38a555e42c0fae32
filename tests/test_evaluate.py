"""s2pdata.evaluate: known-answer scores of model functions on shards, the FID formula, and the CLI."""

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from s2pdata.data import make_loader, to_model_input  # noqa: E402
from s2pdata.evaluate import (  # noqa: E402
    GRID_BACKGROUND,
    GRID_MAX,
    GRID_MIN_WIDTH,
    GRID_TILE,
    PSNR_CAP,
    UNITS,
    evaluate,
    fit_tile,
    frechet_distance,
    grid_columns,
    load_model,
    main,
    resolve_device,
    score,
    tile_shape,
)
from s2pdata.inspect import KEY_BAND, label_band  # noqa: E402
from s2pdata.train.__main__ import main as train_main  # noqa: E402
from tests.fakes import shard_sample, write_shards  # noqa: E402

N, PER_SHARD, H, W = 9, 3, 40, 48  # sample 8 has no hints
CONST = 100  # the constant model's uint8 output: its tensor value 100 / 127.5 - 1 maps back to 100 exactly


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return write_shards(tmp_path_factory.mktemp("eval") / "s", N, PER_SHARD, h=H, w=W)


@pytest.fixture(scope="module")
def pictures():
    """The shards' pixels, straight from the generator (colour is stored as PNG: lossless)."""
    out = []
    for k in range(N):
        s = shard_sample(k, H, W)
        out.append((s["color"].astype(np.float64), s["hint"][..., 3] > 0, s["hint"][..., :3].astype(np.float64)))
    assert any(m.any() for _, m, _ in out) and not all(m.any() for _, m, _ in out)  # both kinds present
    return out


@pytest.fixture(scope="module")
def run(tmp_path_factory, shards):
    root = tmp_path_factory.mktemp("runs")
    for stage in ("draft", "refine"):
        argv = [stage, "--shards", str(shards), "--out", str(root / stage), "--dry-run", "--steps", "1"]
        assert train_main(argv) == 0
    return root


def loader(shards):
    return make_loader(
        shards, stage="draft", batch_size=1, num_workers=0, mode="exact", crop=None, flip=False, shuffle_buffer=0
    )


def hint_colours(batch):
    """The hint map's colours in [-1, 1] where a hint is, black (-1) elsewhere."""
    a = batch["hint"][:, 3:]
    return torch.where(a > 0, batch["hint"][:, :3] / a.clamp_min(1e-6), torch.full_like(batch["hint"][:, :3], -1.0))


def hint_mean(pictures, err):
    """Mean over images with hints of ``err(colour, mask, hint_rgb)``."""
    return np.mean([err(c, m, h) for c, m, h in pictures if m.any()])


def test_target_model_scores_zero_l1_and_the_psnr_cap(shards, pictures):
    s = score(lambda b: b["color"], loader(shards))
    assert s["images"] == N
    want_hint = hint_mean(pictures, lambda c, m, h: np.abs(c[m] - h[m]).mean())  # hints are 3x3 patch means
    for setting in ("no_hints", "hints"):
        assert s[setting]["l1"] == 0.0
        assert s[setting]["psnr"] == PSNR_CAP == 100.0
        assert s[setting]["ssim"] == pytest.approx(1.0, abs=1e-12)
        assert s[setting]["hint_error"] == pytest.approx(want_hint, rel=1e-12)
        assert s[setting]["images_with_hints"] == sum(m.any() for _, m, _ in pictures)
        assert s[setting]["fid"] is None and "--fid-weights" in s[setting]["fid_note"]


def test_constant_model_scores_by_hand(shards, pictures):
    s = score(lambda b: torch.full_like(b["color"], CONST / 127.5 - 1), loader(shards))
    want_l1 = np.mean([np.abs(CONST - c).mean() / 255 for c, _, _ in pictures])
    want_psnr = np.mean([10 * np.log10(255**2 / ((CONST - c) ** 2).mean()) for c, _, _ in pictures])
    want_hint = hint_mean(pictures, lambda c, m, h: np.abs(CONST - h[m]).mean())
    for setting in ("no_hints", "hints"):
        assert s[setting]["l1"] == pytest.approx(want_l1, rel=1e-12)
        assert s[setting]["psnr"] == pytest.approx(want_psnr, rel=1e-12)
        assert s[setting]["hint_error"] == pytest.approx(want_hint, rel=1e-12)


def test_model_that_paints_the_hints_has_zero_hint_error(shards, pictures):
    s = score(hint_colours, loader(shards))
    assert s["hints"]["hint_error"] == 0.0 and s["hints"]["images_with_hints"] > 0
    # without hints it paints nothing (black), so its error is the hint colours' own mean
    assert s["no_hints"]["hint_error"] == pytest.approx(hint_mean(pictures, lambda c, m, h: h[m].mean()), rel=1e-12)


def test_limit_counts_images_not_batches(shards):
    batches = make_loader(
        shards, stage="draft", batch_size=3, num_workers=0, mode="exact", crop=None, flip=False, shuffle_buffer=0
    )
    assert score(lambda b: b["color"], batches, limit=4)["images"] == 4


def test_frechet_distance_known_answers():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 3)) @ rng.normal(size=(3, 3))
    shift = np.array([1.0, -2.0, 0.5])
    assert frechet_distance(x, x + shift) == pytest.approx(float(shift @ shift), rel=1e-9)  # equal covariances
    assert frechet_distance(x, x) == pytest.approx(0.0, abs=1e-9)
    a, b = rng.normal(1.0, 2.0, size=(50, 1)), rng.normal(-1.0, 0.5, size=(60, 1))
    sa, sb = a.std(ddof=1), b.std(ddof=1)  # 1-d: (mu_a - mu_b)^2 + (sigma_a - sigma_b)^2
    assert frechet_distance(a, b) == pytest.approx((a.mean() - b.mean()) ** 2 + (sa - sb) ** 2, rel=1e-9)
    with pytest.raises(ValueError, match="at least 2"):
        frechet_distance(x[:1], x)


@pytest.mark.parametrize("n, m, d", [(200, 150, 3), (12, 9, 30)])  # the D x D path; the sample-space path
def test_frechet_distance_matches_scipy_sqrtm(n, m, d):
    from scipy.linalg import sqrtm

    rng = np.random.default_rng(d)
    a, b = rng.normal(size=(n, d)) @ rng.normal(size=(d, d)), rng.normal(0.3, 2.0, size=(m, d))
    sa, sb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    want = ((a.mean(0) - b.mean(0)) ** 2).sum() + np.trace(sa + sb - 2 * sqrtm(sa @ sb).real)
    assert frechet_distance(a, b) == pytest.approx(want, rel=1e-6)


def test_fid_branch_with_a_tiny_encoder(shards, pictures):
    """The FID branch, fed by a tiny random Inception-V1 built here (real GoogLeNet weights are a
    user's local file, never downloaded): targets vs targets is 0; a constant prediction has
    identical features, so FID = |mu_real - f_const|^2 + tr(cov_real)."""
    from s2pdata.train.nets import InceptionEncoder

    torch.manual_seed(0)
    enc = InceptionEncoder(0.0625).eval()

    def features(x):
        with torch.no_grad():
            return enc(x.float()).double().numpy()

    s = score(lambda b: b["color"], loader(shards), fid_features=features)
    assert s["hints"]["fid"] == pytest.approx(0.0, abs=1e-9) and "fid_note" not in s["hints"]
    const = torch.full((1, 3, H, W), CONST / 127.5 - 1)
    s = score(lambda b: const.expand_as(b["color"]), loader(shards), fid_features=features)
    real = np.concatenate(
        [features(torch.from_numpy(c).permute(2, 0, 1)[None].float() / 127.5 - 1) for c, _, _ in pictures]
    )
    f = features(const)[0]
    want = float(((real.mean(0) - f) ** 2).sum() + np.trace(np.cov(real, rowvar=False)))
    assert want > 0
    for setting in ("no_hints", "hints"):
        assert s[setting]["fid"] == pytest.approx(want, rel=1e-6)


@pytest.mark.parametrize("stage", ["draft", "refine"])
def test_evaluate_cli_writes_json(run, shards, stage, tmp_path, capsys):
    out = tmp_path / "scores.json"
    ckpt = str(run / stage / "ckpt.pt")
    assert main(["--checkpoint", ckpt, "--shards", str(shards), "--limit", "4", "--out", str(out)]) == 0
    scores = json.loads(out.read_text())
    captured = capsys.readouterr()
    assert scores == json.loads(captured.out)  # stdout is the JSON alone
    assert f"evaluate: {stage} checkpoint {ckpt}" in captured.err and f"scoring 4 of {N} images" in captured.err
    assert "img/s" in captured.err or "s/img" in captured.err  # tqdm's rate
    assert scores["stage"] == stage and scores["images"] == 4 and scores["step"] == 1
    for setting in ("no_hints", "hints"):
        s = scores[setting]
        assert 0 <= s["l1"] <= 1 and np.isfinite(s["psnr"]) and -1 <= s["ssim"] <= 1
        assert s["fid"] is None
        assert set(s) - {"fid_note"} <= set(scores["units"])  # every score has its unit
    assert "0-255" in scores["units"]["hint_error"] and "dB" in scores["units"]["psnr"]


def test_evaluate_is_deterministic(run, shards, tmp_path):
    a = evaluate(str(run / "refine" / "ckpt.pt"), shards, fid=False, grid=tmp_path / "a.png")
    b = evaluate(str(run / "refine" / "ckpt.pt"), shards, fid=False, grid=tmp_path / "b.png")
    assert a.pop("grid")["path"] == str(tmp_path / "a.png") and b.pop("grid")["path"] == str(tmp_path / "b.png")
    assert a == b and a["images"] == N and "fid" not in a["hints"] and "fid" not in a["units"]
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()  # the same samples, pixels


def metric_keys(scores: dict) -> set:
    """Every number the JSON reports: ``images`` and each setting's scores (notes are text, not scores)."""
    return {"images"} | {k for s in ("no_hints", "hints") for k in scores[s] if not k.endswith("_note")}


def test_every_score_has_its_unit(run, shards):
    """Fails when a score is added without a unit (or a unit outlives its score)."""
    ckpt = str(run / "draft" / "ckpt.pt")
    for fid in (True, False):  # fid True without weights: the fid key is there (null, with a note)
        scores = evaluate(ckpt, shards, limit=2, fid=fid, device="cpu")
        assert metric_keys(scores) == set(scores["units"]) and ("fid" in scores["units"]) == fid
        assert all(isinstance(u, str) and u for u in scores["units"].values())
    from s2pdata.train.nets import InceptionEncoder

    enc = InceptionEncoder(0.0625).eval()  # the branch that computes FID reports the same keys

    def features(x):
        with torch.no_grad():
            return enc(x.float()).double().numpy()

    computed = score(lambda b: b["color"], loader(shards), limit=2, fid_features=features)
    assert computed["hints"]["fid"] is not None and metric_keys(computed) == set(UNITS)
    assert "dB" in UNITS["psnr"] and "0-255" in UNITS["hint_error"] and "-1 to 1" in UNITS["ssim"]
    assert "0 to 1" in UNITS["l1"] and "squared distance" in UNITS["fid"]


K = GRID_TILE // max(H, W)  # 5: the sheet shows each (40, 48) picture as 5 x 5 blocks, in (200, 240) tiles
TH, TW = K * H, K * W


def grid_tile(sheet, row, column):
    """The (TH, TW, 3) picture of ``row``, ``column`` of a sheet (title band, then key band + row)."""
    top = KEY_BAND + row * (KEY_BAND + TH) + KEY_BAND
    return sheet[top : top + TH, column * TW : (column + 1) * TW]


@pytest.mark.parametrize("stage, limit, rows", [("draft", 4, 3), ("refine", 2, 2)])  # --limit caps the rows
def test_grid_sheet_shows_the_first_samples_with_their_keys(run, shards, stage, limit, rows, tmp_path, capsys):
    import cv2

    from s2pdata.train.common import hints_image, to_uint8

    ckpt = str(run / stage / "ckpt.pt")
    grid = tmp_path / "new" / "folder" / "sheet.png"  # folders that do not exist yet
    argv = ["--checkpoint", ckpt, "--shards", str(shards), "--limit", str(limit), "--device", "cpu"]
    assert main(argv + ["--grid", str(grid), "--grid-n", "3"]) == 0
    captured = capsys.readouterr()
    scores = json.loads(captured.out)
    assert f"the first 3 to the sheet {grid}" in captured.err and f"wrote {grid} ({rows} samples" in captured.err
    columns = list(grid_columns(stage))
    assert columns == [
        "sketch",
        "hints",
        *(["draft"] if stage == "refine" else []),
        "no-hint output",
        "output",
        "target",
    ]
    assert scores["grid"]["path"] == str(grid) and scores["grid"]["columns"] == columns

    sheet = cv2.cvtColor(cv2.imread(str(grid), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    assert (K, TH, TW) == (5, 200, 240) and tile_shape(H, W) == (TH, TW)
    assert sheet.shape == (KEY_BAND + rows * (KEY_BAND + TH), len(columns) * TW, 3)
    # the title band: each title at full size in its own column (a title too wide would be shrunk)
    want_titles = np.concatenate([label_band(c, TW) for c in columns], 1)
    assert np.array_equal(sheet[:KEY_BAND], want_titles)
    for c in columns:
        assert cv2.getTextSize(c, cv2.FONT_HERSHEY_SIMPLEX, 0.45, 1)[0][0] <= GRID_MIN_WIDTH - 6

    # the rows are the first samples of the evaluation order, recomputed here from the checkpoint
    model_fn, _ = load_model(ckpt)
    batches = make_loader(
        shards, stage=stage, batch_size=1, num_workers=0, mode="exact", seed=0, crop=None, flip=False, shuffle_buffer=0
    )
    batches = [to_model_input(b) for b in list(batches)[:rows]]
    keys = [b["__key__"][0] for b in batches]
    assert scores["grid"]["keys"] == keys and len(set(keys)) == rows
    for i, b in enumerate(batches):
        band_top = KEY_BAND + i * (KEY_BAND + TH)
        assert np.array_equal(sheet[band_top : band_top + KEY_BAND], label_band(keys[i], sheet.shape[1]))
        with torch.no_grad():
            want = {
                "sketch": to_uint8(b["sketch"]),
                "hints": hints_image(b["hint"]),
                "draft": to_uint8(b["draft"]) if stage == "refine" else None,
                "no-hint output": to_uint8(model_fn({**b, "hint": torch.zeros_like(b["hint"])})),
                "output": to_uint8(model_fn(b)),
                "target": to_uint8(b["color"]),
            }
        for j, c in enumerate(columns):
            blocks = np.repeat(np.repeat(want[c][0], K, 0), K, 1)  # the model's pixels, each as a 5 x 5 block
            assert np.array_equal(grid_tile(sheet, i, j), blocks), (keys[i], c)
        if b["hint"][:, 3].any():  # where there are hints, the two outputs are different pictures
            assert not np.array_equal(want["output"], want["no-hint output"])


def test_fit_tile_enlarges_by_whole_factors_and_shrinks_by_area():
    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, (7, 5, 3), dtype=np.uint8)
    assert tile_shape(7, 5, 32) == (28, GRID_MIN_WIDTH)  # 32 // 7 = 4; the titles need GRID_MIN_WIDTH
    assert tile_shape(400, 300) == (GRID_TILE, 192) and tile_shape(300, 400) == (192, GRID_TILE)
    t = fit_tile(small, (32, 32))  # 4 x: 28 x 20, centred on grey
    assert t.shape == (32, 32, 3) and np.array_equal(t[2:30, 6:26], np.repeat(np.repeat(small, 4, 0), 4, 1))
    assert (t[:2] == GRID_BACKGROUND).all() and (t[:, :6] == GRID_BACKGROUND).all()
    assert (t[30:] == GRID_BACKGROUND).all() and (t[:, 26:] == GRID_BACKGROUND).all()
    big = np.full((400, 200, 3), 255, np.uint8)
    big[100:103, 50:53] = (255, 0, 0)  # a 3 x 3 hint on white
    t = fit_tile(big, (100, 100))  # to 100 x 50, centred
    assert (t[:, :25] == GRID_BACKGROUND).all() and (t[:, 75:] == GRID_BACKGROUND).all()
    assert t[..., 1].min() > 150  # averaged away: faint
    t = fit_tile(big, (100, 100), spread=True)  # the hints column: spread first, so it stays a red dot
    assert t[..., 1].min() == 0 and (t[:, 25:75, 0] == 255).all()


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--grid-n", "0"], f"--grid-n must be a whole number of samples from 1 to {GRID_MAX}, got 0"),
        (["--grid-n", str(GRID_MAX + 1)], f"got {GRID_MAX + 1}"),
        (["--grid-n", "two"], "--grid-n must be a whole number of samples from 1 to 64, got 'two'"),
        (["--grid-n", "2.5"], "got '2.5'"),
        ("nogrid", "--grid-n 3 needs --grid PATH.png"),
        (["--grid", "{tmp}/sheet.jpg"], "--grid {tmp}/sheet.jpg must end in .png"),
        (["--grid", "{tmp}"], "--grid {tmp} is a folder"),
        (["--grid", "s3://bucket/sheet.png"], "--grid writes a local file, got the URL s3://bucket/sheet.png"),
        (["--grid", "{tmp}/afile/sheet.png"], "--grid {tmp}/afile/sheet.png: cannot make its folder {tmp}/afile"),
    ],
)
def test_grid_errors_are_one_line_before_any_work(tmp_path, capsys, flags, message):
    (tmp_path / "afile").write_text("")
    ckpt = str(tmp_path / "missing.pt")  # never read: the flags are checked first
    if flags == "nogrid":
        flags = ["--grid-n", "3"]
    else:
        flags = [f.format(tmp=tmp_path) for f in flags] + (
            ["--grid", str(tmp_path / "g.png")] if "--grid" not in flags else []
        )
    assert main(["--checkpoint", ckpt, "--shards", str(tmp_path)] + flags) == 2
    err = capsys.readouterr().err
    assert err.startswith("s2pdata.evaluate: ") and err.count("\n") == 1
    assert message.format(tmp=tmp_path) in err
    with pytest.raises(ValueError, match="--grid-n must be a whole number"):
        evaluate(ckpt, tmp_path, grid=tmp_path / "g.png", grid_n=True)


def test_default_device_is_auto():
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")


def test_evaluate_reports_missing_inputs_in_one_line(run, tmp_path, capsys):
    assert main(["--checkpoint", str(run / "draft" / "ckpt.pt"), "--shards", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err
    assert "shard" in err and err.count("\n") == 1
    assert main(["--checkpoint", str(tmp_path / "missing.pt"), "--shards", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"s2pdata.evaluate: no checkpoint at {tmp_path / 'missing.pt'} (") and err.count("\n") == 1


@pytest.mark.slow
def test_cli_fid_from_a_googlenet_state_dict(run, shards, tmp_path, capsys):
    """--fid-weights end to end, with a random full-width Inception-V1 saved as a state dict in
    torchvision's key layout: the JSON's FID equals the Frechet distance of the features computed
    here from the same file."""
    import torch.nn.functional as F

    from s2pdata.train.nets import InceptionEncoder, load_googlenet_weights

    torch.manual_seed(1)
    weights = tmp_path / "googlenet.pth"
    torch.save(InceptionEncoder(1.0).state_dict(), weights)
    ckpt = str(run / "draft" / "ckpt.pt")
    argv = ["--checkpoint", ckpt, "--shards", str(shards), "--limit", "2", "--no-progress", "--device", "cpu"]
    assert main(argv + ["--fid-weights", str(weights)]) == 0
    scores = json.loads(capsys.readouterr().out)
    enc = InceptionEncoder(1.0)
    load_googlenet_weights(enc, str(weights))
    enc.eval()
    model_fn, _ = load_model(ckpt)

    def feats(x):
        with torch.no_grad():
            return enc(F.interpolate(x, size=(224, 224), mode="bilinear", antialias=True)).double().numpy()

    batches = [to_model_input(b) for b in list(loader(shards))[:2]]
    real = np.concatenate([feats(b["color"]) for b in batches])
    with torch.no_grad():
        fake = np.concatenate([feats(model_fn(b)) for b in batches])
    assert scores["hints"]["fid"] == pytest.approx(frechet_distance(real, fake), rel=1e-6)
    assert main(argv + ["--fid-weights", str(tmp_path / "none.pth")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"s2pdata.evaluate: no GoogLeNet weights at {tmp_path / 'none.pth'}") and err.count("\n") == 1


def test_help_names_the_grid_flags(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--grid PATH.png" in text and "no-hint output" in text
    assert f"rows of the --grid sheet, 1 to {GRID_MAX} (default: 8)" in text
