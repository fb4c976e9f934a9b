"""The registry: every dataset vlprep prepares, listed explicitly, in the order commands show them.

Adding a dataset is its records module, its recipe module (ending in ``RECIPE = Recipe(...)``), a
line here, and its tests. The CLI, the reports over several datasets and the demo read this list.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable

from ..errors import VlprepError
from ..layout import Layout
from . import cc3m, coco, glue, imagenet, owt, vg
from .recipe import COMMON_FIELDS, Common, Recipe, Run

RECIPES: tuple[Recipe, ...] = (
    owt.RECIPE,
    coco.RECIPE,
    vg.RECIPE,
    cc3m.RECIPE,
    imagenet.RECIPE,
    glue.RECIPE,
)
BY_NAME = {r.name: r for r in RECIPES}
STAGE_ORDER = ("fetch", "binarize", "shard", "verify", "preview")
"""The per-dataset stages, in the order a dataset goes through them."""


def recipe(name: str) -> Recipe:
    try:
        return BY_NAME[name]
    except KeyError:
        raise VlprepError(f"unknown dataset {name!r}", fix=f"use one of: {', '.join(BY_NAME)}") from None


def names() -> tuple[str, ...]:
    return tuple(BY_NAME)


def with_stage(stage: str) -> tuple[Recipe, ...]:
    return tuple(r for r in RECIPES if stage in r.stages)


def of_kind(*kinds: str) -> tuple[Recipe, ...]:
    return tuple(r for r in RECIPES if r.kind in kinds)


def run_stage(dataset: str, stage: str, data_dir: str | Path | None = None, say: Callable[[str], None] = print,
              **values: Any) -> None:
    """Run ``vlprep STAGE DATASET`` from Python: ``values`` are the command's options by field name
    (``run_stage("owt", "binarize", "./data", workers=4, doc_separator=True)``). Like the CLI, it
    takes no locks: hold ``locking.stage_lock`` when other vlprep processes may run beside it."""
    found = recipe(dataset)
    if stage not in found.stages:
        raise VlprepError(f"{dataset} has no {stage} stage", fix=f"use one of: {', '.join(found.stages)}")
    declared = found.stages[stage]
    own = {f.name for f in dataclasses.fields(declared.options)}
    unknown = set(values) - own - set(declared.common)
    if unknown:
        raise VlprepError(f"vlprep {stage} {dataset} has no option {', '.join(sorted(unknown))}",
                          fix=f"use: {', '.join(sorted(own | set(declared.common)))}")
    common = {k: v for k, v in values.items() if k in COMMON_FIELDS}
    if declared.limit is not None and "limit" not in common:
        common["limit"] = declared.limit.default
    layout = Layout.from_env(data_dir)
    options = declared.options(**{k: v for k, v in values.items() if k in own})
    declared.run(Run(dataset, layout, Common(data_dir=layout.root, **common), say), options)
