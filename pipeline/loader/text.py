"""``text_dataset`` and ``glue_dataset``: fairseq's own item construction over our binaries.

``text_dataset`` is what the ``masked_lm`` task builds with ``sample_break_mode none``:
``TokenBlockDataset`` cuts the concatenated token stream (every document with its ``</s>``) into
blocks of ``tokens_per_sample − 1``, the last one shorter, and ``PrependTokenDataset`` puts ``<s>``
in front. ``glue_dataset`` is the ``sentence_prediction`` task's item: ``<s>`` + sentence 1 (which
ends in ``</s>``), then for pair tasks the optional separator and sentence 2; the target is the
label index (label dictionary index − its 4 specials) or the STS-B score list.

The token file is memory-mapped lazily in each process, so a dataset handed to DataLoader workers
never copies the (multi-GB) ``.bin`` through pickling.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.utils.data

from ..errors import VlprepError
from ..sinks.fairseq import IndexFormatError, read_index, read_tokens
from ..transforms.dictionary import BOS, EOS, PAD

LABEL_SPECIALS = 4  # <s> <pad> </s> <unk> lead the label dictionary as every fairseq dictionary


class TokenFile:
    """One ``.bin``/``.idx`` pair: item sizes and the token stream, opened on first use per process."""

    def __init__(self, prefix: Path) -> None:
        self.prefix = Path(prefix)
        idx, bin_path = self.prefix.with_suffix(".idx"), self.prefix.with_suffix(".bin")
        if not idx.is_file() or not bin_path.is_file():
            raise VlprepError(f"{self.prefix}.{{bin,idx}}: not found",
                              fix="build it first (vlprep binarize owt | glue)")
        try:
            info = read_index(idx)
        except IndexFormatError as exc:
            raise VlprepError(str(exc), fix="rebuild it with vlprep binarize") from exc
        self.dtype = info.dtype
        self.sizes = np.array(info.sizes, dtype=np.int64)
        self.starts = np.array(info.pointers, dtype=np.int64) // self.dtype.itemsize
        expected = int(self.sizes.sum()) * self.dtype.itemsize
        if bin_path.stat().st_size != expected:
            raise VlprepError(f"{bin_path}: {bin_path.stat().st_size} bytes, the index promises {expected}",
                              fix="rebuild it with vlprep binarize (was it cut short?)")
        if len(self.sizes) and not np.array_equal(self.starts, np.concatenate(([0], np.cumsum(self.sizes)[:-1]))):
            raise VlprepError(f"{idx}: items are not stored back to back", fix="rebuild it with vlprep binarize")
        self._tokens: np.ndarray | None = None

    @property
    def tokens(self) -> np.ndarray:
        if self._tokens is None:
            self._tokens = read_tokens(self.prefix.with_suffix(".bin"), self.dtype)
        return self._tokens

    def item(self, index: int) -> np.ndarray:
        start = self.starts[index]
        return self.tokens[start: start + self.sizes[index]]

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_tokens"] = None
        return state


class TextBlocks(torch.utils.data.Dataset):
    """Blocks of ``tokens_per_sample − 1`` tokens of the whole stream, each with ``<s>`` in front."""

    def __init__(self, prefix: Path, tokens_per_sample: int = 512) -> None:
        if tokens_per_sample < 2:
            raise ValueError("tokens_per_sample must be at least 2 (<s> and one token)")
        self.file = TokenFile(prefix)
        self.block = tokens_per_sample - 1
        self.total = int(self.file.sizes.sum())
        self.count = -(-self.total // self.block)

    def __len__(self) -> int:
        return self.count

    @property
    def sizes(self) -> np.ndarray:
        """Each item's length with its ``<s>``, as fairseq's ``dataset.sizes``."""
        sizes = np.full(self.count, self.block + 1, dtype=np.int64)
        if self.count:
            sizes[-1] = self.total - self.block * (self.count - 1) + 1
        return sizes

    def __getitem__(self, index: int) -> torch.Tensor:
        if not -self.count <= index < self.count:
            raise IndexError(f"block {index} of {self.count}")
        start = (index % self.count) * self.block
        chunk = self.file.tokens[start: start + self.block]
        out = np.empty(len(chunk) + 1, dtype=np.int64)
        out[0] = BOS
        out[1:] = chunk
        return torch.from_numpy(out)


def text_dataset(out_dir: str | Path, split: str = "train", tokens_per_sample: int = 512) -> TextBlocks:
    """``out/owt`` + split → fairseq ``masked_lm`` blocks (``sample_break_mode none``) as int64 tensors."""
    return TextBlocks(Path(out_dir) / split, tokens_per_sample)


class GlueSplit(torch.utils.data.Dataset):
    """One GLUE split in fairseq's RoBERTa layout → ``(src_tokens, target)``; target None on test."""

    def __init__(self, task_dir: Path, split: str, init_token: int | None = BOS,
                 separator_token: int | None = None) -> None:
        self.task_dir = Path(task_dir)
        if not (self.task_dir / "input0").is_dir():
            raise VlprepError(f"{self.task_dir}: not a GLUE task folder (no input0/)",
                              fix="pass out/glue/<TASK>-bin after vlprep binarize glue")
        self.split = split
        self.input0 = TokenFile(self.task_dir / "input0" / split)
        pair = (self.task_dir / "input1" / f"{split}.idx").is_file()
        self.input1 = TokenFile(self.task_dir / "input1" / split) if pair else None
        if self.input1 is not None and len(self.input1.sizes) != len(self.input0.sizes):
            raise VlprepError(f"{self.task_dir}/{split}: input0 has {len(self.input0.sizes)} items, "
                              f"input1 {len(self.input1.sizes)}", fix="rebuild the task with vlprep binarize glue")
        self.init_token, self.separator_token = init_token, separator_token
        self.targets = load_targets(self.task_dir, split, len(self.input0.sizes))

    def __len__(self) -> int:
        return len(self.input0.sizes)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, Any]:
        parts = []
        if self.init_token is not None:
            parts.append([self.init_token])
        parts.append(self.input0.item(index))
        if self.input1 is not None:
            if self.separator_token is not None:
                parts.append([self.separator_token])
            parts.append(self.input1.item(index))
        tokens = torch.from_numpy(np.concatenate(parts).astype(np.int64))
        target = None if self.targets is None else self.targets[index]
        return tokens, target


