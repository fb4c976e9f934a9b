"""ImageNet zero-shot prompts: the shipped data, the binaries (fairseq as the oracle), the loader tensor."""
from __future__ import annotations

import hashlib
import json
from importlib import resources

import numpy as np
import pytest

from vlprep.pipeline.records.imagenet_prompts import DATA_FILE, load
from vlprep.pipeline.transforms.bpe import REFERENCE, get_backend
from vlprep.pipeline.transforms.dictionary import load_dictionary

from ..helpers import assert_clean_failure, run_cli


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    data = tmp_path_factory.mktemp("prompts") / "data"
    run_cli("binarize", "imagenet-prompts", "--data-dir", str(data), "--tokenizer", REFERENCE)
    return data


def test_shipped_data_is_open_clips_with_its_source_named():
    prompts = load()
    raw = json.loads(resources.files("vlprep.pipeline.records").joinpath(DATA_FILE).read_text())
    assert raw["source"]["class_names"]["package"] == "open_clip_torch" and raw["source"]["class_names"]["version"]
    assert len(raw["source"]["class_names"]["sha256"]) == 64 and len(raw["source"]["synsets"]["sha256"]) == 64
    assert prompts.names[:3] == ("tench", "goldfish", "great white shark") and len(prompts.names) == 1000
    assert prompts.templates[0] == "a bad photo of a {}." and len(prompts.templates) == 80
    assert prompts.synsets[0] == "n01440764" and list(prompts.synsets) == sorted(prompts.synsets)
    assert prompts.names[-1] == "toilet paper" and prompts.synsets[-1] == "n15075141"
    assert prompts.prompt(2, 0) == "a bad photo of a great white shark."


def test_every_prompt_is_bos_tiktoken_ids_through_the_dict_eos(built):
    from vlprep.pipeline.loader import prompt_tokens

    tokens, mask = prompt_tokens(built / "out" / "imagenet-prompts")
    prompts, backend = load(), get_backend(REFERENCE)
    lookup = load_dictionary().gpt2_lookup(50257)
    assert tuple(tokens.shape[:2]) == (1000, 80)
    ids = backend.encode("\n".join(text for _, _, text in prompts.items()))  # one call; split on GPT-2's "\n"
    pieces = np.split(ids, np.flatnonzero(ids == 198))
    for (c, t, text), piece in zip(prompts.items(), pieces):
        piece = piece[piece != 198]
        expected = [0, *lookup[piece].tolist(), 2]
        length = int((~mask[c, t]).sum())
        assert tokens[c, t, :length].tolist() == expected, text
        assert (tokens[c, t, length:] == 1).all() and mask[c, t, length:].all()
    assert len(pieces) == 80_000


def test_fairseq_reads_the_binaries_with_the_same_ids(built):
    fairseq = pytest.importorskip("fairseq")
    from fairseq.data import Dictionary, data_utils
    from fairseq.data.encoders.gpt2_bpe import get_encoder

    from vlprep.pipeline.transforms.bpe import vocabulary_files

    out = built / "out" / "imagenet-prompts"
    dictionary = Dictionary.load(str(out / "dict.txt"))
    dataset = data_utils.load_indexed_dataset(str(out / "prompts"), dictionary, "mmap")
    encoder = get_encoder(*map(str, vocabulary_files()))
    items = load().items()
    assert len(dataset) == len(items) == 80_000
    for number in range(0, len(items), 997):  # one prompt of every class, across templates
        _, _, text = items[number]
        line = " ".join(map(str, encoder.encode(text)))
        expected = [dictionary.bos()] + dictionary.encode_line(line, add_if_not_exist=False).tolist()
        assert dataset[number].tolist() == expected, text
    del fairseq


def test_class_order_is_the_imagenet_shards_labels(demo_data):
    """Class index c of the prompts is class c of vlprep shard imagenet (torchvision's sorted synsets)."""
    import webdataset as wds

    synsets = load().synsets
    out = demo_data / "out" / "imagenet"
    seen = 0
    for path in sorted(out.glob("imagenet-*.tar")):
        for sample in wds.WebDataset(str(path), shardshuffle=False, empty_check=False):
            meta = json.loads(sample["json"])
            assert synsets[int(sample["cls"])] == meta["synset"]
            seen += 1
    assert seen > 20


def test_table_manifest_and_verify(built):
    out = built / "out" / "imagenet-prompts"
    assert (out / "prompts.parquet").is_file() and (built / "manifests" / "imagenet-prompts-items.parquet").is_file()
    run_cli("verify", "imagenet-prompts", "--data-dir", str(built))
    manifests = run_cli("manifest", "build", "imagenet-prompts", "--data-dir", str(built)).stdout
    assert "imagenet-prompts-items" in (built / "manifests" / "README.md").read_text(), manifests
    stats = json.loads((out / "stats.json").read_text())
    source = resources.files("vlprep.pipeline.records").joinpath(DATA_FILE).read_bytes()
    assert stats["data_sha256"] == hashlib.sha256(source).hexdigest() and stats["unk"] == 0


def test_verify_catches_a_changed_item(tmp_path, built):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(built, data)
    binary = data / "out" / "imagenet-prompts" / "prompts.bin"
    raw = bytearray(binary.read_bytes())
    raw[0] = 5  # the first item no longer starts with <s>
    binary.write_bytes(bytes(raw))
    assert_clean_failure(run_cli("verify", "imagenet-prompts", "--data-dir", str(data), check=False),
                         "prompts.bin", "vlprep binarize imagenet-prompts")
