"""ImageNet zero-shot prompts → fairseq binaries: every (class, template) prompt, as the method evaluates.

The prompts are shipped as data (:mod:`..records.imagenet_prompts`: open_clip's 1,000 class names,
the 80 OpenAI templates, the synsets in torchvision's order), so there is no fetch. ``binarize``
writes one item per prompt, class-major, ``<s>`` + GPT-2 BPE + ``</s>`` through the same
``dict.txt`` as every other dataset, plus the table that says which (class, template) each item is.
A text encoder's zero-shot classifier is built from these ids; ``loader.prompt_tokens`` gives them
as a ``[1000, 80, L]`` tensor.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import VlprepError
from ..layout import Layout
from ..sinks import manifests as manifest_sink
from .recipe import Manifest, Recipe, Run, Stage

NAME = "imagenet-prompts"
PREFIX = "prompts"
"""``out/imagenet-prompts/prompts.{bin,idx}`` and ``prompts.tsv.gz`` (+ ``prompts.parquet``)."""
MANIFEST_NAME = f"{NAME}-items.tsv.gz"


def out_files(out: Path) -> list[Path]:
    """Every file the build writes in ``out``, stats.json aside (their sha256 go into it)."""
    return [out / "dict.txt", out / f"{PREFIX}.bin", out / f"{PREFIX}.idx", out / f"{PREFIX}.tsv.gz",
            out / f"{PREFIX}.parquet"]


def binarize(layout: Layout, tokenizer: str | None = None) -> dict:
    """Write the prompt binaries, the item table (in ``out`` and as the manifest) and ``stats.json``."""
    import numpy as np

    from ..fileio import ensure_dir, sha256_file, write_json
    from ..records.imagenet_prompts import load
    from ..sinks.fairseq import write_dataset
    from ..transforms.bpe import LineEncoder, get_backend
    from ..transforms.dictionary import BOS, load_dictionary

    prompts, dictionary = load(), load_dictionary()
    items = prompts.items()
    encoded = LineEncoder(dictionary, get_backend(tokenizer)).encode_batches([text for _, _, text in items])
    ends = np.cumsum(encoded.sizes)
    tokens = np.insert(encoded.tokens, ends - encoded.sizes, BOS)  # <s> in front of every item
    sizes = encoded.sizes + 1
    out = ensure_dir(layout.out(NAME))
    (out / "dict.txt").write_text(dictionary.to_text(), encoding="utf-8")
    write_dataset(out / f"{PREFIX}.bin", out / f"{PREFIX}.idx", tokens, sizes, len(dictionary))
    rows = [(i, c, t, prompts.synsets[c], text) for i, (c, t, text) in enumerate(items)]
    manifest_sink.write_tsv_gz(out / f"{PREFIX}.tsv.gz", manifest_sink.PROMPT_ITEMS, rows)
    manifest_sink.write_tsv_gz(layout.manifests() / MANIFEST_NAME, manifest_sink.PROMPT_ITEMS, rows)
    stats = {"items": len(items), "classes": len(prompts.names), "templates": len(prompts.templates),
             "tokens": int(tokens.size), "max_length": int(sizes.max()), "unk": encoded.unk,
             "data_sha256": prompts.sha256, "dict_sha256": dictionary.sha256, "source": prompts.source,
             "files": {p.name: sha256_file(p) for p in out_files(out)}}
    write_json(out / "stats.json", stats)
    return stats


def verify(layout: Layout) -> dict:
    """Every file as stats.json records it, every item ``<s>`` … ``</s>`` within the dictionary, the
    item table in class-major order, and the build made from the data this vlprep ships."""
    import numpy as np

    from ..fileio import read_json, sha256_file
    from ..records.imagenet_prompts import load
    from ..sinks.fairseq import IndexFormatError, check_dataset, read_index, read_tokens
    from ..transforms.dictionary import BOS, EOS, load_dictionary

    out, fix = layout.out(NAME), f"run: vlprep binarize {NAME}"
    if not (out / "stats.json").is_file():
        raise VlprepError(f"{out / 'stats.json'} is missing", fix=fix)
    stats = read_json(out / "stats.json")
    for path in out_files(out):
        if not path.is_file() or sha256_file(path) != stats["files"].get(path.name):
            raise VlprepError(f"{path}: missing or not the file stats.json records", fix=fix)
    if stats["data_sha256"] != load().sha256:
        raise VlprepError(f"{out}: built from other prompt data than this vlprep ships", fix=fix)
    dictionary = load_dictionary()
    prefix = out / PREFIX
    try:
        found = check_dataset(prefix, len(dictionary), EOS)
    except IndexFormatError as exc:
        raise VlprepError(str(exc), fix=fix) from exc
    index = read_index(Path(f"{prefix}.idx"))
    tokens = read_tokens(Path(f"{prefix}.bin"), index.dtype)
    firsts = np.concatenate(([0], np.cumsum(np.asarray(index.sizes, dtype=np.int64))[:-1]))
    if found["items"] != stats["items"] or (np.asarray(tokens[firsts]) != BOS).any():
        raise VlprepError(f"{prefix}.bin: {found['items']:,} items (stats.json: {stats['items']:,}), or an item "
                          "that does not start with <s>", fix=fix)
    _, rows = manifest_sink.read_tsv_gz(out / f"{PREFIX}.tsv.gz")
    expected = [[str(i), str(c), str(t)] for i, (c, t, _) in enumerate(load().items())]
    if [row[:3] for row in rows] != expected:
        raise VlprepError(f"{out / (PREFIX + '.tsv.gz')}: items are not the (class, template) pairs in class-major "
                          "order", fix=fix)
    return {"items": found["items"], "ids": found["ids"]}


def summary(stats: dict) -> list[str]:
    """The ``vlprep stats`` table of the prompt binaries."""
    return [f"{'items':>8} {'classes':>8} {'templates':>9} {'tokens':>9} {'max len':>7} {'unk':>4}",
            f"{stats['items']:>8,} {stats['classes']:>8,} {stats['templates']:>9,} {stats['tokens']:>9,} "
            f"{stats['max_length']:>7} {stats['unk']:>4}"]


def build_manifest(layout: Layout) -> Path:
    """``manifests/imagenet-prompts-items.tsv.gz`` again from the table beside the binaries."""
    _, rows = manifest_sink.read_tsv_gz(layout.out(NAME) / f"{PREFIX}.tsv.gz")
    return manifest_sink.write_tsv_gz(layout.manifests() / MANIFEST_NAME, manifest_sink.PROMPT_ITEMS, rows)


@dataclass(frozen=True)
class BinarizeOptions:
    pass


@dataclass(frozen=True)
class VerifyOptions:
    pass


def binarize_stage(run: Run, options: BinarizeOptions) -> None:
    run.say_built(summary(binarize(run.layout, run.common.tokenizer)),
                  f"dict.txt {PREFIX}.bin {PREFIX}.idx {PREFIX}.tsv.gz {PREFIX}.parquet stats.json")


def verify_stage(run: Run, options: VerifyOptions) -> None:
    found = verify(run.layout)
    run.say(f"{NAME} {PREFIX}: ok ({found['items']:,} items, {found['ids']:,} ids, every item <s> … </s>)")


RECIPE = Recipe(
    name=NAME,
    title="ImageNet-1k zero-shot prompts, 1,000 classes × 80 templates as fairseq binaries (text; evaluation)",
    kind="text",
    builder="binarize",
    stages={
        "binarize": Stage(binarize_stage, BinarizeOptions, "Write every ImageNet zero-shot prompt as fairseq binaries "
                          "in DATA_DIR/out/imagenet-prompts.",
                          (f"vlprep binarize {NAME}",),
                          common=("tokenizer",),
                          details="Prompts are open_clip's class names in the 80 OpenAI templates ('a bad photo of a "
                          "{}.', ...), shipped with vlprep (source, version and sha256 in stats.json). One item per "
                          "prompt, class-major (item = class x 80 + template): <s> + GPT-2 BPE + </s> through the "
                          "shipped dict.txt. Beside prompts.bin/.idx: prompts.tsv.gz and prompts.parquet (item, "
                          "class_index, template_index, synset, prompt); class indices are torchvision's "
                          "sorted-synset order, as in vlprep shard imagenet."),
        "verify": Stage(verify_stage, VerifyOptions, "Check the prompt binaries and their table; exit non-zero on "
                        "the first fault.", (f"vlprep verify {NAME}",)),
    },
    manifest=Manifest(f"{NAME}-*.tsv.gz", manifest_sink.PROMPT_ITEMS,
                      "Every prompt item: position in prompts.bin, class index, template index, synset, text",
                      build=build_manifest),
    demo="vlprep.pipeline.samples.demo:imagenet_prompts",
    summary=summary,
)
