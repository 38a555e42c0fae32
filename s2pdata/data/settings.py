"""The settings of the torch datasets and ``make_loader``: one frozen dataclass field per keyword argument.

Consumes nothing; produces the definition of every setting, used by ``s2pdata.data`` and
``s2pdata.data.loader``. ``StreamSettings`` (``DraftDataset``, ``RefineDataset``) and
``LoaderSettings`` (those and the DataLoader's: ``make_loader``) hold each setting's name, type,
default (``crop: int | None = 224``), one-line doc (a ``Doc`` in its ``Annotated`` type) and check
(``__post_init__``). The public callables take ``urls`` and ``**settings``; ``takes`` and
``init_takes`` give them the signature of a settings class (what ``help`` and ``inspect.signature``
show, and, through the decorator's ``ParamSpec`` type, what a type checker or editor reads) and
``documented`` writes its "Parameters" entries into their docstrings, so nothing repeats the list.
``from_kwargs`` turns keyword arguments into settings: an unknown name is a one-line TypeError
naming the closest known one. No torch here: ``s2pdata.data`` documents ``make_loader`` without it.
"""

from __future__ import annotations

import difflib
import inspect
import os
import sys
import textwrap
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields
from typing import Annotated, Any, Concatenate, Literal, ParamSpec, TypeVar

from .._check import check_choice, check_probability

Mode = Literal["resampled", "exact"]
Stage = Literal["draft", "refine"]
DraftStyle = Literal["paper", "model", "mix"]  # s2pdata.stages.drafts.DRAFT_STYLES
MODES: tuple[str, ...] = typing.get_args(Mode)
STAGES: tuple[str, ...] = typing.get_args(Stage)
DRAFT_STYLES: tuple[str, ...] = typing.get_args(DraftStyle)
Urls = str | os.PathLike | Iterable[str | os.PathLike]

URLS_DOC = (
    "A build folder (its ``shard-*.tar``), one tar, a glob pattern, or a list of those; local paths or URLs "
    "(``s3://bucket/run``, ``gs://``, ``hf://``, with ``storage_options``), whose tars are streamed in order "
    "with no local copy."
)
MARK = "{settings}"  # the docstring line that becomes the "Parameters" entries
P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")


@dataclass(frozen=True)
class Doc:
    """The doc of a setting, in its annotation: ``crop: Annotated[int | None, Doc("...")] = 224``.

    Kept in the type (PEP 727's form) rather than in the field's metadata so that the class body,
    and so every signature an editor shows, reads ``crop: int | None = 224``."""

    text: str


def doc_of(cls: Any, name: str) -> str:
    """The ``Doc`` text of the field ``name`` of the settings class ``cls``."""
    (doc,) = [m for m in typing.get_type_hints(cls, include_extras=True)[name].__metadata__ if isinstance(m, Doc)]
    return doc.text


def _check_ints(**values: tuple[object, int]) -> None:
    """Each ``name=(value, lowest)`` must be an int >= lowest."""
    for name, (value, lo) in values.items():
        if not isinstance(value, int) or value < lo:
            raise ValueError(f"{name} must be an int >= {lo}, got {value!r}")


def unknown_argument(caller: str, name: str, names: list[str]) -> str:
    """The one-line message for an unknown keyword argument ``name`` of ``caller``, which takes ``names``.

    The suggestion is the most similar of the known names that begin the given one or begin with it
    (``crop_size``: ``crop``), else of all the names (``difflib``)."""
    key = name.replace("-", "_").lower()
    starts = [n for n in names if key.startswith(n) or n.startswith(key)]
    close = difflib.get_close_matches(key, starts or names, n=1, cutoff=0.0 if starts else 0.6)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"{caller}() got an unknown keyword argument {name!r}{hint}; it takes {', '.join(names)}"


# -- signatures and docstrings from a settings class


def signature(cls: Any, *, urls: bool = True) -> inspect.Signature:
    """``(urls, *, <one keyword-only parameter per field of cls, with its type and default>)``."""
    hints = typing.get_type_hints(cls)
    params = [
        inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=f.default, annotation=hints[f.name])
        for f in fields(cls)
    ]
    if urls:
        params.insert(0, inspect.Parameter("urls", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Urls))
    return inspect.Signature(params)


