"""Source trees for the object-storage source tests (helper, not a test module).

Members are noise PNGs of 64 px (about 12 KiB each, far more than one ranged read of a tar
header), so that what indexing a tar fetches can be told apart from reading it whole.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
from PIL import Image

from . import fakes


def noisy_png(seed: int, side: int = 64) -> bytes:
    """A PNG of random pixels (incompressible: about 12 KiB at 64 px)."""
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def write_plain(root: Path) -> Path:
    """A plain image folder: PNGs and a JPEG in sub-folders, a text file, a hidden file, names that
    collide once made dot-free (``a.b.png`` and ``a_b.png``)."""
    root = Path(root)
    files = {
        "a.b.png": noisy_png(1),
        "a_b.png": noisy_png(2),
        "sub/c.png": noisy_png(3),
        "sub/deeper/d.jpg": fakes.jpg(4, 64, 64),
        "z.png": fakes.png(5, 64, 64),
        "notes.txt": b"not an image",
        ".hidden.png": noisy_png(6),
    }
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return root


def tar_digests(out: Path) -> dict[str, str]:
    """``{shard tar name: sha256}`` of a build folder."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(Path(out).glob("*.tar"))}
