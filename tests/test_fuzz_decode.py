"""Fuzzing the decoders: mutated PNG, JPEG, WebP, GIF, TIFF, BMP and AVIF files through ``pngread.read_png``
and ``decode.decode_image``. The only exceptions are ValueError (read_png) and DecodeError (decode_image),
nothing hangs, memory stays under a cap, and wherever Pillow accepts a file that read_png (or decode_image's
fast path) decodes, the pixels are Pillow's.

The fuzzers live in ``tests/badfiles.py``; ``benchmarks/fuzz.py --cases N`` runs the same ones longer.
Following tests/conftest.py's profiles, CI (``derandomize``) runs the same cases every time, seed 0;
elsewhere each run draws a new seed, named in any failure with the command that replays the case.
"""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
from hypothesis import settings

from tests.badfiles import FUZZ_FORMATS, check_case, fuzz_case, fuzz_seeds, picture, run_capped

# Cases per Hypothesis example of the profile (ci and explore: 40 examples -> 3,000 PNG and 400 of each other
# format, ~15 s on one core plus ~4 s to start the capped child; quick: a quarter of that).
PNG_PER_EXAMPLE, OTHER_PER_EXAMPLE = 75, 10

_CHILD = """
import json
from tests.badfiles import fuzz
print(json.dumps(fuzz({cases!r}, seed={seed})))
"""


@pytest.mark.slow
def test_mutated_images_raise_only_value_errors_and_decode_as_pillow_does():
    seed = 0 if settings.default.derandomize else random.randrange(2**31)
    n = settings.default.max_examples
    cases = {fmt: n * (PNG_PER_EXAMPLE if fmt == "png" else OTHER_PER_EXAMPLE) for fmt in FUZZ_FORMATS}
    run = run_capped(_CHILD.format(cases=cases, seed=seed), timeout=600)  # 8 GiB of address space
    assert run.returncode == 0, f"seed {seed}:\n{run.stderr[-3000:]}"
    totals = json.loads(run.stdout.splitlines()[-1])
    bad = [
        f"{fmt}:{index} {what} (replay: python benchmarks/fuzz.py --seed {s} --replay {fmt}:{index})"
        for fmt, t in totals.items()
        for s, index, what in t["escapes"] + t["mismatches"]
    ]
    assert not bad, f"seed {seed}: {len(bad)} escapes or mismatches:\n" + "\n".join(bad[:20])
    for fmt, t in totals.items():
        if not fuzz_seeds(fmt):
            continue  # AVIF without its codec
        assert t["cases"] == cases[fmt]
        assert 0 < t["accepted"] < t["cases"], (fmt, t)  # mutations neither all fatal nor all harmless
        assert len(t["rejected"]) >= 2, (fmt, t["rejected"])
    png = totals["png"]
    assert png["compared"] > cases["png"] // 20, png  # the pixels were really checked against Pillow
    assert {"pixels", "declined", "refused"} <= set(png["pngread"]), png["pngread"]


def test_cases_are_reproducible_and_varied():
    for fmt in FUZZ_FORMATS:
        if fuzz_seeds(fmt):
            assert fuzz_case(fmt, 3, 7) == fuzz_case(fmt, 3, 7)
            assert len({fuzz_case(fmt, 3, i) for i in range(20)}) > 15
    kinds = set()
    for i in range(300):
        data = fuzz_case("png", 0, i)
        at = 8
        while at + 8 <= len(data):  # the chunk kinds the PNG mutations produce, by a plain walk
            size = int.from_bytes(data[at : at + 4], "big")
            kinds.add(data[at + 4 : at + 8])
            at += 12 + size
    assert {b"IHDR", b"PLTE", b"tRNS", b"iCCP", b"IDAT", b"IEND", b"zTXt", b"eXIf", b"acTL"} <= kinds


def test_the_checks_catch_an_escape_and_a_pixel_mismatch(monkeypatch):
    """The fuzzer's checks themselves: a reader that raises IndexError, or returns other pixels, is caught."""
    import io

    from PIL import Image

    import s2pdata.decode as decode_mod
    import s2pdata.pngread as pngread_mod

    buf = io.BytesIO()
    Image.fromarray(picture(24, 32, seed=1)).save(buf, "PNG")
    data = buf.getvalue()
    clean = check_case(data)
    assert clean["decode"] == "accepted" and clean["pngread"] == "pixels" and clean["compared"] == 2
    assert not clean["escapes"] and not clean["mismatches"] and not clean["lenient"]
    real = pngread_mod.read_png

    def off_by_one(*args, **kwargs):
        a = real(*args, **kwargs)
        return None if a is None else a + np.ones(1, a.dtype)  # every value moved by one (255 wraps to 0)

    monkeypatch.setattr(decode_mod, "read_png", off_by_one)
    monkeypatch.setattr(pngread_mod, "read_png", off_by_one)
    assert len(check_case(data)["mismatches"]) == 2
    monkeypatch.setattr(pngread_mod, "read_png", lambda *a, **k: [][1])
    assert check_case(data)["escapes"] == ["read_png: IndexError: list index out of range"]
