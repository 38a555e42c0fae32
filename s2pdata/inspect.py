"""Look at a build: a summary from its stats files, and a contact sheet of samples.

    python -m s2pdata.inspect shards/
    python -m s2pdata.inspect shards/ --grid sheet.png -n 8
    python -m s2pdata.inspect shards/ --verify

Consumes a build folder (``dataset.json``, ``shard-*.stats.json``, the tars); produces a text
summary (samples, bytes per field, reject reasons, seconds per stage) and a PNG with one row per
sample: colour | sketch | hints over the sketch | regions | each draft | optional fields.
``--verify`` hashes every shard and compares the size and sha256 its stats file records; each
damaged shard is named on stderr and the exit code is 1.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

from .data import open_shards
from .shards import (
    DATASET_JSON,
    ShardError,
    shard_files,
    shard_record,
    stats_files,
    sum_stats,
    tar_path_of,
    verify_shards,
)


def summarize(out: str | Path) -> dict:
    """Totals over every committed shard's stats file."""
    out = Path(out)
    stats = [
        shard_record(tar_path_of(p)) for p in stats_files(out)
    ]  # ShardError names a stats file that does not parse
    manifest = json.loads((out / DATASET_JSON).read_text()) if (out / DATASET_JSON).exists() else {}
    return {
        "shards": len(stats),
        "planned_shards": manifest.get("plan", {}).get("shards"),
        "status": manifest.get("status"),
        **sum_stats(stats),
    }


def verify_build(out: str | Path, *, threads: int | None = None) -> dict[str, str]:
    """Check every shard tar of the build folder ``out`` (and every stats file's tar) against the
    size and sha256 its stats file records.

    Parameters
    ----------
    out : str or Path
        A build folder.
    threads : int or None
        Hashing threads; None: one per CPU, at most 8.

    Returns
    -------
    dict of str to str
        Tar path -> the ``ShardError`` message naming it, for every damaged or unverifiable shard
        (a tar without stats, a stats file whose tar is missing); empty when all match.
    """
    out = Path(out)
    tars = {str(p) for p in shard_files(out)}
    tars |= {str(tar_path_of(p)) for p in stats_files(out)}
    return verify_shards(sorted(tars), threads=threads)


def format_summary(total: dict) -> str:
    """``summarize``'s totals as four lines: samples, rejects, bytes per field, time per stage."""
    n = max(total["samples"], 1)
    lines = [
        f"{total['samples']} samples in {total['shards']}/{total['planned_shards']} committed shards, "
        f"{total['bytes'] / 1e6:.1f} MB, status {total['status']}",
        f"rejected {total['rejected']}: "
        + (", ".join(f"{k} {v}" for k, v in sorted(total["reasons"].items())) or "none"),
        "bytes per sample: " + ", ".join(f"{k} {v / n / 1e3:.1f} KB" for k, v in total["field_bytes"].items()),
        "ms per item (one worker): "
        + ", ".join(f"{k} {1e3 * v / max(n + total['rejected'], 1):.1f}" for k, v in total["seconds"].items()),
    ]
    return "\n".join(lines)


