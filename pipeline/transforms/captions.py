"""Caption token ids as DESIGN.md fixes them: ``<s>`` + at most 62 BPE tokens + ``</s>`` (≤ 64).

Captions go through the same cleaning rule as OWT lines (NULs removed, stripped) plus one more:
any run of whitespace inside becomes one space. The untruncated BPE length (without ``<s>`` and
``</s>``) is kept beside the ids so truncation is visible downstream.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .bpe import Backend, LineEncoder
from .dictionary import BOS, EOS, Dictionary

MAX_TOKENS = 64
"""Ids per caption including ``<s>`` and ``</s>``."""
MAX_BPE = MAX_TOKENS - 2


@dataclass(frozen=True)
class CaptionTokens:
    ids: list[int]
    length: int
    """BPE tokens before truncation, without ``<s>``/``</s>``."""

    @property
    def truncated(self) -> bool:
        return self.length > MAX_BPE


class CaptionEncoder:
    """Encode many cleaned captions at once (one BPE call per batch, the fast path of OWT)."""

    def __init__(self, dictionary: Dictionary, backend: Backend) -> None:
        self.lines = LineEncoder(dictionary, backend)

    def encode(self, texts: list[str]) -> list[CaptionTokens]:
        """Token ids of each cleaned caption; an empty caption gives ``[<s>, </s>]``."""
        present = [text for text in texts if text]
        encoded = self.lines.encode_batches(present)
        ends = np.cumsum(encoded.sizes)
        starts = ends - encoded.sizes
        pieces = iter(zip(starts.tolist(), ends.tolist()))
        tokens = encoded.tokens
        result = []
        for text in texts:
            if not text:
                result.append(CaptionTokens([BOS, EOS], 0))
                continue
            start, end = next(pieces)
            bpe = tokens[start:end - 1]  # drop the </s> LineEncoder appends
            result.append(CaptionTokens([BOS, *bpe[:MAX_BPE].tolist(), EOS], int(bpe.size)))
        return result

    def length(self, text: str) -> int:
        """BPE tokens of one cleaned caption (used to pack VG region descriptions)."""
        return 0 if not text else int(self.lines.encode([text]).bpe_tokens)
