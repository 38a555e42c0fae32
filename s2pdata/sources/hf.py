"""Hugging Face ``datasets`` on local disk -> items keyed ``hf-{row:09d}``; bytes never decoded.

Consumes ``hf:PATH`` where PATH is a local imagefolder, a folder or file of parquet (an image
column of ``{bytes, path}`` structs or ``Image`` feature), a folder of webdataset tars, or a
``save_to_disk`` folder of a ``Dataset`` or a ``DatasetDict`` (``--hf-split`` picks the split).
The image column is read with ``Image(decode=False)`` so rows give the encoded bytes (or a path)
and the decode stage sees the same bytes as for any source. A row that gives a path is read
through the one guarded read (``s2pdata._safeio``) beneath the dataset's folder: a relative path is
relative to that folder, never to the working directory, and a path or link leaving it, a FIFO, a
device or a file over ``MAX_BYTES`` is refused with its reason.
``HF_DATASETS_OFFLINE`` / ``HF_HUB_OFFLINE`` are set before ``datasets`` is imported: nothing
touches the network. Produces items whose meta is ``{"source": "hf", "row", "path"}``.

``datasets`` is imported only inside functions (it is heavy); its Arrow cache goes into the
build folder's ``.s2pdata-cache/hf``.
"""

from __future__ import annotations

import os
from pathlib import Path

from .._safeio import TOO_LARGE, ReadRefused, read_beneath
from .base import MAX_BYTES, Item

BUILDERS = ("imagefolder", "parquet", "webdataset", "disk")
_IMAGE_NAMES = ("image", "img", "jpg", "jpeg", "png", "webp")
_OPEN: dict = {}  # per process: (path, split, cache) -> (dataset, column)


def _datasets():
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        import datasets
    except ImportError as exc:
        raise ImportError("--src hf:PATH needs Hugging Face datasets: pip install 's2pdata[hf]'") from exc
    try:
        datasets.config.HF_DATASETS_OFFLINE = True
        datasets.config.HF_HUB_OFFLINE = True
    except AttributeError:
        pass
    datasets.disable_progress_bars()
    return datasets


def probe_builder(path: str | Path) -> str:
    """Which loader reads ``path``: ``disk``, ``parquet``, ``webdataset`` or ``imagefolder``."""
    p = Path(path)
    if p.is_file():
        if p.suffix == ".parquet":
            return "parquet"
        if p.suffix == ".tar":
            return "webdataset"
        raise ValueError(f"--src hf:{path}: a single file must be .parquet or .tar")
    if not p.is_dir():
        raise ValueError(f"--src hf:{path} does not exist; give a local dataset folder (no downloads)")
    if (p / "state.json").is_file() and (p / "dataset_info.json").is_file():
        return "disk"
    if (p / "dataset_dict.json").is_file():  # DatasetDict.save_to_disk: one such folder per split
        return "disk"
    if any(p.rglob("*.parquet")):
        return "parquet"
    if any(p.rglob("*.tar")):
        return "webdataset"
    return "imagefolder"


def _image_column(ds) -> str:
    datasets = _datasets()
    feats = ds.features
    for name, f in feats.items():
        if isinstance(f, datasets.Image):
            return name
    for name in list(_IMAGE_NAMES) + list(feats):
        f = feats.get(name)
        if isinstance(f, dict) and "bytes" in f:
            return name
        if name in _IMAGE_NAMES and getattr(f, "dtype", None) == "binary":
            return name
    raise ValueError(
        f"no image column found among {list(feats)}; expected an Image feature or "
        "a {bytes, path} struct / binary column named one of " + ", ".join(_IMAGE_NAMES)
    )