def load_targets(task_dir: Path, split: str, count: int) -> list[Any] | None:
    """Class indices from ``label/<split>.{bin,idx}``, STS-B floats from ``label/<split>.label``, or None."""
    text = task_dir / "label" / f"{split}.label"
    if text.is_file():
        values = [[float(v) for v in line.split()] for line in text.read_text().splitlines()]
        targets: list[Any] = [torch.tensor(v) for v in values]
    elif (task_dir / "label" / f"{split}.idx").is_file():
        labels = TokenFile(task_dir / "label" / split)
        targets = []
        for i in range(len(labels.sizes)):
            ids = [int(t) for t in labels.item(i) if t != EOS]
            if len(ids) != 1:
                raise VlprepError(f"{task_dir}/label/{split}: item {i} holds {len(ids)} labels",
                                  fix="rebuild the task with vlprep binarize glue")
            targets.append(ids[0] - LABEL_SPECIALS)
    else:
        return None
    if len(targets) != count:
        raise VlprepError(f"{task_dir}/label/{split}: {len(targets)} labels for {count} inputs",
                          fix="rebuild the task with vlprep binarize glue")
    return targets


def glue_dataset(task_dir: str | Path, split: str, *, init_token: int | None = BOS,
                 separator_token: int | None = None) -> GlueSplit:
    """``out/glue/<TASK>-bin`` + split → ``(<s> s1 </s> [sep] s2 </s>, target)`` as ``sentence_prediction``.

    ``init_token=0, separator_token=None`` gives ``<s> s1 </s> s2 </s>``; RoBERTa's and data2vec
    2.0's fine-tuning configs set ``separator_token=2`` (``<s> s1 </s></s> s2 </s>``).
    """
    return GlueSplit(Path(task_dir), split, init_token, separator_token)


def collate_tokens(items: Sequence[tuple[torch.Tensor, Any]], pad: int = PAD) -> dict[str, Any]:
    """Right-pad a batch of ``glue_dataset`` items (fairseq's ``RightPadDataset``) with a padding mask."""
    width = max(len(tokens) for tokens, _ in items)
    batch = torch.full((len(items), width), pad, dtype=torch.long)
    for row, (tokens, _) in enumerate(items):
        batch[row, : len(tokens)] = tokens
    targets = [target for _, target in items]
    out: dict[str, Any] = {"src_tokens": batch, "padding_mask": batch.eq(pad)}
    if all(t is not None for t in targets):
        out["target"] = torch.stack(targets) if isinstance(targets[0], torch.Tensor) else torch.tensor(targets)
    return out
