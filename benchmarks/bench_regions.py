"""Benchmark: trapped_ball vs the per-fill reference vs cv2.connectedComponents, one thread.

Edge maps (docs/method.md, Edge map) of scikit-image's bundled astronaut, coffee and chelsea, resized to
512^2 and 1024^2. trapped_ball runs warm (compiled, one untimed call first); every figure is the
best of ``--repeat`` runs except the reference (one run). Prints a markdown table of times and
ratios; the figures are kept in benchmarks/RESULTS.md.

    python benchmarks/bench_regions.py            # reference at both sizes (minutes per image)
    python benchmarks/bench_regions.py --quick    # skips the reference at 1024^2
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

from _common import best_of, cpu_model  # noqa: E402  (benchmarks/ is on sys.path)

from s2pdata._jit import single_thread  # noqa: E402
from s2pdata.stages import regions  # noqa: E402
from s2pdata.stages.regions import edge_map, trapped_ball  # noqa: E402
from tests.reference import adjusted_rand_index, ref_trapped_ball  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="skip the reference at 1024^2")
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("--out", default="-", help="also write the markdown table to this file ('-': print only)")
    args = ap.parse_args()
    single_thread()
    rows = []
    for name in ("astronaut", "coffee", "chelsea"):
        img = getattr(skimage.data, name)()
        for side in (512, 1024):
            color = cv2.resize(img, (side, side), interpolation=cv2.INTER_AREA)  # dsize is (w, h)
            row = _measure(edge_map(color), args.repeat, with_ref=not (args.quick and side == 1024))
            rows.append(dict(image=name, side=side, **row))
            _print_row(rows[-1])
    lines = _table(rows, args)
    print("\n".join(lines))
    if args.out != "-":
        Path(args.out).write_text("\n".join(lines) + "\n")


def _measure(edges: np.ndarray, repeat: int, *, with_ref: bool) -> dict:
    """Times (s) of trapped_ball, its two stages, cv2 labelling and (optionally) the reference."""
    free = np.logical_not(edges).astype(np.uint8)
    edge_u8 = edges.astype(np.uint8)
    labels = trapped_ball(edges)  # warm-up (compile / cache load)
    t_tb = best_of(lambda: trapped_ball(edges), repeat)
    t_cc4 = best_of(lambda: cv2.connectedComponents(free, connectivity=4, ltype=cv2.CV_32S), repeat)
    t_cc8 = best_of(lambda: cv2.connectedComponents(edge_u8), repeat)
    # stages: fills (cv2 morphology + components, Numba growth, leftovers) and the
    # finishing step (edge assignment, sliver dissolve, renumbering; includes one
    # 4 MB copy of the provisional labels at 1024^2, which trapped_ball avoids)
    t_fill = best_of(lambda: regions._fill_regions(edges, regions.RADII, regions.KEEP), repeat)
    prov, n = regions._fill_regions(edges, regions.RADII, regions.KEEP)
    t_fin = best_of(lambda: regions._finish_regions(prov, n, edges, True), repeat)
    t_ref = ari = None
    if with_ref:
        t0 = time.perf_counter()
        ref = ref_trapped_ball(edges)
        t_ref = time.perf_counter() - t0
        ari = adjusted_rand_index(labels, ref)
    return dict(
        edge_pct=100 * edges.mean(),
        regions=int(labels.max()),
        tb=t_tb,
        cc4=t_cc4,
        cc8=t_cc8,
        ref=t_ref,
        ari=ari,
        fill=t_fill,
        fin=t_fin,
    )


def _print_row(row: dict) -> None:
    """One progress line per image and size."""
    t_tb, t_ref = row["tb"], row["ref"]
    ref_txt = "skipped" if t_ref is None else f"{t_ref:.2f} s ({t_ref / t_tb:.0f}x)  ARI {row['ari']:.3f}"
    print(
        f"{row['image']:9s} {row['side']:4d}^2 edges {row['edge_pct']:.1f}% K={row['regions']:5d}  "
        f"trapped_ball {t_tb * 1e3:7.2f} ms (fill {row['fill'] * 1e3:.1f} + finish "
        f"{row['fin'] * 1e3:.1f})  cc4(free) {row['cc4'] * 1e3:5.2f} ms "
        f"-> {t_tb / row['cc4']:5.1f}x  cc8(edges) {row['cc8'] * 1e3:5.2f} ms -> "
        f"{t_tb / row['cc8']:5.1f}x  reference {ref_txt}",
        flush=True,
    )


def _table(rows: list[dict], args) -> list[str]:
    """The markdown section kept in benchmarks/RESULTS.md."""
    cpu = cpu_model()
    cmd = "python benchmarks/bench_regions.py" + (" --quick" if args.quick else "")
    lines = [
        "## Region proposal (trapped ball)",
        "",
        f"Machine: {cpu}, {os.cpu_count()} cores; one thread (cv2.setNumThreads(1), "
        f"numba.set_num_threads(1)); numpy {np.__version__}, numba {numba.__version__}, "
        f"OpenCV {cv2.__version__}. Command: `{cmd}`.",
        "",
        "Edge maps of skimage.data images (docs/method.md, Edge map). trapped_ball: default arguments, warm, "
        f"best of {args.repeat}. cc4: `cv2.connectedComponents(free, connectivity=4)` on the "
        "same map (the labelling the leftover step does); cc8: `cv2.connectedComponents(edges)` "
        "with defaults. Reference: tests/reference.py (one flood fill per region), one "
        "run; ARI = adjusted Rand index of the two label maps."
        + (" `--quick` skips the reference at 1024^2." if args.quick else ""),
        "",
        "| image | size | edge % | regions | trapped_ball ms | fill ms | finish ms | cc4 ms "
        "| x cc4 | cc8 ms | x cc8 | reference s | ref / tb | ARI |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ref = "-" if r["ref"] is None else f"{r['ref']:.2f}"
        speed = "-" if r["ref"] is None else f"{r['ref'] / r['tb']:.0f}"
        ari = "-" if r["ari"] is None else f"{r['ari']:.3f}"
        lines.append(
            f"| {r['image']} | {r['side']}^2 | {r['edge_pct']:.1f} | {r['regions']} | "
            f"{r['tb'] * 1e3:.2f} | {r['fill'] * 1e3:.1f} | {r['fin'] * 1e3:.1f} | "
            f"{r['cc4'] * 1e3:.2f} | {r['tb'] / r['cc4']:.1f} | "
            f"{r['cc8'] * 1e3:.2f} | {r['tb'] / r['cc8']:.1f} | {ref} | {speed} | {ari} |"
        )
    worst = max(r["tb"] / r["cc4"] for r in rows if r["side"] == 1024)
    speed = [r["ref"] / r["tb"] for r in rows if r["side"] == 512 and r["ref"] is not None]
    lines += [
        "",
        f"Goals: at 1024^2 trapped_ball takes at most {worst:.1f}x cv2.connectedComponents on "
        f"the same map (goal <= 10x: {'met' if worst <= 10 else 'NOT met'}); at 512^2 it is "
        f"{min(speed):.0f}-{max(speed):.0f}x faster than the per-fill reference (goal >= 100x: "
        f"{'met' if min(speed) >= 100 else 'NOT met'}).",
    ]
    return lines


if __name__ == "__main__":
    main()
