"""The build CLI's configuration: one declared table of flags, layered defaults < recipe < command
line, strict recipe values with one-line errors, and a --help that states each default once."""

from __future__ import annotations

import re

import pytest

from s2pdata.build.cli import OPTIONS, default_args, main, make_parser, parse_args


def write_recipe(tmp_path, text: str):
    path = tmp_path / "r.toml"
    path.write_text(text)
    return path


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


@pytest.mark.parametrize(
    "text,key,says",
    [
        ("size = true\n", "size", "must be an integer"),
        ("size = 1.9\n", "size", "must be an integer"),
        ("workers = 1.5\n", "workers", "must be an integer"),
        ('rough-weight = "half"\n', "rough-weight", "must be a number"),
        ("no-progress = 1\n", "no-progress", "must be true or false"),
        ("ext = [1]\n", "ext", "must be a string"),
        ('crop = "diagonal"\n', "crop", "must be one of none, center, random"),
    ],
)
def test_inexact_recipe_values_are_refused_in_one_line(tmp_path, capsys, text, key, says):
    recipe = write_recipe(tmp_path, text)
    assert main(["--recipe", str(recipe), "--src", "demo:2", "--out", str(tmp_path / "o")]) == 2
    err = one_line_error(capsys)
    assert f"s2pdata.build: {key} {says}, got " in err and f" in recipe {recipe}" in err  # key, value, where
    assert not (tmp_path / "o").exists()  # refused before anything was built


def test_a_missing_recipe_and_an_unknown_key_are_one_line_errors(tmp_path, capsys):
    assert main(["--recipe", str(tmp_path / "nope.toml"), "--src", "demo:2", "--out", str(tmp_path / "o")]) == 2
    assert "nope.toml does not exist" in one_line_error(capsys)
    recipe = write_recipe(tmp_path, "sizes = 3\n")
    assert main(["--recipe", str(recipe), "--src", "demo:2", "--out", str(tmp_path / "o")]) == 2
    assert f"recipe {recipe}: unknown key 'sizes'" in one_line_error(capsys)


def test_src_and_out_are_required_from_somewhere(capsys):
    assert main(["--out", "o"]) == 2
    assert "--src is required" in one_line_error(capsys)


def test_command_line_beats_recipe_beats_default(tmp_path):
    recipe = write_recipe(tmp_path, 'size = 64\nseed = 3\nfields = "flat"\nrating = ["general", "sensitive"]\n')
    args = parse_args(["--recipe", str(recipe), "--src", "demo:2", "--out", "o", "--seed", "5"])
    assert (args.size, args.seed, args.crop) == (64, 5, default_args().crop)
    assert args.fields == ["flat"] and args.rating == ["general", "sensitive"]
    args = parse_args(["--recipe", str(recipe), "--src", "demo:2", "--out", "o", "--fields", "reference"])
    assert args.fields == ["reference"]  # a list flag on the command line replaces the recipe's list


def test_parsed_defaults_are_the_declared_defaults():
    args = vars(parse_args(["--src", "demo:2", "--out", "o"]))
    assert args == {**vars(default_args()), "src": "demo:2", "out": "o"}
    assert args["size"] == 512 and args["overwrite"] is False and args["fields"] is None


def help_entries() -> dict[str, str]:
    """--help as {flag: its usage and help text on one line}."""
    text = make_parser().format_help().split("options:", 1)[1]
    entries = re.split(r"\n  (?=-)", text)
    return {e.split()[0].rstrip(","): " ".join(e.split()) for e in entries if e.strip().startswith("-")}


def test_help_states_each_default_once():
    entries = help_entries()
    assert {opt.flag for opt in OPTIONS} <= set(entries)
    for entry in entries.values():
        assert entry.count("default") <= 1, entry
        assert "(default: None)" not in entry, entry
    assert entries["--size"].endswith("(default: 512)")
    assert entries["--seed"].endswith("(default: 0)")
    assert entries["--src"].endswith("required")
    assert "(default: the CPUs this process may use)" in entries["--workers"]
