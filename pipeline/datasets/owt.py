"""OpenWebText subsets → fairseq binaries (``out/owt/{dict.txt,train,valid}.{bin,idx}``).

The recipe: which subsets are fetched (from the hub at a pinned commit, or a mirror; where each came
from is kept in ``raw/owt/SOURCE.json``) and which form each split. A subset tar is one source of the
text corpus :func:`corpus` describes; its ``.xz`` members are the chunks (``records/owt.py`` lists
and reads them). The work (chunked BPE encoding, ordered merge, provenance) is done by
``engines/textbin.py``.

From Python::

    from vlprep.pipeline.datasets import owt
    from vlprep.pipeline.engines import textbin
    owt.fetch_subsets(layout, (0, 1, 2, 3, 4, 5))
    textbin.binarize(layout, owt.corpus(), textbin.BinarizeConfig(owt.DEFAULT_SPLITS), workers=2)
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..caps import DEFAULT_CAPS
from ..errors import VlprepError
from ..layout import Layout
from ..sinks import manifests as manifest_sink
from .recipe import FETCH_COMMON, Limit, Manifest, Recipe, Run, Stage, option

if TYPE_CHECKING:
    from ..engines.fetch import FetchReport
    from ..engines.textbin import TextCorpus

NAME = "owt"
SUBSETS = range(21)
DEFAULT_SPLITS = {"train": (0, 1, 2, 3, 4), "valid": (5,)}
SOURCE_RECORD = "SOURCE.json"
"""``raw/owt/SOURCE.json``: where each fetched subset came from (hub repo, revision and commit, or mirror)."""


def parse_subsets(value: str | tuple[int, ...]) -> tuple[int, ...]:
    """``"0-4"``, ``"0,2,5"`` or ``"0-2,7"`` → subset numbers (0–20)."""
    if isinstance(value, tuple):
        return value
    numbers: list[int] = []
    for part in value.split(","):
        part = part.strip()
        try:
            low, high = (int(x) for x in part.split("-", 1)) if "-" in part[1:] else (int(part),) * 2
        except ValueError:
            raise ValueError(f"{value!r}: use numbers and ranges like 0-4 or 0,2,5") from None
        if low > high:
            raise ValueError(f"{value!r}: the range {part} runs backwards; write it low-high, like 0-4")
        if low not in SUBSETS or high not in SUBSETS:  # checked before the range is built: 0-99999999999 is cheap
            raise ValueError(f"{value!r}: OpenWebText subsets are numbered 0 to 20")
        numbers += range(low, high + 1)
    if not numbers:
        raise ValueError(f"{value!r}: name at least one subset, like 0-4 or 0,2,5")
    return tuple(dict.fromkeys(numbers))


def format_subsets(subsets: tuple[int, ...]) -> str:
    return ",".join(str(s) for s in subsets)


@dataclass(frozen=True)
class FetchOptions:
    subsets: tuple[int, ...] = option((0, 1, 2, 3, 4, 5), "OpenWebText subsets to fetch (0-4 are train, 5 is "
                                      "valid).", parse=parse_subsets, metavar="LIST")
    revision: str | None = option(None, "Hub revision (branch, tag or commit). Default: the pinned commit that "
                                  "still holds subsets/.")


@dataclass(frozen=True)
class BinarizeOptions:
    train_subsets: tuple[int, ...] = option(DEFAULT_SPLITS["train"], "Subsets that form the train split.",
                                            parse=parse_subsets, metavar="LIST")
    valid_subsets: tuple[int, ...] = option(DEFAULT_SPLITS["valid"], "Subsets that form the valid split.",
                                            parse=parse_subsets, metavar="LIST")
    dict_path: Path | None = option(None, "Your own fairseq dict.txt. Default: fairseq's GPT-2 dict.txt shipped "
                                    "with vlprep.", type=Path, flag_name="dict", must_exist=True)
    doc_separator: bool = option(False, "Write one [</s>] item between consecutive documents (fairseq's "
                                 "blank-line convention for complete_doc training).", type=bool, negatable=True)
    max_document_mb: int = option(DEFAULT_CAPS.document_bytes >> 20, "A document over this many MiB is skipped "
                                  "unread and listed in stats.json (skipped_documents) and provenance.json.",
                                  type=int, low=1)
    force: bool = option(False, "Let a --limit trial replace an out/owt built with no limit or a larger one "
                         "(refused by default, so a trial never throws away a full build).", type=bool)


@dataclass(frozen=True)
class VerifyOptions:
    tokenizer_check: int = option(0, "Also re-encode N random lines from the raw archives with the reference BPE "
                                  "(tiktoken) and compare them id for id with what is on disk (each line at most "
                                  "once: N over the number stored checks them all).", type=int, low=0,
                                  metavar="N")
    seed: int = option(0, "Seed that draws the --tokenizer-check lines.", type=int)


def corpus() -> TextCorpus:
    """OpenWebText as ``engines/textbin.py`` reads it: subset tars of ``.xz`` chunks of ``.txt`` documents."""
    from ..engines.textbin import TextCorpus
    from ..records import owt as records

    return TextCorpus(dataset=NAME, sources={s: records.subset_relpath(s) for s in SUBSETS},
                      list_chunks=records.list_chunks, read_documents=records.read_documents,
                      fetch_command=f"vlprep fetch {NAME} --subsets {{sources}}",
                      binarize_command=f"vlprep binarize {NAME}", chunks_field="xz_members", origin=subset_origin)


def fetch_subsets(layout: Layout, subsets: tuple[int, ...], revision: str | None = None,
                  mirror: str | None = None) -> FetchReport:
    """Download and verify the subset tars; the fetch loop records where they came from in
    ``raw/owt/SOURCE.json``, which ``binarize`` copies into the outputs' provenance."""
    from ..engines.fetch import fetch_from_hub, fetch_from_mirror
    from ..fileio import ensure_dir
    from ..records import owt as records
    from ..sources.mirror import Mirror

    raw = ensure_dir(layout.raw(NAME))
    relpaths = [records.subset_relpath(s) for s in subsets]
    if mirror:
        return fetch_from_mirror(raw, relpaths, Mirror(mirror), records.KNOWN_SHA256)
    return fetch_from_hub(raw, relpaths, records.HUB_REPO, revision or records.DEFAULT_REVISION, records.KNOWN_SHA256)


