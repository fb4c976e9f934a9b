"""GLUE through the command line, held byte for byte against fairseq's own RoBERTa GLUE recipe."""
from __future__ import annotations

import runpy
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from vlprep.pipeline.engines.sentencebin import one_line
from vlprep.pipeline.records.glue import TASKS
from vlprep.pipeline.samples.text import build_glue_mirror
from vlprep.pipeline.transforms.bpe import vocabulary_files

from ..helpers import run_cli

TRIAL = ("--limit", "100000")


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    mirror = tmp_path_factory.mktemp("glue-mirror")
    build_glue_mirror(mirror)
    data = tmp_path_factory.mktemp("glue") / "data"
    run_cli("fetch", "glue", "--data-dir", str(data), "--mirror", str(mirror))
    run_cli("binarize", "glue", "--data-dir", str(data), *TRIAL)
    return data


def run_module(module: str, *argv: str) -> None:
    """``python -m module argv...`` in this process (fairseq and torch are imported once, not per call)."""
    saved = sys.argv
    sys.argv = [module, *argv]
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=False)
    except SystemExit as exc:
        if exc.code not in (0, None):
            raise
    finally:
        sys.argv = saved


def bpe_lines(source: Path, target: Path, encoder_json: Path, vocab_bpe: Path) -> None:
    """multiprocessing_bpe_encoder --keep-empty, without its process pool: what each of its workers runs."""
    from fairseq.data.encoders.gpt2_bpe_utils import get_encoder

    bpe = get_encoder(str(encoder_json), str(vocab_bpe))
    with open(source, encoding="utf-8") as lines:
        target.write_text("".join(" ".join(map(str, bpe.encode(line.strip()))) + "\n" for line in lines),
                          encoding="utf-8")


def fairseq_recipe(data: Path, name: str, work: Path) -> Path:
    """preprocess_GLUE_tasks.sh for one task: cut columns, BPE-encode with --keep-empty, fairseq-preprocess."""
    task = TASKS[name]
    encoder_json, vocab_bpe = vocabulary_files()
    dict_txt = data / "out" / "glue" / f"{name}-bin" / "input0" / "dict.txt"
    raw = work / "processed"
    raw.mkdir(parents=True)
    prefixes: dict[str, list[str]] = {"train": [], "valid": [], "test": []}
    for hub, split, _ in task.splits:
        table = pq.read_table(data / "raw" / "glue" / task.relpath(hub)).to_pydict()
        for i, column in enumerate(task.inputs):
            (raw / f"{split}.raw.input{i}").write_text("".join(one_line(s)[0] + "\n" for s in table[column]))
            bpe_lines(raw / f"{split}.raw.input{i}", raw / f"{split}.input{i}", encoder_json, vocab_bpe)
        if task.labelled(hub):
            values = [str(float(v)) if task.labels is None else task.labels[v] for v in table["label"]]
            (raw / f"{split}.label").write_text("".join(v + "\n" for v in values))
        prefixes["train" if split == "train" else split.rstrip("1")].append(split)
    out = work / f"{name}-bin"
    for i in range(len(task.inputs)):
        run_module("fairseq_cli.preprocess", "--only-source",
                   "--trainpref", str(raw / f"train.input{i}"),
                   "--validpref", ",".join(str(raw / f"{s}.input{i}") for s in prefixes["valid"]),
                   "--testpref", ",".join(str(raw / f"{s}.input{i}") for s in prefixes["test"]),
                   "--destdir", str(out / f"input{i}"), "--workers", "1", "--srcdict", str(dict_txt))
    if task.labels is not None:
        run_module("fairseq_cli.preprocess", "--only-source", "--trainpref", str(raw / "train.label"),
                   "--validpref", ",".join(str(raw / f"{s}.label") for s in prefixes["valid"]),
                   "--destdir", str(out / "label"), "--workers", "1")
    else:
        (out / "label").mkdir(parents=True)
        for split, target in (("train", "train"), ("valid", "valid")):
            awk = subprocess.run(["awk", "{print $1 / 5.0 }", str(raw / f"{split}.label")], check=True,
                                 capture_output=True, text=True)
            (out / "label" / f"{target}.label").write_text(awk.stdout)
    return out


@pytest.mark.parametrize("name", ["CoLA", "RTE", "STS-B", "MNLI"])
def test_binaries_equal_fairseqs_recipe(built, tmp_path, name):
    pytest.importorskip("fairseq")
    if name == "STS-B" and shutil.which("awk") is None:
        pytest.skip("awk is not installed")
    reference = fairseq_recipe(built, name, tmp_path)
    ours = built / "out" / "glue" / f"{name}-bin"
    theirs = {str(p.relative_to(reference)): p.read_bytes() for p in reference.rglob("*")
              if p.is_file() and p.name != "preprocess.log"}
    mine = {str(p.relative_to(ours)): p.read_bytes() for p in ours.rglob("*") if p.is_file()}
    assert sorted(mine) == sorted(theirs)
    for name_ in theirs:
        assert mine[name_] == theirs[name_], name_


def test_fairseq_reads_what_we_wrote(built):
    fairseq = pytest.importorskip("fairseq")
    from fairseq.data import Dictionary, data_utils

    del fairseq
    folder = built / "out" / "glue" / "MNLI-bin"
    source = Dictionary.load(str(folder / "input0" / "dict.txt"))
    labels = Dictionary.load(str(folder / "label" / "dict.txt"))
    for split in ("train", "valid", "valid1", "test", "test1"):
        items = data_utils.load_indexed_dataset(str(folder / "input0" / split), source)
        assert len(items) == 12 and all(int(items[i][-1]) == source.eos() for i in range(len(items)))
    label_items = data_utils.load_indexed_dataset(str(folder / "label" / "valid1"), labels)
    assert {labels[int(label_items[i][0])] for i in range(len(label_items))} <= {"entailment", "neutral",
                                                                                   "contradiction"}


def test_counts_are_checked_and_stats_printed(built):
    failed = run_cli("binarize", "glue", "--data-dir", str(built), "--task", "rte", check=False)
    assert failed.returncode == 1 and "2,490" in failed.stderr and "--limit" in failed.stderr
    printed = run_cli("stats", "glue", "--data-dir", str(built)).stdout
    assert "MNLI" in printed and "valid1" in printed
    run_cli("verify", "glue", "--data-dir", str(built))
