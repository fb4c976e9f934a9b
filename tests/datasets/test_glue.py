"""GLUE through the command line, held byte for byte against fairseq's own RoBERTa GLUE recipe."""
from __future__ import annotations

import json
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

from ..helpers import one_line_error, run_cli

TRIAL = ("--limit", "100000")


@pytest.fixture(scope="module")
def glue_mirror(tmp_path_factory) -> Path:
    mirror = tmp_path_factory.mktemp("glue-mirror")
    build_glue_mirror(mirror)
    return mirror


@pytest.fixture(scope="module")
def built(tmp_path_factory, glue_mirror) -> Path:
    data = tmp_path_factory.mktemp("glue") / "data"
    run_cli("fetch", "glue", "--data-dir", str(data), "--mirror", str(glue_mirror))
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


def task_files(data: Path, name: str) -> dict[str, bytes]:
    folder = data / "out" / "glue" / f"{name}-bin"
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_trial_does_not_replace_a_fuller_task_without_force(tmp_path, glue_mirror):
    data = tmp_path / "data"
    run_cli("fetch", "glue", "--data-dir", str(data), "--mirror", str(glue_mirror), "--task", "RTE", "--task", "CoLA")
    binarize = ("binarize", "glue", "--data-dir", str(data), "--task", "rte", "--task", "cola")
    run_cli(*binarize, "--limit", "10")
    stats_path = data / "out" / "glue" / "stats.json"
    stats = json.loads(stats_path.read_text())
    stats["tasks"]["RTE"]["limit"] = None  # as a full build records it (the sample's rows are not the published ones)
    stats_path.write_text(json.dumps(stats))
    before = {name: task_files(data, name) for name in ("RTE", "CoLA")}
    refused = run_cli(*binarize, "--limit", "3", check=False)
    one_line_error(refused, str(data / "out" / "glue"), "RTE-bin built with no --limit (", "CoLA-bin built with "
                   "--limit 10 (", "vlprep binarize glue --limit 3", "--force", "another --data-dir")
    assert {name: task_files(data, name) for name in ("RTE", "CoLA")} == before
    assert json.loads(stats_path.read_text()) == stats

    run_cli("binarize", "glue", "--data-dir", str(data), "--task", "RTE", "--limit", "3", "--force")
    stats = json.loads(stats_path.read_text())
    assert stats["tasks"]["RTE"]["limit"] == 3 and stats["tasks"]["RTE"]["splits"]["train"]["rows"] == 3
    assert stats["tasks"]["CoLA"]["limit"] == 10 and task_files(data, "CoLA") == before["CoLA"]
    run_cli("binarize", "glue", "--data-dir", str(data), "--task", "RTE", "--limit", "5")  # more: allowed
    assert json.loads(stats_path.read_text())["tasks"]["RTE"]["splits"]["train"]["rows"] == 5
    run_cli("verify", "glue", "--data-dir", str(data))


def test_binarize_before_fetch_names_every_missing_task_in_one_hint(tmp_path, glue_mirror):
    data = tmp_path / "data"
    nothing = run_cli("binarize", "glue", "--data-dir", str(data), check=False)
    one_line_error(nothing, f"of GLUE tasks {', '.join(TASKS)}: ")
    assert nothing.stderr.strip().splitlines()[1].strip() == f"fix: run: vlprep fetch glue --data-dir {data}"

    run_cli("fetch", "glue", "--data-dir", str(data), "--mirror", str(glue_mirror), "--task", "RTE")
    rest = run_cli("binarize", "glue", "--data-dir", str(data), check=False)
    others = " ".join(f"--task {name}" for name in TASKS if name != "RTE")
    one_line_error(rest, f"fix: run: vlprep fetch glue {others} --data-dir {data}")
    two = run_cli("binarize", "glue", "--data-dir", str(data), "--task", "RTE", "--task", "wnli", "--task", "cola",
                  *TRIAL, check=False)
    one_line_error(two, "of GLUE tasks WNLI, CoLA: ", "fix: run: vlprep fetch glue --task WNLI --task CoLA "
                   f"--data-dir {data}")
    assert not (data / "out" / "glue" / "RTE-bin").exists()


def test_a_task_named_twice_is_fetched_and_binarized_once(tmp_path, glue_mirror):
    data = tmp_path / "data"
    fetched = run_cli("fetch", "glue", "--data-dir", str(data), "--mirror", str(glue_mirror), "--task", "rte",
                      "--task", "RTE")
    assert "glue: 3 fetched, 0 already on disk" in fetched.stdout
    printed = run_cli("binarize", "glue", "--data-dir", str(data), "--task", "RTE", "--task", "rte", *TRIAL).stdout
    assert [line.split()[:2] for line in printed.splitlines() if line.startswith("RTE ")] == [
        ["RTE", "train"], ["RTE", "valid"], ["RTE", "test"]]


def test_a_changed_parquet_hint_runs_the_task_again_with_the_data_dir(tmp_path, glue_mirror):
    data = tmp_path / "data"
    run_cli("fetch", "glue", "--data-dir", str(data), "--mirror", str(glue_mirror), "--task", "RTE")
    run_cli("binarize", "glue", "--data-dir", str(data), "--task", "RTE", *TRIAL)
    raw = data / "raw" / "glue" / "rte"
    shutil.copy(raw / "validation-00000-of-00001.parquet", raw / "train-00000-of-00001.parquet")
    stale = run_cli("verify", "glue", "--data-dir", str(data), check=False)
    one_line_error(stale, "train-00000-of-00001.parquet",
                   f"fix: run again: vlprep binarize glue --task RTE --data-dir {data}")