def label_colors(labels: np.ndarray) -> np.ndarray:
    """int32 labels -> (H, W, 3) uint8 with a fixed pseudo-random colour per label, black for 0."""
    lut_ids = np.arange(int(labels.max()) + 1, dtype=np.uint64)
    mixed = (lut_ids * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(40)
    lut = np.stack([(mixed >> np.uint64(s)) & np.uint64(255) for s in (0, 8, 16)], -1).astype(np.uint8)
    lut = lut // 2 + 96
    lut[0] = 0
    return lut[labels]


def hints_over_sketch(sketch: np.ndarray, hint: np.ndarray, *, grow: int = 0) -> np.ndarray:
    """The RGBA hint map drawn over the sketch, each hint grown by ``grow`` pixels (so a 3x3 hint
    stays visible on a thumbnail) and framed in dark grey."""
    if grow:
        # grey dilation of the alpha-weighted map spreads each hint's colour over its neighbourhood
        kernel = np.ones((2 * grow + 1, 2 * grow + 1), np.uint8)
        hint = cv2.dilate(hint, kernel)
    base = np.repeat(sketch[..., None], 3, -1)
    alpha = hint[..., 3:4].astype(np.float32) / 255
    out = (base * (1 - alpha) + hint[..., :3] * alpha).astype(np.uint8)
    frame = cv2.dilate((hint[..., 3] > 0).astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    out[frame & (hint[..., 3] == 0)] = (40, 40, 40)
    return out


def sample_panels(s: dict, *, cell: int = 192) -> list[tuple[str, np.ndarray]]:
    """One sample -> titled RGB panels in a fixed order."""
    grow = max(0, round(2.5 * max(s["sketch"].shape) / cell) - 1)  # hints about 5 px wide on the sheet
    panels = [
        ("color", s["color"]),
        ("sketch", np.repeat(s["sketch"][..., None], 3, -1)),
        ("hints", hints_over_sketch(s["sketch"], s["hint"], grow=grow)),
    ]
    if "regions" in s:
        panels.append(("regions", label_colors(s["regions"])))
    panels += [(k, s[k]) for k in sorted(k for k in s if k.startswith("draft"))]
    for k in sorted(
        k for k in s if k not in {"color", "sketch", "hint", "regions", "json", "__key__"} and not k.startswith("draft")
    ):
        a = s[k]
        if isinstance(a, np.ndarray) and a.ndim in (2, 3):
            panels.append((k, a if a.ndim == 3 else np.repeat(a[..., None], 3, -1)))
    return panels


def contact_sheet(samples: list[dict], *, cell: int = 192) -> np.ndarray:
    """Samples -> one RGB image, a row per sample, a titled column per field."""
    rows = []
    for s in samples:
        cells = []
        for title, img in sample_panels(s, cell=cell):
            img = img[..., :3]
            scale = cell / max(img.shape[:2])
            small = cv2.resize(
                img,
                (max(1, round(img.shape[1] * scale)), max(1, round(img.shape[0] * scale))),
                interpolation=cv2.INTER_AREA,
            )  # cv2 takes (width, height)
            tile = np.full((cell + 18, cell, 3), 255, np.uint8)
            tile[18 : 18 + small.shape[0], : small.shape[1]] = small
            cv2.putText(tile, title, (3, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (0, 0, 0), 1, cv2.LINE_AA)
            cells.append(tile)
        rows.append(np.concatenate(cells, 1))
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 4), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
    return np.concatenate(rows, 0)


def main(argv: list[str] | None = None) -> int:
    """Run ``python -m s2pdata.inspect``; returns the exit code (2 when ``out`` is not a build folder,
    1 when a shard is damaged: each is named on stderr)."""
    p = argparse.ArgumentParser(prog="python -m s2pdata.inspect", description="summarise a build, draw a sheet")
    p.add_argument("out", help="build folder")
    p.add_argument("--grid", default=None, help="write a contact sheet PNG here")
    p.add_argument("-n", type=int, default=6, help="samples on the contact sheet")
    p.add_argument("--cell", type=int, default=192, help="panel size in pixels")
    p.add_argument("--verify", action="store_true", help="hash every shard against its stats; exit 1 if any differs")
    args = p.parse_args(argv)
    if not (Path(args.out) / DATASET_JSON).exists():
        print(f"s2pdata.inspect: {args.out} has no {DATASET_JSON}; give a build folder", file=sys.stderr)
        return 2
    try:
        print(format_summary(summarize(args.out)))
        if args.verify and not _report_verify(args.out):
            return 1
        if args.grid:
            _write_grid(args.out, args.grid, args.n, args.cell)
    except ShardError as exc:  # a stats file that does not parse, a damaged tar, a member that does not decode
        print(f"s2pdata.inspect: {exc}", file=sys.stderr)
        return 1
    return 0


def _write_grid(out: str, grid: str, n: int, cell: int) -> None:
    """The contact sheet of the first ``n`` samples of ``out``, written to the PNG ``grid``."""
    samples = []
    for s in open_shards(out):
        samples.append(s)
        if len(samples) >= n:
            break
    sheet = contact_sheet(samples, cell=cell)
    cv2.imwrite(grid, cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))  # cv2 writes BGR
    print(f"contact sheet of {len(samples)} samples -> {grid}")


def _report_verify(out: str) -> bool:
    """Print ``verify_build``'s findings (each damaged shard on stderr); True when every shard matches."""
    damaged = verify_build(out)  # a stats file that does not parse is a damaged shard too
    for message in damaged.values():
        print(f"s2pdata.inspect: {message}", file=sys.stderr)
    if damaged:
        print(f"s2pdata.inspect: {len(damaged)} damaged shard(s) in {out}", file=sys.stderr)
        return False
    print(f"verified {len(stats_files(out))} shards: size and sha256 match their stats files")
    return True


if __name__ == "__main__":
    sys.exit(main())
