"""fairseq dictionaries (``dict.txt``): reading, writing and mapping GPT-2 ids to indices.

Ids on disk are fairseq dictionary indices, not GPT-2 ids: ``<s>``=0, ``<pad>``=1, ``</s>``=2,
``<unk>``=3, then the symbols of ``dict.txt`` in file order from 4. The parser follows fairseq's
``Dictionary.add_from_file`` rule for rule (``<symbol> <count> [#fairseq:overwrite]``, split at the
last space) so any file fairseq accepts gives the same indices here, and any file it rejects is
rejected with the line number.

``#fairseq:overwrite`` appends a symbol again at a new index (the old index keeps its slot but
lookups go to the new one), as fairseq does. fairseq's ``Dictionary.save`` then writes the repeated
symbol without the flag, a file fairseq itself refuses to load ("Duplicate word found"); vlprep writes
the flag back on such a line, so the ``dict.txt`` it writes loads (in vlprep and in fairseq) to the
same indices. A dictionary's ``sha256`` is that of the text it writes, so ``binarize`` records what
``verify`` finds on disk whatever spacing or flags the input file had.
"""
from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np

from ..errors import VlprepError

BOS, PAD, EOS, UNK = 0, 1, 2, 3
SPECIALS = ("<s>", "<pad>", "</s>", "<unk>")
OVERWRITE_FLAG = "#fairseq:overwrite"

GPT2_DICT_SHA256 = "2c31c5b236661067fe8626775eb995ef5fe808ac87d2ad4a6ddbef68550f5cc6"
GPT2_DICT_URL = "https://dl.fbaipublicfiles.com/fairseq/gpt2_bpe/dict.txt"


@dataclass
class Dictionary:
    """The symbols of a fairseq dictionary, with the index fairseq gives each."""

    symbols: list[str] = field(default_factory=lambda: list(SPECIALS))
    counts: list[int] = field(default_factory=lambda: [1, 1, 1, 1])
    indices: dict[str, int] = field(default_factory=lambda: {s: i for i, s in enumerate(SPECIALS)})
    sha256: str = ""
    source: str = ""

    def __len__(self) -> int:
        return len(self.symbols)

    def add(self, symbol: str, count: int, overwrite: bool) -> None:
        if symbol in self.indices and not overwrite:
            self.counts[self.indices[symbol]] += count
            return
        self.indices[symbol] = len(self.symbols)
        self.symbols.append(symbol)
        self.counts.append(count)

    def to_text(self) -> str:
        """The bytes fairseq's ``Dictionary.save`` writes (what ``fairseq-preprocess`` copies out), with
        ``#fairseq:overwrite`` on a line whose symbol came before, so the text loads back as it was."""
        seen = set(SPECIALS)
        lines = []
        for symbol, count in zip(self.symbols[4:], self.counts[4:]):
            lines.append(f"{symbol} {count} {OVERWRITE_FLAG}\n" if symbol in seen else f"{symbol} {count}\n")
            seen.add(symbol)
        return "".join(lines)

    def gpt2_lookup(self, n_vocab: int) -> np.ndarray:
        """A table ``t`` with ``t[gpt2_id]`` = dictionary index (``<unk>`` where the id is absent)."""
        table = np.full(n_vocab, UNK, dtype=np.int64)
        for gpt2_id in range(n_vocab):
            table[gpt2_id] = self.indices.get(str(gpt2_id), UNK)
        return table


def parse_dictionary(data: bytes, source: str) -> Dictionary:
    """Parse ``dict.txt`` bytes; errors name ``source`` and the 1-based line."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise VlprepError(
            f"{source}: not UTF-8 (byte {exc.start})", fix="pass a fairseq dict.txt with --dict"
        ) from exc
    dictionary = Dictionary(source=source)
    for number, line in enumerate(_file_lines(text), start=1):
        symbol, count, overwrite = _parse_line(line, source, number)
        if symbol in dictionary.indices and not overwrite:
            raise VlprepError(
                f"{source} line {number}: duplicate symbol {symbol!r}",
                fix=f"remove the duplicate or mark the line with '{OVERWRITE_FLAG}' as fairseq requires",
            )
        dictionary.add(symbol, count, overwrite)
    if len(dictionary) == len(SPECIALS):
        raise VlprepError(f"{source}: the dictionary is empty", fix="pass a fairseq dict.txt with --dict")
    dictionary.sha256 = hashlib.sha256(dictionary.to_text().encode("utf-8")).hexdigest()
    return dictionary


def _file_lines(text: str) -> list[str]:
    """Lines as Python's text-mode ``readlines`` (fairseq's reader) sees them: only \n, \r, \r\n end one."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def _parse_line(line: str, source: str, number: int) -> tuple[str, int, bool]:
    overwrite = False
    try:
        symbol, fieldtext = line.rstrip().rsplit(" ", 1)
        if fieldtext == OVERWRITE_FLAG:
            overwrite = True
            symbol, fieldtext = symbol.rsplit(" ", 1)
        count = int(fieldtext)
    except ValueError:
        raise VlprepError(
            f"{source} line {number}: malformed entry {line[:60]!r}; expected '<symbol> <count> [flags]'",
            fix="repair that line or pass a fairseq dict.txt with --dict",
        ) from None
    return symbol, count, overwrite


@functools.lru_cache(maxsize=1)
def _shipped_dictionary() -> Dictionary:
    """The shipped GPT-2 dictionary, parsed once per process (50,260 lines: ~0.15 s, which a stage
    would otherwise pay once in the parent and again per worker); callers never modify it."""
    data = resources.files(__package__).joinpath("data/gpt2-dict.txt").read_bytes()
    if hashlib.sha256(data).hexdigest() != GPT2_DICT_SHA256:
        raise VlprepError(
            "the GPT-2 dict.txt shipped with vlprep does not match its published sha256",
            fix=f"reinstall vlprep, or download {GPT2_DICT_URL} and pass it with --dict",
        )
    return parse_dictionary(data, "gpt2 dict.txt (shipped)")


def load_dictionary(path: Path | None = None) -> Dictionary:
    """Load ``path``, or the shipped GPT-2 dictionary (checked against its published sha256)."""
    if path is None:
        return _shipped_dictionary()
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise VlprepError(f"cannot read dictionary {path}: {exc.strerror}") from exc
    return parse_dictionary(data, str(path))
