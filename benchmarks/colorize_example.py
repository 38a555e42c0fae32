"""The README's "Colourise a sketch" example: a sketch that is in no build and its hints.

    python benchmarks/colorize_example.py /tmp/example           # writes the files below
    python -m s2pdata.colorize --draft runs/cpu/ckpt.pt /tmp/example/sketches --hints /tmp/example/hints \
        --out /tmp/example/out --grid docs/colorize/cpu-200.png

Demo picture 0 of seed 7 (a seed-1 build holds other pictures) at 384 px, its lines drawn by the
build's XDoG extractor without augmentation; ``sketches/1-user-hints.png`` with one hint per region
the lines enclose (``hints/1-user-hints.png``, RGBA) and ``sketches/2-dense-hints.png`` with about 100
hints drawn like the CPU recipe's training hints (``hints/2-dense-hints.json``, the shards' records).
"""

import json
import sys
from pathlib import Path

import cv2
import numpy as np

from s2pdata.demo import draw_demo
from s2pdata.stages.hints import sample_hints
from s2pdata.stages.sketch import extract_sketch

out = sys.argv[1]
color = draw_demo(int(sys.argv[2]) if len(sys.argv) > 2 else 0, seed=7)
h, w = color.shape[:2]
scale = 384 / min(h, w)
color = cv2.resize(color, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
sketch, _ = extract_sketch(color, method="xdog", rng=np.random.default_rng(0), augment=False)
# one hint per region the lines enclose, as a user clicks into each area: at its most interior
# point, a 9 x 9 square (the CPU recipe's hint size) in the picture's colour there
paper = (sketch == 255).astype(np.uint8)
n, labels = cv2.connectedComponents(paper, connectivity=4)
depth = cv2.distanceTransform(paper, cv2.DIST_L2, 3)
hint = np.zeros((*sketch.shape, 4), np.uint8)
count = 0
for k in range(1, n):
    inside = labels == k
    if inside.sum() < 150:
        continue
    r, c = np.unravel_index(np.argmax(np.where(inside, depth, 0)), depth.shape)
    if depth[r, c] < 5:
        continue
    hint[r - 4 : r + 5, c - 4 : c + 5] = (*color[r, c], 255)
    count += 1
print("hints", count)

for d in ("sketches", "hints"):
    Path(out, d).mkdir(parents=True, exist_ok=True)
cv2.imwrite(f"{out}/picture.png", cv2.cvtColor(color, cv2.COLOR_RGB2BGR))
cv2.imwrite(f"{out}/sketch.png", sketch)
cv2.imwrite(f"{out}/hints.png", cv2.cvtColor(hint, cv2.COLOR_RGBA2BGRA))
# the same sketch twice: 1-user-hints (the PNG above), 2-dense-hints (JSON records drawn like the
# CPU recipe's online hints: the Zhang et al. sampler at p = 0.01, about 99 hints)
cv2.imwrite(f"{out}/sketches/1-user-hints.png", sketch)
cv2.imwrite(f"{out}/sketches/2-dense-hints.png", sketch)
cv2.imwrite(f"{out}/hints/1-user-hints.png", cv2.cvtColor(hint, cv2.COLOR_RGBA2BGRA))
seed = 0
while not 90 <= len(dense := sample_hints(color, rng=np.random.default_rng(seed), p=0.01)) <= 110:
    seed += 1  # a draw near the mean count
Path(f"{out}/hints/2-dense-hints.json").write_text(json.dumps(dense.to_json()))
print(sketch.shape, "dense hints", len(dense), "seed", seed)
