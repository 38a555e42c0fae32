"""Torch streaming datasets: splitting, exact-once epochs, augmentation, encoding."""

import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from s2pdata.data import make_loader, open_shards, to_model_input  # noqa: E402
from tests.fakes import write_shards  # noqa: E402


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return write_shards(tmp_path_factory.mktemp("shards"), 22, 3)  # 8 shards, last one short


def keys_of(loader):
    return [k for b in loader for k in b["__key__"]]


def test_import_data_does_not_import_torch():
    code = "import sys, s2pdata.data; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_exact_mode_every_sample_once_over_ranks_and_workers(shards):
    expected = sorted(s["__key__"] for s in open_shards(shards, decode=False))
    for epoch in (0, 1):
        seen = []
        for rank in range(2):
            dl = make_loader(
                shards,
                batch_size=2,
                num_workers=2,
                world_size=2,
                rank=rank,
                mode="exact",
                crop=16,
                epoch=epoch,
                shuffle_buffer=4,
            )
            seen += keys_of(dl)
        assert sorted(seen) == expected


def test_exact_mode_reshuffles_per_epoch(shards):
    dl = make_loader(shards, batch_size=4, num_workers=0, mode="exact", crop=16, drop_last=False)
    a = keys_of(dl)
    dl.set_epoch(1)
    b = keys_of(dl)
    assert sorted(a) == sorted(b) and a != b
    dl.set_epoch(0)
    assert keys_of(dl) == a


def test_exact_mode_refuses_too_few_shards(shards):
    with pytest.raises(ValueError, match="at least world_size"):
        make_loader(shards, num_workers=3, world_size=4, mode="exact")


def test_resampled_stream_is_infinite_and_seeded(shards):
    def first(n, **kw):
        it = iter(make_loader(shards, batch_size=4, num_workers=0, crop=16, **kw))
        return [next(it)["__key__"] for _ in range(n)]

    a = first(12)  # 48 samples > 22 in the shards: the stream does not end
    assert a == first(12)
    assert a != first(12, epoch=1)
    assert a != first(12, rank=1, world_size=2)


def test_skip_batches_matches_full_stream(shards):
    for nw in (0, 2):
        full = [b["__key__"] for b in make_loader(shards, batch_size=2, num_workers=nw, mode="exact", crop=16)]
        rest = [
            b["__key__"]
            for b in make_loader(shards, batch_size=2, num_workers=nw, mode="exact", crop=16, skip_batches=5)
        ]
        assert rest == full[5:]


def test_batch_encoding_and_identical_crop(shards):
    dl = make_loader(shards, batch_size=3, num_workers=0, mode="exact", crop=24, shuffle_buffer=0)
    b = next(iter(dl))
    assert b["color"].shape == (3, 3, 24, 24) and b["sketch"].shape == (3, 1, 24, 24)
    assert b["hint"].shape == (3, 4, 24, 24) and {b[k].dtype for k in ("color", "sketch", "hint")} == {torch.uint8}
    m = to_model_input(b)
    for name in ("color", "sketch", "hint"):
        assert m[name].dtype == torch.float32 and m[name].min() >= -1 and m[name].max() <= 1
    a = m["hint"][:, 3:]
    assert set(a.unique().tolist()) <= {0.0, 1.0}
    assert torch.all(m["hint"][:, :3][a.expand(-1, 3, -1, -1) == 0] == 0)  # premultiplied: no hint = 0
    # the same crop/flip for every field: find the crop in the raw colour and compare the sketch
    raw = {s["__key__"]: s for s in open_shards(shards)}
    for i, key in enumerate(b["__key__"]):
        col, sk = b["color"][i].permute(1, 2, 0).numpy(), b["sketch"][i, 0].numpy()
        c, s = raw[key]["color"], raw[key]["sketch"]
        found = False
        for flip in (False, True):
            cc, ss = (c[:, ::-1], s[:, ::-1]) if flip else (c, s)
            for y in range(cc.shape[0] - 23):
                for x in range(cc.shape[1] - 23):
                    if np.array_equal(cc[y : y + 24, x : x + 24], col):
                        found = found or np.array_equal(ss[y : y + 24, x : x + 24], sk)
        assert found, key


