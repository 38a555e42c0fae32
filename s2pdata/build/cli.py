"""The build CLI: ``python -m s2pdata.build --src ... --out ...`` (flags, recipes, exit codes).

Every flag is declared once, as a ``s2pdata._config.Key`` in ``OPTIONS`` (the source and filter
flags as ``s2pdata.sources`` declares them); the trainer's config system reads its keys the same
way. A value comes from the first of: the command line, the ``--recipe`` file (keys are the flags'
long names, ``shard-size`` or ``shard_size``), the flag's default. Values are converted strictly
(``Key.convert``): ``size = 1.9`` is an error, not 1, and an unknown key names the closest known one.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path

from .. import storage
from .._config import RECIPE_HELP, Key, normalise, parse_flags, read_recipe
from ..decode import CROPS
from ..shards import COLOR_FORMATS, REJECTS
from ..sources import add_source_arguments, source_from_args
from ..stages.drafts import DRAFT_STYLES
from ..stages.sketch import SKETCH_METHODS
from ..storage import STORAGE_OPTIONS_HELP, parse_options
from ..synth import INT_BOUNDS, OPTIONAL_FIELDS, SKETCH_STYLES, SynthConfig
from . import MAX_WORKERS, BuildRefused, BuildStopped, hold_out, run_build
from .runners import DISTRIBUTORS

PROG = "python -m s2pdata.build"
DESCRIPTION = (
    "Build training data for two-stage line-art colorization: --src is planned, built by workers and "
    "committed as WebDataset shards in --out. Values may come from a --recipe file; the command line wins."
)
EXCLUSIVE = ("resume", "overwrite")  # one --help group: at most one of them


def _key(flag: str, spec: dict, group: str | None = None) -> Key:
    """A ``Key`` from a flag written with ``add_argument``'s keywords (type, default, choices, action, help)."""
    action = spec.get("action")
    typ = {"store_true": bool, "append": list}.get(action, spec.get("type", str))
    return Key(
        name=normalise(flag[2:]),
        type=typ,
        default=spec.get("default", False if typ is bool else None),
        help=spec.get("help", ""),
        choices=tuple(spec["choices"]) if spec.get("choices") is not None else None,
        metavar=spec.get("metavar"),
        parse=spec.get("parse"),
        group=group,
    )


class _Recorder:
    """Stands in for a parser so that ``add_source_arguments`` declares its flags as ``Key``s."""

    def __init__(self):
        self.keys: list[Key] = []
        self.group: str | None = None

    def add_argument_group(self, title: str | None = None, description: str | None = None) -> _Recorder:
        """Flags declared from now on belong to the --help section ``title``."""
        self.group = title
        return self

    def add_argument(self, flag: str, **spec) -> None:
        """Keep the flag and its keywords as a ``Key``."""
        self.keys.append(_key(flag, spec, self.group))


def _cpus() -> int:
    """The CPUs this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _flag(flag: str, help: str, **spec) -> Key:
    """A ``Key`` written like ``add_argument``: the flag, its help, then argparse's keywords."""
    return _key(flag, {**spec, "help": help})


def _synth(flag: str, help: str, **spec) -> Key:
    """A flag for the ``SynthConfig`` field of the same name, with that field's default and type."""
    name = normalise(flag[2:])
    default = getattr(SynthConfig(), name)
    typed = {"type": type(default)} if isinstance(default, (int, float)) and not isinstance(default, bool) else {}
    if name in INT_BOUNDS:
        help = f"{help}; {INT_BOUNDS[name][0]}..{INT_BOUNDS[name][1]}"
    return _flag(flag, help, default=default, **typed, **spec)


