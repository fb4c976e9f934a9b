"""dict.txt parsing and writing, held against fairseq's Dictionary."""
from __future__ import annotations

import io

import pytest

from vlprep.pipeline.errors import VlprepError
from vlprep.pipeline.transforms.dictionary import GPT2_DICT_SHA256, load_dictionary, parse_dictionary


def test_shipped_dictionary_is_fairseqs_gpt2_dict():
    dictionary = load_dictionary()
    assert dictionary.sha256 == GPT2_DICT_SHA256
    assert len(dictionary) == 50264
    assert dictionary.symbols[:5] == ["<s>", "<pad>", "</s>", "<unk>", "13"]


def test_indices_and_saved_bytes_equal_fairseq(tmp_path):
    fairseq_dictionary = pytest.importorskip("fairseq.data").Dictionary
    text = "13 100\n262 50\nhello world 7\n262 3 #fairseq:overwrite\nmadeupword0000 0\n"
    path = tmp_path / "dict.txt"
    path.write_text(text)
    ours = load_dictionary(path)
    theirs = fairseq_dictionary.load(str(path))
    assert ours.indices == theirs.indices
    assert ours.symbols == theirs.symbols
    saved = tmp_path / "saved.txt"
    theirs.save(str(saved))
    # fairseq's save drops the overwrite flag (and cannot load its own file back); ours keeps it
    assert ours.to_text() == saved.read_text().replace("262 3\n", "262 3 #fairseq:overwrite\n")
    plain = "13 100\n262 50\nhello world 7\nmadeupword0000 0\n"
    path.write_text(plain)
    theirs = fairseq_dictionary.load(str(path))
    theirs.save(str(saved))
    assert load_dictionary(path).to_text() == saved.read_text() == plain


@pytest.mark.parametrize("bad, line", [
    ("13 100\n262\n", 2),
    ("13 100\n262 many\n", 2),
    ("13 100\n\n262 1\n", 2),
    ("13 100\n13 5\n", 2),
])
def test_malformed_dictionary_names_the_line(tmp_path, bad, line):
    path = tmp_path / "dict.txt"
    path.write_text(bad)
    with pytest.raises(VlprepError, match=f"line {line}"):
        load_dictionary(path)


def test_fairseq_rejects_what_we_reject(tmp_path):
    fairseq_dictionary = pytest.importorskip("fairseq.data").Dictionary
    for bad in ("13 100\n262\n", "13 100\n13 5\n"):
        with pytest.raises(VlprepError):
            parse_dictionary(bad.encode(), "x")
        with pytest.raises((ValueError, RuntimeError)):
            fairseq_dictionary.load(io.StringIO(bad))
