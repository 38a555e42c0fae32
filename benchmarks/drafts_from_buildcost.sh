#!/bin/bash
# The same demo:32 build with paper drafts and with --drafts-from a CPU-recipe-sized draft network
# (seeded random weights): milliseconds per sample from the shard stats. Run from the repository root.
set -e
tmp=$(mktemp -d)
python - "$tmp/d8.pt" <<'PY'
import dataclasses, sys, torch
from s2pdata.train.draft import DraftConfig, build_networks
torch.manual_seed(0)
cfg = DraftConfig(width=8, depth=3, input_skip=True, lambda_gan=0.0)
G, _ = build_networks(cfg)
torch.save({"stage": "draft", "step": 1, "config": dataclasses.asdict(cfg), "models": {"G": G.state_dict()}}, sys.argv[1])
PY
for size in 256 512; do
  for kind in paper net; do
    flags=""; [ $kind = net ] && flags="--drafts-from $tmp/d8.pt"
    out=$tmp/bc-$size-$kind
    python -m s2pdata.build --src demo:32 --out $out --size $size --workers 1 --seed 0 --no-progress $flags >/dev/null
    python - "$out" <<'PY'
import glob, json, sys
from collections import Counter
c, n = Counter(), 0
for f in glob.glob(sys.argv[1] + "/*.stats.json"):
    s = json.load(open(f)); c.update(s["seconds"]); n += s["items"] - s["rejected"]
synth = sum(v for k, v in c.items() if k not in ("read", "write"))
print(sys.argv[1].rsplit("/", 1)[1], f"{n} samples", " ".join(f"{k}={1e3 * v / n:.1f}ms" for k, v in sorted(c.items())),
      f"without read/write={1e3 * synth / n:.1f}ms/sample")
PY
  done
done
rm -rf "$tmp"
