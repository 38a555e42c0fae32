"""Fuzz the decoders: mutated PNG, JPEG, WebP, GIF, TIFF, BMP and AVIF files through ``pngread.read_png``
and ``decode.decode_image``, checked against Pillow; prints the totals per format (for RESULTS). With
``--shard-cases N``, also N mutated shard tars through ``iter_tar`` and N shards with one mutated member
through ``decode_sample``, ``open_shards`` and the torch loader (``tests/test_hostile_shards_fuzz.py``).

    python benchmarks/fuzz.py --cases 20000 --other-cases 1000 --shard-cases 5000
    python benchmarks/fuzz.py --replay png:1234 --seed 0 --write case.png   # one case again

The fuzzers themselves (seed files, mutations, the checks) live in ``tests/badfiles.py``, shared with
``tests/test_fuzz_decode.py``, which runs a few thousand of the same cases in CI. A case is an escape
when read_png raises anything but ValueError or decode_image anything but DecodeError (or a case runs
past ``FUZZ_CASE_SECONDS``); a mismatch when read_png's pixels differ from Pillow's in the file's mode,
or decode_image's fast path from its own Pillow path, where both accept the file. "firewalled" counts the
rejects decode_image's firewall made of another exception (each one stopped a build before issue 21);
"lenient" the files s2pdata decodes although Pillow refuses them (a damaged ancillary chunk the fast
path ignores).
The run is capped at ``--as-limit-gib`` of address space, so an unbounded allocation is a MemoryError
escape, not a swamped machine. Exits 1 when any case escaped or mismatched.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.badfiles import FUZZ_FORMATS, check_case, fuzz, fuzz_case, fuzz_seeds  # noqa: E402


def _table(totals: dict, seconds: dict) -> str:
    """Markdown table of the totals, one row per format and a total row."""
    rows = [
        "| format | cases | accepted | rejected (by reason) | of them firewalled | read_png pixels / declined / "
        "refused | compared with Pillow | lenient | escapes | mismatches | s |",
        "| --- | ---: | ---: | --- | ---: | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    sums = {k: 0 for k in ("cases", "accepted", "firewalled", "compared", "lenient", "escapes", "mismatches")}
    for fmt, t in totals.items():
        reasons = ", ".join(f"{r} {n}" for r, n in sorted(t["rejected"].items(), key=lambda kv: -kv[1])) or "-"
        p = t["pngread"]
        pngread = f"{p.get('pixels', 0)} / {p.get('declined', 0)} / {p.get('refused', 0)}"
        rows.append(
            f"| {fmt} | {t['cases']} | {t['accepted']} | {reasons} | {t['firewalled']} | {pngread} | {t['compared']} | "
            f"{t['lenient']} | {len(t['escapes'])} | {len(t['mismatches'])} | {seconds[fmt]:.0f} |"
        )
        for k in sums:
            sums[k] += len(t[k]) if isinstance(t[k], list) else t[k]
    rows.append(
        f"| all | {sums['cases']} | {sums['accepted']} | {sums['cases'] - sums['accepted'] - sums['escapes']} | "
        f"{sums['firewalled']} | | "
        f"{sums['compared']} | {sums['lenient']} | {sums['escapes']} | {sums['mismatches']} | "
        f"{sum(seconds.values()):.0f} |"
    )
    return "\n".join(rows)


def _fuzz_shards(cases: int, seed: int) -> list:
    """Run ``cases`` tar-header and ``cases`` member mutations; print their outcomes; return the escapes."""
    import tempfile

    from tests.test_hostile_shards_fuzz import run_fuzz

    escapes = []
    for kind in ("tar", "member"):
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            result = run_fuzz(kind, range(seed * cases, (seed + 1) * cases), Path(tmp))
        outcomes = {}
        for key, n in result["counts"].items():
            outcome = key.rsplit(":", 1)[1]
            outcomes[outcome] = outcomes.get(outcome, 0) + n
        print(
            f"\nshard {kind}: {cases} cases in {time.perf_counter() - t0:.0f} s; outcomes "
            f"{dict(sorted(outcomes.items()))}; escapes {len(result['escapes'])}"
        )
        escapes += [(f"shard-{kind}", seed, s, f"{m}: {msg}") for s, m, msg in result["escapes"]]
    return escapes


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--cases", type=int, default=20_000, help="PNG cases (default 20000)")
    ap.add_argument("--other-cases", type=int, default=None, help="cases per other format (default: --cases / 5)")
    ap.add_argument("--formats", default=",".join(FUZZ_FORMATS), help=f"comma-separated, of {','.join(FUZZ_FORMATS)}")
    ap.add_argument("--seed", type=int, default=0, help="run seed: the same seed gives the same cases (default 0)")
    ap.add_argument("--as-limit-gib", type=float, default=8.0, help="address-space cap of this process (default 8)")
    ap.add_argument("--replay", metavar="FORMAT:INDEX", help="check one case and print its outcome")
    ap.add_argument("--write", metavar="PATH", help="with --replay: also write the case's bytes here")
    ap.add_argument("--json", metavar="PATH", help="also write the totals, with every escape and mismatch, here")
    ap.add_argument("--shard-cases", type=int, default=0, help="mutated shard tars, and shard members (default 0)")
    ap.add_argument("--show-stderr", action="store_true", help="keep the decoders' C-level warnings (libtiff...)")
    args = ap.parse_args(argv)
    formats = [f for f in args.formats.split(",") if f]
    if bad := [f for f in formats if f not in FUZZ_FORMATS]:
        ap.error(f"--formats: unknown {bad}; choose from {','.join(FUZZ_FORMATS)}")
    if args.cases < 0 or (args.other_cases is not None and args.other_cases < 0):
        ap.error(f"--cases and --other-cases must be >= 0, got {args.cases}, {args.other_cases}")
    limit = int(args.as_limit_gib * (1 << 30))
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    if args.replay:
        fmt, _, index = args.replay.partition(":")
        if fmt not in FUZZ_FORMATS or not index.isdigit():
            ap.error(f"--replay takes FORMAT:INDEX with FORMAT one of {','.join(FUZZ_FORMATS)}, got {args.replay!r}")
        data = fuzz_case(fmt, args.seed, int(index))
        if args.write:
            Path(args.write).write_bytes(data)
        print(
            json.dumps({"format": fmt, "seed": args.seed, "index": int(index), "bytes": len(data), **check_case(data)})
        )
        return 0
    other = args.cases // 5 if args.other_cases is None else args.other_cases
    if not args.show_stderr:  # libtiff and libjpeg print a line per damaged file to fd 2
        quiet = os.open(os.devnull, os.O_WRONLY)
        saved = os.dup(2)
        os.dup2(quiet, 2)
    totals, seconds = {}, {}
    try:
        for fmt in formats:
            if not fuzz_seeds(fmt):
                print(f"{fmt}: skipped (this Pillow cannot write it)", file=sys.stdout)
                continue
            t0 = time.perf_counter()
            totals.update(fuzz({fmt: args.cases if fmt == "png" else other}, seed=args.seed))
            seconds[fmt] = time.perf_counter() - t0
            print(f"{fmt}: {totals[fmt]['cases']} cases in {seconds[fmt]:.0f} s", flush=True)
    finally:
        if not args.show_stderr:
            os.dup2(saved, 2)
    print(f"\nfuzz.py --cases {args.cases} --other-cases {other} --seed {args.seed}\n")
    print(_table(totals, seconds))
    bad = [(fmt, *e) for fmt, t in totals.items() for e in t["escapes"] + t["mismatches"]]
    if args.shard_cases:
        bad += _fuzz_shards(args.shard_cases, args.seed)
    for fmt, seed, index, what in bad[:20]:
        print(f"  {fmt}:{index} (seed {seed}): {what}  [replay: python benchmarks/fuzz.py --replay {fmt}:{index}]")
    if args.json:
        Path(args.json).write_text(json.dumps({"seed": args.seed, "totals": totals, "seconds": seconds}, indent=1))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
