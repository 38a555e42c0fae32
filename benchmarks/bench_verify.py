"""The cost of verifying shards on resume: size-only against sha256, and hashing while writing.

    python benchmarks/bench_verify.py [--shards 2000] [--shard-kb 256] [--repeat 3]

Decides how a resume checks its committed shards (``s2pdata.shards.scan_committed``): compare the
size its stats file records (one ``stat`` per shard), or hash every tar and compare the sha256,
in one thread or in several (``hashlib`` releases the GIL, so threads hash in parallel). Two
workloads of the same total bytes, written with ``write_tar`` + ``commit_stats`` into a
temporary folder and timed in the same run:

* ``many``: ``--shards`` shards of ``--shard-kb`` KB (the per-shard overhead: stats file, stat);
* ``few``: 8 shards of the same total size (the per-byte cost of hashing).

The files were just written, so they are in the page cache: these are hashing costs, and a cold
resume reads at the disk's speed on top (sha256 of a warm file is faster than most disks read).

A third table times ``write_tar`` (md5 + sha256 fed as the bytes are written) against the
previous ``write_tar``, which wrote the tar and then read it back to hash it.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tarfile
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import best_of, cpu_model
from s2pdata._safeio import _fsync_dir, _tmp_path
from s2pdata.shards import _tar_member, commit_stats, scan_committed, shard_name, write_tar

FIELDS = ("color.jpg", "sketch.png", "hint.png", "regions.png", "draft0.jpg", "json")
SAMPLE_KB = 143  # a 512^2 demo sample's stored fields (python -m s2pdata.inspect of a demo build)
BUILD_MS = 31.6  # what building one such sample costs one worker, end to end (bench_build.py, RESULTS.md)


def samples_of(total: int) -> list[dict]:
    """Samples of six random fields adding up to about ``total`` bytes, 64 KB per sample at most."""
    per_sample = min(total, 64 << 10)
    blob = os.urandom(per_sample // len(FIELDS))
    return [{"__key__": f"k-{i:08d}", **dict.fromkeys(FIELDS, blob)} for i in range(max(1, total // per_sample))]


def write_build(out: Path, n_shards: int, shard_bytes: int) -> int:
    """``n_shards`` committed shards of about ``shard_bytes`` each; returns the bytes written."""
    out.mkdir(parents=True)
    samples, total = samples_of(shard_bytes), 0
    for i in range(n_shards):
        info = write_tar(out / shard_name(i), [{**s, "__key__": f"{i:06d}-{s['__key__']}"} for s in samples])
        commit_stats(out, i, {"shard": shard_name(i), "index": i, **info})
        total += info["filesize"]
    return total


def reread_write_tar(path: Path, samples: list[dict]) -> None:
    """The previous ``write_tar``: write and fsync the tar, then read it back for md5 and sha256."""
    tmp = _tmp_path(path)
    with open(tmp, "wb") as f:
        with tarfile.open(fileobj=f, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for s in samples:
                for field in FIELDS:
                    _tar_member(tar, f"{s['__key__']}.{field}", s[field])
        f.flush()
        os.fsync(f.fileno())
    _hash_back(tmp)
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _hash_back(path: Path) -> tuple[str, str]:
    """md5 and sha256 of the file at ``path``, read in 1 MiB blocks."""
    md5, sha = hashlib.md5(), hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            md5.update(block)
            sha.update(block)
    return md5.hexdigest(), sha.hexdigest()


def scan_table(root: Path, n_shards: int, shard_kb: int, repeat: int) -> float:
    """Resume scans of the two workloads: size-only, sha256 in 1 thread, sha256 in the default threads;
    returns the hashing rate of the default threads on the large shards, in MB/s."""
    print(f"{'workload':22s} {'check':16s} {'ms':>9s} {'us/shard':>9s} {'MB/s':>8s} {'vs size':>8s}")
    total_kb = n_shards * shard_kb
    for name, n, kb in (("many", n_shards, shard_kb), ("few", 8, total_kb // 8)):
        out = root / name
        nbytes = write_build(out, n, kb << 10)
        assert not scan_committed(out, n)[1], "a freshly written shard does not match its stats"
        checks = {"size": {"verify": "size"}, "sha256 1 thread": {"threads": 1}, "sha256 threads": {}}
        times = {k: best_of(lambda kw=kw: scan_committed(out, n, **kw), repeat) for k, kw in checks.items()}
        label = f"{name} {n}x{kb / 1024:.2f}MB"
        for k, t in times.items():
            rate = f"{nbytes / 1e6 / t:8.0f}" if k != "size" else f"{'-':>8s}"
            print(f"{label:22s} {k:16s} {1e3 * t:9.1f} {1e6 * t / n:9.1f} {rate} {t / times['size']:7.1f}x")
    return nbytes / 1e6 / times["sha256 threads"]


def write_table(root: Path, shard_kb: int, repeat: int) -> None:
    """``write_tar`` hashing as it writes against writing, then reading back to hash."""
    samples = samples_of(max(shard_kb, 4096) << 10)
    nbytes = sum(len(s[f]) for s in samples for f in FIELDS)
    t_new = best_of(lambda: write_tar(root / "new.tar", samples), repeat)
    t_old = best_of(lambda: reread_write_tar(root / "old.tar", samples), repeat)
    same = (root / "new.tar").read_bytes() == (root / "old.tar").read_bytes()
    print(f"\nwrite_tar of {nbytes / 1e6:.1f} MB (tar bytes identical: {same})")
    print(f"  hash while writing     {1e3 * t_new:8.1f} ms")
    print(f"  write, then re-read    {1e3 * t_old:8.1f} ms   ({t_old / t_new:.2f}x)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shards", type=int, default=2000, help="shards of the 'many' workload")
    p.add_argument("--shard-kb", type=int, default=256, help="size of each of those shards")
    p.add_argument("--repeat", type=int, default=3, help="best of this many runs")
    args = p.parse_args()
    print(f"{cpu_model()}, {os.cpu_count()} CPUs; hashing threads by default: {min(8, os.cpu_count() or 1)}")
    with tempfile.TemporaryDirectory(prefix="bench-verify-") as tmp:
        rate = scan_table(Path(tmp), args.shards, args.shard_kb, args.repeat)
        ms = SAMPLE_KB / 1e3 / rate * 1e3
        print(
            f"\nhashing a 512^2 sample's {SAMPLE_KB} KB at {rate:.0f} MB/s: {ms:.2f} ms, {100 * ms / BUILD_MS:.1f} % "
            f"of the {BUILD_MS} ms it cost to build; 2000 shards of 1000 such samples: {2e6 * ms / 1e3 / 60:.1f} min"
        )
        write_table(Path(tmp), args.shard_kb, args.repeat)


if __name__ == "__main__":
    main()