def parameters_doc(cls: Any, indent: str = "", *, urls: bool = True) -> str:
    """The numpydoc "Parameters" entries of ``signature(cls)``: ``name : type, default value`` and
    the field's doc, wrapped to 100 columns, indented by ``indent``."""
    docs = {"urls": URLS_DOC} | {f.name: doc_of(cls, f.name) for f in fields(cls)}
    lines = []
    for p in signature(cls, urls=urls).parameters.values():
        default = "" if p.default is p.empty else f", default {p.default!r}"
        kind = inspect.formatannotation(p.annotation).replace("collections.abc.", "")
        lines.append(f"{indent}{p.name} : {kind}{default}")
        lines += textwrap.wrap(docs[p.name], 100, initial_indent=indent + "    ", subsequent_indent=indent + "    ")
    return "\n".join(lines)


def document(cls: Any, doc: str | None, *, urls: bool = True) -> str | None:
    """``doc`` with its ``{settings}`` line replaced by ``parameters_doc(cls)`` at that line's indent
    (as it is under ``python -OO``, which drops docstrings)."""
    if sys.flags.optimize >= 2:
        return doc
    if doc is None or MARK not in doc:
        raise ValueError(f"the docstring must have a line {MARK!r} where the settings' entries go")
    lines = doc.splitlines()
    for i, line in enumerate(lines):
        if line.strip() == MARK:
            lines[i] = parameters_doc(cls, line[: len(line) - len(line.lstrip())], urls=urls)
    return "\n".join(lines)


def takes(
    cls: Callable[P, object], *, doc: str | None = None
) -> Callable[[Callable[..., R]], Callable[Concatenate[Urls, P], R]]:
    """Decorator: a function ``f(urls, **settings)`` gets the signature of ``cls`` (``signature``),
    which ``help`` and ``inspect`` show and a static type checker reads from this decorator's type,
    and its docstring's ``{settings}`` line becomes the entries of ``urls`` and the fields (or its
    docstring becomes ``doc``, one made so already). Returns ``f``."""

    def decorate(f: Callable[..., R]) -> Callable[Concatenate[Urls, P], R]:
        f.__signature__ = signature(cls)  # type: ignore[attr-defined]
        f.__doc__ = document(cls, f.__doc__) if doc is None else doc
        return f  # type: ignore[return-value]

    return decorate


def init_takes(cls: Callable[P, object]) -> Callable[[Callable[..., None]], Callable[Concatenate[Any, Urls, P], None]]:
    """``takes`` for a class's ``__init__(self, urls, **settings)``: the class's signature becomes that
    of ``cls``; the class's docstring is filled by ``documented``."""

    def decorate(f: Callable[..., None]) -> Callable[Concatenate[Any, Urls, P], None]:
        sig = signature(cls)
        self = inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)
        f.__signature__ = sig.replace(parameters=[self, *sig.parameters.values()])  # type: ignore[attr-defined]
        return f  # type: ignore[return-value]

    return decorate


def documented(settings: Any, *, urls: bool = True) -> Callable[[T], T]:
    """Class decorator: the ``{settings}`` line of the class's docstring becomes the entries of ``settings``."""

    def decorate(cls: T) -> T:
        cls.__doc__ = document(settings, cls.__doc__, urls=urls)
        return cls

    return decorate


def _self_documented(cls: T) -> T:
    """Class decorator of a settings class: its ``{settings}`` line becomes its own fields' entries, and
    its signature shows their types evaluated (not the strings the dataclass's ``__init__`` holds)."""
    cls.__signature__ = signature(cls, urls=False)  # type: ignore[attr-defined]
    return documented(cls, urls=False)(cls)  # type: ignore[arg-type]


# -- the settings