def open_dataset(path: str, split: str, cache_dir: str | None):
    """Load (once per process) the dataset and the name of its image column, decoding off."""
    k = (path, split, cache_dir)
    if k not in _OPEN:
        datasets = _datasets()
        builder = probe_builder(path)
        if builder == "disk":
            ds = datasets.load_from_disk(path)
            if isinstance(ds, datasets.DatasetDict):
                if split not in ds:
                    raise ValueError(
                        f"--hf-split {split!r}: hf:{path} is a DatasetDict whose splits are "
                        f"{', '.join(sorted(ds))}; give one of them"
                    )
                ds = ds[split]
        else:
            p = Path(path)
            kwargs = {"data_files": {split: str(p)}} if p.is_file() else {"data_dir": str(p)}
            if builder == "parquet" and p.is_dir():
                kwargs = {"data_files": {split: sorted(str(f) for f in p.rglob("*.parquet"))}}
            ds = datasets.load_dataset(builder, split=split, cache_dir=cache_dir, **kwargs)
        col = _image_column(ds)
        if isinstance(ds.features[col], datasets.Image):
            ds = ds.cast_column(col, datasets.Image(decode=False))
        _OPEN[k] = (ds, col)
    return _OPEN[k]


class HFSource:
    """A local Hugging Face dataset (see the module docstring).

    Parameters
    ----------
    path : path
        What follows ``hf:``.
    split : str
    cache_dir : path or None
        Arrow cache folder (``None``: ``datasets``' default).
    """

    def __init__(self, path, *, split: str = "train", cache_dir=None):
        self.path = str(Path(path).resolve())
        self.split = split
        self.builder = probe_builder(self.path)
        self.cache_dir = str(cache_dir) if cache_dir is not None else None
        self._state = None

    def __getstate__(self):
        return {**self.__dict__, "_state": None}

    def _get(self):
        if self._state is None:
            import pyarrow.compute as pc

            ds, col = open_dataset(self.path, self.split, self.cache_dir)
            column = ds.data.column(col)  # Arrow: the paths are read without touching the bytes
            names = column.type.names if hasattr(column.type, "names") else []
            if "path" in names:
                paths = pc.struct_field(column, "path").to_pylist()
            elif "__key__" in ds.column_names:
                paths = [f"{k}.{col}" for k in ds["__key__"]]
            else:
                paths = [None] * len(ds)
            # "" for a row without a file name: one type per key for Hugging Face's schema inference
            items = [Item(f"hf-{i:09d}", i, {"source": "hf", "row": i, "path": p or ""}) for i, p in enumerate(paths)]
            self._state = {
                "items": items,
                "column": col,
                "fingerprint": getattr(ds, "_fingerprint", None),
                "rows": len(ds),
            }
        return self._state

    def items(self) -> list[Item]:
        return list(self._get()["items"])

    def spec(self) -> dict:
        st = self._get()
        return {
            "kind": "hf",
            "path": self.path,
            "builder": self.builder,
            "split": self.split,
            "listing": {"count": st["rows"], "fingerprint": st["fingerprint"]},
        }

    @property
    def root(self) -> str:
        """The folder a row's path must lie in: the dataset folder (a single file's own folder)."""
        return self.path if Path(self.path).is_dir() else str(Path(self.path).parent)

    def read(self, item: Item) -> bytes:
        ds, col = open_dataset(self.path, self.split, self.cache_dir)
        value = ds[int(item.locator)][col]
        if isinstance(value, dict) and value.get("bytes") is None and value.get("path"):
            # a path from the data itself: read beneath the dataset folder only, whatever it says
            return read_beneath(self.root, str(value["path"]), max_bytes=MAX_BYTES)
        if isinstance(value, dict):
            value = value.get("bytes")
        if isinstance(value, (bytes, bytearray)):
            if len(value) > MAX_BYTES:  # the same cap as a file's, though Arrow already holds these
                raise ReadRefused(TOO_LARGE, f"row {item.locator}", f"{len(value)} bytes > {MAX_BYTES}")
            return bytes(value)
        raise OSError(f"row {item.locator} of {self.path} has no image bytes or path in column {col!r}")

    def check_pixels(self, color) -> str | None:
        return None  # pixel filters: wrap in sources.filters.FilteredSource

    def summary(self) -> str:
        st = self._get()
        return (
            f"source   hugging face {self.builder} ({self.split} split, column {st['column']!r}, "
            f"decode off, offline): {self.path}\nlisted   {st['rows']} rows"
        )
