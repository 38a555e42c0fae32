"""Remake every figure in benchmarks/figures/ from one command.

    python benchmarks/make_figures.py [--workers N] [--keep DIR]

Each figure is a contact sheet that ``python -m s2pdata.inspect`` draws from a build of the
built-in demo source, made with exactly the commands the README shows:

* ``demo-sheet.png``: ``python -m s2pdata.build --src demo --out DIR/demo``, then
  ``python -m s2pdata.inspect DIR/demo --grid demo-sheet.png -n 4 --cell 200`` (README, Look at it);
* ``fields-sheet.png``: ``python -m s2pdata.build --src demo --out DIR/fields --sketch-style mix
  --fields flat,colordomain,reference``, then ``inspect -n 3 --cell 170`` (README, Beyond the
  paper).

Builds are deterministic (seed 0, any worker count), so the sheets change only when the pipeline
does. The builds go to a temporary folder unless ``--keep DIR`` is given.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

FIGURES = Path(__file__).resolve().parent / "figures"
ROOT = FIGURES.parent.parent

# name -> (extra build flags, samples on the sheet, panel size in pixels)
SHEETS = {
    "demo-sheet.png": ([], 4, 200),
    "fields-sheet.png": (["--sketch-style", "mix", "--fields", "flat,colordomain,reference"], 3, 170),
}


def run(args: list[str]) -> None:
    print("$ python", " ".join(args), flush=True)
    subprocess.run([sys.executable, *args], cwd=ROOT, check=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workers", type=int, default=None, help="build workers (default: the build's own)")
    ap.add_argument("--keep", type=Path, default=None, help="build into this folder and keep it")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or Path(tmp)
        for name, (flags, n, cell) in SHEETS.items():
            out = root / Path(name).stem
            workers = ["--workers", str(args.workers)] if args.workers else []
            run(["-m", "s2pdata.build", "--src", "demo", "--out", str(out), *flags, *workers, "--no-progress"])
            run(["-m", "s2pdata.inspect", str(out), "--grid", str(FIGURES / name), "-n", str(n), "--cell", str(cell)])


if __name__ == "__main__":
    main()