def read_sources(path: Path) -> dict[str, dict]:
    """``raw/owt/SOURCE.json`` (empty if absent), in either form: the fetch loop's, or the older
    ``{"hub_repo", "revision", "commit", "sha256"}`` / ``{"mirror", "sha256"}`` entries."""
    from ..sources.provenance import read_sources as read

    return read(path, NAME)


def subset_origin(raw: Path, relpath: str) -> dict:
    """Where the fetched subset ``relpath`` came from, by ``SOURCE.json`` (credentials redacted): hub
    repo, revision and commit, or mirror, as ``stats.json`` has always recorded it."""
    from ..sources.provenance import origin_of

    entry = read_sources(raw / SOURCE_RECORD).get(relpath)
    return origin_of(entry) if entry else {}


def fetch(run: Run, options: FetchOptions) -> None:
    from ..records.owt import HUB_REPO

    run.say_fetch(fetch_subsets(run.layout, options.subsets, options.revision, run.common.mirror),
                  f"{HUB_REPO}@{{commit}}")


def missing_subsets(run: Run, subsets: tuple[int, ...]) -> None:
    """Every subset a split needs that is not fetched, named in one error with one fix."""
    from ..records.owt import subset_relpath

    raw = run.layout.raw(NAME)
    missing = tuple(s for s in subsets if not (raw / subset_relpath(s)).exists())
    if missing:
        listed = ", ".join(str(raw / subset_relpath(s)) for s in missing)
        raise VlprepError(f"{len(missing)} subset file{'s are' if len(missing) > 1 else ' is'} missing: {listed}",
                          fix=f"run: vlprep fetch owt --subsets {format_subsets(missing)}")


def binarize(run: Run, options: BinarizeOptions) -> None:
    from ..engines import textbin
    from ..transforms.bpe import default_backend

    overlap = set(options.train_subsets) & set(options.valid_subsets)
    if overlap:
        raise VlprepError(f"subsets {sorted(overlap)} are in both --train-subsets and --valid-subsets",
                          fix="give each subset to one split")
    missing_subsets(run, options.train_subsets + options.valid_subsets)
    config = textbin.BinarizeConfig(
        splits={"train": options.train_subsets, "valid": options.valid_subsets},
        doc_separator=options.doc_separator, limit=run.common.limit,
        dict_path=str(options.dict_path) if options.dict_path else None,
        tokenizer=run.common.tokenizer or default_backend(), max_document_bytes=options.max_document_mb << 20)
    stats = textbin.binarize(run.layout, corpus(), config, run.common.workers, force=options.force)
    run.say_built(textbin.summary_lines(stats), "{dict.txt,train.bin,train.idx,valid.bin,valid.idx,stats.json}")


