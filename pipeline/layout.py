"""The on-disk layout under the data directory (``$VLPREP_DATA``, default ``./data``)."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_DATA_DIR = "./data"


@dataclass(frozen=True)
class Layout:
    """``raw/<dataset>`` as published, ``work/<dataset>`` intermediates, ``out/<dataset>`` results."""

    root: Path

    @classmethod
    def from_env(cls, data_dir: str | os.PathLike | None = None) -> "Layout":
        return cls(Path(data_dir or os.environ.get("VLPREP_DATA") or DEFAULT_DATA_DIR))

    def raw(self, dataset: str) -> Path:
        return self.root / "raw" / dataset

    def work(self, dataset: str) -> Path:
        return self.root / "work" / dataset

    def out(self, dataset: str) -> Path:
        return self.root / "out" / dataset

    def out_root(self) -> Path:
        """``out/``: where tables over several datasets go (``stats.md``, ``text-lengths.png``)."""
        return self.root / "out"

    def manifests(self) -> Path:
        """``manifests/``: the used-ID manifests, small enough to publish in git."""
        return self.root / "manifests"
