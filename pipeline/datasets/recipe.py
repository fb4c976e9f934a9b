"""What a dataset is, declared once: the recipe that the CLI, the reports and the demo are built from.

A recipe names a dataset, says what kind of data it gives (``text``: token streams; ``pairs``: images
with texts; ``labels``: images with a class), and lists its stages. A stage is a function that runs
it, the dataclass of its own options (each field carries its help text and bounds, so the command
line is generated and no click code lives in the core), the common options it takes, and examples.
Options shared by many datasets (``--data-dir``, ``--workers``, ``--mirror``, ``--limit``,
``--tokenizer``) are declared once in :data:`COMMON` and mean the same everywhere.

This module is imported by ``vlprep --help``: it and every recipe module import nothing heavy at
module level (no numpy, PIL, tiktoken); stage functions import their engine when they run.
"""
from __future__ import annotations

import dataclasses
import importlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Literal, Mapping

from ..layout import DEFAULT_DATA_DIR, Layout

if TYPE_CHECKING:
    from ..sinks.features import SampleSchema
    from ..sinks.folder import About
    from ..sinks.manifests import Schema

Kind = Literal["text", "pairs", "labels"]


@dataclass(frozen=True)
class Opt:
    """How one option field looks on the command line. ``type`` is what the value is parsed as."""

    help: str
    type: Any = str
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] = ()
    metavar: str | None = None
    negatable: bool = False
    repeat: bool = False
    aliases: tuple[str, ...] = ()
    """Older names still accepted (hidden from --help), e.g. ``--count`` for ``--limit``."""
    envvar: str | None = None
    parse: Callable[[Any], Any] | None = None
    """Turns the text given into the field's value; raise ValueError with a message to refuse it."""
    flag_name: str | None = None
    """The option's name when it is not the field's (``dict_path`` → ``--dict``)."""
    must_exist: bool = False
    show_default: bool = True


def option(default: Any, help: str, **how: Any) -> Any:
    """A dataclass field that is also a command-line option (see :class:`Opt` for ``how``)."""
    return field(default=default, metadata={"opt": Opt(help, **how)})


def checked(f: dataclasses.Field, value: Any) -> Any:
    """``value`` for option field ``f`` as the command line would take it: text parsed by the field's
    parser, choices and bounds held; raise ValueError with the reason otherwise (for Python callers,
    which the command line's own checks do not reach)."""
    how = opt_of(f)
    if how is None or value is None:
        return value
    if how.repeat and not isinstance(value, (list, tuple)):
        value = (value,)
    values = tuple(value) if how.repeat else (value,)
    out = []
    for one in values:
        if isinstance(one, (str, Path)) and not str(one).strip():
            raise ValueError(f"{flag_of(f)}: an empty value is not allowed")
        if how.parse is not None and isinstance(one, str):
            try:
                one = how.parse(one)
            except ValueError as exc:
                raise ValueError(f"{flag_of(f)}: {exc}") from None
        if how.choices and one not in how.choices:
            raise ValueError(f"{flag_of(f)}: {one!r} is not one of {', '.join(how.choices)}")
        if isinstance(one, (int, float)) and not isinstance(one, bool):
            if (how.low is not None and one < how.low) or (how.high is not None and one > how.high):
                bounds = [f"at least {how.low}"] * (how.low is not None) + [f"at most {how.high}"] * (how.high is not None)
                raise ValueError(f"{flag_of(f)}: {one} is not {' and '.join(bounds)}")
        out.append(Path(one) if how.type is Path and isinstance(one, str) else one)
    return tuple(dict.fromkeys(out)) if how.repeat else out[0]


def opt_of(f: dataclasses.Field) -> Opt | None:
    return f.metadata.get("opt")


def flag_of(f: dataclasses.Field) -> str:
    how = opt_of(f)
    return "--" + ((how.flag_name if how and how.flag_name else f.name).replace("_", "-"))


@dataclass(frozen=True)
class Common:
    """Options that many stages take, declared once. A stage lists the ones it uses in ``Stage.common``;
    ``data_dir`` is taken by every stage."""

    data_dir: Path = option(Path(DEFAULT_DATA_DIR), "Root of raw/, work/ and out/.", type=Path,
                            envvar="VLPREP_DATA")
    workers: int = option(os.cpu_count() or 1, "Worker processes. The output is identical for every value.",
                          type=int, low=1)
    mirror: str | None = option(None, "Local folder or http(s) base URL holding the dataset's files at their "
                                "published paths (optionally with a SHA256SUMS at its root).",
                                metavar="DIR_OR_URL")
    limit: int | None = option(None, "Only the first N items (a trial).", type=int, low=1)
    tokenizer: str | None = option(None, "GPT-2 BPE implementation; the ids are identical for both. Default: "
                                   "gigatoken (several times faster) when installed, else tiktoken (the "
                                   "reference).", choices=("gigatoken", "tiktoken"))
    retry_budget: float = option(300.0, "Most seconds spent retrying one file (waits and failed tries) from a mirror "
                                 "or a published URL; hub downloads retry as huggingface_hub does (5 tries).",
                                 type=float, low=0, metavar="SECONDS", envvar="VLPREP_RETRY_BUDGET")
    idle_timeout: float = option(60.0, "Cut a mirror or URL download silent, or slower than 1 KiB/s, for this long.",
                                 type=float, low=1, metavar="SECONDS", envvar="VLPREP_IDLE_TIMEOUT")


COMMON_FIELDS = {f.name: f for f in dataclasses.fields(Common)}
FETCH_COMMON = ("mirror", "retry_budget", "idle_timeout")
"""What every fetch takes: where from, and how long to keep trying."""


