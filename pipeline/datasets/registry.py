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
from . import cc3m, cc12m, coco, flickr30k, glue, imagenet, imagenet_prompts, owt, sbu, vg, weblist
from .recipe import COMMON_FIELDS, Common, Recipe, Run, checked

RECIPES: tuple[Recipe, ...] = (
    owt.RECIPE,
    coco.RECIPE,
    vg.RECIPE,
    cc3m.RECIPE,
    cc12m.RECIPE,
    sbu.RECIPE,
    weblist.RECIPE,
    imagenet.RECIPE,
    glue.RECIPE,
    flickr30k.RECIPE,
    imagenet_prompts.RECIPE,
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
    (``run_stage("owt", "binarize", "./data", workers=4, doc_separator=True)``), checked as the command
    line checks them (text parsed, choices and bounds held). Unlike the command line it takes no
    locks: hold ``locking.stage_lock`` when other vlprep processes may run beside it."""
    found = recipe(dataset)
    if stage not in found.stages:
        raise VlprepError(f"{dataset} has no {stage} stage", fix=f"use one of: {', '.join(found.stages)}")
    declared = found.stages[stage]
    own = {f.name: f for f in dataclasses.fields(declared.options)}
    common_fields = {name: COMMON_FIELDS[name] for name in declared.common}
    unknown = set(values) - set(own) - set(common_fields)
    if unknown:
        raise VlprepError(f"vlprep {stage} {dataset} has no option {', '.join(sorted(unknown))}",
                          fix=f"use: {', '.join(sorted(set(own) | set(common_fields)))}")
    try:
        values = {k: checked(own.get(k) or common_fields[k], v) for k, v in values.items()}
        common_values = declared.common_values(values)
    except ValueError as exc:
        raise VlprepError(f"vlprep {stage} {dataset}: {exc}", fix=f"see: vlprep {stage} {dataset} --help") from None
    layout = Layout.from_env(data_dir)
    common = Common(data_dir=layout.root, **common_values)
    options = declared.options(**{k: v for k, v in values.items() if k in own})
    execute(found, stage, Run(dataset, layout, common, say), options)


def execute(found: Recipe, stage: str, run: Run, options: Any) -> None:
    """Run one stage; after the stage that builds the dataset's outputs, write what readers need
    beside the shards (DALI indexes, card, Croissant, Energon metadata)."""
    found.stages[stage].run(run, options)
    if stage == found.builder:
        from .folders import describe

        describe(run.layout, found, run.say)