def test_crop_larger_than_image_reflect_pads(shards):
    dl = make_loader(shards, batch_size=2, num_workers=0, mode="exact", crop=64, flip=False, shuffle_buffer=0)
    b = next(iter(dl))
    assert b["color"].shape == (2, 3, 64, 64)
    raw = {s["__key__"]: s for s in open_shards(shards)}
    for i, key in enumerate(b["__key__"]):
        c, s = raw[key]["color"], raw[key]["sketch"]  # 40 x 48: 24 rows and 16 columns to pad, split evenly
        col, sk = b["color"][i].permute(1, 2, 0).numpy(), b["sketch"][i, 0].numpy()
        np.testing.assert_array_equal(col, np.pad(c, ((12, 12), (8, 8), (0, 0)), mode="reflect"), err_msg=key)
        np.testing.assert_array_equal(sk, np.pad(s, ((12, 12), (8, 8)), mode="reflect"), err_msg=key)


def test_refine_uses_stored_draft_else_synthesises(tmp_path, shards):
    with_drafts = write_shards(tmp_path / "d", 4, 2, drafts=1)
    b = next(iter(make_loader(with_drafts, stage="refine", batch_size=2, num_workers=0, mode="exact", crop=16)))
    assert torch.equal(b["draft"], 255 - b["color"])  # stored draft0 = 255 - colour
    b = next(iter(make_loader(shards, stage="refine", batch_size=2, num_workers=0, mode="exact", crop=16)))
    assert b["draft"].shape == b["color"].shape and not torch.equal(b["draft"], b["color"])


def _crop_flip(fields: dict, crop: int, rng) -> dict:
    """The loader's crop and flip as numpy copies (the same draws from ``rng``)."""
    H, W = next(iter(fields.values())).shape[:2]
    y, x = int(rng.integers(0, max(H, crop) - crop + 1)), int(rng.integers(0, max(W, crop) - crop + 1))
    flip = bool(rng.random() < 0.5)
    return {
        k: np.ascontiguousarray(a[y : y + crop, x : x + crop][:, ::-1] if flip else a[y : y + crop, x : x + crop])
        for k, a in fields.items()
    }


def _float_batch_before(shards, stage: str, **kw) -> dict:
    """The loader's float batches as they were made before uint8 batches: every member decoded to RGB,
    the same crop/flip, online hints and draft draws, then ``x / 127.5 - 1`` and the premultiplied
    hint on the CPU, in the worker."""
    from s2pdata._rng import sample_rng
    from s2pdata.shards import decode_sample
    from s2pdata.stages.hints import render_hints, sample_hints
    from s2pdata.synth import online_sample

    items = []
    for raw in open_shards(shards, decode=False):
        s, key = decode_sample(raw), raw["__key__"]
        fields = {"color": s["color"], "sketch": s["sketch"], "hint": s["hint"]}
        if stage == "refine":
            stored = sorted(k for k in s if k.startswith("draft") and k[5:].isdigit())
            if stored:
                fields["draft"] = s[stored[int(sample_rng(0, key, "draft", 0).integers(len(stored)))]]
            else:
                fields["draft"] = online_sample(s, seed=0, epoch=0, hints=False)["draft"]
        out = _crop_flip(fields, kw["crop"], sample_rng(0, key, "crop", 0))
        if kw.get("online_hints"):
            h = sample_hints(out["color"], rng=sample_rng(0, key, "hints", 0), p=kw["hint_p"])
            out["hint"] = render_hints(h, out["color"].shape[:2], radius=1 if stage == "draft" else 2)
        items.append(out)
    batch = {}
    for name in items[0]:
        a = torch.from_numpy(np.stack([it[name] for it in items]))
        a = (a[..., None] if a.ndim == 3 else a).permute(0, 3, 1, 2).float()
        if name == "hint":
            alpha = a[:, 3:] / 255.0
            a = torch.cat([(a[:, :3] / 127.5 - 1.0) * alpha, alpha], 1)
        else:
            a = a / 127.5 - 1.0
        batch[name] = a
    return batch