def verify(run: Run, options: VerifyOptions) -> None:
    from ..engines import textbin

    for split, found in textbin.verify(run.layout, corpus()).items():
        run.say(f"owt {split}: ok ({found['items']:,} items, {found['ids']:,} ids)")
    if options.tokenizer_check:
        report = textbin.tokenizer_check(run.layout, corpus(), options.tokenizer_check, options.seed)
        drawn = f"all {report['checked']:,} items" if report.get("capped") else \
            f"{report['checked']:,} random items"
        note = (f"--tokenizer-check {options.tokenizer_check:,} capped at the {report['traced']:,} items "
                "traced in provenance.json") if report.get("capped") else f"seed {options.seed}"
        run.say(f"owt tokenizer check: ok ({drawn} from {report.get('members', 0):,} archive members equal their "
                f"{report['reference']} encoding; {note})")


def summary(stats: dict) -> list[str]:
    from ..engines import textbin

    return textbin.summary_lines(stats)


def write_manifest(layout: Layout) -> Path:
    """``owt-subsets.tsv.gz`` from ``out/owt/stats.json``: each subset file, its split, sha256, counts, origin."""
    from ..fileio import read_json
    from ..redact import redact_text

    stats = read_json(layout.out(NAME) / "stats.json")
    split_of = {int(subset): split for split, data in stats["splits"].items() for subset in data.get("subsets", [])}
    rows = []
    for subset, data in sorted(stats["subsets"].items()):
        source = data.get("source") or {}
        repo = source.get("repo") or source.get("hub_repo")
        origin = redact_text(f"{repo}@{source.get('commit') or source.get('revision')}" if repo
                             else f"mirror {source.get('mirror', '?')}")
        rows.append((data["file"], split_of.get(int(subset), "?"), data["sha256"], data["documents"],
                     data.get("documents_kept", data["documents"]), origin))
    return manifest_sink.write_tsv_gz(layout.manifests() / MANIFEST.pattern, MANIFEST.header, rows)


MANIFEST = Manifest("owt-subsets.tsv.gz", manifest_sink.SOURCE_FILES,
                    "OpenWebText subset files: sha256, where they came from (hub repo@commit or mirror), documents",
                    build=write_manifest)

RECIPE = Recipe(
    name=NAME,
    title="OpenWebText subsets 0-5 as fairseq binaries (text pretraining)",
    kind="text",
    builder="binarize",
    stages={
        "fetch": Stage(fetch, FetchOptions, "Download and check the OpenWebText subset tars into DATA_DIR/raw/owt.",
                       ("vlprep fetch owt", "vlprep fetch owt --subsets 0,5 --mirror /datasets/owt-mirror"),
                       common=FETCH_COMMON,
                       details="From the Hugging Face hub (honouring HF_ENDPOINT and HF_TOKEN) at a pinned commit, "
                       "checked against the hub's LFS sha256, or from --mirror (checked against its SHA256SUMS). "
                       "Where each file came from is kept in raw/owt/SOURCE.json."),
        "binarize": Stage(binarize, BinarizeOptions,
                          "Clean, GPT-2 BPE-encode and write OpenWebText as fairseq binaries in DATA_DIR/out/owt.",
                          ("vlprep binarize owt --workers 8", "vlprep binarize owt --limit 1000    # a quick trial",
                           "vlprep binarize owt --dict my/dict.txt --doc-separator",
                           "vlprep binarize owt --tokenizer tiktoken    # the reference BPE, same bytes out"),
                          common=("workers", "limit", "tokenizer"),
                          limit=Limit("Only the first N documents of each subset (a trial: it replaces out/owt, "
                                      "but never one built with no limit or a larger one unless --force)."),
                          details="Each document is cleaned (UTF-8 with replacement, CR/CRLF to LF, NULs deleted, "
                          "lines stripped, empty lines dropped); each line is encoded as ordinary text, mapped "
                          "through dict.txt and ended with </s>. The result is byte-identical to fairseq-preprocess "
                          "--only-source --srcdict dict.txt --dataset-impl mmap on the same lines, for every "
                          "--workers value. An interrupted run resumes at archive-member granularity."),
        "verify": Stage(verify, VerifyOptions, "Re-read out/owt and check it; exit non-zero on the first fault.",
                        ("vlprep verify owt", "vlprep verify owt --tokenizer-check 1000"),
                        details="Magic, version, dtype, sizes against pointers and .bin length, every item ending "
                        "in </s>, no id outside the dictionary, counts and sha256 equal to stats.json."),
    },
    manifest=MANIFEST,
    demo="vlprep.pipeline.samples.demo:owt",
    summary=summary,
    splits=("train", "valid"),
    default_split="train",
    pretraining_split="train",
)
