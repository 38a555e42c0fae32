"""s2pdata.colorize: known answers of networks with constructed weights, every input form, every error.

The draft network built here copies its input: hint colour where there is a hint, the sketch
elsewhere; the refinement network inverts the draft it is given. Both are exact on binary
sketches and hint colours of 0 or 255 (their last tanh saturates to +-1), so outputs are checked
pixel for pixel.
"""

import dataclasses
import json
import re

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from s2pdata.colorize import COLOR_SHARE, ColorizeError, Colorizer, main, read_hints, read_sketch  # noqa: E402
from s2pdata.inspect import KEY_BAND, choose_samples  # noqa: E402
from s2pdata.stages.hints import Hints, render_hints  # noqa: E402
from s2pdata.stages.sketch import binarize_otsu, extract_sketch  # noqa: E402
from s2pdata.train.draft import DraftConfig  # noqa: E402
from s2pdata.train.nets import UNet  # noqa: E402
from s2pdata.train.refine import RefineConfig, Refiner  # noqa: E402

GAIN = 20.0  # tanh(20 x) is exactly +-1 in float32 for |x| >= 1
H, W = 37, 53  # odd: padded to 40 x 56 for the networks' stride 4 (depth 2), cropped back


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def copy_through(unet: UNet, rows: list[dict[int, float]]) -> UNet:
    """Weights making ``unet`` output ``tanh(GAIN * sum_i w_i x_i)`` per output channel, where
    ``rows[c]`` maps input channels to weights ``w_i``: every weight zero, then each signed sum
    passes the first level as two ReLU channels (its positive and negative parts) through the
    centre taps of the 3x3 convolutions, the skip and the merge block, and the 1x1 output joins them."""
    with torch.no_grad():
        for p in unet.parameters():
            p.zero_()
        first, second = unet.down[0][0], unet.down[0][2]
        merge1, merge2 = unet.merge[0][0], unet.merge[0][2]
        width = first.out_channels  # the merge block sees [up-sampled (width), skip (width)]
        for c, row in enumerate(rows):
            for sign, ch in ((1.0, 2 * c), (-1.0, 2 * c + 1)):
                for i, w in row.items():
                    first.weight[ch, i, 1, 1] = sign * w
                second.weight[ch, ch, 1, 1] = 1.0
                merge1.weight[ch, width + ch, 1, 1] = 1.0
                merge2.weight[ch, ch, 1, 1] = 1.0
                unet.out.weight[c, ch, 0, 0] = sign * GAIN
    return unet


def save(path, stage: str, cfg, G) -> str:
    """A checkpoint in the trainer's layout (config, G's state dict; no D at lambda_gan 0)."""
    ck = {"stage": stage, "step": 7, "config": dataclasses.asdict(cfg), "models": {"G": G.state_dict()}}
    torch.save(ck, path)
    return str(path)


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    """Checkpoints: ``draft`` copies (2 hint + sketch), ``draft_r2`` the same trained with hint_radius 2,
    ``refine`` inverts its draft input (channels 5-7 of [sketch, hint, draft])."""
    root = tmp_path_factory.mktemp("ckpts")
    cfg = DraftConfig(width=8, depth=2, lambda_gan=0.0)
    # input channels: sketch 0, hint (r, g, b) 1-3, hint mask 4
    rows = [{0: 1.0, 1 + c: 2.0} for c in range(3)]
    G = copy_through(UNet(5, 3, width=8, depth=2), rows)
    rcfg = RefineConfig(width=8, depth=2, lambda_gan=0.0, encoder_width=0.0625)
    R = Refiner(width=8, depth=2, encoder_width=0.0625, concat_draft=True)
    copy_through(R.unet, [{5 + c: -1.0} for c in range(3)])
    return {
        "draft": save(root / "draft.pt", "draft", cfg, G),
        "draft_r2": save(root / "draft_r2.pt", "draft", dataclasses.replace(cfg, hint_radius=2), G),
        "refine": save(root / "refine.pt", "refine", rcfg, R),
    }


@pytest.fixture(scope="module")
def colorizer(ckpts):
    return Colorizer(ckpts["draft"], ckpts["refine"], device="cpu")


