"""``python -m s2pdata.train`` with a probe, for the DDP tests (run under torchrun).

    python -m tests.train_probe --record DIR [--stop-after K --stopped DIR2] draft|refine ARGS...

Trains as ``python -m s2pdata.train STAGE ARGS...`` does, through ``train(..., on_step=...)``:
- ``--record DIR``: at the end every rank writes ``DIR/rank{R}.json``: its shards, the sample keys
  it trained on, a hash of its weights (G and D), and how many checkpoints it wrote.
- ``--stop-after K``: after step K (and its checkpoint, which every rank waits for) every rank
  writes ``DIR2/rank{R}.pid`` holding its process id and waits there, for the test to kill it as
  a crash would.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

from s2pdata.train.__main__ import main_for, stage_entry
from s2pdata.train.checkpoint import state_hash


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.train_probe")
    p.add_argument("--record", type=Path, required=True)
    p.add_argument("--stop-after", type=int)
    p.add_argument("--stopped", type=Path)
    p.add_argument("stage", choices=("draft", "refine"))
    args, rest = p.parse_known_args(argv)
    seen = {"keys": [], "run": None}

    def on_step(run, batch):
        seen["keys"].extend(batch["__key__"])
        seen["run"] = run
        if run.step == args.stop_after:
            if run.rt.world_size > 1:
                torch.distributed.barrier()  # rank 0 has written the checkpoint of this step
            args.stopped.mkdir(parents=True, exist_ok=True)
            pid = args.stopped / f"rank{run.rt.rank}.pid"
            pid.with_suffix(".tmp").write_text(str(os.getpid()))
            os.replace(pid.with_suffix(".tmp"), pid)  # the test never reads half a number
            while True:  # until the test kills this process
                time.sleep(1)

    code = main_for(*stage_entry(args.stage), rest, on_step=on_step)
    run = seen["run"]
    record = {
        "rank": run.rt.rank,
        "world_size": run.rt.world_size,
        "step": run.step,
        "shards": run.shards,
        "keys": seen["keys"],
        "hash": state_hash(*(m.state_dict() for m in run.networks().values())),  # the plain modules
        "ckpt_writes": run.ckpt_writes,
    }
    args.record.mkdir(parents=True, exist_ok=True)
    (args.record / f"rank{run.rt.rank}.json").write_text(json.dumps(record))
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
