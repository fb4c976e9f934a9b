"""The registry: every dataset vlprep prepares, listed explicitly, in the order commands show them.

Adding a dataset is its records module, its recipe module (ending in ``RECIPE = Recipe(...)``), a
line here, and its tests. The CLI, the reports over several datasets and the demo read this list.
"""
from __future__ import annotations

from ..errors import VlprepError
from . import cc3m, coco, glue, imagenet, owt, vg
from .recipe import Recipe

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
