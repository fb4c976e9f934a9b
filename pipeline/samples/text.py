"""Text samples built locally: OpenWebText-format subsets and GLUE parquet files, with the dirt real text has.

An OpenWebText subset has the real layout (subset tar → ``.xz`` members → tar of ``.txt``) and the
dirt real OpenWebText throws at a pipeline (CRLF and lone CR, NUL bytes, blank and whitespace-only
lines, invalid UTF-8, a literal ``<|endoftext|>``, U+2028, CJK, emoji). :data:`WORDS` is also the
vocabulary of the image samples' captions (:mod:`.images`).
"""
from __future__ import annotations

import hashlib
import io
import lzma
import random
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..fileio import atomic_path, ensure_dir
from ..records.owt import subset_relpath
from ..sources.checksums import SUMS_NAME, format_sha256sums

WORDS = (
    "the of and to in a is that for it as was with be by on not he this are or his from at which but "
    "have an they you were her she there one all we their been has would when more will who if no out so "
    "said what up its about than into them can only other new some could time these two may then do first "
    "any my now such like our over man me even most made after also did many before must through back "
    "years where much your way well down should because each just those people how too little state good "
    "very make world still own see men work long get here between both life being under never day same "
    "another know while last might us great old year off come since against go came right used take three "
    "data model training vision language image caption token research network learning distillation"
).split()
DIRT = (
    "Windows line\r\nends here\r\n",
    "old Mac\rline ends\r",
    "a NUL\x00 inside and \x00\x00 more",
    "\n\n   \n\t\n",
    "literal <|endoftext|> is only text",
    "line\u2028separator and next\u0085line stay inside",
    "CJK 漢字とかな and emoji 🙂🚀 and accents café naïve",
    "tabs\tand  double  spaces   inside",
)
INVALID_UTF8 = b"broken \xff\xfe bytes \xc3 here\n"


@dataclass(frozen=True)
class Vocabulary:
    """Words to draw from, uniformly or with cumulative weights (e.g. Zipf's law, as real text)."""

    words: tuple[str, ...] = tuple(WORDS)
    cum_weights: tuple[float, ...] | None = None

    def draw(self, rng: random.Random, k: int) -> list[str]:
        if self.cum_weights is None:
            return [rng.choice(self.words) for _ in range(k)]
        return rng.choices(self.words, cum_weights=self.cum_weights, k=k)


def sample_document(rng: random.Random, dirty: bool, paragraphs: int = 6,
                    vocabulary: Vocabulary = Vocabulary()) -> bytes:
    """One English-like document; ``dirty`` mixes in the edge cases above."""
    parts: list[str] = []
    for _ in range(rng.randint(1, paragraphs)):
        words = vocabulary.draw(rng, rng.randint(5, 120))
        sentence = " ".join(words).capitalize() + rng.choice(".!?")
        parts.append(sentence)
        if dirty and rng.random() < 0.25:
            parts.append(rng.choice(DIRT))
        if rng.random() < 0.3:
            parts.append("")
    raw = ("\n".join(parts) + "\n").encode("utf-8")
    if dirty and rng.random() < 0.05:
        raw += INVALID_UTF8
    return raw


def _tar_bytes(files: list[tuple[str, bytes]], compress: Callable[[bytes], bytes] | None = None) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as archive:
        for name, data in files:
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), 1_500_000_000, 0o644
            archive.addfile(info, io.BytesIO(data))
    data = buffer.getvalue()
    return compress(data) if compress else data


def write_owt_subset(path: Path, subset: int, chunks: int, docs_per_chunk: int, seed: int = 0,
                     dirty: bool = True, empty_docs: bool = True, preset: int = 6, paragraphs: int = 6,
                     vocabulary: Vocabulary = Vocabulary()) -> int:
    """Write an OpenWebText-format subset tar; return the number of documents in it."""
    rng = random.Random(f"{seed}-{subset}")
    members: list[tuple[str, bytes]] = []
    n_docs = 0
    for chunk in range(chunks):
        docs = []
        for doc in range(docs_per_chunk):
            body = sample_document(rng, dirty, paragraphs, vocabulary)
            if empty_docs and rng.random() < 0.02:
                body = rng.choice([b"", b"\n\n  \r\n", b"\x00\n"])
            docs.append((f"{subset:02d}{chunk:04d}{doc:04d}-{hashlib.md5(body).hexdigest()}.txt", body))
        n_docs += len(docs)
        inner = _tar_bytes(docs, lambda data: lzma.compress(data, preset=preset))
        members.append((f"openwebtext/urlsf_subset{subset:02d}-{chunk + 1}_data.xz", inner))
    with atomic_path(path) as tmp:
        tmp.write_bytes(_tar_bytes(members))
    return n_docs


def build_owt_mirror(root: Path, subsets: tuple[int, ...] = (0, 1, 2, 3, 4, 5), chunks: int = 2,
                     docs_per_chunk: int = 25, seed: int = 0) -> int:
    """A mirror folder holding sample subsets and a ``SHA256SUMS``; return the document count."""
    total = 0
    for subset in subsets:
        total += write_owt_subset(root / subset_relpath(subset), subset, chunks, docs_per_chunk, seed)
    write_sums(root, [subset_relpath(subset) for subset in subsets])
    return total


def write_sums(root: Path, relpaths: list[str]) -> None:
    """``root/SHA256SUMS`` over the files at ``relpaths`` (sha256sum format), as a mirror publishes it."""
    sums = {rel: hashlib.sha256((root / rel).read_bytes()).hexdigest() for rel in relpaths}
    ensure_dir(root)
    (root / SUMS_NAME).write_text(format_sha256sums(sums))


def build_glue_mirror(root: Path, rows: int = 12, seed: int = 0) -> dict:
    """Every GLUE task at the hub's parquet paths, ``rows`` rows a split, with the dirt text has.

    Sentences include leading/trailing spaces, an empty one, a line break inside, a literal
    ``<|endoftext|>``, non-Latin scripts and emoji; labels use every class.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ..records import glue

    rng = random.Random(f"glue-{seed}")
    odd = ["", "  padded both sides  ", "a line\nbreak inside", "literal <|endoftext|> token",
           "Ünïcödé – “quotes” 日本語 🙂", "tab\there"]
    paths = []
    for task in glue.TASKS.values():
        for hub_split, _, _ in task.splits:
            data: dict[str, list] = {}
            for column in task.inputs:
                data[column] = [odd[(i + len(column)) % len(odd)] if i % 4 == 1
                                else " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 14))).capitalize()
                                for i in range(rows)]
            if task.labels is None:
                data["label"] = pa.array([rng.choice([0.0, 1.2, 2.5, 3.8, 4.0, 5.0, 1.667]) if task.labelled(hub_split)
                                          else -1.0 for _ in range(rows)], pa.float32())
            else:
                data["label"] = pa.array([(i * 7 + 3) % len(task.labels) if task.labelled(hub_split) else -1
                                          for i in range(rows)], pa.int64())
            data["idx"] = pa.array(range(rows), pa.int32())
            path = root / task.relpath(hub_split)
            ensure_dir(path.parent)
            pq.write_table(pa.table(data), path)
            paths.append(task.relpath(hub_split))
    write_sums(root, paths)
    return {"rows": rows, "files": len(paths)}
