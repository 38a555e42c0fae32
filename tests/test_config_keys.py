"""One config system for the build and the trainer (issue 23, item 4): both CLIs read recipes and
flags through ``s2pdata._config``, accept ``crop-size`` and ``crop_size`` as one key, name the
closest known key for an unknown one, and print --help from each key's one description."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
import tomllib

from s2pdata._config import Key, hyphenate, normalise
from s2pdata.build import cli as build_cli

pytest.importorskip("torch")
from s2pdata.train.config import build_parser, dataclass_keys, parse_args  # noqa: E402
from s2pdata.train.draft import DraftConfig  # noqa: E402
from s2pdata.train.refine import RefineConfig  # noqa: E402

RECIPES = Path(__file__).resolve().parents[1] / "recipes"

# What each shipped recipe sets, written out by hand from the recipes as they were before they were
# converted to one key style (underscores in the training recipes then): the conversion changed no value.
SHIPPED = {
    "danbooru-512": {
        "variant": "512px",
        "metadata": "auto",
        "preset": "colorization",
        "rating": ["general", "sensitive"],
        "meta_min_side": 384,
        "max_aspect": 2.5,
        "dedup": "md5",
        "size": 512,
        "crop": "none",
        "sketch": "mix",
        "hint_radius": 1,
        "color_format": "jpg",
        "drafts": 2,
        "pool_size": 10000,
        "shard_size": 1000,
        "seed": 0,
    },
    "studio-folder": {
        "preset": "colorization",
        "ext": ["png", "jpg", "jpeg", "webp"],
        "dedup": "sha256",
        "size": 768,
        "crop": "none",
        "sketch": "xdog",
        "hint_radius": 1,
        "color_format": "png",
        "drafts": 1,
        "pool_size": 4000,
        "min_side": 256,
    },
    "draft-224": {
        "steps": 200000,
        "batch_size": 16,
        "crop": 224,
        "lr": 1e-05,
        "beta1": 0.9,
        "beta2": 0.99,
        "width": 64,
        "depth": 4,
        "disc_width": 64,
        "disc_layers": 3,
        "alpha": 0.01,
        "lambda_gan": 0.01,
        "mode": "resampled",
        "num_workers": 8,
        "online_hints": True,
        "log_every": 100,
        "sample_every": 2000,
        "ckpt_every": 2000,
    },
    "draft-cpu": {
        "steps": 2000,
        "batch_size": 16,
        "crop": 64,
        "lr": 0.002,
        "lr_schedule": "cosine",
        "beta1": 0.9,
        "beta2": 0.99,
        "width": 8,
        "depth": 3,
        "input_skip": True,
        "disc_width": 4,
        "disc_layers": 2,
        "alpha": 0.01,
        "lambda_gan": 0.0,
        "mode": "resampled",
        "num_workers": 1,
        "shuffle_buffer": 64,
        "online_hints": True,
        "hint_p": 0.01,
        "hint_radius": 4,
        "log_every": 10,
        "sample_every": 50,
        "ckpt_every": 100,
    },
    "refine-224": {
        "steps": 200000,
        "batch_size": 16,
        "crop": 224,
        "lr": 1e-05,
        "beta1": 0.9,
        "beta2": 0.99,
        "width": 64,
        "depth": 4,
        "disc_width": 64,
        "disc_layers": 3,
        "lambda_gan": 0.01,
        "encoder_width": 1.0,
        "freeze_encoder": False,
        "concat_draft": True,
        "mode": "resampled",
        "num_workers": 8,
        "online_hints": True,
        "log_every": 100,
        "sample_every": 2000,
        "ckpt_every": 2000,
    },
    "refine-cpu": {
        "steps": 2000,
        "batch_size": 8,
        "crop": 128,
        "lr": 0.001,
        "beta1": 0.9,
        "beta2": 0.99,
        "width": 16,
        "depth": 3,
        "disc_width": 16,
        "disc_layers": 3,
        "lambda_gan": 0.01,
        "encoder_width": 0.25,
        "freeze_encoder": False,
        "concat_draft": True,
        "mode": "resampled",
        "num_workers": 2,
        "shuffle_buffer": 64,
        "online_hints": True,
        "log_every": 10,
        "sample_every": 50,
        "ckpt_every": 100,
    },
}
TRAIN = {"draft": DraftConfig, "refine": RefineConfig}


def train_cls(name: str):
    """The config class of a training recipe's name; None for a build recipe."""
    return TRAIN.get(name.split("-")[0])


def build_config(*argv: str) -> dict:
    """The build's parsed flags, as a dict."""
    return vars(build_cli.parse_args(["--src", "demo:2", "--out", "o", *argv]))


def train_config(cls, *argv: str):
    return parse_args(cls, ["--shards", "x", *argv])[0]


def respelled(text: str, spell) -> str:
    """A recipe's text with every key (also commented-out ones) respelled by ``spell``; values and comments kept."""
    return re.sub(r"(?m)^(#\s*)?([A-Za-z0-9_-]+)(?=\s*=)", lambda m: (m.group(1) or "") + spell(m.group(2)), text)


