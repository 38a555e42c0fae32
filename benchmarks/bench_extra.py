"""Benchmark: rough sketch, flat fill, colour domain and reference image per 512^2 sample, one thread.

Each field's kernel is timed warm (one untimed call first), best of ``--repeat``, on skimage's
bundled astronaut, coffee and chelsea resized to 512^2, against the codec floor measured in the
same run on the same image: cv2 JPEG q95 encode + decode of the colour image. Inputs the build
already has (the extracted sketch, the trapped-ball labels) are made once and not timed; the
reference baseline of flat_fill (tests/reference.py, np.median per label) is timed once.
Prints a markdown table of times and ratios (the figures are kept in benchmarks/RESULTS.md).

    python benchmarks/bench_extra.py [--repeat 10] [--out table.md]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import cv2
import numba
import numpy as np
import skimage.data

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _common import best_of, cpu_model, jpeg_q95_round_trip  # noqa: E402  (benchmarks/ is on sys.path)

from s2pdata._jit import single_thread  # noqa: E402
from s2pdata.stages.domain import color_domain, quantize  # noqa: E402
from s2pdata.stages.flat import flat_fill  # noqa: E402
from s2pdata.stages.refimage import make_reference  # noqa: E402
from s2pdata.stages.regions import propose_regions  # noqa: E402
from s2pdata.stages.rough import roughen_sketch  # noqa: E402
from s2pdata.stages.sketch import extract_sketch  # noqa: E402
from tests.reference import ref_flat_fill  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("--side", type=int, default=512)
    ap.add_argument("--out", default="-", help="also write the markdown table to this file ('-': print only)")
    args = ap.parse_args()
    single_thread()

    fields = ["rough", "flat median", "flat trimmed", "quantize k8", "domain k8", "reference"]
    rows = []
    for name in ("astronaut", "coffee", "chelsea"):
        color = cv2.resize(
            getattr(skimage.data, name)(), (args.side, args.side), interpolation=cv2.INTER_AREA
        )  # dsize is (w, h)
        sketch, _ = extract_sketch(color, method="xdog", rng=np.random.default_rng(0), augment=False)
        labels = propose_regions(color)
        floor = best_of(lambda: jpeg_q95_round_trip(cv2.cvtColor(color, cv2.COLOR_RGB2BGR)), args.repeat)
        rng = lambda: np.random.default_rng(1)  # noqa: E731 - a fresh generator per call
        t = {
            "rough": best_of(lambda: roughen_sketch(sketch, rng=rng()), args.repeat),
            "flat median": best_of(lambda: flat_fill(color, labels), args.repeat),
            "flat trimmed": best_of(lambda: flat_fill(color, labels, stat="trimmed"), args.repeat),
            "quantize k8": best_of(lambda: quantize(color, rng=rng(), k=8), args.repeat),
            "domain k8": best_of(lambda: color_domain(color, rng=rng(), k=8), args.repeat),
            "reference": best_of(lambda: make_reference(color, rng=rng()), args.repeat),
        }
        t0 = time.perf_counter()
        ref_flat_fill(color, labels)
        t_ref = time.perf_counter() - t0
        rows.append(dict(image=name, K=int(labels.max()), floor=floor, t=t, ref=t_ref))
        print(
            f"{name:9s} K={labels.max():4d} jpeg q95 enc+dec {floor * 1e3:6.2f} ms | "
            + "  ".join(f"{f} {t[f] * 1e3:6.2f} ms ({t[f] / floor:4.1f}x)" for f in fields)
            + f" | flat reference {t_ref * 1e3:.0f} ms",
            flush=True,
        )

    side = args.side
    lines = [
        "## Extra fields: rough sketch, flat fill, colour domain, reference image",
        "",
        f"Machine: {cpu_model()}, {os.cpu_count()} cores; one thread (cv2.setNumThreads(1), "
        f"numba.set_num_threads(1)); numpy {np.__version__}, numba {numba.__version__}, "
        f"OpenCV {cv2.__version__}. Command: `python benchmarks/bench_extra.py"
        f"{'' if args.repeat == 10 else f' --repeat {args.repeat}'}"
        f"{'' if side == 512 else f' --side {side}'}`.",
        "",
        f"skimage.data images at {side}^2. Each figure is the kernel alone, warm, best of "
        f"{args.repeat}, in ms, with its ratio to the codec floor (cv2 JPEG q95 encode + decode "
        "of the same colour image, same run). Inputs (XDoG sketch, trapped-ball labels) are "
        "made once outside the timing. flat ref: tests/reference.py (np.median per "
        "label), one run.",
        "",
        "| image | K | jpeg ms | " + " | ".join(f"{f} ms (x jpeg)" for f in fields) + " | flat ref ms |",
        "|---|---|---|" + "---|" * len(fields) + "---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['image']} | {r['K']} | {r['floor'] * 1e3:.2f} | "
            + " | ".join(f"{r['t'][f] * 1e3:.2f} ({r['t'][f] / r['floor']:.1f}x)" for f in fields)
            + f" | {r['ref'] * 1e3:.0f} |"
        )
    total = [sum(r["t"][f] for f in ("rough", "flat median", "domain k8", "reference")) for r in rows]
    lines += [
        "",
        f"All four fields together (rough + flat median + domain + reference): "
        f"{min(total) * 1e3:.0f}-{max(total) * 1e3:.0f} ms per sample, "
        f"{min(t / r['floor'] for t, r in zip(total, rows)):.0f}-"
        f"{max(t / r['floor'] for t, r in zip(total, rows)):.0f}x the JPEG floor.",
    ]
    print("\n".join(lines))
    if args.out != "-":
        Path(args.out).write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