def _write_shards(out, n: int, per_shard: int, *, color_format: str, h: int, w: int, drafts: int):
    """``tests.fakes.write_shards`` with the colour (and stored drafts) in ``color_format``."""
    from s2pdata.shards import Schema, commit_stats, encode_sample, shard_name, write_tar
    from tests.fakes import shard_sample

    out.mkdir(parents=True, exist_ok=True)
    schema = Schema(color_format=color_format, drafts=drafts)
    for i, start in enumerate(range(0, n, per_shard)):
        keys = range(start, min(n, start + per_shard))
        samples = [encode_sample(shard_sample(k, h, w, drafts), schema) for k in keys]
        commit_stats(out, i, {"shard": shard_name(i), "index": i, **write_tar(out / shard_name(i), samples)})
    return out


@pytest.mark.parametrize("color_format", ["jpg", "png", "webp"])  # jpg: the build's default
@pytest.mark.parametrize(
    "stage, drafts, extra",
    [("draft", 0, {}), ("draft", 0, {"online_hints": True, "hint_p": 0.05}), ("refine", 2, {}), ("refine", 0, {})],
)
def test_to_model_input_equals_the_old_float_batches(tmp_path, stage, drafts, extra, color_format):
    """uint8 batches + to_model_input give the old float layout value for value (RGB colour, RGBA hints,
    stored drafts chosen per sample, online drafts and hints), and only what the stage uses is decoded,
    for each colour codec: JPEG and WebP colour and drafts reach the loader in OpenCV's BGR order and
    PNG colour in RGB, so each takes its own path to the batch."""
    shards = _write_shards(tmp_path, 6, 3, color_format=color_format, drafts=drafts, h=40, w=52)
    assert {f"color.{color_format}"} <= set(next(open_shards(shards, decode=False)))
    kw = dict(crop=32, **extra)
    old = _float_batch_before(shards, stage, **kw)
    dl = make_loader(shards, stage=stage, batch_size=6, num_workers=0, mode="exact", shuffle_buffer=0, **kw)
    order = sorted(s["__key__"] for s in open_shards(shards, decode=False))
    new = to_model_input(next(iter(dl)))
    idx = [order.index(k) for k in new["__key__"]]
    assert sorted(new) == sorted([*old, "__key__"])
    for name in old:
        assert new[name].dtype == torch.float32
        assert torch.equal(new[name], old[name][idx]), name


def test_loader_decodes_only_what_the_stage_uses(monkeypatch, tmp_path):
    import s2pdata.shards.format as shards_mod

    shards = write_shards(tmp_path, 4, 2, drafts=3)
    seen = []
    real = shards_mod.decode_field

    def counting(name, data, **kw):
        seen.append(name)
        return real(name, data, **kw)

    monkeypatch.setattr(shards_mod, "decode_field", counting)

    def decoded(stage, **kw):
        seen.clear()
        next(iter(make_loader(shards, stage=stage, batch_size=4, num_workers=0, mode="exact", crop=16, **kw)))
        return sorted({n.split(".")[0] for n in seen}), len(seen)

    assert decoded("draft") == (["color", "hint", "sketch"], 12)
    assert decoded("draft", online_hints=True) == (["color", "sketch"], 8)
    names, n = decoded("refine")
    assert n == 16 and [x for x in names if not x.startswith("draft")] == ["color", "hint", "sketch"]


def test_to_model_input_refuses_a_float_batch(shards):
    b = to_model_input(next(iter(make_loader(shards, batch_size=2, num_workers=0, crop=16))))
    with pytest.raises(TypeError, match=r"batch\['color'\] has dtype torch.float32.*use it as it is"):
        to_model_input(b)


def test_online_hints_change_per_epoch(shards):
    def hint(epoch):
        dl = make_loader(
            shards,
            batch_size=8,
            num_workers=0,
            mode="exact",
            crop=32,
            online_hints=True,
            epoch=epoch,
            shuffle_buffer=0,
            flip=False,
        )
        return next(iter(dl))["hint"]

    assert torch.equal(hint(0), hint(0))
    assert not torch.equal(hint(0), hint(1))


# (samples, per shard, batch) with 2 workers: whole workers' epochs; every worker ends short (5 + 5 =
# 2 batches of 4 and 2 left, joined into a fifth batch); every worker's epoch shorter than a batch
SMALL_BUILDS = [(16, 2, 4), (20, 5, 4), (12, 3, 8)]