@dataclass(frozen=True)
class Limit:
    """What ``--limit`` counts in one stage, and its default (None: no limit)."""

    help: str
    default: int | None = None
    high: int | None = None


@dataclass(frozen=True)
class Run:
    """What a stage function gets besides its own options: where the data is, the common options, and
    how to print a line of its summary."""

    dataset: str
    layout: Layout
    common: Common
    say: Callable[[str], None] = print

    def say_built(self, lines: list[str], written: str = "", folder: str | None = None) -> None:
        """What a building stage prints: its table, then where it wrote (``out/<folder>/`` + ``written``;
        the folder is the dataset's unless a variant has its own)."""
        for line in lines:
            self.say(line)
        self.say(f"written: {self.layout.out(folder or self.dataset)}/{written}")

    def say_fetch(self, report: Any, official: str) -> None:
        """A fetch's summary: where from (``--mirror``, or ``official`` with ``{commit}`` filled in),
        what was fetched or kept, how each file was checked."""
        from ..redact import redact_url

        mirror = self.common.mirror
        origin = f"mirror {redact_url(mirror)}" if mirror else official.format(commit=report.commit)
        for line in report.summary(self.dataset, origin, self.layout.raw(self.dataset)):
            self.say(line)


@dataclass(frozen=True)
class Stage:
    """One stage of one dataset.

    ``run`` is called as ``run(run: Run, options)`` and prints its summary through ``run.say``; it
    lives in the recipe module and imports its engine when called (so ``--help`` stays light).
    ``summary`` is the one-line help of ``vlprep STAGE DATASET``; ``details`` follows it.
    """

    run: Callable[[Run, Any], None]
    options: type
    summary: str
    examples: tuple[str, ...]
    common: tuple[str, ...] = ()
    details: str = ""
    limit: Limit | None = None
    aliases: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """Older names of common options in this stage, still accepted and hidden from --help
    (``{"limit": ("--count",)}``)."""

    def common_values(self, given: Mapping[str, Any]) -> dict[str, Any]:
        """The common options of this stage among ``given``, with ``--limit`` at this stage's default
        when not given and held to this stage's bound (ValueError past it)."""
        chosen = {name: given[name] for name in self.common if name in given}
        if self.limit is not None:
            if chosen.get("limit") is None:
                chosen["limit"] = self.limit.default
            elif self.limit.high is not None and chosen["limit"] > self.limit.high:
                raise ValueError(f"--limit: {chosen['limit']} is over {self.limit.high}")
        return chosen


@dataclass(frozen=True)
class Manifest:
    """The used-ID manifest a dataset writes: file name pattern, columns with their types (a
    ``sinks.manifests.Schema``, declared there once), and what it lists."""

    pattern: str
    header: "Schema"
    description: str
    rebuild: str = ""
    """A sentence for the manifests' README when the manifest rebuilds the data exactly."""
    build: Callable[[Layout], Path] | None = None
    """Writes the manifest at ``manifest build`` time (from stats.json); None when the stage that
    builds the dataset writes it."""

    @property
    def numeric_key(self) -> bool:
        """Whether the first column sorts as a number (CC3M rows) or as text (ids zero-padded to a
        fixed width, file names): its declared type says."""
        return self.header.columns[0].dtype == "int64"


@dataclass(frozen=True)
class Recipe:
    """A dataset: name, title, kind, stages, splits, manifest and demo step."""

    name: str
    title: str
    kind: Kind
    stages: Mapping[str, Stage]
    builder: str
    """The stage that writes ``out/<name>`` (``binarize``, ``shard``, or ``fetch`` for a web crawl)."""
    manifest: Manifest
    demo: str
    """``"module:function(layout, workers, say) -> list[Path]"`` in the samples package: builds this
    dataset's sample, runs its stages on it, returns what it wrote."""
    summary: Callable[[dict], list[str]]
    """The table ``vlprep stats`` prints from the dataset's stats.json."""
    splits: tuple[str, ...] = ()
    default_split: str | None = None
    pretraining_split: str | None = None
    """The split a pretraining run reads, counted once in the Table 1 total."""
    sample: SampleSchema | Mapping[str, SampleSchema] | None = None
    """The members and json fields of every sample the dataset writes (by variant when its variants'
    samples differ: VG's regions and concat); the dataset card, ``croissant.json`` and Energon's
    ``.nv-meta`` are generated from it."""
    about: About | None = None
    """What the dataset is as published (license, sources, published counts, citation, the splits
    that play Energon's train/val/test), for the dataset card and ``croissant.json``."""
    method_row: tuple[int, float, float, int] | None = None
    """The method's published Table 1 row (images, texts per image, tokens per text, pairs), printed
    beneath the built rows for comparison."""
    variants: tuple[str, ...] = ()
    """Forms of the dataset, the first the default (VG ``regions``, ``concat``). Each other variant
    has a folder of its own, ``out/<name>-<variant>``, so one folder holds one schema."""

    def command(self, stage: str) -> str:
        return f"vlprep {stage} {self.name}"

    def folder(self, variant: str | None = None) -> str:
        """The output folder of a variant under ``out/``: the dataset's name, or ``<name>-<variant>``
        for a variant other than the default (``vg-concat``)."""
        default = self.variants[0] if self.variants else None
        return self.name if variant in (None, "", default) else f"{self.name}-{variant}"

    def folders(self) -> tuple[tuple[str, str | None], ...]:
        """Every output folder of the dataset with its variant (None for a dataset without variants)."""
        return tuple((self.folder(v), v) for v in self.variants) or ((self.name, None),)


def load(target: str) -> Any:
    """``"package.module:attribute"`` → the attribute, importing the module now."""
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)