def binary_sketch(h: int = H, w: int = W, seed: int = 0) -> np.ndarray:
    """White paper with black lines and a black border pixel at the bottom right (where padding begins)."""
    rng = np.random.default_rng(seed)
    s = np.full((h, w), 255, np.uint8)
    for _ in range(6):
        x0, y0, x1, y1 = (int(v) for v in rng.integers(0, [w, h, w, h]))
        cv2.line(s, (x0, y0), (x1, y1), 0, 1)  # cv2 takes (x, y)
    s[-1, -1] = 0
    return s


def hint_map(h: int = H, w: int = W) -> np.ndarray:
    """RGBA hints with colours of 0 or 255 per channel, one of them on the last row and column."""
    hint = np.zeros((h, w, 4), np.uint8)
    for (r, c), rgb in zip(
        [(3, 4), (20, 30), (h - 1, w - 1), (10, w - 2)], [(255, 0, 0), (0, 255, 255), (255, 255, 0), (0, 0, 0)]
    ):
        hint[max(0, r - 1) : r + 2, max(0, c - 1) : c + 2] = (*rgb, 255)
    return hint


def expected_draft(sketch: np.ndarray, hint: np.ndarray) -> np.ndarray:
    """The copying network's answer: the hint colour under a hint, the sketch elsewhere."""
    out = np.repeat(sketch[..., None], 3, -1)
    mask = hint[..., 3] > 0
    out[mask] = hint[mask, :3]
    return out


def reference_draft(sketch: np.ndarray, hint: np.ndarray) -> np.ndarray:
    """The copying network in float64 for any sketch and hints: round((tanh(GAIN (2 h + s)) + 1) 127.5),
    h the premultiplied hint colour and s the sketch, both in [-1, 1] (it may differ by 1 level
    from the float32 network where a value lies near a rounding boundary)."""
    a = hint[..., 3:].astype(np.float64) / 255
    h = (hint[..., :3].astype(np.float64) / 127.5 - 1) * a
    s = sketch[..., None].astype(np.float64) / 127.5 - 1
    return np.round((np.tanh(GAIN * (2 * h + s)) + 1) * 127.5).astype(np.uint8)


def assert_close(got: np.ndarray, want: np.ndarray) -> None:
    assert got.shape == want.shape
    assert np.abs(got.astype(int) - want).max() <= 1


def write_png(path, image: np.ndarray) -> str:
    """Write RGB / RGBA / grey ``image`` (cv2 writes BGR)."""
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR if image.shape[2] == 3 else cv2.COLOR_RGBA2BGRA)
    assert cv2.imwrite(str(path), image)
    return str(path)