@pytest.mark.parametrize("n, per_shard, batch", SMALL_BUILDS)
def test_small_build_gives_full_batches(tmp_path, n, per_shard, batch):
    shards = write_shards(tmp_path, n, per_shard)
    kw = dict(batch_size=batch, num_workers=2, crop=16, shuffle_buffer=4)
    it = iter(make_loader(shards, mode="resampled", **kw))
    sizes = [next(it)["color"].shape[0] for _ in range(6)]
    assert sizes == [batch] * 6
    for nw in (0, 2):
        batches = [b["__key__"] for b in make_loader(shards, mode="exact", **{**kw, "num_workers": nw})]
        assert [len(k) for k in batches] == [batch] * (n // batch)  # only the final remainder is dropped
        keys = [k for b in batches for k in b]
        assert len(set(keys)) == len(keys)  # each sample at most once
        every = [b["__key__"] for b in make_loader(shards, mode="exact", drop_last=False, **{**kw, "num_workers": nw})]
        assert sorted(k for b in every for k in b) == sorted(s["__key__"] for s in open_shards(shards, decode=False))
        assert every[: len(batches)] == batches and len(every) == -(-n // batch)


def test_skip_batches_across_joined_batches(tmp_path):
    # shards of 5, 5, 5, 5, 5, 1: the 2 workers read 15 and 11 samples = 3 and 2 full batches of 4,
    # then their short 3s are joined into a sixth batch; skipping all 6 (a resume at the epoch's end)
    # must leave nothing
    shards = write_shards(tmp_path, 26, 5)
    kw = dict(batch_size=4, num_workers=2, mode="exact", crop=16)
    full = [b["__key__"] for b in make_loader(shards, **kw)]
    assert len(full) == 6
    for k in (3, 5, 6):
        assert [b["__key__"] for b in make_loader(shards, skip_batches=k, **kw)] == full[k:], k


def test_exact_epoch_shorter_than_a_batch_is_refused(tmp_path):
    shards = write_shards(tmp_path, 3, 3)
    with pytest.raises(ValueError, match="fewer than batch_size 4"):
        iter(make_loader(shards, batch_size=4, num_workers=0, mode="exact", crop=16))
    assert len(keys_of(make_loader(shards, batch_size=4, num_workers=0, mode="exact", crop=16, drop_last=False))) == 3


def test_hint_p_sets_the_online_hint_density(shards):
    """A smaller stop probability draws more hints (mean 1/p - 1), from the same per-sample draws."""

    def hinted_pixels(**kw):
        dl = make_loader(shards, batch_size=8, num_workers=0, mode="exact", crop=32, online_hints=True, **kw)
        return int((next(iter(dl))["hint"][:, 3] > 0).sum())

    assert hinted_pixels(hint_p=0.125) == hinted_pixels()  # None is the sampler's 1/8
    assert hinted_pixels(hint_p=0.02) > 2 * hinted_pixels()
    with pytest.raises(ValueError, match="hint_p"):
        make_loader(shards, num_workers=0, online_hints=True, hint_p=1.5)


def test_normalise_lookup_tables_equal_the_computed_floats():
    from s2pdata.data.loader import normalise

    v = torch.arange(256, dtype=torch.uint8).repeat(2, 4, 3, 1)  # every value in every channel, alpha too
    v[1, 3] = v[1, 3].flip(-1)
    for hint in (False, True):
        assert torch.equal(normalise(v, hint=hint, lut=True), normalise(v, hint=hint, lut=False)), hint
    want = v.float() / 127.5 - 1.0
    assert torch.equal(normalise(v, hint=False), want)
    assert torch.equal(normalise(v, hint=True)[:, 3:], v[:, 3:].float() / 255.0)


def test_keep_heap_is_set_where_batches_are_made(monkeypatch, shards):
    import s2pdata.data.loader as loader_mod

    assert loader_mod.keep_heap() is True  # glibc here
    calls = []
    monkeypatch.setattr(loader_mod, "keep_heap", lambda: calls.append(1) or True)
    a = next(iter(make_loader(shards, batch_size=2, num_workers=0, crop=16)))
    b = next(iter(make_loader(shards, batch_size=2, num_workers=0, crop=16, keep_heap=False)))
    assert len(calls) == 1 and all(torch.equal(a[k], b[k]) for k in ("color", "sketch", "hint"))
    assert make_loader(shards, num_workers=2).worker_init_fn is loader_mod._worker_init
    assert make_loader(shards, num_workers=2, keep_heap=False).worker_init_fn is None
