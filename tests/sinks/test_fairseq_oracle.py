"""fairseq itself is the oracle: our binaries equal what its own pipeline writes, and it reads ours."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from vlprep.pipeline.records.owt import iter_documents, list_chunks, subset_relpath
from vlprep.pipeline.samples.text import build_owt_mirror
from vlprep.pipeline.transforms.bpe import vocabulary_files
from vlprep.pipeline.transforms.text import clean_document

from ..helpers import run_cli

fairseq = pytest.importorskip("fairseq")


def fairseq_reference(lines_file: Path, dict_file: Path, dest: Path) -> Path:
    """fairseq's RoBERTa recipe: multiprocessing_bpe_encoder, then fairseq-preprocess (mmap)."""
    encoder_json, vocab_bpe = vocabulary_files()
    bpe_file = dest / "lines.bpe"
    subprocess.run([sys.executable, "-m", "fairseq.examples.roberta.multiprocessing_bpe_encoder",
                    "--encoder-json", str(encoder_json), "--vocab-bpe", str(vocab_bpe),
                    "--inputs", str(lines_file), "--outputs", str(bpe_file), "--workers", "1"],
                   check=True, capture_output=True)
    out = dest / "bin"
    subprocess.run([sys.executable, "-m", "fairseq_cli.preprocess", "--only-source", "--srcdict", str(dict_file),
                    "--trainpref", str(bpe_file), "--destdir", str(out), "--dataset-impl", "mmap",
                    "--workers", "1"], check=True, capture_output=True)
    return out


def cleaned_lines(raw_root: Path, subsets: tuple[int, ...]) -> list[str]:
    lines: list[str] = []
    for subset in subsets:
        tar = raw_root / subset_relpath(subset)
        for chunk in list_chunks(tar):
            for _, raw in iter_documents(tar, chunk):
                lines += clean_document(raw).lines
    return lines


@pytest.mark.slow
def test_binaries_are_byte_identical_to_fairseq_preprocess(tmp_path):
    mirror = tmp_path / "mirror"
    build_owt_mirror(mirror, (0, 1), chunks=2, docs_per_chunk=30, seed=3)
    data = tmp_path / "data"
    run_cli("fetch", "owt", "--data-dir", str(data), "--mirror", str(mirror), "--subsets", "0,1")
    run_cli("binarize", "owt", "--data-dir", str(data), "--train-subsets", "0", "--valid-subsets", "1",
            "--workers", "2")
    ours = data / "out" / "owt"

    lines = cleaned_lines(data / "raw" / "owt", (0,))
    assert any("<|endoftext|>" in line for line in lines), "the sample must hold the literal special token"
    assert any("\u2028" in line for line in lines), "the sample must hold U+2028 inside a line"
    lines_file = tmp_path / "train.txt"
    lines_file.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    reference = fairseq_reference(lines_file, ours / "dict.txt", tmp_path)

    assert (ours / "train.idx").read_bytes() == (reference / "train.idx").read_bytes()
    assert (ours / "train.bin").read_bytes() == (reference / "train.bin").read_bytes()
    assert (ours / "dict.txt").read_bytes() == (reference / "dict.txt").read_bytes()


@pytest.mark.slow
def test_fairseq_loads_our_output(tmp_path, fetched):
    run_cli("binarize", "owt", "--data-dir", str(fetched), "--workers", "1")
    from fairseq.data import Dictionary
    from fairseq.data.indexed_dataset import MMapIndexedDataset

    from vlprep.pipeline.transforms.bpe import get_backend

    out = fetched / "out" / "owt"
    dictionary = Dictionary.load(str(out / "dict.txt"))
    assert len(dictionary) == 50264
    dataset = MMapIndexedDataset(str(out / "valid"))
    lines = cleaned_lines(fetched / "raw" / "owt", (5,))
    assert len(dataset) == len(lines)
    for i in (0, len(lines) // 2, len(lines) - 1):
        item = dataset[i].numpy()
        assert item[-1] == dictionary.eos()
        decoded = [int(dictionary[t]) for t in item[:-1]]
        assert get_backend("tiktoken").encoding.decode(decoded) == lines[i]
    assert np.all(dataset.sizes >= 2)
