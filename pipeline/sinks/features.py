"""The fields of one sample, declared once, in a tiny type language every reader's schema is made from.

A sample of a vlprep folder is a group of tar members sharing a key: ``<key>.jpg`` (the image),
``<key>.json`` (its metadata: ids, texts, token ids, sizes) and, for labelled datasets,
``<key>.cls`` (the class index as decimal text). Each recipe declares its :class:`SampleSchema`;
the Hugging Face ``features`` of the dataset card (:func:`hf_features`), the Croissant fields
(:func:`croissant_type`) and the Energon field map (:func:`energon_field_map`) are all generated
from it, so the three can never disagree with each other, and :func:`problems` checks a real sample
json against the same declaration.

The language has four scalars (``string``, ``int64``, ``bool``, ``float64``) and lists of any type,
with an optional fixed length (a box is ``list_of(INT64, 4)``)::

    SampleSchema(fields=(Field("texts", list_of(STRING), "cleaned captions"), ...),
                 caption=("texts", 0))
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Union

IMAGE_MEMBER = "jpg"
"""The extension of every sample's image (vlprep stores JPEG only)."""
CLASS_MEMBER = "cls"
"""The extension of a labelled sample's class index (decimal text, as webdataset's ``cls``)."""
JSON_MEMBER = "json"
"""The extension of every sample's metadata (UTF-8 JSON object, sorted keys)."""


@dataclass(frozen=True)
class Scalar:
    """One JSON scalar type, named as Arrow and Hugging Face name it."""

    name: str


@dataclass(frozen=True)
class ListOf:
    """A JSON array of ``item``; ``length`` when every such array has exactly that many items."""

    item: "FieldType"
    length: int | None = None


FieldType = Union[Scalar, ListOf]

STRING = Scalar("string")
INT64 = Scalar("int64")
BOOL = Scalar("bool")
FLOAT64 = Scalar("float64")


def list_of(item: FieldType, length: int | None = None) -> ListOf:
    return ListOf(item, length)


@dataclass(frozen=True)
class Field:
    """One key of the sample json: its name, type and what it holds (for the card and Croissant)."""

    name: str
    type: FieldType
    description: str


@dataclass(frozen=True)
class SampleSchema:
    """The members and json fields of every sample of one output folder.

    ``label`` describes the ``.cls`` member (None: samples have none). ``caption`` is the json path
    of the text an Energon ``CaptioningSample`` gets (``("texts", 0)``: the first caption), and
    ``label_name`` the json field an ``ImageClassificationSample`` names its class with.
    """

    fields: tuple[Field, ...]
    image: str = "the image, JPEG"
    label: str | None = None
    caption: tuple[str | int, ...] | None = None
    label_name: str | None = None

    def __post_init__(self) -> None:
        names = [f.name for f in self.fields]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate json fields in {names}")
        if self.caption is not None and resolve(self, self.caption) != STRING:
            raise ValueError(f"caption path {self.caption} does not lead to a string")
        if self.label_name is not None and resolve(self, (self.label_name,)) != STRING:
            raise ValueError(f"label_name {self.label_name!r} is not a string field")

    @property
    def members(self) -> tuple[str, ...]:
        """The extensions of one sample's tar members, sorted as the shard writer writes them."""
        return tuple(sorted((IMAGE_MEMBER, JSON_MEMBER) + ((CLASS_MEMBER,) if self.label else ())))

    def field(self, name: str) -> Field:
        for found in self.fields:
            if found.name == name:
                return found
        raise KeyError(name)

    def sorted_fields(self) -> tuple[Field, ...]:
        """The json fields in key order (the order the writer stores them in, sorted)."""
        return tuple(sorted(self.fields, key=lambda f: f.name))


def resolve(schema: SampleSchema, path: tuple[str | int, ...]) -> FieldType:
    """The type a json path (``("texts", 0)``) leads to; KeyError or TypeError when it leads nowhere."""
    current: FieldType = schema.field(str(path[0])).type
    for step in path[1:]:
        if not isinstance(current, ListOf) or not isinstance(step, int):
            raise TypeError(f"{path}: {step!r} does not index a list")
        current = current.item
    return current


# ------------------------------------------------------------------------------- Hugging Face

def hf_type(kind: FieldType) -> str | dict[str, Any]:
    """The type in the YAML form of ``datasets.Features`` (``"int64"``, ``{"list": "string"}``)."""
    if isinstance(kind, Scalar):
        return kind.name
    inner: dict[str, Any] = {"list": hf_type(kind.item)}
    if kind.length is not None:
        inner["length"] = kind.length
    return inner


def _hf_named(name: str, kind: FieldType) -> dict[str, Any]:
    described = hf_type(kind)
    return {"name": name, "dtype": described} if isinstance(described, str) else {"name": name, **described}


