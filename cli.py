"""The ``vlprep`` command line, generated from the recipe registry.

``vlprep STAGE DATASET`` exists for every stage a recipe declares; its options are the common options
the stage takes (declared once in ``pipeline/datasets/recipe.py``) and the fields of the stage's
options dataclass. ``vlprep STAGE all`` runs the stage for every dataset that has it. This module
parses and delegates: it names no dataset.
"""
from __future__ import annotations

import dataclasses
import functools
import inspect
import json
import os
import re
import shlex
import sys
from pathlib import Path
from typing import Any, Callable

import click
from click.core import ParameterSource

from .pipeline import __version__
from .pipeline.datasets import registry
from .pipeline.datasets.recipe import COMMON_FIELDS, Common, Opt, Recipe, Run, Stage, flag_of, opt_of
from .pipeline.errors import VlprepError
from .pipeline.fileio import explain_os_error, read_json
from .pipeline.layout import DEFAULT_DATA_DIR, Layout

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
WAIT_LOCK = "vlprep.wait_lock"
REPEATED = "vlprep.repeated"
STAGE_HELP = {
    "fetch": "Download and check a dataset's raw files (a web-crawled dataset: its images too).",
    "binarize": "Clean, BPE-encode and write a text dataset as fairseq binaries.",
    "shard": "Write an image dataset as WebDataset shards, one sample per image.",
    "verify": "Re-read a dataset's outputs and check them; exit non-zero on the first fault.",
    "preview": "Write a PNG contact sheet of a built split and print its path.",
}
STAGE_DETAILS = {
    "fetch": "Each file is checked against the strongest hash known for it: a checksum its publisher states, "
    "the hub's LFS sha256, or the mirror's SHA256SUMS. Where no public source states a checksum, the sha256 is "
    "only recorded, and fetch says so; how each file was checked is kept in raw/DATASET/.verified.json. A file "
    "on disk as recorded is not downloaded again (a copy with other mtimes is re-hashed); an interrupted "
    "download resumes.",
}
BUILT_ONLY = ("verify", "preview")
"""Stages that ``all`` runs only on datasets already built (the others run on every dataset)."""


# --------------------------------------------------------------------------------------- errors

def _fail(message: str, code: int = 1) -> None:
    click.secho(f"error: {message}", fg="red", err=True)
    sys.exit(code)


def _repeat_options(message: str) -> str:
    """Fix hints name vlprep commands; add the options the user gave that every command takes
    (``--data-dir``), so the hint can be pasted as it stands."""
    ctx = click.get_current_context(silent=True)
    extra = ctx.meta.get(REPEATED, "") if ctx else ""
    if not extra:
        return message
    command = r"\bvlprep (?:(?:fetch|binarize|shard|verify|preview|stats) [a-z0-9-]+|manifest build)"
    options = r"(?: --?[a-z][a-z0-9-]*(?: (?!-)[^\s;()'\"]+)?)*"  # the options the hint already gives
    return re.sub(f"({command}{options})", lambda m: f"{m.group(1)} {extra}", message)


def friendly_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    """Print known failures as one message with the fix, and exit non-zero, without a traceback."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except VlprepError as exc:
            message = str(exc)
            if exc.fix is not None:  # only the fix is a command to paste (the message may quote other commands)
                head, _, fix = message.rpartition("\n  fix: ")
                message = f"{head}\n  fix: {_repeat_options(fix)}"
            _fail(message)
        except BrokenPipeError:  # the reader went away (vlprep stats | head): not a failure to report
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(141)
        except OSError as exc:
            _fail(str(explain_os_error(exc, "I/O error")))
        except KeyboardInterrupt:
            _fail("interrupted; run the same command again to resume (finished work is kept)", 130)

    return wrapper


# ------------------------------------------------------------------------------ options from fields

def _click_type(how: Opt, name: str) -> Any:
    if how.choices:
        return click.Choice(how.choices)
    if how.type is int:
        return click.IntRange(min=how.low, max=how.high) if how.low is not None or how.high is not None else int
    if how.type is float:
        return click.FloatRange(min=how.low, max=how.high) if how.low is not None or how.high is not None else float
    if how.type is Path:
        folder = name.endswith("dir")
        return GivenPath(file_okay=not folder, dir_okay=folder, exists=how.must_exist, path_type=Path)
    return str


class GivenPath(click.Path):
    """A path option that refuses an empty value, which click would take as the current folder."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, str) and not value.strip():
            self.fail("an empty path is not allowed here; give one, or leave the option out", param, ctx)
        return super().convert(value, param, ctx)