def error_of(call) -> str:
    """The one-line message ``call`` fails with (the build's ValueError, the trainer's SystemExit)."""
    with pytest.raises((ValueError, SystemExit)) as e:
        call()
    line = str(e.value)
    assert "\n" not in line
    return line


def recipe_error(cli: str, recipe, text: str) -> str:
    """The one-line message the ``cli`` ("build", "draft" or "refine") fails with on a recipe of ``text``."""
    recipe.write_text(text + "\n")
    if cli == "build":
        return error_of(lambda: build_config("--recipe", str(recipe)))
    return error_of(lambda: train_config(TRAIN[cli], "--recipe", str(recipe)))


def test_shipped_recipes_cover_the_pins():
    assert sorted(p.stem for p in RECIPES.glob("*.toml")) == sorted(SHIPPED)


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_recipes_mean_what_they_meant(name):
    path = str(RECIPES / f"{name}.toml")
    cls = train_cls(name)
    if cls is None:
        assert build_cli.recipe_values(path) == SHIPPED[name]
        assert build_config("--recipe", path) == {**build_config(), **SHIPPED[name]}
    else:
        assert tomllib.loads(Path(path).read_text())["stage"] == cls.stage
        assert train_config(cls, "--recipe", path) == cls(shards="x", **SHIPPED[name])


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_recipes_use_one_key_style_the_flags_style(name):
    text = (RECIPES / f"{name}.toml").read_text()
    keys = list(tomllib.loads(text))
    assert keys and all("_" not in k for k in keys), keys
    commented = re.findall(r"(?m)^#\s*([a-z0-9_-]+)\s*=", text)  # a line to uncomment is in the same style
    assert all("_" not in k for k in commented), commented


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_hyphens_and_underscores_give_the_same_config_in_both_clis(name, tmp_path):
    text = (RECIPES / f"{name}.toml").read_text()
    spellings = {"hyphens": hyphenate, "underscores": normalise}
    paths = {}
    for style, spell in spellings.items():
        paths[style] = tmp_path / f"{style}.toml"
        paths[style].write_text(respelled(text, spell))
    assert "_" in paths["underscores"].read_text() and paths["hyphens"].read_text() == text  # a real respelling
    cls = train_cls(name)
    if cls is None:
        configs = [build_config("--recipe", str(p)) for p in paths.values()]
        assert configs[0] == configs[1] == {**build_config(), **SHIPPED[name]}
    else:
        configs = [train_config(cls, "--recipe", str(p)) for p in paths.values()]
        assert configs[0] == configs[1] == cls(shards="x", **SHIPPED[name])


def test_both_spellings_of_a_flag_are_one_flag():
    hyphens = ["--shard-size", "9", "--meta-min-side", "5", "--no-progress", "--sketch-style=rough"]
    underscores = ["--shard_size", "9", "--meta_min_side", "5", "--no_progress", "--sketch_style=rough"]
    assert build_config(*hyphens) == build_config(*underscores) != build_config()
    hyphens = ["--batch-size", "3", "--hint-p", "0.5", "--online-hints", "--lr-schedule=cosine", "--dry-run"]
    underscores = ["--batch_size", "3", "--hint_p", "0.5", "--online_hints", "--lr_schedule=cosine", "--dry_run"]
    assert train_config(DraftConfig, *hyphens) == train_config(DraftConfig, *underscores)
    assert train_config(DraftConfig, *hyphens).hint_p == 0.5


def test_a_recipe_may_mix_the_styles_but_not_give_a_key_twice(tmp_path):
    recipe = tmp_path / "r.toml"
    recipe.write_text("shard_size = 9\nmeta-min-side = 5\n")
    assert build_config("--recipe", str(recipe)) == build_config("--shard-size", "9", "--meta-min-side", "5")
    recipe.write_text("shard-size = 9\nshard_size = 10\n")
    line = error_of(lambda: build_config("--recipe", str(recipe)))
    assert f"recipe {recipe} sets 'shard-size' twice, as 'shard-size' and 'shard_size'" in line and "keep one" in line
    recipe.write_text('stage = "draft"\nbatch-size = 4\nbatch_size = 4\n')
    line = error_of(lambda: train_config(DraftConfig, "--recipe", str(recipe)))
    assert "sets 'batch-size' twice" in line


@pytest.mark.parametrize(
    "cli, text, near",
    [
        ("build", "shard_sise = 9", "shard-size"),
        ("build", "hint-raduis = 2", "hint-radius"),
        ("draft", "hint_pp = 0.1", "hint-p"),
        ("refine", "encoder-widht = 0.5", "encoder-width"),
    ],
)
def test_an_unknown_key_names_the_closest_key_the_recipe_and_the_fix(cli, text, near, tmp_path):
    recipe = tmp_path / "r.toml"
    line = recipe_error(cli, recipe, text)
    written = text.split(" ")[0]
    assert f"recipe {recipe}: unknown key {written!r}; did you mean {near!r}? Rename it in the recipe" in line
    assert "--help lists every key" in line