@_self_documented
@dataclass(frozen=True, kw_only=True)
class StreamSettings:
    """Settings of a ``ShardStream`` (``DraftDataset``, ``RefineDataset``); checked when made.

    Every field is a keyword argument of the datasets and of ``make_loader``, with the same name,
    type, default and meaning.

    Parameters
    ----------
    {settings}

    Raises
    ------
    ValueError
        A value out of its range, naming the setting and the value.
    """

    batch_size: Annotated[int, Doc("Samples per batch.")] = 16
    mode: Annotated[
        Mode,
        Doc(
            "``resampled``: an infinite stream, each (rank, worker) slot drawing shards with replacement from its "
            "own (seed, epoch, slot) generator; count steps. ``exact``: the shard order shuffled with (seed, epoch) "
            "and slot s reading shards s, s + slots, ...: every sample at most once per epoch over all ranks and "
            "workers (exactly once with ``drop_last=False``); needs at least ``world_size * max(1, num_workers)`` "
            "shards."
        ),
    ] = "resampled"
    world_size: Annotated[
        int,
        Doc(
            "Processes of a distributed run. Each reads its own shards: the (rank, worker) slot "
            "``rank * num_workers + worker`` of ``world_size * num_workers``."
        ),
    ] = 1
    rank: Annotated[int, Doc("This process's place in the run, ``0 <= rank < world_size``.")] = 0
    epoch: Annotated[int, Doc("With ``seed`` and the sample key it decides every draw; ``set_epoch`` changes it.")] = 0
    seed: Annotated[
        int,
        Doc(
            "The run's seed: shard order, shuffle buffer, crops, flips and online hints and drafts all come from "
            "``sample_rng(seed, key, what, epoch)``, so they do not depend on worker count or order."
        ),
    ] = 0
    crop: Annotated[
        int | None,
        Doc(
            "Side of the random square crop, the same window for every field (reflect-padded when a picture is "
            "smaller). None keeps whole images: a batch's pictures must then have one size (or ``batch_size=1``)."
        ),
    ] = 224
    flip: Annotated[bool, Doc("Random horizontal flip, the same for every field.")] = True
    online_hints: Annotated[
        bool,
        Doc(
            "Sample the hints afresh each epoch on the final crop (``s2pdata.stages.hints``) instead of reading "
            "the stored hint map."
        ),
    ] = False
    hint_radius: Annotated[
        int | None,
        Doc(
            "Online hints are ``(2 * hint_radius + 1)^2`` squares. None: 1 for the draft stage, 2 (5x5, the "
            "paper's) for refine."
        ),
    ] = None
    hint_p: Annotated[
        float | None,
        Doc(
            "Stop probability of the online hint sampler, in (0, 1]: smaller gives more hints. None: the "
            "sampler's 1/8 (7 hints on average)."
        ),
    ] = None
    shuffle_buffer: Annotated[int, Doc("Samples held for shuffling (0: file order).")] = 256
    skip_batches: Annotated[
        int,
        Doc(
            "Skip this many of the loader's batches at the start, to resume mid-epoch (the workers skip whole "
            "rounds of batches without decoding them)."
        ),
    ] = 0
    num_workers: Annotated[
        int | None,
        Doc(
            "The DataLoader's worker count, to check now that exact mode has a shard for every slot. None: "
            "checked when iterated."
        ),
    ] = None
    draft_pool: Annotated[
        str | os.PathLike | None,
        Doc(
            "Refine stage, online drafts: the patch pool folder to paste from. None: the build's own ``pool/`` "
            "when it is a local folder, else each sample's own regions."
        ),
    ] = None
    online_drafts: Annotated[
        bool,
        Doc(
            "Refine stage: a fresh synthetic draft per (seed, key, epoch) (``synth.online_sample``) even where "
            "the shards store ``draftK`` maps (shards without them always get online drafts)."
        ),
    ] = False
    draft_style: Annotated[
        DraftStyle,
        Doc(
            "Refine stage, online drafts: ``paper`` (pasted patches, warp, sprays), ``model`` (a draft network's "
            "mistakes: grey, a cast, blurred, bleeding, wrong hues; ``s2pdata.stages.mistakes``) or ``mix`` "
            "(``model`` with probability ``draft_mix``), as the build's ``--draft-style``."
        ),
    ] = "paper"
    draft_mix: Annotated[
        float, Doc("Refine stage, online drafts with ``draft_style='mix'``: the share of model-family drafts, 0..1.")
    ] = 0.5
    verify: Annotated[
        bool,
        Doc(
            "Check every tar, as the worker streams it (no extra read), against the size and sha256 its stats "
            "file or ``shardindex.json`` records (looked up at once: a shard without a record is an error). A tar "
            "that differs raises ``ShardError`` naming it when the read reaches its end, before its last sample "
            "is yielded; batches made before then may hold its other samples. Without it a damaged tar header or "
            "a member that does not decode still raises ``ShardError`` naming the shard (and key)."
        ),
    ] = False
    storage_options: Annotated[
        dict | None,
        Doc(
            "Options of the filesystem of URLs in ``urls`` (e.g. ``{'endpoint_url': ...}`` for ``s3://``; "
            "``s2pdata.storage``), JSON values so that they reach the workers. Credentials otherwise come from "
            "the environment."
        ),
    ] = None

    def __post_init__(self) -> None:
        check_choice("mode", self.mode, MODES)
        check_choice("draft_style", self.draft_style, DRAFT_STYLES)
        check_probability("draft_mix", self.draft_mix)
        _check_ints(
            batch_size=(self.batch_size, 1),
            world_size=(self.world_size, 1),
            rank=(self.rank, 0),
            shuffle_buffer=(self.shuffle_buffer, 0),
            skip_batches=(self.skip_batches, 0),
            epoch=(self.epoch, 0),
        )
        if self.rank >= self.world_size:
            raise ValueError(f"rank must be < world_size ({self.world_size}), got {self.rank}")
        if self.crop is not None and (not isinstance(self.crop, int) or self.crop < 1):
            raise ValueError(f"crop must be a positive int or None (whole images), got {self.crop!r}")
        if self.hint_radius is not None:
            _check_ints(hint_radius=(self.hint_radius, 0))
        if self.hint_p is not None and not (isinstance(self.hint_p, float) and 0.0 < self.hint_p <= 1.0):
            raise ValueError(f"hint_p must be a float in (0, 1] or None (the sampler's 1/8), got {self.hint_p!r}")
        if self.num_workers is not None:
            _check_ints(num_workers=(self.num_workers, 0))

    @classmethod
    def from_kwargs(cls, caller: str, kwargs: dict):
        """``cls(**kwargs)``, with an unknown name a one-line TypeError for ``caller``'s user."""
        names = [f.name for f in fields(cls)]
        for name in kwargs:
            if name not in names:
                raise TypeError(unknown_argument(caller, name, ["urls", *names]))
        return cls(**kwargs)

    def stream(self) -> dict:
        """The ``StreamSettings`` fields of these settings, as keyword arguments of a dataset."""
        return {f.name: getattr(self, f.name) for f in fields(StreamSettings)}