def _not_empty(value: Any) -> Any:
    """An empty text or path is a mistake (``--data-dir ""`` would mean the current folder)."""
    if isinstance(value, (str, Path)) and not str(value).strip():
        raise ValueError("an empty value is not allowed here; give one, or leave the option out")
    return value


def _parsed(how: Opt, flag: str) -> Callable:
    """A click callback refusing empty values and applying the field's own parser; a ValueError
    becomes a usage error (exit 2)."""
    parse = how.parse or (lambda value: value)

    def one(value: Any) -> Any:
        return parse(_not_empty(value))

    def callback(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        if value is None:
            return None
        try:
            return tuple(one(v) for v in value) if how.repeat else one(value)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint=flag) from None

    return callback


def _shown(default: Any) -> bool:
    """Whether --help shows the default: not for "none" (None) or an empty list."""
    return default is not None and default != ()


def make_option(field: dataclasses.Field, default: Any = dataclasses.MISSING, help: str | None = None,
                names: tuple[str, ...] | None = None, hidden: bool = False, dest: str | None = None,
                how: Opt | None = None) -> click.Option:
    """The click option of one options-dataclass field (its help, type, bounds and default)."""
    how = how or opt_of(field)
    assert how is not None, f"field {field.name} has no option metadata"
    default = field.default if default is dataclasses.MISSING else default
    flag = flag_of(field)
    decls = list(names or (flag,))
    kwargs: dict[str, Any] = dict(help=help or how.help, hidden=hidden, envvar=how.envvar,
                                  show_envvar=bool(how.envvar))
    if how.type is bool:
        if how.negatable:
            decls = [f"{flag}/--no-{flag[2:]}"]
        kwargs.update(is_flag=True, default=default, show_default=how.negatable)
    else:
        kwargs.update(type=_click_type(how, field.name), multiple=how.repeat, metavar=how.metavar,
                      callback=_parsed(how, flag), show_default=how.show_default and _shown(default))
        kwargs["default"] = (None if hidden else
                             (",".join(map(str, default)) if how.parse and isinstance(default, tuple) and default
                              else default))
    return click.Option(decls + [dest or field.name], **kwargs)


def _common_options(stage: Stage) -> list[click.Option]:
    options = [make_option(COMMON_FIELDS["data_dir"], default=DEFAULT_DATA_DIR)]
    for name in stage.common:
        field = COMMON_FIELDS[name]
        if name == "limit" and stage.limit is not None:
            how = dataclasses.replace(opt_of(field), high=stage.limit.high)
            options.append(make_option(field, default=stage.limit.default, help=stage.limit.help, how=how))
        else:
            options.append(make_option(field))
    return options


def _stage_options(stage: Stage) -> list[click.Option]:
    return [make_option(f) for f in dataclasses.fields(stage.options)]


