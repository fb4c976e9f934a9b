"""Used-ID manifests: sorted TSV, gzip with no name and mtime 0, so equal content gives equal bytes,
each with a typed parquet twin.

Small enough to publish in git, readable with ``zcat``, and compared byte for byte to tell whether
anything changed before a publish. A TSV carries no types, so a reader guesses them: pandas reads
``000000027898`` as the integer 27898 and an empty cell as NaN. The column types are therefore
declared here, once, beside the column names (:class:`Schema`); the writer holds every row to them
and writes ``<name>.parquet`` beside ``<name>.tsv.gz`` with exactly those types, and
:func:`pandas_dtypes` gives the ``dtype=`` that reads the TSV the same way.
"""
from __future__ import annotations

import gzip
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Literal, Sequence

from ..errors import VlprepError
from ..fileio import atomic_path

if TYPE_CHECKING:
    import pyarrow as pa

Dtype = Literal["string", "int64"]
STRING: Dtype = "string"
INT64: Dtype = "int64"
PANDAS_DTYPES: dict[str, str] = {STRING: "str", INT64: "int64"}
"""How each declared type is given to ``pd.read_csv(dtype=...)``: ``str`` keeps leading zeros."""
TSV_SUFFIX = ".tsv.gz"
PARQUET_SUFFIX = ".parquet"
PARQUET_OPTIONS: dict[str, Any] = {
    "compression": "zstd", "compression_level": 9, "version": "2.6", "data_page_version": "1.0",
    "use_dictionary": True, "write_statistics": True, "store_schema": False,
}
"""Every option that shapes the parquet bytes, pinned so a change of pyarrow's defaults does not
change them. ``store_schema=False``: the parquet types say it all, and no serialized Arrow schema
(or pandas metadata: the table is built from plain lists) rides along. pyarrow writes no timestamp;
its ``created_by`` names its version, so equal content gives equal bytes under one pyarrow."""
_INT = re.compile(r"^-?[0-9]+$")


@dataclass(frozen=True)
class Column:
    """One manifest column: its name, its type, and for an integer column that may have no value,
    the documented number written instead (a class ``label`` is ``-1`` on a skipped image)."""

    name: str
    dtype: Dtype
    missing: int | None = None

    def __post_init__(self) -> None:
        if self.dtype not in PANDAS_DTYPES:
            raise ValueError(f"column {self.name}: unknown type {self.dtype!r}")


class Schema(tuple):
    """A manifest's columns: a tuple of their names, so it is the header wherever one is written or
    compared (``tuple(fields) != URL_ROWS`` keeps working), with each column's :class:`Column`
    declaration in :attr:`columns`. One declaration gives the TSV header, the parquet schema and the
    pandas dtypes, so they cannot drift apart."""

    columns: tuple[Column, ...]

    def __new__(cls, *columns: Column | tuple) -> "Schema":
        declared = tuple(c if isinstance(c, Column) else Column(*c) for c in columns)
        self = super().__new__(cls, tuple(c.name for c in declared))
        self.columns = declared
        return self

    def __getnewargs__(self) -> tuple[Column, ...]:  # type: ignore[override]
        """Pickle through ``__new__(*columns)`` (workers receive recipes and configs)."""
        return self.columns

    def __repr__(self) -> str:
        return "Schema(" + ", ".join(f"{c.name}: {c.dtype}" for c in self.columns) + ")"

    def dtypes(self) -> dict[str, str]:
        """``{column: "string" | "int64"}``, the declared types by name."""
        return {c.name: c.dtype for c in self.columns}

    def pandas_dtypes(self) -> dict[str, str]:
        """The ``dtype=`` of ``pd.read_csv`` that reads the TSV with these types."""
        return {c.name: PANDAS_DTYPES[c.dtype] for c in self.columns}

    def describe(self) -> str:
        """``key (string), status (string)``: the columns as the README index lists them."""
        return ", ".join(f"{c.name} ({c.dtype})" for c in self.columns)

    def arrow(self) -> "pa.Schema":
        """The parquet twin's schema: strings as ``string``, integers as ``int64``, no nulls."""
        import pyarrow as pa

        types = {STRING: pa.string(), INT64: pa.int64()}
        return pa.schema([pa.field(c.name, types[c.dtype], nullable=False) for c in self.columns])

    def typed(self, row: Sequence[object], fill_missing: bool = True) -> list[str | int]:
        """``row`` with each value as its column's type. An integer column takes an ``int`` or its
        decimal text; where it has no value (``None``, ``""``), its declared ``missing`` number when
        ``fill_missing`` (the writers), else nothing (the validator: an empty cell is an error).
        ValueError names the column and the value."""
        if len(row) != len(self.columns):
            raise ValueError(f"{len(row)} values for {len(self.columns)} columns ({', '.join(self)})")
        return [_typed(column, value, fill_missing) for column, value in zip(self.columns, row)]


