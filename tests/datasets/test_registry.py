"""The recipe registry and the command line generated from it.

Conformance: every recipe's stages have examples that parse as real commands, its help shows exactly
its options, its demo sample goes through its stages and its manifest validates, and importing the
registry (what ``vlprep --help`` does) pulls in nothing heavy. Consistency: the same mistake gives
the same exit code everywhere; fix hints repeat the user's ``--data-dir``.
"""
from __future__ import annotations

import dataclasses
import json
import re
import shlex
import subprocess
import sys
import warnings
from pathlib import Path

import click
import pytest

from vlprep.cli import main
from vlprep.pipeline.datasets import registry
from vlprep.pipeline.datasets.recipe import COMMON_FIELDS, flag_of

from ..helpers import run_cli

STAGES = [(r.name, s) for r in registry.RECIPES for s in r.stages]


def test_importing_the_cli_pulls_in_nothing_heavy():
    code = ("import sys, vlprep.cli; heavy = [m for m in ('numpy', 'PIL', 'tiktoken', 'torch', 'pyarrow', "
            "'webdataset', 'tqdm', 'huggingface_hub', 'requests') if m in sys.modules]; print(heavy)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_registry_names_are_unique_and_every_recipe_is_complete():
    assert len(registry.names()) == len(set(registry.names())) == len(registry.RECIPES)
    for recipe in registry.RECIPES:
        assert recipe.kind in ("text", "pairs", "labels")
        assert recipe.builder in recipe.stages, f"{recipe.name}: its builder stage is not one of its stages"
        assert set(recipe.stages) <= set(registry.STAGE_ORDER)
        assert recipe.title and recipe.demo.startswith("vlprep.pipeline.samples.")
        assert len(set(recipe.manifest.header)) == len(recipe.manifest.header) >= 2
        if recipe.splits:
            assert recipe.default_split in recipe.splits and recipe.pretraining_split in (*recipe.splits, None)
        for name, stage in recipe.stages.items():
            assert stage.examples, f"{recipe.name} {name} has no example"
            assert set(stage.common) <= set(COMMON_FIELDS)
            fields = {f.name for f in dataclasses.fields(stage.options)}
            assert not fields & set(stage.common), f"{recipe.name} {name} redeclares a common option"
            for field in dataclasses.fields(stage.options):
                assert field.metadata.get("opt") and field.metadata["opt"].help, f"{field.name} has no help"


def _resolve(args: list[str]) -> click.Context:
    """Parse a command line down to its leaf command without running it (options are checked)."""
    ctx = main.make_context("vlprep", list(args))
    command: click.Command = main
    while isinstance(command, click.Group):
        with warnings.catch_warnings():  # click 8.2 moves the subcommand's words from protected_args to args
            warnings.simplefilter("ignore", DeprecationWarning)
            words = [*ctx.protected_args, *ctx.args]
        name, command, rest = command.resolve_command(ctx, words)
        ctx = command.make_context(name, rest, parent=ctx)
    return ctx


@pytest.mark.parametrize("dataset,stage", STAGES)
def test_every_example_is_a_valid_command(dataset, stage, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for example in registry.recipe(dataset).stages[stage].examples:
        args = shlex.split(example, comments=True)
        assert args[:3] == ["vlprep", stage, dataset], example
        for arg in args:  # paths an example names must exist for options that check them
            if ("/" in arg or re.search(r"\.(tsv|gz|txt|json)$", arg)) and not arg.startswith(("http", "-")):
                (tmp_path / arg).parent.mkdir(parents=True, exist_ok=True)
                (tmp_path / arg).touch()
        ctx = _resolve(args[1:])
        assert ctx.command.name == dataset


@pytest.mark.parametrize("dataset,stage", STAGES)
def test_help_shows_exactly_the_stage_options(dataset, stage):
    recipe = registry.recipe(dataset)
    declared = recipe.stages[stage]
    result = run_cli(stage, dataset, "--help")
    assert "Examples:" in result.stdout or "Example:" in result.stdout
    expected = {flag_of(COMMON_FIELDS[n]) for n in ("data_dir", *declared.common)}
    expected |= {flag_of(f) for f in dataclasses.fields(declared.options)} | {"--wait-lock", "--help"}
    options_part = result.stdout.split("Options:", 1)[1]
    shown = set(re.findall(r"^\s+(?:-h, )?(--[a-z-]+)", options_part, re.M))
    assert shown == expected


def test_stage_group_help_lists_every_dataset_with_its_title():
    for stage in registry.STAGE_ORDER:
        result = run_cli(stage, "--help")
        for recipe in registry.with_stage(stage):
            assert recipe.name in result.stdout
            assert recipe.title.split(",")[0][:30] in " ".join(result.stdout.split())


def test_bare_commands_exit_0_with_their_help():
    for args in ((), ("manifest",)):
        result = run_cli(*args)
        assert result.returncode == 0 and "Usage:" in result.stdout
    assert "Examples:" in run_cli("manifest", "--help").stdout


@pytest.mark.parametrize("args,words", [
    (("shard", "coco", "--variant", "concat"), "No such option '--variant'"),
    (("shard", "imagenet", "--shard-mb", "5"), "No such option '--shard-mb'"),
    (("binarize", "glue", "--train-subsets", "0"), "No such option"),
    (("fetch", "coco", "--subsets", "0"), "No such option"),
    (("shard", "cc3m"), "`vlprep fetch cc3m`"),
    (("binarize", "coco"), "`vlprep shard coco`"),
    (("shard", "nope"), "no dataset 'nope'"),
    (("fetch", "owt", "--subsets", "30"), "numbered 0 to 20"),
    (("binarize", "glue", "--task", "XYZ"), "unknown GLUE task"),
])
def test_usage_errors_exit_2(args, words):
    result = run_cli(*args, check=False)
    assert result.returncode == 2, result.stderr
    assert words in result.stderr


@pytest.mark.parametrize("dataset,stage", [(r.name, s) for r in registry.RECIPES for s in ("shard", "preview")
                                           if s in r.stages and r.splits])
def test_an_unknown_split_is_a_usage_error_for_every_dataset(dataset, stage, tmp_path):
    result = run_cli(stage, dataset, "--split", "no-such-split", "--data-dir", str(tmp_path), check=False)
    assert result.returncode == 2 and "--split" in result.stderr


def test_fix_hints_repeat_the_data_dir_and_name_every_missing_subset(tmp_path):
    data = tmp_path / "my data"
    result = run_cli("binarize", "owt", "--data-dir", str(data), "--train-subsets", "0,3", "--valid-subsets", "5",
                     check=False)
    assert result.returncode == 1
    assert "3 subset files are missing" in result.stderr
    assert f"vlprep fetch owt --subsets 0,3,5 --data-dir '{data}'" in result.stderr


def test_older_option_names_are_still_accepted_but_not_both():
    ctx = _resolve(["fetch", "cc3m", "--count", "7", "--processes=3", "--tsv", __file__])
    assert ctx.params["limit"] == 7 and ctx.params["workers"] == 3
    result = run_cli("fetch", "cc3m", "--count", "7", "--limit", "8", "--tsv", __file__, check=False)
    assert result.returncode == 2 and "older name" in result.stderr
    help_text = run_cli("fetch", "cc3m", "--help").stdout
    assert "--count" not in help_text and "--processes" not in help_text
    over = run_cli("preview", "imagenet", "--n", "1000", check=False)  # an older name keeps the bounds
    assert over.returncode == 2 and "1<=x<=256" in over.stderr
    typo = run_cli("fetch", "cc3m", "--coun", "3", check=False)  # and stays out of suggestions
    assert typo.returncode == 2 and "--count" not in typo.stderr


@pytest.mark.parametrize("args", [("fetch", "owt", "--data-dir", ""), ("fetch", "owt", "--mirror", ""),
                                  ("stats", "all", "--data-dir", ""), ("preview", "coco", "--out", "x.jpg"),
                                  ("fetch", "cc3m", "--tsv", "/no/such.tsv"), ("fetch", "owt", "--subsets", "5-3"),
                                  ("binarize", "owt", "--train-subsets", "0-99999999999"),
                                  ("preview", "vg", "--split", "train-concat")])
def test_empty_and_impossible_values_are_usage_errors(args):
    result = run_cli(*args, check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr


def test_a_stage_without_a_dataset_prints_its_help():
    for stage in registry.STAGE_ORDER:
        result = run_cli(stage)
        assert result.returncode == 0 and "Usage:" in result.stdout


def test_run_stage_holds_the_values_as_the_command_line_does(tmp_path):
    from vlprep.pipeline.datasets.registry import run_stage
    from vlprep.pipeline.errors import VlprepError

    for dataset, stage, values, words in [("owt", "binarize", {"limit": 0}, "--limit"),
                                          ("vg", "shard", {"split": "val"}, "--split"),
                                          ("owt", "fetch", {"subsets": "0-99"}, "numbered 0 to 20"),
                                          ("coco", "preview", {"limit": 1000}, "over 256")]:
        with pytest.raises(VlprepError, match=words):
            run_stage(dataset, stage, tmp_path, **values)


# ------------------------------------------------------------------ on the demo's sample of every dataset

def test_every_recipe_is_built_by_the_demo_and_verifies(demo_data):
    for recipe in registry.RECIPES:
        stats = demo_data / "out" / recipe.name / "stats.json"
        assert stats.is_file(), f"the demo did not build {recipe.name}"
        assert recipe.summary(json.loads(stats.read_text())), recipe.name
    result = run_cli("verify", "all", "--data-dir", str(demo_data))
    for recipe in registry.RECIPES:
        assert f"{recipe.name} " in result.stdout


def test_every_recipe_stage_the_demo_does_not_run_runs_on_its_sample(demo_data, tmp_path):
    """The demo runs fetch, binarize or shard and verify of every recipe; the other stages run here."""
    ran_by_demo = {"fetch", "binarize", "shard", "verify"}
    for recipe in registry.RECIPES:
        for stage in set(recipe.stages) - ran_by_demo:
            assert stage == "preview", f"{recipe.name} {stage}: no conformance run for this stage"
            sheet = tmp_path / f"{recipe.name}.png"
            result = run_cli("preview", recipe.name, "--limit", "2", "--out", str(sheet), "--data-dir", str(demo_data))
            assert result.stdout.splitlines()[-1] == str(sheet) and sheet.read_bytes()[:4] == b"\x89PNG"
    text = run_cli("stats", "all", "--data-dir", str(demo_data)).stdout
    assert all(recipe.name in text for recipe in registry.RECIPES)


def test_every_recipe_manifest_validates(demo_data, tmp_path):
    from vlprep.pipeline.reports.manifests import validate

    files = validate(demo_data / "manifests")
    assert {f.dataset for f in files} == set(registry.names())
    for f in files:
        header = registry.recipe(f.dataset).manifest.header
        assert f.path.match(registry.recipe(f.dataset).manifest.pattern)
        assert header


def test_stats_of_one_dataset_keeps_table_1_of_the_others(demo_data):
    table = demo_data / "out" / "stats.json"
    before = json.loads(table.read_text())
    run_cli("stats", "coco", "--data-dir", str(demo_data))
    after = json.loads(table.read_text())
    assert after == before
    assert {row["dataset"] for row in after["rows"]} >= {r.name for r in registry.of_kind("pairs")}


def test_run_stage_is_the_command_as_a_call(tmp_path, owt_mirror):
    from vlprep.pipeline.datasets.registry import run_stage
    from vlprep.pipeline.errors import VlprepError

    lines: list[str] = []
    run_stage("owt", "fetch", tmp_path / "api", say=lines.append, mirror=str(owt_mirror), subsets=(0, 5))
    run_stage("owt", "binarize", tmp_path / "api", say=lines.append, workers=1, train_subsets=(0,),
              valid_subsets=(5,))
    run_cli("fetch", "owt", "--data-dir", str(tmp_path / "cli"), "--mirror", str(owt_mirror), "--subsets", "0,5")
    printed = run_cli("binarize", "owt", "--data-dir", str(tmp_path / "cli"), "--workers", "1",
                      "--train-subsets", "0", "--valid-subsets", "5").stdout
    for name in ("train.bin", "train.idx", "valid.bin", "valid.idx"):
        assert (tmp_path / "api/out/owt" / name).read_bytes() == (tmp_path / "cli/out/owt" / name).read_bytes()
    assert lines[-1].replace(str(tmp_path / "api"), "") == printed.splitlines()[-1].replace(str(tmp_path / "cli"), "")
    with pytest.raises(VlprepError, match="no option variant"):
        run_stage("owt", "binarize", tmp_path / "api", variant="concat")


def test_cli_and_engines_name_no_dataset():
    """Everything that names a dataset is in its recipe and records: the CLI, the engines, the reports
    and the sinks read the registry."""
    root = Path(__file__).resolve().parents[2]
    files = [root / "cli.py", *(root / "pipeline" / "engines").glob("*.py"), *(root / "pipeline" / "reports").glob("*.py"),
             *(root / "pipeline" / "sinks").glob("*.py")]
    pattern = re.compile(r"\b(" + "|".join(registry.names()) + r")\b", re.I)
    named = {f"{path.name}:{number}": line.strip() for path in files
             for number, line in enumerate(path.read_text().splitlines(), 1) if pattern.search(line)}
    assert named == {}