def read_rgb(path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


RECORDS = [
    {"row": 5, "col": 6, "side": 3, "rgb": [255, 0, 255]},
    {"row": H - 1, "col": 0, "side": 1, "rgb": [0, 255, 0]},
]


# ---------------------------------------------------------------------------------------------
# known answers (API)


def test_draft_copies_the_hint_colours_and_refine_inverts_the_draft_pixel_for_pixel(colorizer):
    sketch, hint = binary_sketch(), hint_map()
    draft, refined = colorizer.run(sketch, hint)
    assert draft.dtype == refined.dtype == np.uint8
    assert draft.shape == refined.shape == (H, W, 3)  # padded to 40 x 56 inside, cropped back
    np.testing.assert_array_equal(draft, expected_draft(sketch, hint))
    np.testing.assert_array_equal(refined, 255 - draft)


def test_no_hints_copies_the_sketch_and_no_refine_returns_none(ckpts):
    sketch = binary_sketch(seed=3)
    draft, refined = Colorizer(ckpts["draft"], device="cpu").run(sketch)
    assert refined is None
    np.testing.assert_array_equal(draft, np.repeat(sketch[..., None], 3, -1))


def test_padded_side():
    from s2pdata.colorize import padded_side

    assert [padded_side(n, 4) for n in (1, 4, 5, 37, 53)] == [4, 4, 8, 40, 56]
    assert [padded_side(n, 16, 32) for n in (1, 31, 32, 33)] == [32, 32, 32, 48]
    assert padded_side(37, 8, 32) == 40


@pytest.mark.parametrize("shape", [(1, 1), (4, 4), (5, 3), (37, 53), (64, 17), (17, 300)])
def test_any_size_comes_back_at_its_size(colorizer, shape):
    sketch, hint = binary_sketch(*shape, seed=1), hint_map(*shape)
    draft, refined = colorizer.run(sketch, hint)
    np.testing.assert_array_equal(draft, expected_draft(sketch, hint))
    np.testing.assert_array_equal(refined, 255 - draft)


def test_hint_records_are_drawn_at_each_checkpoints_radius(ckpts):
    sketch = np.full((H, W), 255, np.uint8)
    records = Hints.from_json(RECORDS)
    for key, radius in (("draft", 1), ("draft_r2", 2)):  # config hint_radius None -> 1 for the draft stage
        c = Colorizer(ckpts[key], ckpts["refine"], device="cpu")
        assert (c.draft.hint_radius, c.refine.hint_radius) == (radius, 2)
        result = c.colorize(sketch, RECORDS)
        want = render_hints(records, (H, W), radius=radius)
        np.testing.assert_array_equal(result.hint, want)
        np.testing.assert_array_equal(result.draft, expected_draft(sketch, want))
    forced = Colorizer(ckpts["draft_r2"], device="cpu", hint_radius=0)
    np.testing.assert_array_equal(forced.colorize(sketch, records).hint, render_hints(records, (H, W), radius=0))


def test_bf16_follows_the_setting_on_cuda_only():
    from s2pdata.colorize import wants_bf16

    table = {
        (s, d, ok): wants_bf16(s, d, ok) for s in (None, True, False) for d in ("cpu", "cuda") for ok in (True, False)
    }
    assert [k for k, v in table.items() if v] == [(None, "cuda", True), (True, "cuda", True), (True, "cuda", False)]


def test_fp32_on_the_cpu_whatever_the_checkpoint_says(ckpts):
    c = Colorizer(ckpts["draft"], ckpts["refine"], device="cpu", bf16=True)
    assert not c.draft.bf16 and not c.refine.bf16
    assert "fp32" in c.describe() and "step 7" in c.describe()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"draft_ckpt": 123}, "draft_ckpt .* must be a path"),
        ({"device": "tpu"}, "device 'tpu'"),
        ({"device": 0}, "device must be a string"),
        ({"bf16": "yes"}, "bf16 must be True, False or None"),
        ({"hint_radius": -1}, "hint_radius must be None or an int from 0 to 64"),
        ({"hint_radius": True}, "hint_radius"),
    ],
)
def test_constructor_arguments_are_checked_by_name(ckpts, kwargs, match):
    with pytest.raises(ColorizeError, match=match):
        Colorizer(**{"draft_ckpt": ckpts["draft"], **kwargs})


def test_a_checkpoint_of_the_other_stage_is_refused_by_name(ckpts):
    with pytest.raises(ColorizeError, match=r"draft_ckpt \(--draft\): .* is a refine checkpoint.*--refine"):
        Colorizer(ckpts["refine"])
    with pytest.raises(ColorizeError, match=r"refine_ckpt \(--refine\): .* is a draft checkpoint.*--draft"):
        Colorizer(ckpts["draft"], ckpts["draft"])


@pytest.mark.parametrize(
    "sketch, hints, match",
    [
        (np.zeros((H, W), np.float32), None, "sketch must be an .H, W. uint8 array"),
        (np.zeros((H, W, 3), np.uint8), None, "sketch must be an .H, W. uint8 array.*to_sketch"),
        ([[0]], None, "sketch must be"),
        (np.zeros((H, W), np.uint8), np.zeros((H, W + 1, 4), np.uint8), r"is 37x54 \(HxW\) but the sketch is 37x53"),
        (np.zeros((H, W), np.uint8), np.zeros((H, W, 3), np.uint8), "RGBA map"),
        (np.zeros((H, W), np.uint8), [{"row": 1}], "records must be a list of"),
        (np.zeros((H, W), np.uint8), [{"row": H, "col": 0, "side": 1, "rgb": [1, 2, 3]}], "lies outside the 37x53"),
        (np.zeros((H, W), np.uint8), "hints.json", "must be a list of hint records|records is a string"),
        (np.zeros((H, W), np.uint8), 3, "must be a list of hint records"),
    ],
)
def test_run_arguments_are_checked_by_name(colorizer, sketch, hints, match):
    with pytest.raises(ColorizeError, match=match):
        colorizer.run(sketch, hints)