def _typed(column: Column, value: object, fill_missing: bool) -> str | int:
    if column.dtype == STRING:
        return str(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and _INT.match(value):
        return int(value)
    if value in (None, "") and fill_missing and column.missing is not None:
        return column.missing
    raise ValueError(f"column {column.name} (int64) holds {value!r}, not an integer")


IMAGE_IDS = Schema(("key", STRING), ("status", STRING))
"""Every image id a split considered and what became of it (``used``, ``leak-guarded`` or why it was
skipped). Keys are zero-padded ids, strings: ``000000027898`` keeps its zeros."""
LABELLED_FILES = Schema(("file", STRING), ("label", INT64, -1), ("status", STRING))
"""Every file of a labelled split with its class index, or why it was skipped (label ``-1``)."""
URL_ROWS = Schema(("row", INT64), ("url", STRING), ("sha256", STRING), ("caption_hash", STRING))
"""The rows of a URL list kept: 0-based line, URL (redacted), sha256 of the bytes, caption hash."""
SOURCE_FILES = Schema(("file", STRING), ("split", STRING), ("sha256", STRING), ("documents", INT64),
                      ("documents_kept", INT64), ("source", STRING))
"""The source files of a text corpus: split, sha256, documents read and kept, where it came from."""
TASK_FILES = Schema(("file", STRING), ("task", STRING), ("split", STRING), ("rows", INT64), ("sha256", STRING))
"""The parquet files of a set of tasks binarized: task, fairseq split, rows, sha256."""
PROMPT_ITEMS = Schema(("item", INT64), ("class_index", INT64), ("template_index", INT64), ("synset", STRING),
                      ("prompt", STRING))
"""Every item of a prompt binary: its position, class index (torchvision order), template index, text."""
SCHEMAS: tuple[Schema, ...] = (IMAGE_IDS, LABELLED_FILES, URL_ROWS, SOURCE_FILES, TASK_FILES, PROMPT_ITEMS)
"""Every kind of manifest; a manifest's header names its kind (no two share a header)."""


def twin(path: Path) -> Path:
    """``<name>.parquet`` beside ``<name>.tsv.gz``."""
    path = Path(path)
    if not path.name.endswith(TSV_SUFFIX):
        raise ValueError(f"{path.name}: a manifest is named <name>{TSV_SUFFIX}")
    return path.with_name(path.name[: -len(TSV_SUFFIX)] + PARQUET_SUFFIX)


def write_tsv_gz(path: Path, header: Schema, rows: Iterable[Sequence[object]]) -> Path:
    """Write ``rows`` (already in their final order) as a deterministic ``.tsv.gz`` and its parquet
    twin, every value held to ``header``'s declared type. Returns the TSV's path."""
    path = Path(path)
    if not isinstance(header, Schema):
        raise TypeError(f"{path.name}: declare the columns as a manifests.Schema, not {header!r}")
    columns: list[list[str | int]] = [[] for _ in header]
    with atomic_path(path) as tmp, open(tmp, "wb") as raw:
        with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=9) as handle:
            handle.write(("\t".join(header) + "\n").encode("utf-8"))
            for row in rows:
                try:
                    values = header.typed(row)
                except ValueError as exc:
                    raise ValueError(f"{path.name}: {exc} in row {list(row)[:6]!r}") from None
                line = "\t".join(str(value) for value in values)
                if "\n" in line or line.count("\t") != len(header) - 1:
                    raise ValueError(f"{path.name}: a value holds a tab or newline: {line[:200]!r}")
                handle.write((line + "\n").encode("utf-8"))
                for column, value in zip(columns, values):
                    column.append(value)
    write_parquet(twin(path), header, columns)
    return path


