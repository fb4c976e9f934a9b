"""The raw inputs of a stage: the sha256 of every raw file it reads, in its work key and its outputs.

A work folder is named by a hash of everything that decides its bytes: the options, a version, and
the sha256 of each raw file read. Fetched files take theirs from ``raw/<dataset>/.verified.json``
(no re-hash while the file is as fetch left it); a file passed by path (``--tsv``, ``--dict``) or
one changed since fetch is hashed. So a re-fetched file with new content gets a new work folder and
the outputs are rebuilt from it, never served from the old one. Each output records the same map
(``inputs`` in its stats.json) and ``verify`` holds it against the raw files now on disk.

Example::

    inputs = raw_inputs(layout, dataset, ["annotations.zip", "images.zip"])
    key = work_key({"split": split, "seed": 0}, "imagetext-1", inputs)
    ...
    warnings = check_inputs(layout, inputs, fix=f"run again: vlprep shard {dataset}")
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from pathlib import Path
from typing import Any, Iterable, Mapping

from ..errors import VlprepError
from ..fileio import sha256_file
from ..layout import Layout
from ..sources.checksums import VerifiedRecord

log = logging.getLogger(__name__)


def work_key(options: Any, version: str, inputs: Mapping[str, str] | None = None) -> str:
    """16 hex digits naming a work folder: the options (a dataclass or a dict), a version, the inputs.

    Any change to what decides the bytes (an option, the code's version, one raw file's sha256)
    gives another folder, so finished work is reused only when it is exactly what would be built.
    """
    blob = dataclasses.asdict(options) if dataclasses.is_dataclass(options) else dict(options)
    blob = {**blob, "version": version}
    if inputs:
        blob["inputs"] = dict(sorted(inputs.items()))
    return hashlib.sha256(json.dumps(blob, sort_keys=True, default=str).encode()).hexdigest()[:16]


def input_name(dataset: str, relpath: str) -> str:
    """How a raw file is named in ``inputs``: ``<dataset>/<relpath>`` under ``raw/`` (portable)."""
    return f"{dataset}/{relpath}"


def raw_inputs(layout: Layout, dataset: str, relpaths: Iterable[str]) -> dict[str, str]:
    """``{<dataset>/<relpath>: sha256}`` of fetched files; a missing one is an error naming its fetch."""
    raw = layout.raw(dataset)
    record = VerifiedRecord(raw)
    found = {}
    for relpath in relpaths:
        path = raw / relpath
        if not path.is_file():
            raise VlprepError(f"{path} is missing", fix=f"run: vlprep fetch {dataset}")
        found[input_name(dataset, relpath)] = record.current_sha256(relpath)
    return found


def file_input(path: Path) -> dict[str, str]:
    """``{absolute path: sha256}`` of a file the user passed by path (not fetched by vlprep)."""
    path = Path(path).resolve()
    return {str(path): sha256_file(path)}




def _locate(layout: Layout, name: str) -> tuple[Path, VerifiedRecord | None, str]:
    if Path(name).is_absolute():
        return Path(name), None, name
    dataset, relpath = name.split("/", 1)
    return layout.raw(dataset) / relpath, VerifiedRecord(layout.raw(dataset)), relpath


def check_inputs(layout: Layout, inputs: Mapping[str, str] | None, fix: str, what: str) -> list[str]:
    """Hold recorded inputs against the files now on disk; raise naming the first changed one.

    A raw file that is gone gives a warning, not an error: deleting ``raw/`` once the outputs are
    built is a legitimate way to save disk, the outputs are still checked on their own, and nothing
    on disk contradicts them; the warning says what could not be checked. Outputs written before
    inputs were recorded get a warning too. Warnings are logged and returned.
    """
    if inputs is None:
        return _warn([f"{what}: built before raw inputs were recorded, so their freshness is unchecked ({fix})"])
    warnings = []
    for name, built_from in sorted(inputs.items()):
        path, record, relpath = _locate(layout, name)
        if not path.is_file():
            warnings.append(f"{what}: {path} is gone (raw files deleted to save disk?), so it cannot be checked "
                            "that the outputs were built from it")
            continue
        now = record.current_sha256(relpath) if record is not None else sha256_file(path)
        if now != built_from:
            raise VlprepError(f"{what}: {path} changed since the outputs were built from it (sha256 now "
                              f"{now[:16]}…, built from {built_from[:16]}…); the outputs are stale", fix=fix)
    return _warn(warnings)


def _warn(warnings: list[str]) -> list[str]:
    for line in warnings:
        log.warning("warning: %s", line)
    return warnings
