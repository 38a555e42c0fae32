"""Discovery + metadata join on a generated posts file: time and peak memory.

    python benchmarks/bench_metadata.py --lines 1000000 --files 20000

Writes a gwern-style tree of ``--files`` tiny images (ids spread over the whole id range) and a
2021-style JSON Lines file of ``--lines`` posts (~0.6 KB a line), plus the same posts as parquet.
Each case runs in a fresh subprocess so its peak RSS (``VmHWM``) is its own. Baselines, same
run: iterating the file's lines (I/O floor) and ``json.loads`` of every line (parse floor, nothing
kept). Reported: seconds, ratio to the parse floor, peak RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

CASE = r"""
import json, sys, time
from pathlib import Path
case, root, lines, out = sys.argv[1:5]
t0 = time.perf_counter()
result = {}
if case == "io-floor":
    n = 0
    with open(lines, "rb") as f:
        for line in f:
            n += 1
    result["lines"] = n
elif case == "parse-floor":
    n = 0
    with open(lines, "rb") as f:
        for line in f:
            json.loads(line)
            n += 1
    result["lines"] = n
else:
    import argparse
    from s2pdata.sources import add_source_arguments, source_from_args
    from s2pdata.sources.metadata import load_metadata
    if case.startswith("join-all"):
        table, info = load_metadata([lines if case.endswith("json") else lines.replace(".json", ".parquet")],
                                    range(1, int(sys.argv[5]) + 1), tracked=frozenset({"tag_7"}))
        result = {"matched": info["matched"]}
    else:
        p = argparse.ArgumentParser(); add_source_arguments(p)
        argv = ["--metadata", lines if "parquet" not in case else lines.replace(".json", ".parquet"),
                "--preset", "colorization", "--rating", "general,sensitive"]
        src = source_from_args(root, p.parse_args(argv), seed=0, out=Path(out))
        items = src.items()
        result = {"items": len(items), "summary": src.summary().splitlines()[-3:]}
result["seconds"] = time.perf_counter() - t0
# VmHWM: this process's own peak (ru_maxrss would carry the parent's peak across exec)
result["peak_rss_mb"] = [int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM")][0] / 1024
print(json.dumps(result))
"""


def make_inputs(tmp: Path, n_lines: int, n_files: int) -> tuple[Path, Path]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from tests.fakes import make_metadata_lines

    root = tmp / "danbooru"
    step = max(1, n_lines // n_files)
    for pid in range(1, n_lines + 1, step)[:n_files]:
        d = root / "original" / f"{pid % 1000:04d}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"{pid}.{'jpg' if pid % 5 else 'png'}").write_bytes(b"x")
    lines = tmp / "posts.json"
    writer, batch = None, []

    def flush():
        nonlocal writer
        cols = {k: [r[k] for r in batch] for k in batch[0] if k not in ("tag_string",)}
        t = pa.table(cols)
        writer = writer or pq.ParquetWriter(tmp / "posts.parquet", t.schema)
        writer.write_table(t)
        batch.clear()

    with open(lines, "wb") as f:
        for line in make_metadata_lines(n_lines):
            f.write(line)
            batch.append(json.loads(line))
            if len(batch) == 50000:
                flush()
    if batch:
        flush()
    writer.close()
    return root, lines


def run_case(case: str, root: Path, lines: Path, out: Path, n: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    res = subprocess.run(
        [sys.executable, "-c", CASE, case, str(root), str(lines), str(out), str(n)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lines", type=int, default=1_000_000)
    ap.add_argument("--files", type=int, default=20_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        t0 = time.perf_counter()
        root, lines = make_inputs(tmp, args.lines, args.files)
        print(
            f"inputs: {args.lines} lines ({lines.stat().st_size / 1e6:.0f} MB JSON, "
            f"{(tmp / 'posts.parquet').stat().st_size / 1e6:.0f} MB parquet), {args.files} files; "
            f"made in {time.perf_counter() - t0:.0f} s"
        )
        cases = [
            "io-floor",
            "parse-floor",
            "discover+join json",
            "discover+join json (cache hit)",
            "discover+join parquet",
            "join-all json",
            "join-all parquet",
        ]
        floor = None
        print(f"{'case':34s} {'seconds':>8s} {'x parse':>8s} {'peak RSS MB':>12s}  result")
        for case in cases:
            out = tmp / ("out-json" if "json" in case and "parquet" not in case else "out-" + case.replace(" ", "_"))
            r = run_case(
                case.split(" (")[0].replace("discover+join ", "dj-")
                if case.startswith("discover")
                else case.replace(" ", "-"),
                root,
                lines,
                out,
                args.lines,
            )
            if case == "parse-floor":
                floor = r["seconds"]
            ratio = f"{r['seconds'] / floor:8.2f}" if floor else f"{'':8s}"
            extra = {k: v for k, v in r.items() if k not in ("seconds", "peak_rss_mb")}
            print(f"{case:34s} {r['seconds']:8.2f} {ratio} {r['peak_rss_mb']:12.0f}  {extra}")


if __name__ == "__main__":
    main()