# ---------------------------------------------------------------------------------------------
# reading sketches


def test_a_colour_picture_is_refused_without_extract_and_extracted_with_it(tmp_path):
    from s2pdata.demo import draw_demo

    color = draw_demo(0, seed=5)[:96, :128].copy()
    path = write_png(tmp_path / "picture.png", color)
    with pytest.raises(ColorizeError, match=r"colour picture .*--extract xdog"):
        read_sketch(path)
    for method in ("xdog", "dilate", "highpass"):
        want, _ = extract_sketch(color, method=method, rng=np.random.default_rng(9), augment=False)
        np.testing.assert_array_equal(read_sketch(path, extract=method), want)
    np.testing.assert_array_equal(read_sketch(path, extract="gray"), cv2.cvtColor(color, cv2.COLOR_RGB2GRAY))


def test_grey_pictures_are_line_art_and_clean_binarises_like_the_build(tmp_path):
    rng = np.random.default_rng(0)
    pencil = np.clip(rng.normal(200, 6, (H, W)), 0, 255).astype(np.uint8)  # grey paper with noise
    cv2.line(pencil, (2, 2), (50, 30), 90, 2)
    as_rgb = write_png(tmp_path / "scan.png", np.repeat(pencil[..., None], 3, -1))
    assert np.array_equal(read_sketch(as_rgb), pencil)  # equal channels: line art as it is
    cleaned = read_sketch(as_rgb, clean=True)
    np.testing.assert_array_equal(cleaned, binarize_otsu(pencil)[0])
    assert set(np.unique(cleaned)) == {0, 255}


def test_a_few_coloured_pixels_keep_a_sketch_a_sketch(tmp_path):
    sketch = np.repeat(binary_sketch(100, 100)[..., None], 3, -1)
    sketch[:3, :10] = (255, 0, 0)  # a red signature: 0.3% of the pixels
    assert 30 / 10_000 < COLOR_SHARE
    got = read_sketch(write_png(tmp_path / "signed.png", sketch))
    assert got.shape == (100, 100)


def test_alpha_is_composited_on_white(tmp_path):
    rgba = np.zeros((H, W, 4), np.uint8)  # transparent everywhere but one black line
    rgba[10, :, 3] = 255
    got = read_sketch(write_png(tmp_path / "lines.png", rgba))
    assert (got[10] == 0).all() and (np.delete(got, 10, 0) == 255).all()


def test_hint_files_read_back_as_written(tmp_path):
    hint = hint_map()
    hint[0, 0] = (10, 20, 30, 128)  # a partial alpha survives
    np.testing.assert_array_equal(read_hints(write_png(tmp_path / "h.png", hint), (H, W)), hint)
    (tmp_path / "h.json").write_text(json.dumps(RECORDS))
    assert read_hints(tmp_path / "h.json", (H, W)).to_json() == RECORDS
    sample = {"key": "x", "hints": json.dumps(RECORDS)}  # a sample's json stores them as a string
    (tmp_path / "sample.json").write_text(json.dumps(sample))
    assert read_hints(tmp_path / "sample.json", (H, W)).to_json() == RECORDS


# ---------------------------------------------------------------------------------------------
# the command line


@pytest.fixture
def files(tmp_path):
    sketch, hint = binary_sketch(), hint_map()
    (tmp_path / "h.json").write_text(json.dumps(RECORDS))
    return {
        "sketch": write_png(tmp_path / "my sketch.png", sketch),
        "hint": write_png(tmp_path / "h.png", hint),
        "json": str(tmp_path / "h.json"),
        "arrays": (sketch, hint),
        "out": tmp_path / "out",
        "root": tmp_path,
    }


def test_cli_png_hints_write_draft_and_refined_at_the_sketch_size(ckpts, files, capsys):
    argv = [files["sketch"], "--draft", ckpts["draft"], "--refine", ckpts["refine"], "--hints", files["hint"]]
    assert main([*argv, "--out", str(files["out"]), "--no-progress"]) == 0
    sketch, hint = files["arrays"]
    draft = read_rgb(files["out"] / "my_sketch.draft.png")
    np.testing.assert_array_equal(draft, expected_draft(sketch, hint))
    np.testing.assert_array_equal(read_rgb(files["out"] / "my_sketch.png"), 255 - draft)
    assert "colourised 1 of 1" in capsys.readouterr().out


