"""Shards: the sample format, tar I/O, and the ledger of a build folder, in three modules.

- ``format``: the sample schema (``Schema``), each field's codec and member name, the file names
  below, ``ShardError``;
- ``tario``: the atomic, reproducible tar writer and the checked, streaming tar reader;
- ``ledger``: per-shard stats, the manifest, the wids index, the rejects log, resume scans and
  verification against the records.

Everything public is importable from ``s2pdata.shards``.

Consumes a sample dict of numpy arrays (from ``synth``) and produces WebDataset tar members;
reading goes the other way. It decides which fields a sample stores (``Schema``), each field's
codec and member name, and the file names in an output folder, listed below (the sources name
the files inside ``CACHE_DIR``). The field names are not private to it: ``synth``
makes the fields, and ``data``, ``inspect`` and ``train`` take them by name.

    DIR/dataset.json            config, seed, versions, schema, plan fingerprint, totals
    DIR/shard-000000.tar        samples; member ``{key}.{field}``, key without dots
    DIR/shard-000000.stats.json per-shard counts, reject reasons, bytes, timings (commit marker)
    DIR/shardindex.json         wids index
    DIR/rejects.jsonl           one line per bad input (key, path, reason, detail)
    DIR/pool/patch_pool.*       the patch pool the drafts paste from (``s2pdata.pool``)
    DIR/.s2pdata-cache/         the sources' caches: listings of folder URLs, tar indexes, metadata

A shard is committed when its stats file exists: the tar is written to ``.tmp``, fsynced and
renamed first, the stats file last. Tar headers carry a fixed mtime, owner and mode so the
same samples give the same bytes. The stats file records the tar's size and sha256 (hashed while
it is written); a resume, ``open_shards(verify=True)`` and ``python -m s2pdata.inspect --verify``
check a tar against them, and every read or decode error is a ``ShardError`` naming the shard.
"""

from .format import (
    _FIELD_TYPES,
    CACHE_DIR,
    COLOR_FORMATS,
    DATASET_JSON,
    INDEX_JSON,
    LOCK_FILE,
    MAX_SAMPLE_PIXELS,
    POOL_DIR,
    POOL_JSON,
    POOL_NPY,
    POOL_PARTS,
    REJECTS,
    SAMPLE_FIELDS,
    TAR_MTIME,
    Schema,
    ShardError,
    _field_type,
    decode_field,
    decode_image_field,
    decode_sample,
    dumps_json,
    encode_image,
    encode_sample,
    image_size,
    pool_chunk_name,
    pool_part_name,
    shard_name,
    stats_name,
    stats_path_of,
    tar_path_of,
)
from .ledger import (
    MANIFEST_TYPES,
    STATS_TYPES,
    VERIFY,
    ManifestError,
    build_files,
    commit_stats,
    committed_shards,
    damaged_summary,
    file_sha256,
    read_manifest,
    recorded_counts,
    remove_partials,
    scan_committed,
    shard_files,
    shard_paths,
    shard_record,
    stats_files,
    stats_problem,
    sum_stats,
    uncommit,
    verify_shard,
    verify_shards,
    write_index,
    write_rejects,
)
from .tario import MAX_MEMBER_BYTES, _tar_member, iter_tar, write_tar

__all__ = [
    "_field_type",
    "_FIELD_TYPES",
    "_tar_member",
    "build_files",
    "CACHE_DIR",
    "COLOR_FORMATS",
    "commit_stats",
    "committed_shards",
    "damaged_summary",
    "DATASET_JSON",
    "decode_field",
    "decode_image_field",
    "decode_sample",
    "dumps_json",
    "encode_image",
    "encode_sample",
    "file_sha256",
    "image_size",
    "INDEX_JSON",
    "iter_tar",
    "LOCK_FILE",
    "MANIFEST_TYPES",
    "ManifestError",
    "MAX_MEMBER_BYTES",
    "MAX_SAMPLE_PIXELS",
    "pool_chunk_name",
    "POOL_DIR",
    "POOL_JSON",
    "POOL_NPY",
    "pool_part_name",
    "POOL_PARTS",
    "read_manifest",
    "recorded_counts",
    "REJECTS",
    "remove_partials",
    "SAMPLE_FIELDS",
    "scan_committed",
    "Schema",
    "shard_files",
    "shard_name",
    "shard_paths",
    "shard_record",
    "ShardError",
    "stats_files",
    "stats_name",
    "stats_path_of",
    "stats_problem",
    "STATS_TYPES",
    "sum_stats",
    "TAR_MTIME",
    "tar_path_of",
    "uncommit",
    "VERIFY",
    "verify_shard",
    "verify_shards",
    "write_index",
    "write_rejects",
    "write_tar",
]
