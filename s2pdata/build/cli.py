"""The build CLI: ``python -m s2pdata.build --src ... --out ...`` (flags, recipes, exit codes)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ..decode import CROPS
from ..shards import COLOR_FORMATS, REJECTS
from ..sources import add_source_arguments, source_from_args
from ..stages.sketch import SKETCH_METHODS
from ..synth import OPTIONAL_FIELDS, SKETCH_STYLES, SynthConfig
from . import BuildRefused, BuildStopped, run_build
from .runners import DISTRIBUTORS


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m s2pdata.build",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--src", help="'demo', 'demo:N', 'hf:PATH' or a folder of images (recursive); required")
    p.add_argument("--out", help="output folder for shards and manifests; required")
    p.add_argument(
        "--recipe", help="TOML file of flag values (keys as the flags' long names); flags given on the command line win"
    )
    p.add_argument(
        "--workers",
        type=int,
        default=len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1,
        help="worker processes (default: the CPUs this process may use)",
    )
    p.add_argument("--seed", type=int, default=0, help="run seed; with the sample key it decides every draw")
    p.add_argument(
        "--shard-size",
        type=int,
        default=None,
        help="planned items per shard (default: ceil(items / 64), between 8 and 1000)",
    )
    p.add_argument("--limit", type=int, default=None, help="build only the first N items (sorted by key)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument(
        "--resume", action="store_true", default=True, help="skip committed shards of the same build (default)"
    )
    mode.add_argument("--overwrite", action="store_true", help="delete an existing build in --out first")
    d = SynthConfig()
    p.add_argument("--size", type=int, default=d.size, help="short side after resizing (0 keeps the size)")
    p.add_argument("--crop", choices=CROPS, default=d.crop, help="square crop after resizing")
    p.add_argument(
        "--sketch",
        choices=SKETCH_METHODS,
        default=d.sketch,
        help="line-art extractor (learned: a network from --sketch-weights)",
    )
    p.add_argument(
        "--sketch-weights",
        default=d.sketch_weights,
        metavar="ARCH:PATH",
        help="weights for --sketch learned: anime2sketch:netG.pth, informative:netG_A_latest.pth "
        "or torchscript:model.pt (never downloaded; see s2pdata.stages.learned)",
    )
    p.add_argument("--hint-radius", type=int, default=d.hint_radius, help="hints drawn as (2l+1)^2 squares")
    p.add_argument("--color-format", choices=COLOR_FORMATS, default=d.color_format, help="colour codec")
    p.add_argument("--color-quality", type=int, default=d.color_quality, help="JPEG/WebP quality")
    p.add_argument("--max-pixels", type=int, default=d.max_pixels, help="reject images with more pixels")
    p.add_argument("--min-side", type=int, default=d.min_side, help="reject images with a shorter side")
    p.add_argument("--drafts", type=int, default=d.drafts, help="synthetic flawed drafts per sample (draft0..)")
    p.add_argument(
        "--sketch-style",
        choices=SKETCH_STYLES,
        default=d.sketch_style,
        help="rough: hand-drawn simulation of the extracted line art; mix: rough with --rough-weight",
    )
    p.add_argument("--rough-weight", type=float, default=d.rough_weight, help="share of rough sketches with mix")
    p.add_argument(
        "--fields", action="append", default=None, help=f"optional fields (comma list): {', '.join(OPTIONAL_FIELDS)}"
    )
    p.add_argument(
        "--pool-size",
        type=int,
        default=d.pool_size,
        help="patches in the region pool the drafts paste from (cut across the dataset)",
    )
    p.add_argument(
        "--distributor", choices=DISTRIBUTORS, default="local", help="local process pool, or one Ray task per shard"
    )
    p.add_argument(
        "--ray-address",
        default=None,
        help="Ray cluster address (e.g. auto or ray://head:10001); default starts a local Ray",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar and no summary")
    add_source_arguments(p)
    return p


class _Unset:
    """Marks a flag the command line did not give (argparse keeps a value already on the namespace)."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command line, then ``--recipe`` values for every flag the command line left out."""
    parser = make_parser()
    actions = {a.dest: a for a in parser._actions if a.dest not in ("help", "recipe")}
    # a namespace pre-filled with markers tells which flags were given (append flags start as None)
    marked = argparse.Namespace(
        **{d: None if isinstance(a, argparse._AppendAction) else _Unset for d, a in actions.items()}
    )
    given = parser.parse_args(argv, namespace=marked)
    args = parser.parse_args(argv)
    if args.recipe:
        import tomllib

        try:
            with open(args.recipe, "rb") as f:
                recipe = tomllib.load(f)
        except (OSError, tomllib.TOMLDecodeError) as exc:
            parser.error(f"--recipe {args.recipe}: {exc}")
        for key, value in recipe.items():
            dest = key.replace("-", "_")
            action = actions.get(dest)
            if action is None:
                parser.error(
                    f"--recipe {args.recipe}: unknown key {key!r}; keys are the build's flag names, "
                    f"e.g. {', '.join(sorted(actions)[:6])}, ..."
                )
            if getattr(given, dest) not in (_Unset, None):
                continue  # the command line wins
            if isinstance(action, argparse._AppendAction):
                value = [str(v) for v in (value if isinstance(value, list) else [value])]
            elif action.type is not None and value is not None:
                try:
                    value = action.type(value)
                except (TypeError, ValueError):
                    parser.error(f"--recipe {args.recipe}: {key} = {value!r} is not a valid {action.type.__name__}")
            if action.choices is not None and value not in action.choices:
                parser.error(f"--recipe {args.recipe}: {key} must be one of {list(action.choices)}, got {value!r}")
            setattr(args, dest, value)
    for name in ("src", "out"):
        if not getattr(args, name):
            parser.error(f"--{name} is required (on the command line or in the recipe)")
    return args