def test_cli_json_hints_and_no_refine_write_the_draft_twice(ckpts, files):
    assert main([files["sketch"], "--draft", ckpts["draft"], "--hints", files["json"], "--out", str(files["out"])]) == 0
    sketch, _ = files["arrays"]
    want = expected_draft(sketch, render_hints(Hints.from_json(RECORDS), (H, W), radius=1))
    np.testing.assert_array_equal(read_rgb(files["out"] / "my_sketch.draft.png"), want)
    np.testing.assert_array_equal(read_rgb(files["out"] / "my_sketch.png"), want)


def test_cli_without_hints_copies_the_sketch(ckpts, files):
    assert main([files["sketch"], "--draft", ckpts["draft"], "--out", str(files["out"])]) == 0
    np.testing.assert_array_equal(
        read_rgb(files["out"] / "my_sketch.draft.png"), np.repeat(files["arrays"][0][..., None], 3, -1)
    )


def test_cli_folder_with_a_hints_folder_and_a_grid(ckpts, tmp_path, capsys):
    sk, hints, out = tmp_path / "sketches", tmp_path / "hints", tmp_path / "out"
    sk.mkdir(), hints.mkdir()
    a, b = binary_sketch(seed=1), binary_sketch(20, 30, seed=2)
    write_png(sk / "a.png", a), write_png(sk / "b.png", b)
    (sk / "notes.txt").write_text("not a picture")
    write_png(hints / "a.png", hint_map())
    grid = tmp_path / "sheet.png"
    argv = [str(sk), "--draft", ckpts["draft"], "--refine", ckpts["refine"], "--hints", str(hints)]
    assert main([*argv, "--out", str(out), "--grid", str(grid), "--grid-cell", "40"]) == 0
    np.testing.assert_array_equal(read_rgb(out / "a.draft.png"), expected_draft(a, hint_map()))
    np.testing.assert_array_equal(read_rgb(out / "b.draft.png"), np.repeat(b[..., None], 3, -1))  # no hints file
    np.testing.assert_array_equal(read_rgb(out / "b.png"), 255 - np.repeat(b[..., None], 3, -1))
    sheet = read_rgb(grid)
    a_width, widest = round(W * 40 / H), round(30 * 40 / 20)  # b.png is the wider one at height 40
    assert sheet.shape == (KEY_BAND + 2 * (KEY_BAND + 40), 4 * widest, 3)  # sketch | hints | draft | refined
    # a.png's draft at 40 px high (enlarged, nearest) in the third column of the first row, then white
    top = 2 * KEY_BAND
    enlarged = cv2.resize(expected_draft(a, hint_map()), (a_width, 40), interpolation=cv2.INTER_NEAREST)
    np.testing.assert_array_equal(sheet[top : top + 40, 2 * widest : 2 * widest + a_width], enlarged)
    assert (sheet[top : top + 40, 2 * widest + a_width : 3 * widest] == 255).all()


def test_cli_grid_alone_writes_only_the_sheet(ckpts, files):
    grid = files["root"] / "g" / "sheet.png"
    assert main([files["sketch"], "--draft", ckpts["draft"], "--hints", files["hint"], "--grid", str(grid)]) == 0
    sheet = read_rgb(grid)
    assert sheet.shape == (2 * KEY_BAND + 256, 3 * round(W * 256 / H), 3)  # sketch | hints | draft
    assert not files["out"].exists()


