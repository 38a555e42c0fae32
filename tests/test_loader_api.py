"""The dataset API a trainer author meets: signatures, docs and errors of make_loader and the datasets.

Each setting is defined once (a field of ``s2pdata.data.settings``); these tests check that what
``help``, ``inspect.signature`` and the docstrings show agrees with it, and that the keyword
arguments the loader took before the settings classes keep their names and defaults.
"""

import dataclasses
import inspect
import json
import re
import subprocess
import sys

import pytest

import s2pdata.data
from s2pdata.data.settings import LoaderSettings, StreamSettings

ENTRY = re.compile(r"^(\w+) : (.+?)(?:, default (.+))?$")

# make_loader's keyword arguments and defaults before the settings classes (December 2026): each
# must keep working with the same meaning and default
BEFORE = {
    "stage": "draft",
    "num_workers": 4,
    "drop_last": True,
    "pin_memory": None,
    "prefetch_factor": None,
    "keep_heap": True,
    "batch_size": 16,
    "mode": "resampled",
    "world_size": 1,
    "rank": 0,
    "epoch": 0,
    "seed": 0,
    "crop": 224,
    "flip": True,
    "online_hints": False,
    "hint_radius": None,
    "hint_p": None,
    "shuffle_buffer": 256,
    "skip_batches": 0,
    "draft_pool": None,
    "online_drafts": False,
    "verify": False,
    "storage_options": None,
}
# settings added since, with their defaults
ADDED = {"draft_style": "paper", "draft_mix": 0.5}


def documented_parameters(obj) -> list[tuple[str, str, str | None]]:
    """(name, type, default text) of every entry of the numpydoc "Parameters" section of ``obj``."""
    lines = inspect.getdoc(obj).splitlines()
    start = lines.index("Parameters") + 2
    assert set(lines[start - 1]) == {"-"}, obj
    out = []
    for i in range(start, len(lines)):
        line = lines[i]
        if i + 1 < len(lines) and lines[i + 1] and set(lines[i + 1]) == {"-"}:  # the next section's title
            break
        if line and not line.startswith(" "):
            m = ENTRY.match(line)
            assert m, f"{obj.__qualname__}: not a parameter entry: {line!r}"
            assert lines[i + 1].startswith("    ") and lines[i + 1].strip(), f"{m[1]} has no description"
            out.append(m.groups())
    return out


def public_callables():
    """(name, callable) of the public entries that take the settings; the datasets need torch."""
    out = [
        ("s2pdata.data.make_loader", s2pdata.data.make_loader),
        ("StreamSettings", StreamSettings),
        ("LoaderSettings", LoaderSettings),
    ]
    try:
        import torch  # noqa: F401
    except ModuleNotFoundError:
        return out
    from s2pdata.data import loader

    return out + [
        ("s2pdata.data.loader.make_loader", loader.make_loader),
        ("DraftDataset", s2pdata.data.DraftDataset),
        ("RefineDataset", s2pdata.data.RefineDataset),
        ("ShardStream", loader.ShardStream),
    ]


@pytest.mark.parametrize("name, obj", public_callables(), ids=[n for n, _ in public_callables()])
def test_signature_and_documented_parameters_agree(name, obj):
    sig = inspect.signature(obj).parameters
    docs = documented_parameters(obj)
    names = [n for n, _, _ in docs]
    assert len(names) == len(set(names)), f"{name}: documented twice: {sorted(n for n in names if names.count(n) > 1)}"
    assert names == list(sig), f"{name}: documented {names}, signature {list(sig)}"
    for pname, kind, default in docs:
        p = sig[pname]
        assert kind == inspect.formatannotation(p.annotation).replace("collections.abc.", ""), (name, pname)
        if p.default is inspect.Parameter.empty:
            assert default is None and p.kind is not p.KEYWORD_ONLY, (name, pname)  # urls, the one positional
        else:
            assert p.kind is p.KEYWORD_ONLY and default == repr(p.default), (name, pname, default)
    assert "{settings}" not in inspect.getdoc(obj)


def test_make_loader_takes_every_keyword_it_took_with_the_same_default():
    sig = inspect.signature(s2pdata.data.make_loader).parameters
    assert list(sig)[0] == "urls"
    assert {n: p.default for n, p in sig.items() if n != "urls"} == {**BEFORE, **ADDED}


def test_datasets_take_the_stream_settings():
    pytest.importorskip("torch")
    loader_only = ("stage", "drop_last", "pin_memory", "prefetch_factor", "keep_heap")
    stream = {n: d for n, d in {**BEFORE, **ADDED}.items() if n not in loader_only}
    stream["num_workers"] = None  # a dataset alone checks exact mode's slots when it is iterated
    for cls in (s2pdata.data.DraftDataset, s2pdata.data.RefineDataset):
        assert {n: p.default for n, p in list(inspect.signature(cls).parameters.items())[1:]} == stream


