"""``croissant.json``: the folder described in Croissant 1.1 (MLCommons), for dataset search and loaders.

What it states: every shard as a ``cr:FileObject`` (relative ``contentUrl``, ``sha256``,
``contentSize``), and per split one ``cr:FileSet`` per member kind (``*.json``, ``*.jpg``, ``*.cls``)
contained in that split's shards, with record sets over them:

- ``<split>``: one record per sample, its key (the member name before ``.json``) and every field of
  the sample json by ``extract.jsonPath``, typed from the recipe's :class:`SampleSchema`;
- ``<split>-images``: key and image (``fileProperty: content`` of the ``*.jpg`` members);
- ``<split>-labels`` (labelled datasets): key and class index (content of the ``*.cls`` members).

How far mlcroissant 1.1 follows it: it extracts tar FileObjects and lists the members of a FileSet
contained in them, and reads a member's name, path or bytes (``fileProperty``); so it yields the
``-images`` and ``-labels`` records. It parses JSON only for FileObjects and for FileSets on the
local disk, not for members of an archive, so it validates the ``<split>`` record set but does not
yield its records (a reader that opens the members, such as the webdataset or ``datasets``
loaders, does). Split names are the Hugging Face ones (``karpathy_train``). No date is stated
(mlcroissant warns that ``datePublished`` is recommended): equal folders give equal bytes.
"""
from __future__ import annotations

from typing import Any

from .features import CLASS_MEMBER, IMAGE_MEMBER, JSON_MEMBER, croissant_type
from .folder import PublishedFolder, PublishedSplit, hf_split_names, source_of

CONFORMS_TO = "http://mlcommons.org/croissant/1.1"
CONTEXT: dict[str, Any] = {
    "@language": "en",
    "@vocab": "https://schema.org/",
    "arrayShape": "cr:arrayShape",
    "citeAs": "cr:citeAs",
    "column": "cr:column",
    "conformsTo": "dct:conformsTo",
    "containedIn": "cr:containedIn",
    "cr": "http://mlcommons.org/croissant/",
    "rai": "http://mlcommons.org/croissant/RAI/",
    "data": {"@id": "cr:data", "@type": "@json"},
    "dataType": {"@id": "cr:dataType", "@type": "@vocab"},
    "dct": "http://purl.org/dc/terms/",
    "description": {"@container": "@language"},
    "equivalentProperty": "cr:equivalentProperty",
    "examples": {"@id": "cr:examples", "@type": "@json"},
    "extract": "cr:extract",
    "field": "cr:field",
    "fileProperty": "cr:fileProperty",
    "fileObject": "cr:fileObject",
    "fileSet": "cr:fileSet",
    "format": "cr:format",
    "includes": "cr:includes",
    "isArray": "cr:isArray",
    "isLiveDataset": "cr:isLiveDataset",
    "jsonPath": "cr:jsonPath",
    "key": "cr:key",
    "md5": "cr:md5",
    "name": {"@container": "@language"},
    "parentField": "cr:parentField",
    "path": "cr:path",
    "prov": "http://www.w3.org/ns/prov#",
    "recordSet": "cr:recordSet",
    "references": "cr:references",
    "regex": "cr:regex",
    "repeated": "cr:repeated",
    "replace": "cr:replace",
    "samplingRate": "cr:samplingRate",
    "sc": "https://schema.org/",
    "separator": "cr:separator",
    "source": "cr:source",
    "subField": "cr:subField",
    "transform": "cr:transform",
}
"""The Croissant 1.1 context (as mlcroissant writes it), plus ``prov`` for ``prov:wasDerivedFrom``."""

MEMBER_FORMATS = {JSON_MEMBER: "application/json", IMAGE_MEMBER: "image/jpeg", CLASS_MEMBER: "text/plain"}


def _file_object(name: str, size: int, sha256: str) -> dict[str, Any]:
    return {"@type": "cr:FileObject", "@id": name, "name": name, "contentUrl": name, "contentSize": f"{size} B",
            "encodingFormat": "application/x-tar", "sha256": sha256}


def _file_set(ident: str, split: PublishedSplit, member: str) -> dict[str, Any]:
    return {"@type": "cr:FileSet", "@id": ident, "name": ident,
            "description": f"The .{member} members of the {split.name} shards.",
            "containedIn": [{"@id": shard.name} for shard in split.shards],
            "encodingFormat": MEMBER_FORMATS[member], "includes": f"*.{member}"}


