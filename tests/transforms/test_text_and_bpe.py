"""Cleaning rules and GPT-2 BPE ids, held against fairseq's own GPT-2 encoder."""
from __future__ import annotations

import random

import numpy as np
import pytest

from vlprep.pipeline.samples.text import sample_document
from vlprep.pipeline.transforms.bpe import (BACKENDS, REFERENCE, LineEncoder, available_backends, default_backend,
                                          get_backend, vocabulary_files)
from vlprep.pipeline.transforms.dictionary import EOS, UNK, load_dictionary, parse_dictionary
from vlprep.pipeline.transforms.text import clean_caption, clean_document


def test_cleaning_rules():
    raw = b"  first line \r\nsecond\rthird\x00 with nul\n\n   \n\tlast\t\n"
    doc = clean_document(raw)
    assert doc.lines == ["first line", "second", "third with nul", "last"]
    assert doc.nul_removed == 1
    assert doc.empty_dropped == 2  # "" and "   "; the final newline ends "last", it starts no line


def test_cleaning_keeps_unicode_separators_inside_lines_and_replaces_bad_utf8():
    doc = clean_document("a\u2028b\u0085c\x0bd\n".encode() + b"bad \xff byte")
    assert doc.lines == ["a\u2028b\u0085c\x0bd", "bad \ufffd byte"]


def test_cleaning_edge_documents():
    assert clean_document(b"").lines == [] and clean_document(b"").empty_dropped == 0
    assert clean_document(b"\n").empty_dropped == 1
    assert clean_document(b"\x00\r\n").lines == [] and clean_document(b"\x00\r\n").nul_removed == 1
    assert clean_document(b"no newline at end").lines == ["no newline at end"]


def test_clean_caption():
    assert clean_caption("  a\x00 dog \n\t on  a\u00a0mat ") == "a dog on a mat"


def dirty_lines(n: int, seed: int = 0) -> list[str]:
    """Lines that stress the pre-tokenizer: contractions, digits, odd whitespace, scripts, long lines."""
    rng = random.Random(seed)
    alphabet = (list("abcdefghij ABC'sdtmlvre0123456789.,;:!?-—–\"()[]{}<>|/\\@#$%^&*_+=~`") +
                ["\u2028", "\u0085", "\u00a0", "\u3000", "\x0b", "\x0c", "\t", "  ", "漢", "字", "か", "🙂", "🚀",
                 "é", "ñ", "ß", "\ufffd", "\u200b", "\ufeff", "'s", "'ll", "'ve", " 's", "<|endoftext|>", "ﬁ", "Ⅷ",
                 "١٢٣", "\U0001F600", "\x1f", "\x7f"])
    lines = []
    for _ in range(n):
        line = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 80))).strip()
        if line:
            lines.append(line)
    lines.append("x" * 100_000 + " end")
    lines.append("<|endoftext|>")
    return lines


SCRIPTS = ("Привет мир, как дела? Ελληνικά κείμενα. हिन्दी में लिखा गया पाठ। ภาษาไทยไม่มีช่องว่าง 한국어 문장입니다 "
           "العربية من اليمين עברית גם 中文没有空格 日本語とカタカナ 👩‍👩‍👧‍👦 🏳️‍🌈 é ñ Z̤͔ͧ̑̓ ﷽ ℕ⁵ ½ "
           "I'M YOU'LL they'RE 2024-11-23 3.14159 1,000,000 $5.00 ...!!! ??? ---- ____ 		   spaced")
BACKEND_NAMES = sorted(available_backends())


def multilingual_lines(n: int, seed: int) -> list[str]:
    """Cleaned lines mixing scripts, combining marks, ZWJ emoji, digits and odd whitespace."""
    rng = random.Random(seed)
    pieces = SCRIPTS.split(" ") + [" ", "", " ", "　", "�", "​", "﻿", " ", "  ", "	"]
    lines = []
    for _ in range(n):
        line = "".join(rng.choice(pieces) + rng.choice(["", " ", ""]) for _ in range(rng.randint(1, 60))).strip()
        if line:
            lines.append(line)
    return lines


def corpus(seed: int) -> list[str]:
    """The dirty corpus the backends are held to: generated lines, several scripts, demo documents."""
    demo_lines = [line for _ in range(400)
                  for line in clean_document(sample_document(random.Random(seed), dirty=True)).lines]
    return dirty_lines(3000, seed) + multilingual_lines(3000, seed) + demo_lines


def test_gigatoken_is_installed_and_the_default():
    assert "gigatoken" in available_backends()
    assert default_backend() == "gigatoken" and REFERENCE == "tiktoken"
    assert set(BACKENDS) == {"gigatoken", "tiktoken"}


@pytest.mark.parametrize("name", BACKEND_NAMES)
def test_literal_special_token_is_ordinary_text(name):
    ids = get_backend(name).encode("<|endoftext|>")
    assert 50256 not in ids.tolist() and ids.tolist() == [27, 91, 437, 1659, 5239, 91, 29]


@pytest.mark.parametrize("name", [n for n in BACKEND_NAMES if n != REFERENCE])
def test_backend_ids_identical_to_reference_on_every_line(name):
    reference, backend = get_backend(REFERENCE), get_backend(name)
    lines = corpus(seed=7)
    assert len(lines) > 6000
    for line in lines:
        assert backend.encode(line).tolist() == reference.encode(line).tolist(), repr(line[:80])
    joined = "\n".join(lines)  # the way LineEncoder calls it: one long text
    assert np.array_equal(backend.encode(joined), reference.encode(joined))


@pytest.mark.parametrize("name", BACKEND_NAMES)
def test_joined_encoding_equals_per_line_tiktoken(name):
    backend = get_backend(name)
    lines = dirty_lines(3000)
    encoder = LineEncoder(load_dictionary(), backend)
    encoded = encoder.encode_batches(lines)
    expected = [get_backend(REFERENCE).encoding.encode_ordinary(line) for line in lines]
    assert encoded.sizes.tolist() == [len(e) + 1 for e in expected]
    table = encoder.table
    flat = np.concatenate([np.append(table[np.array(e, dtype=np.int64)], EOS) for e in expected])
    assert np.array_equal(encoded.tokens, flat)


@pytest.mark.parametrize("name", BACKEND_NAMES)
def test_ids_equal_fairseq_gpt2_encoder(name):
    gpt2_bpe = pytest.importorskip("fairseq.data.encoders.gpt2_bpe_utils")
    encoder_json, vocab_bpe = vocabulary_files()
    reference = gpt2_bpe.get_encoder(str(encoder_json), str(vocab_bpe))
    backend = get_backend(name)
    for line in dirty_lines(1500, seed=1):
        assert backend.encode(line).tolist() == reference.encode(line), repr(line[:80])


def test_unknown_gpt2_ids_become_unk_and_are_counted():
    text = "".join(f"{i} 1\n" for i in range(300))  # a dictionary holding only GPT-2 ids 0..299
    dictionary = parse_dictionary(text.encode(), "small dict")
    encoded = LineEncoder(dictionary, get_backend("tiktoken")).encode(["hello world, tokenization"])
    assert encoded.unk > 0
    assert (encoded.tokens == UNK).sum() == encoded.unk
    assert encoded.tokens[-1] == EOS
