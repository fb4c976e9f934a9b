"""GLUE as the hub dataset ``nyu-mll/glue`` publishes it (one parquet file per task and split), mapped to
the task names, splits, input columns and label symbols of fairseq's RoBERTa GLUE recipe
(``examples/roberta/preprocess_GLUE_tasks.sh``).

The hub stores class labels as integers; the recipe binarizes the label *strings* of the original
TSVs (``entailment``/``neutral``/``contradiction`` for MNLI, ``entailment``/``not_entailment`` for
QNLI and RTE, ``0``/``1`` elsewhere), so each task carries its integer → symbol table. STS-B's
similarity scores are floats.
"""
from __future__ import annotations

from dataclasses import dataclass

REPO = "nyu-mll/glue"


@dataclass(frozen=True)
class Task:
    name: str
    """fairseq's directory name: ``<name>-bin``."""
    config: str
    inputs: tuple[str, ...]
    splits: tuple[tuple[str, str, int], ...]
    """``(hub split, fairseq split, published rows)`` in fairseq's order."""
    labels: tuple[str, ...] | None
    """Label symbol of each integer class, or None for STS-B's float scores."""

    def relpath(self, hub_split: str) -> str:
        return f"{self.config}/{hub_split}-00000-of-00001.parquet"

    def labelled(self, hub_split: str) -> bool:
        return not hub_split.startswith("test")


BINARY = ("0", "1")
TASKS = {task.name: task for task in (
    Task("CoLA", "cola", ("sentence",), (("train", "train", 8_551), ("validation", "valid", 1_043),
                                         ("test", "test", 1_063)), BINARY),
    Task("SST-2", "sst2", ("sentence",), (("train", "train", 67_349), ("validation", "valid", 872),
                                          ("test", "test", 1_821)), BINARY),
    Task("MRPC", "mrpc", ("sentence1", "sentence2"), (("train", "train", 3_668), ("validation", "valid", 408),
                                                      ("test", "test", 1_725)), BINARY),
    Task("STS-B", "stsb", ("sentence1", "sentence2"), (("train", "train", 5_749), ("validation", "valid", 1_500),
                                                       ("test", "test", 1_379)), None),
    Task("QQP", "qqp", ("question1", "question2"), (("train", "train", 363_846), ("validation", "valid", 40_430),
                                                    ("test", "test", 390_965)), BINARY),
    Task("MNLI", "mnli", ("premise", "hypothesis"),
         (("train", "train", 392_702), ("validation_matched", "valid", 9_815),
          ("validation_mismatched", "valid1", 9_832), ("test_matched", "test", 9_796),
          ("test_mismatched", "test1", 9_847)), ("entailment", "neutral", "contradiction")),
    Task("QNLI", "qnli", ("question", "sentence"), (("train", "train", 104_743), ("validation", "valid", 5_463),
                                                    ("test", "test", 5_463)), ("entailment", "not_entailment")),
    Task("RTE", "rte", ("sentence1", "sentence2"), (("train", "train", 2_490), ("validation", "valid", 277),
                                                    ("test", "test", 3_000)), ("entailment", "not_entailment")),
    Task("WNLI", "wnli", ("sentence1", "sentence2"), (("train", "train", 635), ("validation", "valid", 71),
                                                      ("test", "test", 146)), BINARY),
)}
ALIASES = {**{t.name.lower(): t.name for t in TASKS.values()}, **{t.config: t.name for t in TASKS.values()}}


def task_named(name: str) -> Task:
    key = ALIASES.get(name.lower())
    if key is None:
        raise KeyError(name)
    return TASKS[key]


def all_relpaths() -> list[str]:
    return [task.relpath(hub) for task in TASKS.values() for hub, _, _ in task.splits]
