"""One strict converter for config values, shared by build recipes and train recipes/flags.

Consumes a value from a TOML recipe (already typed) or from the command line (a string) and the
type the config declares; produces a value of exactly that type, or a ``ValueError`` that names
the key, where it came from, the value and what is accepted. Nothing is coerced silently:
``true`` is not an int, ``1.9`` is not an int, ``"abc"`` is not a float.
"""

from __future__ import annotations

import math

import tomllib

_TRUE = ("true", "1", "yes")
_FALSE = ("false", "0", "no")


def convert(key: str, value: object, typ: type, origin: str) -> object:
    """``value`` as ``typ`` (int, float, bool or str), refusing anything inexact.

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
    where = f"{key} in {origin}"
    if isinstance(value, str) and typ is not str:
        return _from_string(where, value, typ)
    if typ is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{where} must be true or false, got {value!r}")
        return value
    if typ is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{where} must be an integer, got {value!r}; write it without a decimal point")
        return value
    if typ is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{where} must be a number, got {value!r}")
        return float(value)
    if typ is str:
        if not isinstance(value, str):
            raise ValueError(f"{where} must be a string, got {value!r}; quote it in TOML")
        return value
    raise TypeError(f"typ must be int, float, bool or str, got {typ!r}")


def _from_string(where: str, text: str, typ: type) -> object:
    if typ is bool:
        if text.lower() in _TRUE:
            return True
        if text.lower() in _FALSE:
            return False
        raise ValueError(f"{where} must be true or false, got {text!r}")
    try:
        value = typ(text)
    except ValueError:
        kind = "an integer" if typ is int else "a number"
        raise ValueError(f"{where} must be {kind}, got {text!r}") from None
    if typ is float and not math.isfinite(value):
        raise ValueError(f"{where} must be a finite number, got {text!r}")
    return value


def load_toml(path: str) -> dict:
    """A recipe file as a dict; a missing or malformed file is a one-line ``ValueError``."""
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ValueError(f"recipe {path} does not exist") from None
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"recipe {path} cannot be read: {exc}") from None