def _key_field(record_set: str, file_set: str, member: str) -> dict[str, Any]:
    """The sample key: the member's file name without ``.<member>`` (keys hold no dot)."""
    return {"@type": "cr:Field", "@id": f"{record_set}/__key__", "name": "__key__", "dataType": "sc:Text",
            "description": "The sample key, shared by the sample's members (<key>.jpg, <key>.json, ...).",
            "source": {"fileSet": {"@id": file_set}, "extract": {"fileProperty": "filename"},
                       "transform": {"regex": rf"^([^.]+)\.{member}$"}}}


def _member_record_set(ident: str, file_set: str, member: str, field: dict[str, Any]) -> dict[str, Any]:
    body = {"@type": "cr:Field", "@id": f"{ident}/{member}", "name": member,
            "source": {"fileSet": {"@id": file_set}, "extract": {"fileProperty": "content"}}, **field}
    return {"@type": "cr:RecordSet", "@id": ident, "name": ident, "key": {"@id": f"{ident}/__key__"},
            "field": [_key_field(ident, file_set, member), body]}


def _sample_record_set(folder: PublishedFolder, ident: str, split: PublishedSplit) -> dict[str, Any]:
    json_set = f"{ident}-json"
    key = _key_field(ident, json_set, JSON_MEMBER)
    key["references"] = {"field": {"@id": f"{ident}-images/__key__"}}
    fields = [key]
    for spec in folder.sample.sorted_fields():
        fields.append({"@type": "cr:Field", "@id": f"{ident}/{spec.name}", "name": spec.name,
                       "description": spec.description, **croissant_type(spec.type),
                       "source": {"fileSet": {"@id": json_set}, "extract": {"jsonPath": f"$.{spec.name}"}}})
    return {"@type": "cr:RecordSet", "@id": ident, "name": ident, "key": {"@id": f"{ident}/__key__"},
            "description": f"The samples of split {split.name}: the fields of each <key>.json; the image of a "
                           f"sample is the record of {ident}-images with the same key.",
            "field": fields}


def _split_nodes(folder: PublishedFolder, ident: str, split: PublishedSplit) -> tuple[list, list]:
    """The FileSets and RecordSets of one split."""
    members = [JSON_MEMBER, IMAGE_MEMBER] + ([CLASS_MEMBER] if folder.sample.label else [])
    sets = [_file_set(f"{ident}-{member}", split, member) for member in members]
    records = [_sample_record_set(folder, ident, split),
               _member_record_set(f"{ident}-images", f"{ident}-{IMAGE_MEMBER}", IMAGE_MEMBER,
                                  {"dataType": "sc:ImageObject", "description": folder.sample.image})]
    if folder.sample.label:
        records.append(_member_record_set(f"{ident}-labels", f"{ident}-{CLASS_MEMBER}", CLASS_MEMBER,
                                          {"dataType": "sc:Integer", "description": folder.sample.label}))
    return sets, records


def derived_from(folder: PublishedFolder) -> list[dict[str, str]]:
    """The published sources of the raw inputs the folder's splits read (``prov:wasDerivedFrom``)."""
    inputs = {name for split in folder.splits for name in (split.stats.get("inputs") or {})}
    urls = {url for url in (source_of(folder.about, name) for name in inputs) if url}
    return [{"@id": url} for url in sorted(urls or set(folder.about.sources.values()))]


def croissant(folder: PublishedFolder) -> dict[str, Any]:
    """The Croissant JSON-LD document of ``folder`` (a dict; the caller serialises it with sorted keys)."""
    about = folder.about
    distribution: list[dict[str, Any]] = [_file_object(s.name, s.filesize, s.sha256) for s in folder.shards()]
    record_sets: list[dict[str, Any]] = []
    for split, ident in hf_split_names(s.name for s in folder.splits).items():
        sets, records = _split_nodes(folder, ident, folder.split(split))
        distribution += sets
        record_sets += records
    return {
        "@context": CONTEXT,
        "@type": "sc:Dataset",
        "conformsTo": CONFORMS_TO,
        "name": folder.name,
        "description": f"{about.pretty_name}: {about.summary} Prepared by vlprep {folder.vlprep_version} "
                       f"as WebDataset shards (out/{folder.name}).",
        "url": about.homepage,
        "license": about.license_url,
        "version": folder.vlprep_version,
        "citeAs": about.citation,
        "keywords": ["webdataset", "vision-language", *about.task_categories],
        "prov:wasDerivedFrom": derived_from(folder),
        "distribution": distribution,
        "recordSet": record_sets,
    }