def _remember_wait_lock(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    """Kept in the context, not passed as an argument: every command takes it, :func:`_lock` reads it."""
    ctx.meta[WAIT_LOCK] = value


def wait_lock_option() -> click.Option:
    return click.Option(["--wait-lock"], is_flag=True, envvar="VLPREP_WAIT_LOCK", show_envvar=True,
                        expose_value=False, callback=_remember_wait_lock,
                        help="If another vlprep process is using the same data, wait for it instead of exiting "
                        "at once.")


def _lock(layout: Layout, stage: str, *datasets: str) -> None:
    """Hold the locks of ``stage`` on ``datasets`` until the command ends (see pipeline/locking.py)."""
    from .pipeline.locking import stage_lock

    ctx = click.get_current_context()
    ctx.with_resource(stage_lock(layout, stage, datasets, wait=ctx.meta.get(WAIT_LOCK, False),
                                 say=lambda line: click.echo(line, err=True)))


def _remember_data_dir(ctx: click.Context, data_dir: Path) -> None:
    """A --data-dir given on the command line is repeated in every fix hint (see :func:`_repeat_options`)."""
    if ctx.get_parameter_source("data_dir") == ParameterSource.COMMANDLINE:
        ctx.meta[REPEATED] = f"--data-dir {shlex.quote(str(data_dir))}"


def _common_values(ctx: click.Context, stage: Stage, values: dict[str, Any]) -> Common:
    """The common options of one command."""
    chosen: dict[str, Any] = {"data_dir": values.pop("data_dir")}
    for name in stage.common:
        chosen[name] = values.pop(name)
    _remember_data_dir(ctx, chosen["data_dir"])
    return Common(**chosen)


class DatasetCommand(click.Command):
    """``vlprep STAGE DATASET``. Older option names a stage still accepts (``--count`` for ``--limit``)
    are rewritten to the current name before parsing, so the same bounds and messages apply, and they
    stay out of --help and of click's "did you mean" suggestions."""

    def __init__(self, *args: Any, aliases: dict[str, str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.aliases = aliases or {}

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        words, used = [], {}
        for word in args:
            if word == "--":
                words += args[len(words):]
                break
            name, eq, value = word.partition("=")
            if name in self.aliases:
                used[self.aliases[name]] = name
                word = self.aliases[name] + eq + value
            words.append(word)
        for new, old in used.items():
            if any(w == new or w.startswith(new + "=") for w in args):
                raise click.UsageError(f"{new} and its older name {old} were both given; keep {new}", ctx)
        return super().parse_args(ctx, words)


def _apply_fetch_settings(common: Common) -> None:
    """The HTTP layer reads its retry budget and idle timeout from the environment of this process."""
    os.environ["VLPREP_RETRY_BUDGET"] = str(common.retry_budget)
    os.environ["VLPREP_IDLE_TIMEOUT"] = str(common.idle_timeout)


def _run_stage(stage_name: str, recipe: Recipe, common: Common, options: Any) -> None:
    stage = recipe.stages[stage_name]
    if "retry_budget" in stage.common:
        _apply_fetch_settings(common)
    run = Run(recipe.name, Layout.from_env(common.data_dir), common, click.echo)
    registry.execute(recipe, stage_name, run, options)


# -------------------------------------------------------------------------------- generated commands

def _help_text(stage: Stage) -> str:
    text = stage.summary
    if stage.details:
        text += "\n\n" + stage.details
    if stage.examples:
        text += "\n\n\b\nExamples:\n" + "\n".join(f"  {line}" for line in stage.examples)
    return text


def dataset_command(stage_name: str, recipe: Recipe) -> click.Command:
    """``vlprep STAGE DATASET``: exactly the options this dataset's stage takes."""
    stage = recipe.stages[stage_name]

    @friendly_errors
    def callback(**values: Any) -> None:
        ctx = click.get_current_context()
        common = _common_values(ctx, stage, values)
        options = stage.options(**values)
        layout = Layout.from_env(common.data_dir)
        _lock(layout, stage_name, recipe.name)
        _run_stage(stage_name, recipe, common, options)

    params = _common_options(stage) + _stage_options(stage) + [wait_lock_option()]
    aliases = {old: flag_of(COMMON_FIELDS[name]) for name, olds in stage.aliases.items() for old in olds}
    return DatasetCommand(recipe.name, params=params, callback=callback, help=_help_text(stage),
                          short_help=recipe.title, context_settings=CONTEXT, aliases=aliases)


def _built(layout: Layout, recipes: tuple[Recipe, ...], stage: str) -> tuple[Recipe, ...]:
    """What ``all`` means for stages that read outputs: the datasets with an ``out/<name>/stats.json``."""
    built = tuple(r for r in recipes if (layout.out(r.name) / "stats.json").exists())
    if not built:
        raise VlprepError(f"no dataset with a {stage} stage has been built in {layout.out_root()}",
                          fix="run a fetch, binarize or shard stage first (see vlprep --help)")
    return built


def all_command(stage_name: str) -> click.Command:
    """``vlprep STAGE all``: the stage of every dataset that has it, each with its own defaults."""
    recipes = registry.with_stage(stage_name)
    common_names = tuple(dict.fromkeys(n for r in recipes for n in r.stages[stage_name].common))
    names = ", ".join(r.name for r in recipes)

    @friendly_errors
    def callback(**values: Any) -> None:
        ctx = click.get_current_context()
        layout = Layout.from_env(values["data_dir"])
        _remember_data_dir(ctx, values["data_dir"])
        chosen = _built(layout, recipes, stage_name) if stage_name in BUILT_ONLY else recipes
        _lock(layout, stage_name, *(r.name for r in chosen))
        commons = {}  # every dataset's options are checked before the first one runs
        for recipe in chosen:
            try:
                commons[recipe.name] = recipe.stages[stage_name].common_values(values)
            except ValueError as exc:
                reason = str(exc).removeprefix("--limit: ")
                raise click.BadParameter(f"{reason}, the most `vlprep {stage_name} {recipe.name}` takes",
                                         param_hint="--limit") from None
        for recipe in chosen:
            click.secho(f"{stage_name} {recipe.name}:", bold=True)
            _run_stage(stage_name, recipe, Common(data_dir=values["data_dir"], **commons[recipe.name]),
                       recipe.stages[stage_name].options())

    params = [make_option(COMMON_FIELDS["data_dir"])]
    params += [make_option(COMMON_FIELDS[n], help=opt_of(COMMON_FIELDS[n]).help +
                           (" (each dataset's own meaning and default when not given)" if n == "limit" else ""))
               for n in common_names]
    which = "every built one of" if stage_name in BUILT_ONLY else "each of"
    return click.Command("all", params=params + [wait_lock_option()], callback=callback,
                         short_help=f"{stage_name.capitalize()} {which}: {names}.",
                         help=f"Run `vlprep {stage_name} DATASET` for {which} {names}, each with its own default "
                         f"options; only the common options below can be given.\n\n\b\nExample:\n  vlprep "
                         f"{stage_name} all", context_settings=CONTEXT)


class StageGroup(click.Group):
    """``vlprep STAGE``: one subcommand per dataset that has the stage, plus ``all``; a dataset without
    the stage is a usage error that says which command builds it."""

    def __init__(self, stage: str, **kwargs: Any) -> None:
        super().__init__(stage, help=_stage_group_help(stage), context_settings=CONTEXT,
                         short_help=STAGE_HELP[stage], invoke_without_command=True,
                         callback=click.pass_context(_help_without_command), **kwargs)
        self.stage = stage

    def list_commands(self, ctx: click.Context) -> list[str]:
        names = [r.name for r in registry.with_stage(self.stage)]
        return names + (["all"] if len(names) > 1 else [])

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name == "all" and len(registry.with_stage(self.stage)) > 1:
            return all_command(self.stage)
        found = registry.BY_NAME.get(name)
        if found is None or self.stage not in found.stages:
            return None
        return dataset_command(self.stage, found)

    def resolve_command(self, ctx: click.Context, args: list[str]) -> tuple:
        name = args[0] if args else ""
        found = registry.BY_NAME.get(name)
        if found is not None and self.stage not in found.stages:
            if found.builder == self.stage or self.stage not in ("binarize", "shard"):
                raise click.UsageError(f"{name} has no {self.stage} stage; its stages are: "
                                       f"{', '.join(found.stages)}", ctx)
            raise click.UsageError(f"{name} has no {self.stage} stage: its outputs are written by "
                                   f"`{found.command(found.builder)}`", ctx)
        if found is None and not name.startswith("-") and name != "all":
            raise click.UsageError(f"no dataset {name!r} has a {self.stage} stage; choose from: "
                                   f"{', '.join(self.list_commands(ctx))}", ctx)
        return super().resolve_command(ctx, args)


def _help_without_command(ctx: click.Context) -> None:
    """A group run without a command prints its help and exits 0, as ``vlprep`` alone does."""
    if ctx.invoked_subcommand is None:
        click.echo(ctx.get_help())


def _stage_group_help(stage: str) -> str:
    example = next(iter(registry.with_stage(stage))).stages[stage].examples[0]
    details = f"\n\n{STAGE_DETAILS[stage]}" if stage in STAGE_DETAILS else ""
    return (f"{STAGE_HELP[stage]}{details}\n\nRun `vlprep {stage} DATASET --help` for a dataset's options.\n\n"
            f"\b\nExample:\n  {example}")


class Main(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.commands)  # in the order a dataset goes through them, not sorted


@click.group(cls=Main, context_settings=CONTEXT, invoke_without_command=True)
@click.version_option(__version__, prog_name="vlprep")
@click.pass_context
def main(ctx: click.Context) -> None:
    """Prepare the datasets of vision-language distillation for a GPU trainer.

    Stages run as `vlprep STAGE DATASET`; each can be run again: it skips finished work, resumes
    interrupted work and never leaves a half-written file under a final name. `vlprep datasets`
    lists the datasets and their stages.

    \b
    Start here (offline, about half a minute; every dataset on a small sample):
      vlprep demo
    Then, for real data:
      {first_steps}
    """
    _help_without_command(ctx)


for _stage in registry.STAGE_ORDER:
    main.add_command(StageGroup(_stage))


def _registry_examples() -> dict[str, str]:
    """Dataset names for the examples of the commands over several datasets, taken from the registry."""
    first = registry.RECIPES[0]
    steps = [first.stages[s].examples[0] for s in ("fetch", first.builder, "verify") if s in first.stages]
    rebuilt = [r.name for r in registry.RECIPES if r.manifest.rebuild] or [first.name]
    return {"first_steps": "\n      ".join(dict.fromkeys(steps)),
            "pairs": " ".join(r.name for r in registry.of_kind("pairs")[:2]),
            "text": registry.of_kind("text")[0].name, "rebuilt": rebuilt[0]}


def _fill_examples(command: click.Command) -> None:
    command.help = (command.help or "").format(**_registry_examples())


@main.command(context_settings=CONTEXT)
def datasets() -> None:
    """List the datasets, what they give, and their stages.

    \b
    Example:
      vlprep datasets
    """
    width = max(len(r.name) for r in registry.RECIPES)
    for recipe in registry.RECIPES:
        click.echo(f"{recipe.name:{width}}  {recipe.title}")
        click.echo(f"{'':{width}}  stages: {', '.join(recipe.stages)}; "
                   f"outputs written by `{recipe.command(recipe.builder)}`")


def _chosen(datasets: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(n for name in datasets for n in (registry.names() if name == "all" else (name,))))


def _stats_command(layout: Layout, chosen: tuple[str, ...], as_json: bool) -> None:
    from .pipeline.reports import table

    documents = {}
    for name in chosen:
        found = registry.recipe(name)
        path = layout.out(name) / "stats.json"
        if not path.exists():
            raise VlprepError(f"{path} is missing", fix=f"run: {found.command(found.builder)}")
        if as_json:
            documents[name] = read_json(path)
            documents.update((folder, read_json(layout.out(folder) / "stats.json")) for folder, _ in found.folders()
                             if folder != name and (layout.out(folder) / "stats.json").exists())
        elif found.kind != "pairs":
            if len(chosen) > 1:
                click.secho(f"{name}:", bold=True)
            for line in found.summary(read_json(path)):
                click.echo(line)
    if as_json:  # one JSON document: a dataset's stats.json as it is, or an object of them by dataset
        click.echo(json.dumps(documents[chosen[0]] if len(documents) == 1 else documents, indent=2, sort_keys=True))
    if any(registry.recipe(n).kind == "pairs" for n in chosen):
        report = table.build_table(layout, table.built_pairs(layout))
        if not as_json:
            for line in table.summary_lines(report):
                click.echo(line)
            click.echo("written: " + ", ".join(str(p) for p in report.written))


@main.command(context_settings=CONTEXT)
@click.argument("datasets", nargs=-1, required=True, type=click.Choice(registry.names() + ("all",)))
@click.option("--data-dir", type=GivenPath(file_okay=False, path_type=Path), envvar="VLPREP_DATA",
              default=DEFAULT_DATA_DIR, show_default=True, show_envvar=True, help="Root of raw/, work/ and out/.")
@click.option("--json", "as_json", is_flag=True, help="Print stats.json instead of tables (with several datasets, "
              "or a dataset with a variant folder, one JSON object of them by folder name).")
@click.pass_context
@friendly_errors
def stats(ctx: click.Context, datasets: tuple[str, ...], data_dir: Path, as_json: bool) -> None:
    """Print the statistics of finished datasets; for image-text ones, the method's Table 1.

    Text and label datasets print their own table (from DATA_DIR/out/DATASET/stats.json).
    Image-text datasets give Table 1: images, average texts per image, average text length in
    GPT-2 tokens and pairs for every built split, a total row (each dataset's pretraining split
    once) and the method's published rows beneath. Table 1 is written over every built image-text
    dataset (whichever were asked for) to DATA_DIR/out/stats.json and stats.md, with
    text-lengths.png, a histogram of text lengths.

    \b
    Examples:
      vlprep stats {pairs}
      vlprep stats {text} --json
      vlprep stats all
    """
    _remember_data_dir(ctx, data_dir)
    layout = Layout.from_env(data_dir)
    chosen = _chosen(datasets)
    if "all" in datasets:
        chosen = tuple(r.name for r in _built(layout, tuple(map(registry.recipe, chosen)), "stats"))
    _lock(layout, "stats", *chosen)
    _stats_command(layout, chosen, as_json)


main.commands["stats"].params.insert(-1, wait_lock_option())
_fill_examples(main)
_fill_examples(main.commands["stats"])


@main.group(cls=Main, context_settings=CONTEXT, invoke_without_command=True)
@click.pass_context
def manifest(ctx: click.Context) -> None:
    """Build and publish the used-ID manifests that let others rebuild the same subsets.

    \b
    Examples:
      vlprep manifest build                  # every built dataset, into DATA_DIR/manifests
      vlprep manifest build {rebuilt} --manifest-dir ./manifests
      vlprep manifest publish --repo https://github.com/me/my-vlprep-manifests
    """
    if ctx.invoked_subcommand is None:
        click.echo(ctx.get_help())


manifest_dir_option = click.option(
    "--manifest-dir", type=GivenPath(file_okay=False, path_type=Path), default=None,
    help="Where the manifests go (default: DATA_DIR/manifests). The repository's own manifests/ folder "
    "holds the method's published subsets.")


def _manifest_help() -> str:
    lines = [f"  {r.name}: {r.manifest.description}." for r in registry.RECIPES]
    return "\n".join(lines)


@manifest.command("build", context_settings=CONTEXT)
@click.argument("dataset", type=click.Choice(registry.names() + ("all",)), default="all")
@click.option("--data-dir", type=GivenPath(file_okay=False, path_type=Path), envvar="VLPREP_DATA",
              default=DEFAULT_DATA_DIR, show_default=True, show_envvar=True, help="Root of raw/, work/ and out/.")
@manifest_dir_option
@click.pass_context
@friendly_errors
def manifest_build(ctx: click.Context, dataset: str, data_dir: Path, manifest_dir: Path | None) -> None:
    """Write the manifests of every built dataset (or DATASET) and a README.md index.

    Gzipped sorted TSVs with deterministic bytes, each with a typed parquet twin (ids as strings,
    counts as int64), one schema per dataset (see docs/manifests.md).

    \b
    Examples:
      vlprep manifest build
      vlprep manifest build {rebuilt} --manifest-dir ./manifests
    """
    from .pipeline.reports import manifests

    _remember_data_dir(ctx, data_dir)
    layout = Layout.from_env(data_dir)
    names = _chosen((dataset,))
    if dataset == "all":
        names = tuple(r.name for r in _built(layout, tuple(map(registry.recipe, names)), "manifest"))
    _lock(layout, "manifest", *names)
    files = manifests.build(layout, names, manifest_dir)
    for line in manifests.summary(files):
        click.echo(line)
    click.echo(f"written: {(manifest_dir or layout.manifests()) / 'README.md'}")


_fill_examples(manifest)
_fill_examples(manifest_build)
manifest_build.help = (inspect.cleandoc(manifest_build.help or "") + "\n\n\b\nWhat each dataset's manifest lists:\n"
                      + _manifest_help())
manifest_build.params.insert(-1, wait_lock_option())


@manifest.command("publish", context_settings=CONTEXT)
@click.option("--repo", required=True, metavar="URL_OR_PATH",
              help="Target git repository: https://github.com/OWNER/NAME(.git) (token from GITHUB_TOKEN), "
              "an ssh URL, or a local path.")
@click.option("--branch", default="main", show_default=True, help="Branch to commit to (created if absent).")
@click.option("--message", default=None, help="Commit message (default: lists the manifests and their rows).")
@click.option("--path", "subdir", default="manifests", show_default=True, help="Folder inside the repository.")
@click.option("--data-dir", type=GivenPath(file_okay=False, path_type=Path), envvar="VLPREP_DATA",
              default=DEFAULT_DATA_DIR, show_default=True, show_envvar=True, help="Root of raw/, work/ and out/.")
@manifest_dir_option
@friendly_errors
def manifest_publish(repo: str, branch: str, message: str | None, subdir: str, data_dir: Path,
                     manifest_dir: Path | None) -> None:
    """Commit the built manifests into a git repository and push (never forced).

    The manifests are checked first (readable, expected columns, sorted, README index current);
    an unchanged set is refused, and on any error the target repository is left untouched.

    \b
    Examples:
      vlprep manifest publish --repo https://github.com/me/my-vlprep-manifests
      vlprep manifest publish --repo git@github.com:me/manifests.git --branch subsets
      vlprep manifest publish --repo /srv/git/manifests.git
    """
    from .pipeline.redact import redact_url
    from .pipeline.reports import manifests

    folder = manifest_dir or Layout.from_env(data_dir).manifests()
    result = manifests.publish(folder, repo, branch, message, subdir)
    click.echo(f"published {len(result.files)} files to {redact_url(repo)} ({branch}) in commit {result.commit[:12]}")
    for name in result.files:
        click.echo(f"  {name}")


@main.command(context_settings=CONTEXT)
@click.option("--data-dir", type=GivenPath(file_okay=False, path_type=Path), default="./vlprep-demo",
              show_default=True, help="Where the demo writes (kept apart from your real data).")
@click.option("--workers", type=click.IntRange(min=1), default=os.cpu_count() or 1, show_default=True,
              help="Worker processes. The output is identical for every value.")
@friendly_errors
def demo(data_dir: Path, workers: int) -> None:
    """Run every dataset's stages offline on small built-in samples, in about half a minute.

    For each dataset, a sample in its real format (with real-world dirt: broken images, bad URLs,
    CRLF and NUL bytes) is built and served on 127.0.0.1, then fetched, binarized or sharded, and
    verified; then Table 1, the manifests, a preview sheet and (with vlprep[loader]) one batch of
    each trainer-side dataset. The closing list names every file it wrote.

    \b
    Example:
      vlprep demo
    """
    from .pipeline.samples.demo import run_demo

    _lock(Layout(data_dir), "demo", "all")
    result = run_demo(data_dir, workers, say=click.echo)
    click.echo(f"done in {result.seconds:.1f} s; written:")
    for path in result.outputs:
        click.echo(f"  {path}")


demo.params.insert(-1, wait_lock_option())


if __name__ == "__main__":  # pragma: no cover
    main()
