"""Remake the README's figures (benchmarks/figures/) from one command.

    python benchmarks/make_figures.py [--workers N] [--keep DIR] [--only NAME ...] [--to DIR]

Every figure is made with exactly the commands the README (and RESULTS) show, from builds of the
built-in demo source:

* ``demo-sheet.png``: ``python -m s2pdata.build --src demo --out DIR/demo``, then
  ``python -m s2pdata.inspect DIR/demo --grid demo-sheet.png -n 4 --cell 200`` (README, Look at it);
* ``fields-sheet.png``: ``python -m s2pdata.build --src demo --out DIR/fields --sketch-style mix
  --fields flat,colordomain,reference``, then ``inspect -n 3 --cell 170`` (README, Beyond the
  paper);
* ``draft-cpu-steps.png``: ``python -m s2pdata.train draft --recipe recipes/draft-cpu.toml
  --shards DIR/demo --out DIR/draft-cpu --steps 200``, then the run's sample grids at steps 50,
  100, 150 and 200 side by side, at half size (README, Training; RESULTS, The CPU recipe). Needs torch; the
  training takes about a minute on 2 idle cores (RESULTS), far longer on a busy machine.

The other figures in that folder are not made here: ``learning-*.png`` come from
``python benchmarks/bench_learning.py`` (its ``--tag`` names the variants; RESULTS, Learning),
which trains for several minutes.

Builds are deterministic (seed 0, any worker count), so the sheets change only when the pipeline
does; the training figure is one CPU run and may differ in small ways from run to run. The builds
go to a temporary folder unless ``--keep DIR`` is given.
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import subprocess
import sys
import tempfile
from pathlib import Path

FIGURES = Path(__file__).resolve().parent / "figures"
ROOT = FIGURES.parent.parent

# name -> (build folder, extra build flags, samples on the sheet, panel size in pixels)
SHEETS = {
    "demo-sheet.png": ("demo", [], 4, 200),
    "fields-sheet.png": ("fields", ["--sketch-style", "mix", "--fields", "flat,colordomain,reference"], 3, 170),
}
STEPS_FIGURE = "draft-cpu-steps.png"  # trained on the build of demo-sheet.png
STEPS = (50, 100, 150, 200)  # the grids side by side; the recipe writes one every 50 steps
FIGURE_NAMES = (*SHEETS, STEPS_FIGURE)


def run(args: list[str]) -> None:
    print("$ python", " ".join(args), flush=True)
    subprocess.run([sys.executable, *args], cwd=ROOT, check=True)


def steps_figure(run_dir: Path, path: Path) -> None:
    """The training run's sample grids at ``STEPS``, side by side, written to ``path``."""
    import cv2
    import numpy as np

    grids = {int(m.group(1)): p for p in (run_dir / "samples").glob("step-*.png") if (m := re.search(r"(\d+)", p.stem))}
    missing = [s for s in STEPS if s not in grids]
    if missing:
        raise SystemExit(f"{run_dir / 'samples'} has no grid for steps {missing}: the run did not reach them")
    images = [cv2.imread(str(grids[s])) for s in STEPS]
    if len({im.shape[0] for im in images}) != 1:
        raise SystemExit(f"the grids in {run_dir / 'samples'} differ in height: {[im.shape for im in images]}")
    row = np.concatenate(images, 1)  # four grids of 256-px crops: halved so the page stays light
    row = cv2.resize(row, (row.shape[1] // 2, row.shape[0] // 2), interpolation=cv2.INTER_AREA)
    if not cv2.imwrite(str(path), row):
        raise SystemExit(f"could not write {path}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workers", type=int, default=None, help="build workers (default: the build's own)")
    ap.add_argument("--keep", type=Path, default=None, help="build (and train) into this folder and keep it")
    ap.add_argument("--only", nargs="+", choices=FIGURE_NAMES, default=FIGURE_NAMES, help="remake only these")
    ap.add_argument("--to", type=Path, default=FIGURES, help="write the figures here (default: benchmarks/figures)")
    args = ap.parse_args()
    if STEPS_FIGURE in args.only and importlib.util.find_spec("torch") is None:
        raise SystemExit(f"{STEPS_FIGURE} trains a model and needs torch: pip install -e '.[torch]', or leave it out")
    args.to.mkdir(parents=True, exist_ok=True)
    builds = {name for name in args.only if name in SHEETS}
    if STEPS_FIGURE in args.only:
        builds.add("demo-sheet.png")  # the training figure trains on the demo build
    with tempfile.TemporaryDirectory() as tmp:
        root = (args.keep or Path(tmp)).resolve()
        for name, (folder, flags, n, cell) in SHEETS.items():
            if name not in builds:
                continue
            out = root / folder
            workers = ["--workers", str(args.workers)] if args.workers else []
            run(["-m", "s2pdata.build", "--src", "demo", "--out", str(out), *flags, *workers, "--no-progress"])
            if name in args.only:
                sheet = ["--grid", str(args.to / name), "-n", str(n), "--cell", str(cell)]
                run(["-m", "s2pdata.inspect", str(out), *sheet])
        if STEPS_FIGURE in args.only:
            run_dir = root / "draft-cpu"
            shards = root / SHEETS["demo-sheet.png"][0]
            train = ["-m", "s2pdata.train", "draft", "--recipe", "recipes/draft-cpu.toml", "--shards", str(shards)]
            run([*train, "--out", str(run_dir), "--steps", str(STEPS[-1]), "--overwrite"])
            steps_figure(run_dir, args.to / STEPS_FIGURE)
            print(f"{STEPS_FIGURE}: the grids at steps {', '.join(map(str, STEPS))} -> {args.to / STEPS_FIGURE}")


if __name__ == "__main__":
    main()
