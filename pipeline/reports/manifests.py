"""``vlprep manifest build|publish``: the used-ID manifests of every built dataset, indexed and published.

The stage that builds a dataset writes its manifest as it finishes (``<dataset>-<split>...``); a
recipe whose manifest is made from its ``stats.json`` instead gives a writer (``Manifest.build``),
which runs here. ``build`` gathers them into the
manifest folder with a ``README.md`` index generated from the files themselves, so an unchanged
set of manifests gives unchanged bytes and ``publish`` can refuse to push nothing. Every
``<name>.tsv.gz`` travels with its typed twin ``<name>.parquet``: ``build`` writes both through the
one typed writer (so a TSV written before twins existed gets its twin), the validator holds the
twin to the TSV's rows, and ``publish`` pushes both.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import VlprepError
from ..fileio import atomic_path
from ..layout import Layout
from ..sinks import manifests as manifest_sink
from ..sinks import publish as publish_sink

if TYPE_CHECKING:
    from ..datasets.recipe import Manifest



def schema(dataset: str) -> "Manifest":
    """The manifest schema a recipe declares (its columns, key order and description)."""
    from ..datasets.registry import recipe

    return recipe(dataset).manifest


@dataclass(frozen=True)
class ManifestFile:
    """A checked manifest: its TSV (``path``) and its parquet twin, with their sha256."""

    dataset: str
    path: Path
    rows: int
    sha256: str
    twin_sha256: str = ""

    @property
    def twin(self) -> Path:
        return manifest_sink.twin(self.path)

    @property
    def paths(self) -> list[Path]:
        """Both files, as they are published."""
        return [self.path, self.twin]


def dataset_of(path: Path) -> str:
    """The dataset a manifest file belongs to: the longest registered name it starts with, then ``-``
    (a dataset whose name begins with another's and a dash keeps its own manifests)."""
    from ..datasets.registry import names

    owners = [name for name in names() if path.name.startswith(name + "-")]
    return max(owners, key=len) if owners else path.name.split("-", 1)[0]


def build(layout: Layout, datasets: tuple[str, ...], manifest_dir: Path | None = None) -> list[ManifestFile]:
    """Write/collect the manifests of ``datasets`` into ``manifest_dir``; write its README.md index."""
    target = Path(manifest_dir) if manifest_dir else layout.manifests()
    sources: list[Path] = []
    for dataset in datasets:
        if not (layout.out(dataset) / "stats.json").exists():
            raise VlprepError(f"{dataset} has not been built in {layout.root}",
                              fix="build it first (see vlprep --help), or name only built datasets")
        declared = schema(dataset)
        if declared.build is not None:
            declared.build(layout)
        found = sorted(p for p in layout.manifests().glob(f"{dataset}-*.tsv.gz") if dataset_of(p) == dataset)
        if not found:
            raise VlprepError(f"no manifest of {dataset} in {layout.manifests()}",
                              fix=f"run the stage that builds {dataset} again; it writes the manifest")
        sources += found
    target.mkdir(parents=True, exist_ok=True)
    for path in sources:
        collect(path, target / path.name)
    files = validate(target)
    with atomic_path(target / "README.md") as tmp:
        tmp.write_text(index_markdown(files), encoding="utf-8")
    return files


def collect(source: Path, target: Path) -> Path:
    """``source`` rewritten at ``target`` through the typed writer, with its parquet twin.

    Rewriting, not copying: equal rows give equal bytes, so an unchanged manifest stays unchanged,
    while one written before its twin existed (or with an empty integer cell, which now takes its
    column's documented number) comes out typed and twinned."""
    declared = schema(dataset_of(source)).header
    header, rows = _read(source)
    if tuple(header) != declared:
        raise VlprepError(f"{source}: columns {header} are not those of a {dataset_of(source)} manifest",
                          fix=f"run the stage that builds {dataset_of(source)} again; it writes the manifest")
    try:
        return manifest_sink.write_tsv_gz(target, declared, rows)
    except ValueError as exc:
        raise VlprepError(f"{source}: {exc}", fix=f"run the stage that builds {dataset_of(source)} again; "
                          "it writes the manifest") from None


def _read(path: Path) -> tuple[list[str], list[list[str]]]:
    try:
        return manifest_sink.read_tsv_gz(path)
    except (OSError, ValueError, EOFError, UnicodeDecodeError) as exc:
        raise VlprepError(f"{path}: not a readable manifest ({exc})", fix="run: vlprep manifest build") from exc


def validate(folder: Path) -> list[ManifestFile]:
    """Every ``*.tsv.gz`` in ``folder`` readable, with its dataset's header, every value of its
    declared type, rows sorted and unique, and a parquet twin holding the same typed rows; no
    parquet file without its TSV."""
    files = []
    paths = sorted(Path(folder).glob("*" + manifest_sink.TSV_SUFFIX))
    if not paths:
        raise VlprepError(f"{folder} holds no manifests", fix="run: vlprep manifest build")
    for path in paths:
        files.append(_validate_one(path))
    twins = {f.twin for f in files}
    for stray in sorted(Path(folder).glob("*" + manifest_sink.PARQUET_SUFFIX)):
        if stray not in twins:
            raise VlprepError(f"{stray}: a parquet file with no {stray.stem}{manifest_sink.TSV_SUFFIX} beside it",
                              fix="remove it, or run: vlprep manifest build")
    return files


def _validate_one(path: Path) -> ManifestFile:
    dataset = dataset_of(path)
    header, rows = _read(path)
    try:
        declared = schema(dataset)
    except VlprepError:
        raise VlprepError(f"{path}: {dataset!r} is not a dataset vlprep knows", fix="remove the file, or "
                          "run: vlprep manifest build") from None
    if tuple(header) != declared.header:
        raise VlprepError(f"{path}: columns {header} are not those of a {dataset} manifest",
                          fix="run: vlprep manifest build")
    if not rows or any(len(r) != len(header) for r in rows):
        raise VlprepError(f"{path}: empty or ragged", fix="run: vlprep manifest build")
    try:
        typed = [declared.header.typed(r, fill_missing=False) for r in rows]
    except ValueError as exc:
        raise VlprepError(f"{path}: {exc}", fix="run: vlprep manifest build") from None
    keys = [r[0] if declared.numeric_key else str(r[0]) for r in typed]
    if keys != sorted(set(keys)):
        raise VlprepError(f"{path}: unsorted or with repeated keys", fix="run: vlprep manifest build")
    problem = manifest_sink.twin_problem(path, declared.header, rows)
    if problem:
        raise VlprepError(f"{path}: {problem}", fix="run: vlprep manifest build")
    return ManifestFile(dataset, path, len(rows), hashlib.sha256(path.read_bytes()).hexdigest(),
                        hashlib.sha256(manifest_sink.twin(path).read_bytes()).hexdigest())


def rebuild_notes() -> str:
    """The sentences of the recipes whose manifest rebuilds their data exactly (with a leading space)."""
    from ..datasets.registry import RECIPES

    return "".join(f" {r.manifest.rebuild}" for r in RECIPES if r.manifest.rebuild)


def index_markdown(files: list[ManifestFile]) -> str:
    lines = ["# Used-ID manifests", "",
             "Generated by `vlprep manifest build` from the files in this folder. Each `NAME.tsv.gz` is a "
             "gzip (no name, mtime 0) of a sorted TSV with a header row; equal content gives equal bytes. "
             "Read one with `zcat FILE | head`. Each has a twin `NAME.parquet` (zstd) holding the same "
             "rows with the column types below: `pd.read_parquet(FILE)`, or read the TSV with "
             "`pd.read_csv(FILE, sep=\"\\t\", dtype=vlprep.pipeline.sinks.manifests.pandas_dtypes(FILE), "
             "keep_default_na=False)`; see docs/manifests.md." + rebuild_notes(), "",
             "| file | dataset | rows | sha256 | columns |", "|---|---|---:|---|---|"]
    for f in files:
        columns = schema(f.dataset).header.describe()
        for path, sha256 in ((f.path, f.sha256), (f.twin, f.twin_sha256)):
            lines.append(f"| `{path.name}` | {f.dataset} | {f.rows:,} | `{sha256[:16]}…` | {columns} |")
    lines += ["", "What each dataset's manifest lists:", ""]
    for dataset in sorted({f.dataset for f in files}):
        lines.append(f"- **{dataset}**: {schema(dataset).description}.")
    return "\n".join(lines) + "\n"


def publish(folder: Path, repo: str, branch: str, message: str | None, subdir: str) -> publish_sink.Published:
    """Validate the folder's manifests and README, then commit and push them into ``repo``."""
    files = validate(folder)
    readme = Path(folder) / "README.md"
    if not readme.exists() or readme.read_text(encoding="utf-8") != index_markdown(files):
        raise VlprepError(f"{readme} is missing or does not describe the manifests beside it",
                          fix="run: vlprep manifest build")
    summary = ", ".join(f"{f.path.name} ({f.rows:,} rows)" for f in files)
    return publish_sink.publish([p for f in files for p in f.paths] + [readme], repo, branch,
                                message or f"Update vlprep manifests: {summary}", subdir)


def summary(files: list[ManifestFile]) -> list[str]:
    return [f"{path}  {f.rows:,} rows  sha256 {sha256[:16]}" for f in files
            for path, sha256 in ((f.path, f.sha256), (f.twin, f.twin_sha256))]

