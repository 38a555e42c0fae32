"""``python -m s2pdata.train draft|refine --shards DIR --out RUN_DIR [...]``: parse, train, one summary line.

Every mistake the user can fix (recipe, key, value, run folder, checkpoint) ends as one line on
stderr and exit status 2, never a traceback; ``--help`` and argparse's own usage errors keep theirs.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

USAGE = """usage: python -m s2pdata.train draft|refine --shards DIR --out RUN_DIR [--steps N] [--recipe FILE]
                                     [--resume | --overwrite] [--dry-run] [--key value ...]

Trains one stage of the two-stage colorizer on s2pdata shards.
  draft    sketch + hints -> colour draft
  refine   sketch + hints + flawed draft -> final colouring

python -m s2pdata.train draft --help lists every config key with its default and meaning.
Without CUDA, start from --dry-run, then recipes/draft-cpu.toml and recipes/refine-cpu.toml."""


def main(argv: list[str] | None = None) -> int:
    """Dispatch to the stage's CLI; ``--help`` (or nothing) prints the usage."""
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0
    if not argv or argv[0] not in ("draft", "refine"):
        print(USAGE, file=sys.stderr)
        return 2
    return main_for(*stage_entry(argv[0]), argv[1:])


def stage_entry(stage: str) -> tuple[type, Callable]:
    """The config class and ``build_stage`` of ``stage`` ("draft" or "refine")."""
    if stage == "draft":
        from .draft import DraftConfig, build_stage

        return DraftConfig, build_stage
    from .refine import RefineConfig, build_stage

    return RefineConfig, build_stage


class CliError(SystemExit):
    """A train mistake already printed on stderr as one line: exit status 2, ``str()`` is that line."""

    def __init__(self, line: str):
        super().__init__(line)
        self.code = 2


def main_for(cls, build_stage: Callable, argv: list[str] | None = None, *, on_step: Callable | None = None) -> int:
    """CLI entry of one stage: parse ``argv``, train (``loop.train``, which passes ``on_step`` on), print a
    summary line; a mistake the user can fix is a ``CliError`` (one line on stderr, exit status 2)."""
    from .. import storage
    from ..shards import ShardError
    from .checkpoint import CheckpointError

    prog = f"python -m s2pdata.train {cls.stage}"
    try:
        return _main(cls, build_stage, argv, on_step)
    except SystemExit as exc:
        if not isinstance(exc.code, str) or isinstance(exc, CliError):
            raise
        line = exc.code if exc.code.startswith(prog) else f"{prog}: {exc.code}"
    except (FileExistsError, CheckpointError, ShardError) as exc:
        line = f"{prog}: {exc}"
    except storage.StorageError as exc:  # already redacted; a resume is not given the options by its checkpoint
        line = (
            f"{prog}: --shards: {exc}; give the filesystem its settings with --storage-options JSON or the "
            "environment (ckpt.pt keeps no credentials, so --resume needs them again)"
        )
    except OSError as exc:  # writing the run folder: a full disk, no permission, a link planted at log.jsonl
        line = (
            f"{prog}: cannot write {exc.filename or 'the run folder'}: {exc.strerror or exc} (s2pdata never writes "
            "through a link or into a FIFO); remove what is there, or free space"
        )
    line = " ".join(line.split())  # one line, whatever the message held
    print(line, file=sys.stderr, flush=True)
    raise CliError(line)


def _main(cls, build_stage: Callable, argv: list[str] | None, on_step: Callable | None) -> int:
    from .config import parse_args
    from .loop import train

    cfg, args = parse_args(cls, sys.argv[2:] if argv is None else argv)
    t0 = time.perf_counter()
    result = train(
        cfg,
        build_stage,
        resume=args.resume,
        overwrite=args.overwrite,
        cost_note=not args.dry_run,
        recipe=args.recipe,
        on_step=on_step,
    )
    if int(os.environ.get("RANK", "0")) == 0:
        last = result["history"][-1] if result["history"] else {}
        print(
            f"{cls.stage}: {result['step']} steps in {time.perf_counter() - t0:.1f} s; "
            f"last loss_g {last.get('loss_g', math.nan):.4g}; checkpoint {Path(cfg.out) / 'ckpt.pt'}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