def _declare() -> tuple[Key, ...]:
    """Every build flag (the source and filter flags as ``s2pdata.sources`` declares them)."""
    build = (
        _flag(
            "--src",
            "'demo', 'demo:N', 'hf:PATH' (a Hugging Face datasets name), or a folder of images or Danbooru "
            "layout (recursive): a path or a URL (s3://, gs://, https://, hf://datasets/OWNER/NAME); required",
            metavar="SRC",
        ),
        _flag(
            "--out",
            "output folder for shards and manifests, or a URL of object storage (s3://bucket/run, gs://, hf://); "
            "required",
            metavar="DIR|URL",
        ),
        _flag("--storage-options", STORAGE_OPTIONS_HELP, type=dict, parse=parse_options, metavar="JSON"),
        _flag(
            "--staging",
            "local working folder of a build into a URL (manifest, patch pool, caches; default: "
            "$S2PDATA_STAGING or ~/.cache/s2pdata/staging, then a digest of the URL)",
            metavar="DIR",
        ),
        _flag(
            "--workers",
            f"worker processes, 1..{MAX_WORKERS} (default: the CPUs this process may use)",
            type=int,
            default=_cpus(),
        ),
        _flag("--seed", "run seed, 0..2**64-1; with the sample key it decides every draw", type=int, default=0),
        _flag("--shard-size", "planned items per shard (default: ceil(items / 64), between 8 and 1000)", type=int),
        _flag("--limit", "build only the first N items (sorted by key)", type=int),
        _flag("--resume", "skip committed shards of the same build (default)", action="store_true"),
        _flag("--overwrite", "delete an existing build in --out first", action="store_true"),
        _synth("--size", "short side after resizing (0 keeps the size)"),
        _synth("--crop", "square crop after resizing", choices=CROPS),
        _synth("--sketch", "line-art extractor (learned: a network from --sketch-weights)", choices=SKETCH_METHODS),
        _synth(
            "--sketch-weights",
            "weights for --sketch learned: anime2sketch:netG.pth, informative:netG_A_latest.pth, "
            "export:model.pt2 (torch.export.save) or torchscript:model.pt "
            "(never downloaded; see s2pdata.stages.learned)",
            metavar="ARCH:PATH",
        ),
        _synth("--hint-radius", "hints drawn as (2l+1)^2 squares"),
        _synth("--color-format", "colour codec", choices=COLOR_FORMATS),
        _synth("--color-quality", "JPEG/WebP quality"),
        _synth("--max-pixels", "reject images with more pixels"),
        _synth("--min-side", "reject images with a shorter side"),
        _synth(
            "--exact-decode",
            "decode every image at full size (default: JPEGs at least twice --size decode at a reduced DCT scale)",
            action="store_true",
        ),
        _synth("--drafts", "synthetic flawed drafts per sample (draft0..)"),
        _synth(
            "--draft-style",
            "draft family: paper (pasted patches, warp, sprays), model (a draft network's mistakes: grey, a "
            "colour cast, blurred, bleeding, wrong hues) or mix (model with --draft-mix)",
            choices=DRAFT_STYLES,
        ),
        _synth("--draft-mix", "share of model-family drafts with --draft-style mix, 0..1"),
        _synth(
            "--drafts-from",
            "a draft checkpoint (RUN_DIR/ckpt.pt of python -m s2pdata.train draft): a draft is its output on the "
            "sample's sketch and hints (with --drafts-from-p; its sha256 goes into dataset.json)",
            metavar="CKPT",
        ),
        _synth("--drafts-from-p", "share of drafts from --drafts-from (the others of --draft-style), 0..1"),
        _synth(
            "--sketch-style",
            "rough: hand-drawn look of the line art; mix: rough with --rough-weight",
            choices=SKETCH_STYLES,
        ),
        _synth("--rough-weight", "share of rough sketches with mix"),
        _flag("--fields", f"optional fields (comma list): {', '.join(OPTIONAL_FIELDS)}", action="append"),
        _synth("--pool-size", "patches in the region pool the drafts paste from (cut across the dataset)"),
        _flag("--distributor", "local process pool, or one Ray task per shard", choices=DISTRIBUTORS, default="local"),
        _flag(
            "--ray-address",
            "Ray cluster address (e.g. auto or ray://head:10001); without it a local Ray starts",
            metavar="ADDRESS",
        ),
        _flag("--no-progress", "no progress bar and no summary", action="store_true"),
    )
    sources = _Recorder()
    add_source_arguments(sources)
    return build + tuple(sources.keys)


OPTIONS = _declare()
KEYS = {key.name: key for key in OPTIONS}  # by stored name (shard_size)


def make_parser() -> argparse.ArgumentParser:
    """The build's argument parser: flags absent from the command line are absent from its result.

    Returns
    -------
    argparse.ArgumentParser
        ``--recipe`` and every flag of ``OPTIONS``, each help line from its ``Key`` (the generator
        the trainer's --help uses), its default said once.
    """
    p = argparse.ArgumentParser(
        prog=PROG, description=DESCRIPTION, epilog=f"{RECIPE_HELP} Precedence: defaults < --recipe < flags."
    )
    p.add_argument(
        "--recipe",
        metavar="FILE",
        help="TOML file of flag values (keys as the flags' long names, e.g. recipes/danbooru-512.toml); flags "
        "given on the command line win",
    )
    targets: dict = {None: p, EXCLUSIVE: p.add_mutually_exclusive_group()}
    for key in OPTIONS:
        where = EXCLUSIVE if key.name in EXCLUSIVE else key.group
        if where not in targets:
            targets[where] = p.add_argument_group(where)
        key.add_to(targets[where])
    return p


