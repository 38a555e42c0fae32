"""``python -m s2pdata.train draft|refine --shards DIR --out RUN_DIR [...]``."""

import sys

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
    from .loop import main_for

    if argv[0] == "draft":
        from .draft import DraftConfig as config
        from .draft import build_stage
    else:
        from .refine import RefineConfig as config
        from .refine import build_stage
    return main_for(config, build_stage, argv[1:])


if __name__ == "__main__":
    sys.exit(main())