def test_help_lists_every_setting_with_its_default_without_importing_torch():
    code = (
        "import json, pydoc, sys\n"
        "import s2pdata.data as d\n"
        "text = pydoc.render_doc(d.make_loader, renderer=pydoc.plaintext)\n"
        "pydoc.render_doc(d, renderer=pydoc.plaintext)\n"
        "print(json.dumps({'text': text, 'torch': 'torch' in sys.modules}))\n"
    )
    out = json.loads(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout)
    assert not out["torch"], "help(s2pdata.data.make_loader) imported torch"
    text = out["text"]
    first = text.splitlines()[2]  # the title, a blank line, then the signature
    assert first.startswith("make_loader(urls: ")
    assert "crop: int | None = 224" in first and "online_hints: bool = False" in first
    assert "crop : int | None, default 224" in text and "online_hints : bool, default False" in text
    for name, default in BEFORE.items():
        assert re.search(rf"\b{name}: [^=]+ = {re.escape(repr(default))}[,)]", first), name
        assert re.search(rf"^    {name} : .+, default {re.escape(repr(default))}$", text, re.M), name


@pytest.mark.parametrize(
    "given, suggested",
    [("crop_size", "crop"), ("online_hint", "online_hints"), ("num-workers", "num_workers"), ("batch", "batch_size")],
)
def test_an_unknown_keyword_names_the_closest_known_one(given, suggested):
    with pytest.raises(TypeError) as err:
        s2pdata.data.make_loader("no/such/folder", **{given: 1})  # refused before any file is looked at
    msg = str(err.value)
    assert "\n" not in msg
    assert f"unknown keyword argument {given!r}" in msg and f"did you mean {suggested!r}?" in msg
    assert msg.endswith("it takes " + ", ".join(["urls", *(f.name for f in dataclasses.fields(LoaderSettings))]))


def test_an_unknown_keyword_without_a_close_one_lists_them_all():
    with pytest.raises(TypeError, match=r"argument 'zzz'; it takes urls, batch_size, .*, keep_heap$"):
        s2pdata.data.make_loader("no/such/folder", zzz=1)


def test_a_dataset_refuses_the_loader_settings_by_name():
    pytest.importorskip("torch")
    with pytest.raises(TypeError, match=r"^DraftDataset\(\) got an unknown keyword argument 'stage'"):
        s2pdata.data.DraftDataset("no/such/folder", stage="draft")


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"batch_size": 0}, "batch_size must be an int >= 1, got 0"),
        ({"mode": "epochs"}, "mode must be one of"),
        ({"rank": 2, "world_size": 2}, r"rank must be < world_size \(2\), got 2"),
        ({"crop": 0}, "crop must be a positive int or None"),
        ({"hint_p": 1.5}, r"hint_p must be a float in \(0, 1\]"),
        ({"hint_radius": -1}, "hint_radius must be an int >= 0"),
        ({"stage": "colour"}, "stage must be one of"),
        ({"num_workers": None}, "num_workers must be an int >= 0, got None"),
    ],
)
def test_a_bad_value_names_the_setting_before_any_file_is_read(kw, match):
    with pytest.raises(ValueError, match=match):
        s2pdata.data.make_loader("no/such/folder", **kw)  # not a FileNotFoundError: checked first
    with pytest.raises(ValueError, match=match):
        LoaderSettings(**kw)


def test_settings_are_frozen_and_feed_make_loader(tmp_path):
    pytest.importorskip("torch")
    from tests.fakes import write_shards

    shards = write_shards(tmp_path, 4, 2)
    s = LoaderSettings(batch_size=2, num_workers=0, mode="exact", crop=16, shuffle_buffer=0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.crop = 32
    assert s.stream()["num_workers"] == 0 and "stage" not in s.stream()
    a = [b["__key__"] for b in s2pdata.data.make_loader(shards, **dataclasses.asdict(s))]
    b = [
        b["__key__"]
        for b in s2pdata.data.make_loader(shards, batch_size=2, num_workers=0, mode="exact", crop=16, shuffle_buffer=0)
    ]
    assert a == b and len(a) == 2  # the settings object gives what its keyword arguments give
    ds = s2pdata.data.RefineDataset(shards, **s.stream())
    assert (ds.crop, ds.hint_radius, ds.batch_size) == (16, 2, 2)  # refine's online hint radius
    assert s2pdata.data.DraftDataset(shards, **s.stream()).hint_radius == 1


def test_imports_under_python_oo():
    """``-OO`` drops the docstrings the settings' entries are written into: the signatures remain."""
    pytest.importorskip("torch")
    code = "import inspect, s2pdata.data.loader as m; print(inspect.signature(m.DraftDataset).parameters['crop'])"
    out = subprocess.run([sys.executable, "-OO", "-c", code], check=True, capture_output=True, text=True).stdout
    assert out.strip() == "crop: int | None = 224"
