"""One config system for the build and the trainer: declared keys, TOML recipes, flags and ``--help``.

Consumes a table of declared keys (``Key``: name, type, default, one line of help, bounds), a TOML
recipe and a command line; produces values of exactly the declared types, or a one-line
``ValueError`` that names the key, the value, where it came from and the fix.

- **Names.** ``crop-size`` and ``crop_size`` are one key (``normalise``), in a recipe and as a flag
  (``--crop-size`` or ``--crop_size``). The shipped recipes and ``--help`` write hyphens, the
  flags' style; values are stored under the underscore name (a Python identifier).
- **Values.** One strict converter (``convert``, ``Key.convert``): ``true`` is not an int, ``1.9``
  is not an int, ``"64"`` in a recipe is a quoted number, ``"abc"`` is not a float. Bounds and
  choices are checked in the same place, for a recipe, a flag or a checkpoint alike.
- **Recipes.** ``read_recipe``: a flat TOML file of keys; an unknown key names the closest known one.
- **Flags and help.** ``Key.add_to`` declares ``--key-name`` with its help line, default and bounds;
  ``parse_flags`` reads a command line into converted values and names the closest known flag for
  an unknown one.

The build declares its keys in ``s2pdata.build.cli``, the trainer as the fields of its config
dataclass (``dataclass_keys``). Each CLI layers: defaults < recipe < flags on the command line.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import functools
import math
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import tomllib

_TRUE = ("true", "1", "yes")
_FALSE = ("false", "0", "no")
_KINDS = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}
BOUNDS = {"ge": ">=", "gt": ">", "lt": "<", "le": "<="}  # the bounds a key may declare, as --help says them
_OPS = {
    "ge": lambda v, b: v >= b,
    "gt": lambda v, b: v > b,
    "lt": lambda v, b: v < b,
    "le": lambda v, b: v <= b,
}
COMMAND_LINE = "the command line"
RECIPE_HELP = (  # the epilog of both CLIs' --help
    "Every key is also a recipe key (TOML, key = value): its flag without the leading --. Spell it with "
    "hyphens (hint-radius, as recipes/*.toml do) or underscores (hint_radius), in a recipe or as a flag. An "
    "unknown key is an error naming the closest known one."
)


def normalise(key: str) -> str:
    """A key as stored: ``crop-size`` and ``crop_size`` are both ``crop_size``."""
    return key.replace("-", "_")


def hyphenate(key: str) -> str:
    """A key as recipes and ``--help`` write it: ``crop_size`` -> ``crop-size``."""
    return key.replace("_", "-")


def closest(word: str, names) -> str | None:
    """The known name most like ``word`` (``difflib``), compared in the stored spelling; None when none is close."""
    found = difflib.get_close_matches(normalise(word), [normalise(n) for n in names], n=1, cutoff=0.6)
    return found[0] if found else None


@dataclass(frozen=True)
class Key:
    """One config key: its type, default, one line of help and the values it accepts.

    Recipes, flags, checkpoints and ``--help`` all read this one declaration.

    ``type`` is ``int``, ``float``, ``bool`` or ``str``; ``list`` (strings: a flag given many
    times, each maybe a comma list, or a TOML array); or ``dict`` (a TOML table, or the text that
    ``parse`` turns into one, such as JSON on the command line).
    """

    name: str
    type: type
    default: object = None
    help: str = ""
    choices: tuple | None = None
    bounds: Mapping[str, float] = field(default_factory=dict, hash=False)  # ge / gt / lt / le
    auto: bool = False  # None is a value of its own, written "auto" (a device-dependent default)
    metavar: str | None = None
    default_text: str | None = None  # the default as --help says it, where the value cannot say it
    parse: Callable[[str], object] | None = field(default=None, compare=False)  # text -> dict; never echoes it
    group: str | None = None  # a titled section of --help

    @property
    def flag(self) -> str:
        """The command-line flag: ``--crop-size`` (``--crop_size`` is accepted as well)."""
        return "--" + hyphenate(self.name)

    def convert(self, value, origin: str, *, spelled: str | None = None, text: bool = False):
        """``value`` as this key's type, within its choices and bounds.

        Parameters
        ----------
        value : object
            A TOML or checkpoint value, or with ``text`` a command-line string.
        origin : str
            Where it came from (``"recipe r.toml"``, ``"the command line"``), for the message.
        spelled : str, optional
            The key as the user wrote it (``crop-size``), for the message; default ``name``.
        text : bool
            The value is command-line text, to be parsed; a typed source (TOML) must give the type
            itself (``size = "64"`` is a quoted number, refused).

        Raises
        ------
        ValueError
            ``KEY must be WHAT, got VALUE in ORIGIN; FIX`` on one line (a table key's value is never shown).
        """
        key = spelled or self.name
        if self.auto and (value is None or value == "auto"):
            return None  # "auto" restores the tri-state default
        if self.type is dict:
            return self._table(key, value, origin)
        if self.type is list:
            return [convert(key, v, str, origin) for v in (value if isinstance(value, list) else [value])]
        try:
            if isinstance(value, str) and self.type is not str and not text:
                _refuse_quoted(key, value, self.type, origin)
            value = convert(key, value, self.type, origin)
        except ValueError as exc:  # a value of the wrong type: say the range too
            raise ValueError(f"{exc}; allowed: {self.allowed()}" if self.bounds else str(exc)) from None
        self.check(value, origin, spelled=key)
        return value

    def check(self, value, origin: str | None = None, *, spelled: str | None = None) -> None:
        """Raise ``ValueError`` naming the key, the value and what is allowed when ``value`` is
        outside the key's choices or bounds; every float must be finite, whatever its bounds."""
        key = spelled or self.name
        got = f"got {value!r}" + (f" in {origin}" if origin else "")
        if self.choices is not None and value not in self.choices and not (value is None and self.default is None):
            raise ValueError(f"{key} must be one of {', '.join(map(str, self.choices))}, {got}")
        if isinstance(value, float) and not math.isfinite(value):
            bounds = self.allowed()
            raise ValueError(f"{key} must be a finite number{' ' + bounds if bounds else ''}, {got}")
        if value is not None and any(not _OPS[b](value, v) for b, v in self.bounds.items()):
            raise ValueError(f"{key} must be {self.allowed()}, {got} ({self.help})")

    def allowed(self) -> str:
        """The bounds in words: ``>= 1 and <= 4096``; "" without bounds."""
        return " and ".join(f"{word} {self.bounds[b]}" for b, word in BOUNDS.items() if b in self.bounds)

    def help_text(self) -> str:
        """The --help line: the description, then ``(default: D; bounds)``; a default is said once,
        and not at all when it is unset or the description already states it."""
        shown = self.default_text if self.default_text is not None else _shown(self.default)
        notes = [f"default: {shown}"] if shown is not None and "default" not in self.help else []
        if self.bounds:
            notes.append(self.allowed())
        return f"{self.help} ({'; '.join(notes)})" if notes else self.help

    def add_to(self, parser) -> None:
        """Declare ``--key-name`` on an argparse parser or group: its value stays text for
        ``parse_flags`` to convert, and an absent flag stays absent from the namespace."""
        kwargs: dict = {"dest": self.name, "default": argparse.SUPPRESS, "help": self.help_text().replace("%", "%%")}
        if self.type is bool:  # a bare --flag means true
            kwargs.update(nargs="?", const="true", metavar=self.metavar or "true|false")
        elif self.type is list:
            kwargs.update(action="append", metavar=self.metavar or "A,B,...")
        elif self.choices is not None:
            kwargs["metavar"] = self.metavar or "|".join(map(str, self.choices))
        else:
            kwargs["metavar"] = self.metavar or self.type.__name__.upper()
        parser.add_argument(self.flag, **kwargs)

    def _table(self, key: str, value, origin: str) -> dict:
        if isinstance(value, dict):
            return value
        if isinstance(value, str) and self.parse is not None:
            try:
                return self.parse(value)
            except ValueError as exc:
                raise ValueError(f"{exc} (in {origin})") from None
        raise ValueError(
            f"{key} must be a table of options, got a {type(value).__name__} in {origin}; write it as "
            f'[{hyphenate(key)}] in a recipe or {self.flag} \'{{"endpoint_url": "..."}}\' on the command line'
        )


def _shown(value) -> str | None:
    """A default as --help writes it; None when there is nothing to say."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value)) or None
    return str(value)


def convert(key: str, value: object, typ: type, origin: str) -> object:
    """``value`` as ``typ`` (int, float, bool or str), refusing anything inexact.

    A string is parsed (command-line text); any other value must already be of the type (a float
    for an int is refused, an int for a float is widened).

    Parameters
    ----------
    key : str
        The config key, for the message.
    value : object
        A TOML value or a command-line string.
    typ : type
        One of ``int``, ``float``, ``bool``, ``str``.
    origin : str
        Where the value came from (``"recipe r.toml"``, ``"the command line"``), for the message.
    """
    if typ not in _KINDS:
        raise TypeError(f"typ must be int, float, bool or str, got {typ!r}")
    if isinstance(value, str) and typ is not str:
        return _from_string(key, value, typ, origin)
    wrong = f"{key} must be {_KINDS[typ]}, got {value!r} in {origin}"
    if typ is bool and not isinstance(value, bool):
        raise ValueError(wrong)
    if typ is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ValueError(f"{wrong}; write it without a decimal point" if isinstance(value, float) else wrong)
    if typ is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(wrong)
        return float(value)
    if typ is str and not isinstance(value, str):
        raise ValueError(f"{wrong}; quote it in TOML")
    return value


def _from_string(key: str, text: str, typ: type, origin: str) -> object:
    wrong = f"{key} must be {_KINDS[typ]}, got {text!r} in {origin}"
    if typ is bool:
        if text.lower() in _TRUE:
            return True
        if text.lower() in _FALSE:
            return False
        raise ValueError(wrong)
    try:
        value = typ(text)
    except ValueError:
        raise ValueError(wrong) from None
    if typ is float and not math.isfinite(value):
        raise ValueError(f"{key} must be a finite number, got {text!r} in {origin}")
    return value


def _refuse_quoted(key: str, value: str, typ: type, origin: str) -> None:
    """A string in a typed source (TOML) for a number or a bool: a quoted value, or a wrong one."""
    try:
        _from_string(key, value, typ, origin)
    except ValueError:
        raise ValueError(f"{key} must be {_KINDS[typ]}, got {value!r} in {origin}") from None
    raise ValueError(f"{key} must be {_KINDS[typ]}, got the string {value!r} in {origin}; drop the quotes")


def load_toml(path: str) -> dict:
    """A recipe file as a dict; a missing, unreadable or malformed file is a one-line ``ValueError``."""
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ValueError(f"recipe {path} does not exist") from None
    except UnicodeDecodeError:
        raise ValueError(f"recipe {path} is not UTF-8 text (TOML); give a recipe like those in recipes/") from None
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"recipe {path} cannot be read: {exc}") from None


def read_recipe(path: str, keys: Mapping[str, Key], *, cli: str, stage: str | None = None) -> dict:
    """A TOML recipe -> its values by stored key name, each converted by its ``Key``.

    Parameters
    ----------
    path : str
        A flat TOML file of ``key = value`` lines (``crop-size`` or ``crop_size``).
    keys : Mapping[str, Key]
        The CLI's keys by stored name.
    cli : str
        The command whose ``--help`` lists the keys, for the messages.
    stage : str, optional
        The training stage this CLI runs: the recipe may name it (``stage = "draft"``). Without
        it (the build), a recipe naming a stage is a training recipe and is refused.

    Raises
    ------
    ValueError
        One line naming the file and what is wrong: an unknown key (with the closest known one),
        a key given in both spellings, a value of the wrong type or outside its bounds.
    """
    origin = f"recipe {path}"
    data = load_toml(path)
    if "stage" in data:
        said = data.pop("stage")
        if stage is None:
            raise ValueError(
                f"{origin} is a training recipe (stage = {said!r}), not a build recipe; run it with "
                f"python -m s2pdata.train {said} --recipe {path}"
            )
        if said != stage:
            raise ValueError(
                f"{origin} is for stage {said!r}, not {stage!r}; give it to python -m s2pdata.train {said}"
            )
    seen: dict[str, str] = {}
    values = {}
    for written, value in data.items():
        name = normalise(written)
        if name in seen:
            raise ValueError(
                f"{origin} sets {hyphenate(name)!r} twice, as {seen[name]!r} and {written!r} (the same key); keep one"
            )
        seen[name] = written
        if name not in keys:
            raise ValueError(_unknown_key(written, value, keys, origin, cli))
        values[name] = keys[name].convert(value, origin, spelled=written)
    return values


def _unknown_key(written: str, value, keys: Mapping[str, Key], origin: str, cli: str) -> str:
    near = closest(written, keys)
    table = " (a recipe is flat key = value lines, without [tables])" if isinstance(value, dict) else ""
    fix = f"did you mean {hyphenate(near)!r}? Rename it in the recipe" if near else "no known key is close: remove it"
    return f"{origin}: unknown key {written!r}{table}; {fix} ({cli} --help lists every key)"


def parse_flags(parser: argparse.ArgumentParser, argv: list[str], keys: Mapping[str, Key]):
    """A command line -> (the key values it gives, converted; a namespace of the other options).

    ``--crop_size`` is read as ``--crop-size``. Flags that are not keys (``--recipe``, ``--resume``)
    stay in the namespace as argparse parsed them; an absent key is absent from the values.

    Raises
    ------
    ValueError
        An unknown flag (naming the closest known one) or a value that ``Key.convert`` refuses.
    SystemExit
        argparse's own usage errors (a flag without its value) and ``--help``.
    """
    flags = {s for action in parser._actions for s in action.option_strings}
    args, rest = parser.parse_known_args([_spelled_as_declared(a, flags) for a in argv])
    if rest:
        raise ValueError(_unknown_flag(rest[0], flags))
    given = vars(args)
    values = {k: keys[k].convert(given.pop(k), COMMAND_LINE, text=True) for k in list(given) if k in keys}
    return values, argparse.Namespace(**given)


def _spelled_as_declared(arg: str, flags: set[str]) -> str:
    """``--crop_size`` or ``--crop_size=3`` as the declared ``--crop-size``; anything else as given."""
    if not arg.startswith("--") or "_" not in arg:
        return arg
    name, eq, value = arg.partition("=")
    return f"{hyphenate(name)}{eq}{value}" if hyphenate(name) in flags else arg


def _unknown_flag(arg: str, flags: set[str]) -> str:
    if not arg.startswith("-"):
        return f"unexpected argument {arg!r}: every value follows its --flag (see --help)"
    name = arg.split("=", 1)[0]  # never the value: it may be a secret
    near = closest(name.lstrip("-"), [f.lstrip("-") for f in flags if f.startswith("--")])
    fix = f"did you mean --{hyphenate(near)}? See" if near else "see"
    return f"unknown option {name!r} (config key {normalise(name.lstrip('-'))!r}); {fix} --help for the known keys"


def opt(default, help: str, **meta):
    """A config dataclass field: its default, a one-line meaning and optional bounds and details
    (``ge``, ``gt``, ``lt``, ``le``, ``choices``, ``metavar``, ``default_text``, ``parse``): the
    ``Key`` that ``dataclass_keys`` reads."""
    return field(default=default, metadata={"help": help, **meta})


@functools.cache
def dataclass_keys(cls) -> Mapping[str, Key]:
    """The ``Key`` of every field of a config dataclass declared with ``opt`` (read-only, by name).

    A field's type is its annotation without ``None`` (``bool | None`` -> ``bool``); a field whose
    default is None is a tri-state key, written "auto".
    """
    hints = typing.get_type_hints(cls)
    keys = {}
    for f in dataclasses.fields(cls):
        m = f.metadata
        args = [a for a in typing.get_args(hints[f.name]) if a is not type(None)]
        keys[f.name] = Key(
            name=f.name,
            type=args[0] if args else hints[f.name],
            default=f.default,
            help=m.get("help", ""),
            choices=tuple(m["choices"]) if "choices" in m else None,
            bounds={b: m[b] for b in BOUNDS if b in m},
            auto=f.default is None,
            metavar=m.get("metavar"),
            default_text=m.get("default_text", "auto" if f.default is None else None),
            parse=m.get("parse"),
        )
    return types.MappingProxyType(keys)