def hf_features(schema: SampleSchema) -> list[dict[str, Any]]:
    """``dataset_info.features`` as ``datasets``' webdataset builder produces them for these members.

    The builder names a column by the member's extension and adds ``__key__`` and ``__url__``
    (strings); ``jpg`` becomes an ``Image``, ``cls`` an ``int64`` (it decodes ``cls`` with ``int``)
    and ``json`` a struct of the json's keys. Declaring them means a reader never infers the schema
    from the first five samples of the first shard.
    """
    columns: list[dict[str, Any]] = [{"name": "__key__", "dtype": "string"}, {"name": "__url__", "dtype": "string"}]
    for member in schema.members:
        if member == IMAGE_MEMBER:
            columns.append({"name": member, "dtype": "image"})
        elif member == CLASS_MEMBER:
            columns.append({"name": member, "dtype": "int64"})
        else:
            columns.append({"name": member, "struct": [_hf_named(f.name, f.type) for f in schema.sorted_fields()]})
    return columns


# ------------------------------------------------------------------------------------- Croissant

CROISSANT_DATA_TYPES = {"string": "sc:Text", "int64": "cr:Int64", "bool": "sc:Boolean", "float64": "cr:Float64"}


def croissant_type(kind: FieldType) -> dict[str, Any]:
    """``dataType`` plus, for lists, ``isArray`` and ``arrayShape`` (``-1`` for a free length):
    ``list_of(list_of(INT64, 4))`` is an ``cr:Int64`` array of shape ``-1,4``."""
    shape: list[str] = []
    while isinstance(kind, ListOf):
        shape.append(str(kind.length) if kind.length is not None else "-1")
        kind = kind.item
    described: dict[str, Any] = {"dataType": CROISSANT_DATA_TYPES[kind.name]}
    if shape:
        described.update(isArray=True, arrayShape=",".join(shape))
    return described


# ----------------------------------------------------------------------------------------- Energon

def energon_sample_type(schema: SampleSchema) -> str:
    """The Energon sample class a folder loads as: classification when samples carry a class."""
    if schema.label is not None:
        return "ImageClassificationSample"
    if schema.caption is not None:
        return "CaptioningSample"
    return "ImageSample"


def _energon_access(member: str, path: tuple[str | int, ...] = ()) -> str:
    return member + "".join(f"[{step}]" for step in path)


def energon_field_map(schema: SampleSchema) -> dict[str, str]:
    """``field_map`` of ``.nv-meta/dataset.yaml``: sample field → member, ``json[a][0]`` for json paths."""
    mapping = {"image": IMAGE_MEMBER}
    if schema.label is not None:
        mapping["label"] = CLASS_MEMBER
        if schema.label_name is not None:
            mapping["label_name"] = _energon_access(JSON_MEMBER, (schema.label_name,))
    elif schema.caption is not None:
        mapping["caption"] = _energon_access(JSON_MEMBER, schema.caption)
    return mapping


# ------------------------------------------------------------------------------------- checking

def _type_problem(kind: FieldType, value: Any, where: str) -> str | None:
    if isinstance(kind, ListOf):
        if not isinstance(value, list):
            return f"{where}: expected a list, got {type(value).__name__}"
        if kind.length is not None and len(value) != kind.length:
            return f"{where}: expected {kind.length} items, got {len(value)}"
        for index, item in enumerate(value):
            found = _type_problem(kind.item, item, f"{where}[{index}]")
            if found:
                return found
        return None
    if not _SCALAR_CHECKS[kind.name](value):
        return f"{where}: expected {kind.name}, got {type(value).__name__} {value!r:.40}"
    return None


_SCALAR_CHECKS = {
    "string": lambda v: isinstance(v, str),
    "int64": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "bool": lambda v: isinstance(v, bool),
    "float64": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
}
"""JSON's ``true`` is a Python ``bool``, itself an ``int``: an int field holding one is wrong."""


def problems(schema: SampleSchema, meta: Mapping[str, Any]) -> list[str]:
    """What keeps a sample json from matching the schema: missing or extra keys, wrong types.

    Readers that take the schema from a declaration (Hugging Face with the card's features,
    Energon's field map) or infer it from the first samples both need every sample to have every
    key with one type; an empty list means this one does.
    """
    declared = {f.name: f for f in schema.fields}
    found = [f"missing key {name!r}" for name in declared if name not in meta]
    found += [f"undeclared key {name!r}" for name in meta if name not in declared]
    for name, value in meta.items():
        if name in declared:
            problem = _type_problem(declared[name].type, value, name)
            if problem:
                found.append(problem)
    return found


# --------------------------------------------------------------- fields the shard writers add to every sample

IMAGE_FIELDS = (
    Field("width", INT64, "Width of the stored image, in pixels."),
    Field("height", INT64, "Height of the stored image, in pixels."),
    Field("converted", BOOL, "Whether the stored image is not the source's bytes (re-encoded, resized or "
          "converted to RGB JPEG)."),
    Field("conversion", STRING, "Why it was converted (e.g. 'JPEG CMYK converted to RGB JPEG'); empty when "
          "the image is stored as published."),
)
"""What every image writer stores about the image (``converted``/``conversion`` on every sample)."""

TEXT_FIELDS = (
    Field("texts", list_of(STRING), "The cleaned texts of the image, in source order."),
    Field("tokens", list_of(list_of(INT64)), "Per text: fairseq dictionary ids of <s> + at most 62 GPT-2 BPE "
          "tokens + </s> (at most 64 ids)."),
    Field("lengths", list_of(INT64), "Per text: its number of BPE tokens before truncation to 62."),
)
"""What every image-text writer stores about the texts, one list entry per text."""