def write_parquet(path: Path, schema: Schema, columns: list[list[str | int]]) -> Path:
    """``columns`` as a parquet file of ``schema``, written with :data:`PARQUET_OPTIONS`."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_arrays([pa.array(values, type=field.type) for values, field in
                                  zip(columns, schema.arrow())], schema=schema.arrow())
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, **PARQUET_OPTIONS)
    return path


def read_tsv_gz(path: Path) -> tuple[list[str], list[list[str]]]:
    """Header and rows of a manifest written by :func:`write_tsv_gz`, as text."""
    with gzip.open(path, "rt", encoding="utf-8", newline="\n") as handle:
        lines = handle.read().split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if not lines:
        raise ValueError(f"{path}: empty manifest")
    return lines[0].split("\t"), [line.split("\t") for line in lines[1:]]


def read_parquet_columns(path: Path) -> tuple["pa.Schema", list[list[str | int]]]:
    """The arrow schema and the column values of a parquet twin."""
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    return table.schema, [table.column(i).to_pylist() for i in range(table.num_columns)]


def twin_problem(tsv: Path, schema: Schema, rows: list[list[str]]) -> str | None:
    """Why the parquet twin of ``tsv`` (whose ``rows`` are given, as text) does not hold the same
    typed rows, or None when it does. Content, not bytes, is compared: another pyarrow writes
    other bytes for the same rows, and that is no fault of the folder."""
    path = twin(tsv)
    if not path.exists():
        return f"{path.name} is missing"
    try:
        arrow_schema, columns = read_parquet_columns(path)
    except Exception as exc:  # noqa: BLE001 - any failure to read it is the one answer: not readable
        return f"{path.name} is not a readable parquet file ({str(exc)[:120]})"
    if not arrow_schema.equals(schema.arrow()):
        return f"{path.name} has schema {arrow_schema.to_string(show_schema_metadata=False)!r}, not {schema!r}"
    expected = [list(values) for values in zip(*(schema.typed(r, fill_missing=False) for r in rows))] \
        or [[] for _ in schema]
    if columns != expected:
        return f"{path.name} does not hold the rows of {tsv.name}"
    return None


def schema_of(header: Sequence[str]) -> Schema:
    """The declared :class:`Schema` whose columns are ``header``."""
    for schema in SCHEMAS:
        if tuple(header) == schema:
            return schema
    raise VlprepError(f"no manifest has the columns {', '.join(header)}",
                      fix="pass a manifest vlprep wrote (see docs/manifests.md)")


def pandas_dtypes(manifest: Schema | str | Path) -> dict[str, str]:
    """The ``dtype=`` mapping that makes pandas read a manifest's TSV as its parquet twin reads::

        pd.read_csv(path, sep="\\t", dtype=pandas_dtypes(path), keep_default_na=False)

    ``manifest`` is a :class:`Schema` or a ``.tsv.gz`` manifest file (its header names its kind), so
    nobody copies a table of types by hand."""
    if isinstance(manifest, Schema):
        return manifest.pandas_dtypes()
    if str(manifest).endswith(PARQUET_SUFFIX):
        import pyarrow.parquet as pq

        return schema_of(pq.read_schema(manifest).names).pandas_dtypes()
    try:
        with gzip.open(manifest, "rt", encoding="utf-8", newline="\n") as handle:
            header = handle.readline().rstrip("\n").split("\t")
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise VlprepError(f"{manifest}: not a readable manifest ({exc})",
                          fix="pass a .tsv.gz manifest vlprep wrote") from None
    return schema_of(header).pandas_dtypes()