def test_cli_one_bad_file_in_a_folder_is_skipped_and_named(ckpts, tmp_path, capsys):
    sk, out = tmp_path / "sketches", tmp_path / "out"
    sk.mkdir()
    write_png(sk / "good.png", binary_sketch())
    (sk / "bad.png").write_bytes(b"not a png at all")
    assert main([str(sk), "--draft", ckpts["draft"], "--out", str(out), "--no-progress"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "skipped: cannot read sketch" in err[0] and "bad.png" in err[0]
    assert sorted(p.name for p in out.iterdir()) == ["good.draft.png", "good.png"]


def test_cli_extract_turns_a_colour_picture_into_line_art(ckpts, tmp_path):
    from s2pdata.demo import draw_demo

    color = draw_demo(1, seed=5)[:61, :47].copy()
    path = write_png(tmp_path / "pic.png", color)
    assert main([path, "--draft", ckpts["draft"], "--extract", "xdog", "--out", str(tmp_path / "o")]) == 0
    lines, _ = extract_sketch(color, method="xdog", rng=np.random.default_rng(0), augment=False)
    draft = read_rgb(tmp_path / "o" / "pic.draft.png")
    assert draft.shape == (61, 47, 3)
    assert_close(draft, reference_draft(lines, np.zeros((61, 47, 4), np.uint8)))


@pytest.mark.parametrize("refine", [False, True])
def test_cli_shards_keys_show_the_target_and_use_the_stored_hint_records(ckpts, demo_build, tmp_path, refine):
    keys = ["demo-000003", "demo-000001"]
    samples = choose_samples(demo_build, keys=keys)
    grid, out = tmp_path / "sheet.png", tmp_path / "out"
    argv = ["--draft", ckpts["draft"], "--shards", str(demo_build), "--keys", ",".join(keys), "--grid", str(grid)]
    argv += ["--refine", ckpts["refine"]] if refine else []
    assert main([*argv, "--out", str(out), "--grid-cell", "32", "--no-progress"]) == 0
    for s in samples:
        hint = render_hints(Hints.from_json(s["json"]["hints"]), s["sketch"].shape, radius=1)
        assert hint[..., 3].any()  # these samples have hints
        assert_close(read_rgb(out / f"{s['__key__']}.draft.png"), reference_draft(s["sketch"], hint))
    sheet = read_rgb(grid)
    columns = 5 if refine else 4  # sketch | hints | draft [| refined] | target
    assert sheet.shape[0] == KEY_BAND + 2 * (KEY_BAND + 32) and sheet.shape[1] % columns == 0
    width = sheet.shape[1] // columns
    h, w = samples[0]["color"].shape[:2]
    target = cv2.resize(samples[0]["color"], (round(w * 32 / h), 32), interpolation=cv2.INTER_AREA)
    left, top = (columns - 1) * width, 2 * KEY_BAND
    np.testing.assert_array_equal(sheet[top : top + 32, left : left + target.shape[1]], target)


def test_cli_shards_random_and_no_hints(ckpts, demo_build, tmp_path):
    out = tmp_path / "out"
    argv = ["--draft", ckpts["draft"], "--shards", str(demo_build), "--random", "2", "--seed", "3", "--no-hints"]
    assert main([*argv, "--out", str(out)]) == 0
    drawn = choose_samples(demo_build, random=2, seed=3)
    assert sorted(p.name for p in out.iterdir()) == sorted(
        f"{s['__key__']}{e}" for s in drawn for e in (".draft.png", ".png")
    )
    for s in drawn:
        blank = np.zeros((*s["sketch"].shape, 4), np.uint8)
        assert_close(read_rgb(out / f"{s['__key__']}.draft.png"), reference_draft(s["sketch"], blank))


def test_cli_module_runs_as_a_program(ckpts, files):
    import subprocess
    import sys

    run = subprocess.run(
        [sys.executable, "-m", "s2pdata.colorize", "--draft", ckpts["draft"], files["sketch"], "--hints", files["hint"],
         "--out", str(files["out"])],
        capture_output=True,
        text=True,
        timeout=120,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert read_rgb(files["out"] / "my_sketch.draft.png").shape == (H, W, 3)


# ---------------------------------------------------------------------------------------------
# one-line errors, exit 2, nothing written


def bad_inputs(ckpts, files, demo_build):
    """(case, argv, what the message says) for every bad input the CLI names."""
    root = files["root"]
    (root / "garbage.png").write_bytes(b"\x89PNG but no more")
    (root / "syntax.json").write_text('[{"row": 1, "col": 2,')
    (root / "fields.json").write_text('[{"row": 1, "col": 2}]')
    (root / "outside.json").write_text(json.dumps([{"row": 0, "col": W, "side": 3, "rgb": [1, 2, 3]}]))
    (root / "object.json").write_text('{"key": "x"}')
    write_png(root / "small.png", hint_map(H - 1, W))
    write_png(root / "rgb_hints.png", np.zeros((H, W, 3), np.uint8))
    from s2pdata.demo import draw_demo

    write_png(root / "colour.png", draw_demo(0, seed=5)[:64, :64].copy())
    d, r, s = ckpts["draft"], ckpts["refine"], files["sketch"]
    shards = str(demo_build)
    return [
        ("draft as refine", [s, "--draft", d, "--refine", d], "refine_ckpt .* is a draft checkpoint"),
        ("refine as draft", [s, "--draft", r], "draft_ckpt .* is a refine checkpoint"),
        ("missing checkpoint", [s, "--draft", str(root / "nope.pt")], "--draft: no checkpoint at"),
        ("not a checkpoint", [s, "--draft", files["hint"]], "damaged or not a torch checkpoint"),
        (
            "hint size",
            [s, "--draft", d, "--hints", str(root / "small.png")],
            r"is 36x53 \(HxW\) but the sketch is 37x53",
        ),
        ("hints without alpha", [s, "--draft", d, "--hints", str(root / "rgb_hints.png")], "must be an RGBA PNG"),
        ("unreadable hints", [s, "--draft", d, "--hints", str(root / "garbage.png")], "cannot read hints"),
        ("missing hints", [s, "--draft", d, "--hints", str(root / "nope.png")], "no hints file at"),
        ("bad JSON", [s, "--draft", d, "--hints", str(root / "syntax.json")], "is not valid JSON"),
        ("bad records", [s, "--draft", d, "--hints", str(root / "fields.json")], "records must be a list of"),
        ("hint outside", [s, "--draft", d, "--hints", str(root / "outside.json")], "lies outside the 37x53 sketch"),
        ("JSON object", [s, "--draft", d, "--hints", str(root / "object.json")], "JSON object without 'hints'"),
        ("unreadable sketch", [str(root / "garbage.png"), "--draft", d], "cannot read sketch"),
        ("missing sketch", [str(root / "nope.png"), "--draft", d], "no sketch file at"),
        ("colour sketch", [str(root / "colour.png"), "--draft", d], "colour picture .* --extract xdog"),
        ("empty folder", [str(root / "out"), "--draft", d], "holds no image"),
        ("no sketch", ["--draft", d], "give a SKETCH"),
        ("sketch and shards", [s, "--draft", d, "--shards", shards, "--random", "1"], "not both"),
        ("keys alone", [s, "--draft", d, "--keys", "a"], "--keys picks samples of --shards"),
        ("shards alone", ["--draft", d, "--shards", shards], "exactly one of --keys"),
        ("unknown key", ["--draft", d, "--shards", shards, "--keys", "demo-9"], "no sample 'demo-9'"),
        ("no shards", ["--draft", d, "--shards", str(root / "out"), "--random", "1"], "holds no shard-.*tar"),
        ("extract shards", ["--draft", d, "--shards", shards, "--random", "1", "--extract", "xdog"], "apply to sketch"),
        ("learned alone", [s, "--draft", d, "--extract", "learned"], "--extract-weights ARCH:PATH"),
        ("hints folder", [s, "--draft", d, "--hints", str(root)], "is a folder but there is one sketch"),
        ("grid suffix", [s, "--draft", d, "--grid", str(root / "sheet.jpg")], "ending in .png"),
        ("device", [s, "--draft", d, "--device", "tpu"], "device .tpu. is not a torch device"),
    ]


def test_every_bad_input_is_one_line_and_exit_2(ckpts, files, demo_build, capsys):
    (files["out"]).mkdir()
    for case, argv, says in bad_inputs(ckpts, files, demo_build):
        extra = [] if "--grid" in argv else ["--out", str(files["out"])]
        assert main([*argv, *extra, "--no-progress"]) == 2, case
        captured = capsys.readouterr()
        lines = captured.err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("s2pdata.colorize: "), (case, captured.err)
        assert re.search(says, lines[0]), (case, lines[0])
        assert "Traceback" not in captured.err
        assert not any(files["out"].iterdir()), case  # nothing written


def test_no_output_asked_for_is_an_error(ckpts, files, capsys):
    assert main([files["sketch"], "--draft", ckpts["draft"]]) == 2
    assert "give --out DIR" in capsys.readouterr().err


def test_help_documents_extract_clean_and_the_outputs(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    for needle in ("--extract", "xdog", "--clean", "Otsu", "NAME.draft.png", "without --refine the draft"):
        assert needle in text
