"""``python -m s2pdata.train draft|refine --shards DIR --out RUN_DIR [...]``."""

import sys


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in ("draft", "refine"):
        print(
            "usage: python -m s2pdata.train draft|refine --shards DIR --out RUN_DIR [--steps N] [--resume] "
            "[--dry-run] [--recipe FILE] [--key value ...]",
            file=sys.stderr,
        )
        return 2
    if argv[0] == "draft":
        from .draft import main as stage_main
    else:
        from .refine import main as stage_main
    return stage_main(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