def default_args() -> argparse.Namespace:
    """Every flag at its default, as ``parse_args`` returns them (``run_build`` uses it for ``--src`` strings)."""
    return argparse.Namespace(**{key.name: key.default for key in OPTIONS})


def recipe_values(path: str) -> dict:
    """A recipe file's values by flag ``dest``, each converted to its flag's type.

    Parameters
    ----------
    path : str
        A TOML file of ``flag-name = value`` lines (``flag_name`` is the same key).

    Raises
    ------
    ValueError
        One line naming the file, and the key whose name, type or value is wrong (an unknown key
        with the closest known one).
    """
    return read_recipe(path, KEYS, cli=PROG)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Flags from the command line, then from ``--recipe``, then the defaults.

    ``--shard-size`` and ``--shard_size`` are one flag.

    Raises
    ------
    ValueError
        A bad recipe, an unknown flag, a bad value, or no ``--src`` / ``--out`` from either.
    SystemExit
        A malformed command line (argparse's usage message).
    """
    given, args = parse_flags(make_parser(), sys.argv[1:] if argv is None else argv, KEYS)
    values = {**vars(default_args()), **(recipe_values(args.recipe) if args.recipe else {}), **given}
    for name in ("src", "out"):
        if not values[name]:
            raise ValueError(f"--{name} is required (on the command line or in the recipe)")
    return argparse.Namespace(**values)


def _absolute_weights(spec: str) -> str:
    """``ARCH:PATH`` with PATH made absolute: workers (and Ray nodes) need not share our cwd."""
    if ":" not in spec:
        return spec  # SynthConfig reports the malformed value
    arch, path = spec.split(":", 1)
    return f"{arch}:{Path(path).expanduser().resolve()}" if path else spec


def synth_config(args: argparse.Namespace) -> SynthConfig:
    """The ``SynthConfig`` of parsed flags: each of its fields has a flag of the same name."""
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(SynthConfig)}
    values["sketch_weights"] = _absolute_weights(values["sketch_weights"])
    if values["drafts_from"]:  # workers (and Ray nodes) need not share our cwd
        values["drafts_from"] = str(Path(values["drafts_from"]).expanduser().resolve())
    values["fields"] = tuple(f.strip() for arg in values["fields"] or () for f in arg.split(",") if f.strip())
    return SynthConfig(**values)


_RUN_FLAGS = (
    "out",
    "seed",
    "shard_size",
    "workers",
    "limit",
    "overwrite",
    "distributor",
    "ray_address",
    "storage_options",
    "staging",
)


def main(argv: list[str] | None = None) -> int:
    """Run the build CLI; returns the exit code.

    0 built; 1 stopped (workers kept dying, or the disk is full: committed shards are kept and the
    same command resumes); 2 refused (bad flags, a different build or another running build in
    ``--out``, an ``--out`` that cannot be written, nothing to build); 3 finished with no sample
    (every item rejected: the reasons are printed and in ``rejects.jsonl``); 130 interrupted.
    """
    try:
        args = parse_args(argv)
        cfg = synth_config(args)
        held = hold_out(args.out, storage_options=args.storage_options, staging=args.staging, overwrite=args.overwrite)
        with held as (local, _):  # held from the listing on: sources cache listings and metadata there
            source = source_from_args(args.src, args, seed=args.seed, out=local)
            manifest = run_build(
                src=source,
                cfg=cfg,
                progress=not args.no_progress,
                **{name: getattr(args, name) for name in _RUN_FLAGS},
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
    if not t["samples"]:
        print(
            f"s2pdata.build: no sample was built: all {t['items']} items were rejected {t['reasons']} "
            f"(see {storage.redact(storage.join(args.out, REJECTS))}); nothing to train on",
            file=sys.stderr,
        )
        return 3
    print(
        f"{t['samples']} samples in {t['shards']} shards ({t['bytes'] / 1e6:.1f} MB) -> {storage.redact(args.out)}; "
        f"{t['rejected']} rejected"
        + (f" {t['reasons']} (see {storage.redact(storage.join(args.out, REJECTS))})" if t["rejected"] else "")
        + f"; {t['built_this_run']} shards built in {t['seconds_this_run']} s"
        + f"; decode: {'exact' if cfg.exact_decode else 'reduced-scale'}"
        + (f"; rebuilt {len(d)} damaged shard(s): {', '.join(d)}" if (d := manifest.get("rebuilt_damaged")) else "")
    )
    return 0
