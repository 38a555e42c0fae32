"""Stable per-sample random generators: (run seed, sample key, salt...) -> numpy Generator.

Python's ``hash()`` is salted per process and worker order is not stable, so every random draw
in s2pdata starts from a blake2b digest of the run seed and the sample key.
"""

from __future__ import annotations

import hashlib

import numpy as np


def stable_seed(seed: int, key: str, *salt: object) -> int:
    """128-bit integer derived from ``(seed, key, *salt)`` through blake2b."""
    text = "\x1f".join([str(int(seed)), str(key), *map(str, salt)])
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=16).digest(), "little")


def sample_rng(seed: int, key: str, *salt: object) -> np.random.Generator:
    """Generator for one sample; the same arguments give the same stream in any process."""
    return np.random.Generator(np.random.PCG64(stable_seed(seed, key, *salt)))