@_self_documented
@dataclass(frozen=True, kw_only=True)
class LoaderSettings(StreamSettings):
    """Settings of ``make_loader``: the stream's (``StreamSettings``), the stage, and the DataLoader's.

    Parameters
    ----------
    {settings}

    Raises
    ------
    ValueError
        A value out of its range, naming the setting and the value.
    """

    num_workers: Annotated[
        int, Doc("DataLoader worker processes, each a stream slot (0: the batches are made in this process).")
    ] = 4
    stage: Annotated[
        Stage,
        Doc(
            "``draft``: batches of ``color``, ``sketch``, ``hint`` (``DraftDataset``); ``refine`` adds ``draft`` "
            "(``RefineDataset``)."
        ),
    ] = "draft"
    drop_last: Annotated[
        bool,
        Doc(
            "The full-batch rule. Every batch holds ``batch_size`` samples whatever the shard sizes and worker "
            "count: a resampled stream never runs short; in exact mode each worker carries its remainder across "
            "its shards, the workers' short last batches are joined in arrival order into full batches, and the "
            "rank's final remainder (< ``batch_size``) is dropped. False yields it as one last short batch. True "
            "refuses an exact epoch shorter than one batch."
        ),
    ] = True
    pin_memory: Annotated[
        bool | None, Doc("Pin batches in page-locked memory. None: pinned when CUDA is available.")
    ] = None
    prefetch_factor: Annotated[int | None, Doc("Batches each worker makes ahead. None: 2.")] = None
    keep_heap: Annotated[
        bool,
        Doc(
            "Raise glibc's mmap and trim thresholds (``keep_heap()``: 32 MiB, 128 MiB) in the processes that make "
            "batches (the workers; this process with ``num_workers=0``), so batch-sized arrays reuse heap memory "
            "instead of faulting in fresh pages. False leaves the allocator alone."
        ),
    ] = True

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice("stage", self.stage, STAGES)
        _check_ints(num_workers=(self.num_workers, 0))