def test_an_unknown_key_with_no_close_one_says_so(tmp_path):
    recipe = tmp_path / "r.toml"
    recipe.write_text("zzzzqqq = 1\n")
    line = error_of(lambda: build_config("--recipe", str(recipe)))
    assert "unknown key 'zzzzqqq'; no known key is close: remove it" in line


def test_an_unknown_flag_names_the_closest_flag_in_both_clis():
    line = error_of(lambda: build_config("--shard-sise", "9"))
    assert "unknown option '--shard-sise'" in line and "did you mean --shard-size?" in line
    line = error_of(lambda: train_config(DraftConfig, "--hint_pp", "0.1"))
    assert "unknown option '--hint_pp'" in line and "did you mean --hint-p?" in line
    line = error_of(lambda: train_config(DraftConfig, '--storage-option={"secret": 1}'))
    assert "secret" not in line  # the value of a mistyped flag is never echoed


@pytest.mark.parametrize(
    "cli, text, says",
    [
        ("build", "size = 1.5", "size must be an integer, got 1.5 in recipe"),
        ("build", 'rough_weight = "half"', "rough_weight must be a number, got 'half' in recipe"),
        ("build", 'shard-size = "9"', "shard-size must be an integer, got the string '9' in recipe"),
        ("build", "no-progress = 1", "no-progress must be true or false, got 1 in recipe"),
        ("draft", 'batch-size = "many"', "batch-size must be an integer, got 'many' in recipe"),
        ("draft", "online_hints = 1", "online_hints must be true or false, got 1 in recipe"),
        ("refine", "encoder-width = true", "encoder-width must be a number, got True in recipe"),
    ],
)
def test_a_wrong_type_names_the_key_the_value_and_the_type(cli, text, says, tmp_path):
    recipe = tmp_path / "r.toml"
    line = recipe_error(cli, recipe, text)
    assert says in line and str(recipe) in line


def test_a_wrong_flag_value_names_the_key_the_value_and_the_type():
    line = error_of(lambda: build_config("--shard_size", "many"))
    assert "shard_size must be an integer, got 'many' in the command line" in line
    line = error_of(lambda: build_config("--crop", "diagonal"))
    assert "crop must be one of none, center, random, got 'diagonal' in the command line" in line
    line = error_of(lambda: train_config(DraftConfig, "--batch_size", "many"))
    assert "batch_size must be an integer, got 'many' in the command line; allowed: >= 1 and <= 4096" in line


def test_a_training_recipe_given_to_the_build_says_where_it_goes():
    path = str(RECIPES / "draft-cpu.toml")
    line = error_of(lambda: build_config("--recipe", path))
    assert "is a training recipe (stage = 'draft')" in line and f"python -m s2pdata.train draft --recipe {path}" in line


def help_entries(parser) -> dict[str, str]:
    """--help (printed without wrapping) as {flag: its entry on one line}."""
    entries: dict[str, str] = {}
    flag = None
    for line in parser.format_help().split("options:", 1)[1].splitlines():
        if line.startswith("  --"):  # a flag; its help on this line, or on the next when the flag is long
            flag = line.split()[0]
            entries[flag] = " ".join(line.split())
        elif flag and line.startswith("   "):
            entries[flag] += " " + " ".join(line.split())
        else:
            flag = None
    return entries


@pytest.mark.parametrize("cli", ["build", "draft", "refine"])
def test_help_of_both_clis_comes_from_each_keys_one_description(cli, monkeypatch):
    monkeypatch.setenv("COLUMNS", "100000")  # no wrapping: compare the text argparse was given
    if cli == "build":
        parser, keys = build_cli.make_parser(), build_cli.KEYS
    else:
        parser, keys = build_parser(TRAIN[cli]), dataclass_keys(TRAIN[cli])
    entries = help_entries(parser)
    assert {key.flag for key in keys.values()} <= set(entries)
    for key in keys.values():
        assert isinstance(key, Key) and key.help, key.name
        assert entries[key.flag].endswith(" " + " ".join(key.help_text().split())), (key.flag, entries[key.flag])
    assert "hint-radius" in parser.epilog and "hint_radius" in parser.epilog  # both spellings documented


def test_one_description_per_key_across_a_stage_and_the_shared_keys():
    shared = {f.name for f in dataclasses.fields(DraftConfig)} & {f.name for f in dataclasses.fields(RefineConfig)}
    for name in shared:
        assert dataclass_keys(DraftConfig)[name].help == dataclass_keys(RefineConfig)[name].help
    assert dataclass_keys(DraftConfig)["crop"].help_text().endswith("(default: 224; >= 1 and <= 4096)")
    assert build_cli.KEYS["size"].help_text().endswith("; 0..4096 (default: 512)")
