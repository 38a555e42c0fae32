"""Build recipes run as users copy them; flags override recipe values (bad recipes: test_cli_config)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from s2pdata.build.cli import main
from s2pdata.data import open_shards

from .fakes import post_new, write_gwern, write_jsonl

RECIPES = Path(__file__).resolve().parents[1] / "recipes"


@pytest.mark.slow
def test_danbooru_recipe_on_a_fake_gwern_tree(tmp_path):
    src, out = tmp_path / "danbooru", tmp_path / "out"
    ids = {101: "png", 102: "jpg", 103: "png", 104: "png", 105: "jpg"}
    write_gwern(src, ids)
    posts = [
        post_new(101, width=600, height=800),
        post_new(102, rating="e", width=600, height=800),
        post_new(103, general=("monochrome",), width=600, height=800),
        post_new(104, width=100, height=90),
        post_new(105, rating="s", width=700, height=600),
    ]
    write_jsonl(src / "metadata" / "posts.json", posts)
    flags = f"--src {src} --out {out} --size 64 --pool-size 40 --workers 1 --no-progress --limit 3"
    rc = main(["--recipe", str(RECIPES / "danbooru-512.toml"), *flags.split()])
    assert rc == 0
    samples = list(open_shards(out))
    # explicit rating excluded, monochrome tag (preset), too small by metadata: 101 and 105 remain
    assert [s["__key__"] for s in samples] == ["danbooru-0000000101", "danbooru-0000000105"]
    manifest = json.loads((out / "dataset.json").read_text())
    assert manifest["fields"][-3:] == ["draft0.jpg", "draft1.jpg", "json"]
    assert manifest["config"]["size"] == 64  # the flag won over the recipe's 512
    assert samples[0]["json"]["source"]["rating"] == "general"
    assert samples[1]["json"]["source"]["artist"] == "artist_a"


@pytest.mark.slow
def test_studio_recipe_on_the_demo_source(tmp_path):
    out = tmp_path / "out"
    flags = f"--src demo:6 --out {out} --size 64 --workers 1 --no-progress --limit 4"
    rc = main(["--recipe", str(RECIPES / "studio-folder.toml"), *flags.split()])
    assert rc == 0
    samples = list(open_shards(out))
    assert len(samples) == 4 and "color" in samples[0]
    assert json.loads((out / "dataset.json").read_text())["fields"][0] == "color.png"


@pytest.mark.slow
def test_src_and_out_may_come_from_the_recipe(tmp_path):
    recipe = tmp_path / "r.toml"
    recipe.write_text(f'src = "demo:3"\nout = "{tmp_path / "o"}"\nsize = 48\nworkers = 1\nno-progress = true\n')
    assert main(["--recipe", str(recipe)]) == 0
    assert len(list(open_shards(tmp_path / "o"))) == 3
