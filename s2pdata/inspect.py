"""Look at a build: a summary from its stats files, and a contact sheet of samples.

    python -m s2pdata.inspect shards/
    python -m s2pdata.inspect shards/ --grid sheet.png -n 8
    python -m s2pdata.inspect shards/ --grid sheet.png --random 8 --seed 1
    python -m s2pdata.inspect shards/ --grid sheet.png --keys demo-000003,demo-000010
    python -m s2pdata.inspect shards/ --verify
    python -m s2pdata.inspect s3://bucket/run --grid sheet.png --storage-options '{"anon": true}'
    python -m s2pdata.inspect heldout/ --draft-realism --checkpoint runs/draft/ckpt.pt [-n N] [--seed S] [--json r.json]

Consumes a build folder (``dataset.json``, ``shard-*.stats.json``, the tars); produces a text
summary (sample and shard counts, bytes per field, reject reasons, seconds per stage) and a PNG
with one row per sample, labelled with its key: colour | sketch | hints over the sketch | regions |
each draft | optional fields. The sheet shows the first ``-n`` samples, ``--random N`` samples drawn
from ``--seed`` (the same build and seed draw the same samples), or the samples ``--keys`` names;
its folder is created, and a sheet that cannot be written is an error. ``--verify`` hashes every
shard and compares the size and sha256 its stats file records; each damaged shard is named on
stderr and the exit code is 1. The build folder may be a URL (``s3://``, ``gs://``, ``hf://``;
``s2pdata.storage``): its stats files and ``dataset.json`` are read from there and its tars streamed.
``--draft-realism --checkpoint CKPT`` runs a draft-stage checkpoint over the build's sketches and
stored hints and compares its drafts with the build's synthetic ``draft0``.. of the same pictures
(``s2pdata.realism``): statistics against the target and a classifier's held-out AUC, as a text
table (and ``--json PATH``) over the first ``-n`` pictures (default all), ``--seed`` seeding the
classifier's split and bootstrap.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

from . import storage
from ._safeio import atomic_write
from .shards import (
    DATASET_JSON,
    SAMPLE_FIELDS,
    ManifestError,
    ShardError,
    decode_sample,
    iter_tar,
    read_manifest,
    recorded_counts,
    shard_files,
    shard_paths,
    shard_record,
    stats_files,
    sum_stats,
    tar_path_of,
    verify_shards,
)
from .storage import STORAGE_OPTIONS_HELP, StorageError, options_arg, redact


def summarize(out: str | Path, *, storage_options: dict | None = None) -> dict:
    """Totals over every committed shard's stats file of the build folder ``out`` (a path or a URL,
    read with ``storage_options``)."""
    so = storage_options
    out = out if storage.is_remote(out) else Path(storage.local(out))
    stats = [
        shard_record(tar_path_of(p), storage_options=so) for p in stats_files(out, storage_options=so)
    ]  # ShardError names a stats file that does not parse
    has_manifest = storage.exists(storage.join(out, DATASET_JSON), so)
    manifest = read_manifest(out, storage_options=so) if has_manifest else {}
    return {
        "shards": len(stats),
        "planned_shards": manifest.get("plan", {}).get("shards"),
        "status": manifest.get("status"),
        **sum_stats(stats),
    }


def verify_build(out: str | Path, *, threads: int | None = None, storage_options: dict | None = None) -> dict[str, str]:
    """Check every shard tar of the build folder ``out`` (and every stats file's tar) against the
    size and sha256 its stats file records.

    Parameters
    ----------
    out : str or Path
        A build folder: a path or a URL.
    threads : int or None
        Hashing threads; None: one per CPU, at most 8.
    storage_options : dict or None
        Options of a URL's filesystem (``s2pdata.storage``).

    Returns
    -------
    dict of str to str
        Tar path -> the ``ShardError`` message naming it, for every damaged or unverifiable shard
        (a tar without stats, a stats file whose tar is missing); empty when all match.
    """
    so = storage_options
    out = out if storage.is_remote(out) else Path(storage.local(out))
    tars = {str(p) for p in shard_files(out, storage_options=so)}
    tars |= {str(tar_path_of(p)) for p in stats_files(out, storage_options=so)}
    return verify_shards(sorted(tars), threads=threads, storage_options=so)


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


KEY_BAND = 18  # pixels of a label band: above each row of the contact sheet (and the trainers' grids)


def label_band(text: str, width: int) -> np.ndarray:
    """A white (KEY_BAND, width, 3) uint8 band with ``text`` written in it, the font shrunk until it fits:
    the sample key over a row of the contact sheet or of a training grid."""
    band = np.full((KEY_BAND, width, 3), 255, np.uint8)
    scale = 0.45
    while scale > 0.2 and cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)[0][0] > width - 6:
        scale -= 0.03
    cv2.putText(band, text, (3, 13), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 150), 1, cv2.LINE_AA)
    return band


def contact_sheet(samples: list[dict], *, cell: int = 192) -> np.ndarray:
    """Samples -> one RGB image, a row per sample headed by its key (``__key__``), a titled column per field."""
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
        row = np.concatenate(cells, 1)
        rows.append(np.concatenate([label_band(str(s.get("__key__", "")), row.shape[1]), row], 0))
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 4), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
    return np.concatenate(rows, 0)


class UnknownKeys(LookupError):
    """``choose_samples(keys=...)`` named samples the build does not hold; the message names them."""


def choose_samples(
    out,
    *,
    n: int | None = None,
    random: int | None = None,
    seed: int = 0,
    keys: list[str] | None = None,
    storage_options: dict | None = None,
) -> list[dict]:
    """The decoded samples (``open_shards``' dicts) of a contact sheet: give exactly one of ``n``, ``random``, ``keys``.

    Parameters
    ----------
    out : str or Path
        A build folder (or a tar, a glob: whatever ``open_shards`` takes).
    n : int or None
        The first ``n`` samples in build order (all of them when there are fewer).
    random : int or None
        ``random`` distinct samples drawn uniformly with ``np.random.default_rng(seed)``, in build
        order; the same build and seed draw the same samples. Shard sizes come from the stats files,
        so only the shards holding a drawn sample are read.
    seed : int
        The seed of ``random``.
    keys : list of str or None
        Exactly these samples, in this order.
    storage_options : dict or None
        Options of the filesystem when ``out`` is a URL (``s2pdata.storage``).

    Raises
    ------
    UnknownKeys
        A key in ``keys`` that no shard holds (all of them are named).
    ShardError
        A damaged shard, or a member that does not decode.
    """
    if sum(x is not None for x in (n, random, keys)) != 1:
        raise ValueError("choose_samples takes exactly one of n, random and keys")
    so = storage_options
    paths = shard_paths(out, storage_options=so)
    if n is not None:  # range first: reads n, no more
        return [decode_sample(raw, require=SAMPLE_FIELDS) for _, raw in zip(range(n), _raw_samples(paths, so))]
    if keys is not None:
        return _samples_named(out, paths, keys, so)
    recorded = recorded_counts(paths, storage_options=so)
    counts = [c if c is not None else sum(1 for _ in iter_tar(p, storage_options=so)) for p, c in zip(paths, recorded)]
    starts = np.cumsum([0, *counts])
    drawn = np.random.default_rng(seed).choice(int(starts[-1]), size=min(random, int(starts[-1])), replace=False)
    wanted: dict[int, set[int]] = {}  # shard -> positions in it
    for g in sorted(drawn.tolist()):
        i = int(np.searchsorted(starts, g, side="right")) - 1
        wanted.setdefault(i, set()).add(g - int(starts[i]))
    samples = []
    for i, positions in sorted(wanted.items()):
        for j, raw in enumerate(iter_tar(paths[i], storage_options=so)):
            if j in positions:
                samples.append(decode_sample(raw, require=SAMPLE_FIELDS))
            if j >= max(positions):
                break
    return samples


def _raw_samples(paths: list[str], storage_options: dict | None = None):
    """Every sample's raw members, shard after shard: ``open_shards(decode=False)`` minus its error for no shards."""
    for p in paths:
        yield from iter_tar(p, storage_options=storage_options)


def _samples_named(out, paths: list[str], keys: list[str], storage_options: dict | None = None) -> list[dict]:
    """The samples whose keys are ``keys``, in that order; reads the shards only until all are found."""
    found: dict[str, dict] = {}
    example = None
    for raw in _raw_samples(paths, storage_options):
        example = example or raw["__key__"]
        if raw["__key__"] in keys and raw["__key__"] not in found:
            found[raw["__key__"]] = decode_sample(raw, require=SAMPLE_FIELDS)
            if len(found) == len(set(keys)):
                break
    missing = [k for k in dict.fromkeys(keys) if k not in found]
    if missing:
        hint = f"its keys look like {example!r}" if example else "it holds no samples"
        raise UnknownKeys(f"no sample {', '.join(map(repr, missing))} in {redact(out)}; {hint}")
    return [found[k] for k in keys]


def _count(text: str) -> int:
    """argparse type: a whole number of samples, 1 or more."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of samples; give 1 or more")
    return value


def _key_list(text: str) -> list[str]:
    """argparse type: comma-separated sample keys."""
    keys = [k.strip() for k in text.split(",") if k.strip()]
    if not keys:
        raise argparse.ArgumentTypeError(f"{text!r} names no key; give keys such as demo-000003,demo-000010")
    return keys


def main(argv: list[str] | None = None) -> int:
    """Run ``python -m s2pdata.inspect``; returns the exit code: 2 for a bad argument (``out`` is not a
    build folder, a key ``--keys`` names is not in it, a ``--grid`` path that cannot be written), 1 when
    a shard is damaged; each is one line on stderr."""
    p = argparse.ArgumentParser(prog="python -m s2pdata.inspect", description="summarise a build, draw a sheet")
    p.add_argument("out", help="build folder: a path or a URL (s3://bucket/run, gs://, hf://)")
    p.add_argument("--grid", default=None, help="write a contact sheet PNG here (its folder is created)")
    pick = p.add_mutually_exclusive_group()
    pick.add_argument("-n", type=_count, default=None, help="the first N samples on the contact sheet (default 6)")
    pick.add_argument("--random", type=_count, default=None, metavar="N", help="N random samples (see --seed)")
    pick.add_argument("--keys", type=_key_list, default=None, metavar="K1,K2", help="exactly these samples")
    p.add_argument("--seed", type=int, default=None, help="seed of --random (default 0): same seed, same samples")
    p.add_argument("--cell", type=int, default=192, help="panel size in pixels")
    p.add_argument("--verify", action="store_true", help="hash every shard against its stats; exit 1 if any differs")
    p.add_argument("--storage-options", type=options_arg, default=None, metavar="JSON", help=STORAGE_OPTIONS_HELP)
    real = p.add_argument_group("draft realism (s2pdata.realism)")
    real.add_argument(
        "--draft-realism",
        action="store_true",
        help="compare a draft model's drafts of these pictures (--checkpoint) with the build's synthetic drafts: "
        "statistics against the target and a classifier's held-out AUC; -n: the first N pictures (default all); "
        "--seed: the classifier's split and bootstrap (default 0)",
    )
    real.add_argument(
        "--checkpoint", default=None, metavar="CKPT", help="RUN_DIR/ckpt.pt of python -m s2pdata.train draft"
    )
    real.add_argument("--json", default=None, metavar="PATH", help="also write the realism report as JSON here")
    real.add_argument(
        "--device", default="auto", help="where the draft model runs: auto (cuda when available), cpu, cuda"
    )
    args = p.parse_args(argv)
    if args.draft_realism != (args.checkpoint is not None):
        p.error("--draft-realism and --checkpoint CKPT go together: give both, the draft checkpoint to compare")
    if args.json is not None and not args.draft_realism:
        p.error(f"--json {args.json} writes the realism report; add --draft-realism --checkpoint CKPT")
    if args.draft_realism and (args.random is not None or args.keys is not None):
        p.error("--draft-realism takes the first -n N pictures; leave out --random and --keys")
    if args.seed is not None and args.random is None and not args.draft_realism:
        p.error(f"--seed {args.seed} is given without --random; add --random N, or leave --seed out")
    so, shown = args.storage_options, redact(args.out)
    try:
        if not storage.exists(storage.join(args.out, DATASET_JSON), so):
            print(f"s2pdata.inspect: {shown} has no {DATASET_JSON}; give a build folder", file=sys.stderr)
            return 2
    except StorageError as exc:  # an unknown scheme, a missing extra, an unreachable server
        print(f"s2pdata.inspect: {exc}", file=sys.stderr)
        return 2
    try:
        if args.grid:
            _check_grid_path(args.grid)  # before any work: a path that cannot be written is a bad argument
        print(format_summary(summarize(args.out, storage_options=so)))
        if args.verify and not _report_verify(args.out, so):
            return 1
        if args.draft_realism:
            _report_realism(args, so)
        if args.grid:
            if args.random is None and args.keys is None:
                args.n = 6 if args.n is None else args.n
            samples = choose_samples(
                args.out, n=args.n, random=args.random, seed=args.seed or 0, keys=args.keys, storage_options=so
            )
            if not samples:
                print(f"s2pdata.inspect: {shown} holds no samples: no contact sheet to draw", file=sys.stderr)
                return 1
            _write_png(args.grid, contact_sheet(samples, cell=args.cell))
            print(f"contact sheet of {len(samples)} samples ({', '.join(_keys_of(samples))}) -> {args.grid}")
    except (ShardError, ManifestError, StorageError) as exc:  # a damaged stats file, manifest or tar; a
        print(f"s2pdata.inspect: {exc}", file=sys.stderr)  # member that does not decode; a failed request
        return 1
    except UnknownKeys as exc:
        print(f"s2pdata.inspect: --keys: {exc.args[0]}", file=sys.stderr)
        return 2
    except _GridError as exc:
        print(f"s2pdata.inspect: --grid {args.grid}: {exc}", file=sys.stderr)
        return 2
    except _RealismError as exc:
        print(f"s2pdata.inspect: --draft-realism: {exc}", file=sys.stderr)
        return 2
    return 0


class _RealismError(ValueError):
    """The draft realism report cannot be made as asked; the message says why and what to do."""


def _report_realism(args, storage_options: dict | None) -> None:
    """Print the draft realism report (``s2pdata.realism``) and write its JSON to ``--json``."""
    import json

    from .realism import draft_realism, format_realism

    if args.json is not None and (Path(args.json).is_dir() or "://" in args.json):
        raise _RealismError(f"--json {args.json} must be a local file path, such as realism.json")
    try:
        report = draft_realism(
            args.checkpoint,
            args.out,
            n=args.n,
            seed=args.seed or 0,
            device=args.device,
            storage_options=storage_options,
            progress=True,
        )
    except (FileNotFoundError, ValueError) as exc:  # no checkpoint, a refine one, no drafts, a non-finite output
        raise _RealismError(str(exc)) from None
    print(format_realism(report))
    if args.json is not None:
        try:
            Path(args.json).parent.mkdir(parents=True, exist_ok=True)
            atomic_write(Path(args.json), (json.dumps(report, indent=1) + "\n").encode())
        except OSError as exc:
            raise _RealismError(f"--json {args.json}: cannot write it ({exc.strerror or exc})") from None
        print(f"draft realism report -> {args.json}")


def _keys_of(samples: list[dict]) -> list[str]:
    return [str(s.get("__key__")) for s in samples]


class _GridError(OSError):
    """The contact sheet cannot be written where ``--grid`` says; the message says why and what to do."""


def _check_grid_path(grid: str) -> None:
    """Make ``grid``'s folder and check that OpenCV has a writer for its extension."""
    if not cv2.haveImageWriter(grid):
        raise _GridError("OpenCV has no image writer for this file name; give a path ending in .png")
    try:
        Path(grid).parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _GridError(f"cannot create its folder ({exc.strerror or exc}); give a path in a writable folder") from exc


def _write_png(grid: str, sheet: np.ndarray) -> None:
    """Write the RGB ``sheet`` to ``grid``; ``_GridError`` when OpenCV does not write it."""
    try:
        ok, data = cv2.imencode(Path(grid).suffix or ".png", cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))  # cv2 codes BGR
    except cv2.error as exc:
        raise _GridError(f"OpenCV could not encode it ({str(exc).strip().splitlines()[-1]})") from exc
    if not ok:
        raise _GridError("OpenCV could not encode it; give a .png or .jpg path")
    try:
        atomic_write(Path(grid), data.tobytes())  # a new file renamed over the path: never through a link
    except OSError as exc:
        raise _GridError(f"cannot write it ({exc.strerror or exc}); give a path in a writable folder") from exc


def _report_verify(out: str, storage_options: dict | None = None) -> bool:
    """Print ``verify_build``'s findings (each damaged shard on stderr); True when every shard matches."""
    damaged = verify_build(out, storage_options=storage_options)  # a stats file that does not parse is damaged too
    for message in damaged.values():
        print(f"s2pdata.inspect: {message}", file=sys.stderr)
    if damaged:
        print(f"s2pdata.inspect: {len(damaged)} damaged shard(s) in {redact(out)}", file=sys.stderr)
        return False
    n = len(stats_files(out, storage_options=storage_options))
    print(f"verified {n} shards: size and sha256 match their stats files")
    return True


if __name__ == "__main__":
    sys.exit(main())
