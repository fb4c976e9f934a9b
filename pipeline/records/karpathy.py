"""Karpathy's caption split files, read as a stream: what COCO and Flickr30K share.

``caption_datasets.zip`` holds one ``dataset_<name>.json`` per dataset (``dataset_coco.json``,
``dataset_flickr30k.json``), each ``{"images": [{"filename", "imgid", "split", "sentences": [{"raw",
"sentid", ...}], ...}], "dataset": name}``. Rows are streamed (:func:`iter_zip_json`), so memory holds
one image's sentences whatever the file holds; a row the published file cannot hold stops the stage
with one line naming the file, the member, the record and the fetch that replaces it.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from ..caps import Caps
from ..errors import VlprepError
from ..sources.jsonstream import iter_zip_json, text_problem

KARPATHY_ZIP = "caption_datasets.zip"
KARPATHY_CITATION = r"""@inproceedings{karpathy2015deep,
  title={Deep Visual-Semantic Alignments for Generating Image Descriptions},
  author={Karpathy, Andrej and Fei-Fei, Li},
  booktitle={IEEE Conference on Computer Vision and Pattern Recognition (CVPR)},
  year={2015}
}"""
"""The split files' paper, cited by every dataset read in Karpathy's split."""


@dataclass(frozen=True)
class JsonMember:
    """A JSON member of a fetched zip, named in every error about its rows."""

    path: Path
    member: str
    dataset: str
    """Whose fetch brings the published file again (``vlprep fetch <dataset>``)."""

    def malformed(self, record: str, problem: str) -> VlprepError:
        """A row the published file cannot hold: the file is not the published one, so the stage stops."""
        return VlprepError(f"{self.path} (member {self.member}): {record}: {problem}",
                           fix=f"fetch the published {self.path.name} again (run: vlprep fetch {self.dataset})")

    def get(self, row: object, key: str, kind: type | tuple, record: str) -> Any:
        """``row[key]``, checked to be a ``kind``; a missing key or another type names the record."""
        if not isinstance(row, dict) or key not in row:
            raise self.malformed(record, f"no {key!r} field")
        value = row[key]
        if not isinstance(value, kind) or isinstance(value, bool):
            raise self.malformed(record, f"{key!r} is {value!r:.60}, not {getattr(kind, '__name__', kind)}")
        return value

    def texts(self, items: list, record: str, text_key: str, id_key: str, stream,
              caps: Caps) -> tuple[list[str], list[int], list[dict]]:
        """The usable texts of a row with their ids, and the ones dropped for their value (over
        ``--max-text-kb``, not a string) as ``errors.jsonl`` causes: the image keeps its other texts."""
        texts, ids, dropped = [], [], []
        for index, item in enumerate(items):
            where = f"{record}, {text_key} {index}"
            text_id = self.get(item, id_key, int, where)
            if not isinstance(item, dict) or text_key not in item:
                raise self.malformed(where, f"no {text_key!r} field")
            problem = text_problem(item[text_key], stream, caps.text_bytes)
            if problem is None:
                texts.append(item[text_key])
                ids.append(text_id)
            else:
                dropped.append({"text_id": text_id, "error": problem[0], "bytes": problem[1]})
        return texts, ids, dropped

    def rows(self, key: str, caps: Caps) -> Iterator[tuple[int, Any, Any]]:
        """``(number, row, stream)`` of the array at ``key`` (``"images.item"``), streamed."""
        for number, (row, stream) in enumerate(iter_zip_json(self.path, self.member, key, caps.text_bytes,
                                                             caps.json_depth)):
            yield number, row, stream


@dataclass(frozen=True)
class KarpathyRow:
    """One image row of a split file: its raw fields, usable sentences, and the record name for errors."""

    row: dict
    record: str
    id: int
    captions: list[str]
    caption_ids: list[int]
    dropped: list[dict]


def split_rows(source: JsonMember, splits: tuple[str, ...], id_key: str, caps: Caps) -> Iterator[KarpathyRow]:
    """The rows whose ``split`` is one of ``splits``, in file order, each with its ``id_key`` (COCO's
    ``cocoid``, Flickr30K's ``imgid``), its sentences' ``raw`` texts and ``sentid`` ids."""
    wanted = set(splits)
    for number, row, stream in source.rows("images.item", caps):
        record = f"image {number}"
        if source.get(row, "split", str, record) not in wanted:
            continue
        image_id = source.get(row, id_key, int, record)
        record = f"image {number} ({id_key} {image_id})"
        texts, ids, dropped = source.texts(source.get(row, "sentences", list, record), record, "raw", "sentid",
                                           stream, caps)
        yield KarpathyRow(row, record, image_id, texts, ids, dropped)


def split_ids(source: JsonMember, splits: tuple[str, ...], id_key: str, caps: Caps) -> set[int]:
    """The ``id_key`` of every row in ``splits`` (sentences are not read)."""
    found = set()
    for number, row, _ in source.rows("images.item", caps):
        if source.get(row, "split", str, f"image {number}") in splits:
            found.add(source.get(row, id_key, int, f"image {number}"))
    return found