def _absolute_weights(spec: str) -> str:
    """``ARCH:PATH`` with PATH made absolute: workers (and Ray nodes) need not share our cwd."""
    if ":" not in spec:
        return spec  # SynthConfig reports the malformed value
    arch, path = spec.split(":", 1)
    return f"{arch}:{Path(path).expanduser().resolve()}" if path else spec


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        cfg = SynthConfig(
            size=args.size,
            crop=args.crop,
            sketch=args.sketch,
            hint_radius=args.hint_radius,
            color_format=args.color_format,
            color_quality=args.color_quality,
            max_pixels=args.max_pixels,
            min_side=args.min_side,
            drafts=args.drafts,
            pool_size=args.pool_size,
            sketch_style=args.sketch_style,
            rough_weight=args.rough_weight,
            sketch_weights=_absolute_weights(args.sketch_weights),
            fields=tuple(f.strip() for arg in args.fields or () for f in arg.split(",") if f.strip()),
        )
        source = source_from_args(args.src, args, seed=args.seed, out=Path(args.out))
        manifest = run_build(
            src=source,
            out=args.out,
            cfg=cfg,
            seed=args.seed,
            shard_size=args.shard_size,
            workers=args.workers,
            limit=args.limit,
            overwrite=args.overwrite,
            progress=not args.no_progress,
            distributor=args.distributor,
            ray_address=args.ray_address,
        )
    except (BuildRefused, ValueError) as exc:
        print(f"s2pdata.build: {exc}", file=sys.stderr)
        return 2
    except BuildStopped as exc:
        print(f"s2pdata.build: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted: committed shards are kept; re-run the same command to resume", file=sys.stderr)
        return 130
    t = manifest["totals"]
    print(
        f"{t['samples']} samples in {t['shards']} shards ({t['bytes'] / 1e6:.1f} MB) -> {args.out}; "
        f"{t['rejected']} rejected"
        + (f" {t['reasons']} (see {Path(args.out) / REJECTS})" if t["rejected"] else "")
        + f"; {t['built_this_run']} shards built in {t['seconds_this_run']} s"
    )
    return 0
