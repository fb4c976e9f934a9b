"""ImageNet-1k (ILSVRC 2012) as the hub dataset ``ILSVRC/imagenet-1k`` publishes it.

``classes.py`` holds ``IMAGENET2012_CLASSES``, an ordered mapping synset → class name whose order
is the sorted-synset order torchvision's ``ImageFolder`` uses, so a class index is the position of
the synset in it. The tarballs hold the JPEGs flat: train ``<id>_<synset>.JPEG`` (e.g.
``n01440764_10026_n01440764.JPEG``), val ``ILSVRC2012_val_<8 digits>_<synset>.JPEG``; the synset is
the last ``_`` field of the file's stem.
"""
from __future__ import annotations

import ast
import tarfile
import zlib
from pathlib import Path
from typing import Iterator

from zlib_ng import gzip_ng, zlib_ng

from ..errors import VlprepError
from ..sources.archives import Oversized, iter_tar_members

REPO = "ILSVRC/imagenet-1k"
CLASSES_FILE = "classes.py"
TARBALLS = {
    "train": tuple(f"data/train_images_{i}.tar.gz" for i in range(5)),
    "val": ("data/val_images.tar.gz",),
    "test": ("data/test_images.tar.gz",),
}
CLASSES_BYTES = 1 << 20
"""Most bytes of ``classes.py`` parsed (the published file: ~40 KB for 1,000 classes)."""
IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png")


def parse_classes(text: str | bytes, source: str = CLASSES_FILE) -> list[tuple[str, str]]:
    """``[(synset, name), ...]`` in file order, read without executing the file.

    Bytes are decoded as Python decodes a source file, so one that is not UTF-8 is a ``SyntaxError``;
    CPython's parser raises ``MemoryError`` (not ``SyntaxError``) on nesting too deep for it."""
    if len(text) > CLASSES_BYTES:
        raise VlprepError(f"{source} holds more than {CLASSES_BYTES:,} bytes (the published one: ~40 KB); its "
                          "syntax tree could take gigabytes", fix="fetch classes.py again")
    try:
        tree = ast.parse(text)
    except (SyntaxError, MemoryError, RecursionError) as exc:
        detail = exc if isinstance(exc, SyntaxError) else "nested too deeply to parse"
        raise VlprepError(f"{source} is not Python: {detail}", fix="fetch classes.py again") from exc
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "IMAGENET2012_CLASSES" for t in node.targets):
            value = node.value
            if isinstance(value, ast.Call) and value.args:  # OrderedDict({...}) or OrderedDict([...])
                value = value.args[0]
            try:
                literal = ast.literal_eval(value)
            except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError) as exc:
                raise VlprepError(f"{source}: IMAGENET2012_CLASSES is not a literal mapping",
                                  fix="fetch classes.py again") from exc
            pairs = _synset_pairs(literal)
            if pairs is None:
                raise VlprepError(f"{source}: IMAGENET2012_CLASSES is not a mapping of synset strings to names",
                                  fix="fetch classes.py again")
            synsets = [s for s, _ in pairs]
            if len(set(synsets)) != len(synsets) or synsets != sorted(synsets):
                raise VlprepError(f"{source}: the synsets are repeated or not in sorted order, so class indices "
                                  "would not match torchvision's ImageFolder", fix="fetch classes.py again")
            return [(str(s), str(n)) for s, n in pairs]
    raise VlprepError(f"{source} defines no IMAGENET2012_CLASSES", fix="fetch classes.py again")


def read_classes(path: Path) -> list[tuple[str, str]]:
    """:func:`parse_classes` of the file at ``path``, reading no more than one byte past the cap."""
    with open(path, "rb") as handle:
        head = handle.read(CLASSES_BYTES + 1)
    return parse_classes(head, str(path))


def _synset_pairs(literal: object) -> list[tuple[str, object]] | None:
    """The ``(synset, name)`` pairs of a dict or a sequence of pairs whose synsets are strings (they
    are sorted and compared), or None for any other shape."""
    if isinstance(literal, dict):
        pairs = list(literal.items())
    elif isinstance(literal, (list, tuple)) and all(isinstance(p, (list, tuple)) and len(p) == 2 for p in literal):
        pairs = [tuple(p) for p in literal]
    else:
        return None
    return pairs if all(isinstance(synset, str) for synset, _ in pairs) else None


def _stem(name: str) -> str:
    """The file name without folders or extension (string operations: called twice per image)."""
    base = name.rpartition("/")[2]
    return base.rpartition(".")[0] if "." in base else base


def synset_of(name: str) -> str:
    return _stem(name).rpartition("_")[2]


MAX_NAME_BYTES = 90
"""Longest file name (without folders) taken from a tarball: ImageNet's are under 40 bytes, and the
name must fit a USTAR header (100 bytes) behind the 10-byte position prefix of a bucket piece."""
KEY_ESCAPES = {"%": "%25", ".": "%2E"}


def key_of(name: str) -> str:
    """The sample key of a file: its stem, unchanged when it holds no ``.`` and no ``%``.

    webdataset splits ``<key>.<ext>`` at the first dot, so a key cannot hold one. Replacing dots
    with ``_`` (as before) made ``a.b_n01.JPEG`` and ``a_b_n01.JPEG`` one key; percent-escaping
    ``%`` and ``.`` is injective (it can be undone), and every ImageNet name, which holds neither,
    keeps the key it always had.
    """
    stem = _stem(name)
    if "." not in stem and "%" not in stem:
        return stem
    return "".join(KEY_ESCAPES.get(char, char) for char in stem)


def is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_SUFFIXES)


def iter_images(path: Path, max_member: int | None = None) -> Iterator[tuple[str, bytes | Oversized]]:
    """``(member name, bytes)`` of every image file in a ``.tar.gz``, streamed in archive order.

    zlib-ng inflates (about 15 % faster than zlib on JPEG data, and it checks the gzip CRC and
    length, in C); the tar is read by :func:`~vlprep.pipeline.sources.archives.iter_tar_members`,
    one ``read`` per image, which a damaged header or data after the end-of-archive blocks stops
    with an error (``tarfile`` would end the archive there without a word). Other members are
    skipped unread whatever their size; an image over ``max_member`` bytes comes as
    ``(name, Oversized(size))``, unread, for the caller to list.
    """
    try:
        with gzip_ng.open(path, "rb") as stream:
            for name, data in iter_tar_members(stream, str(path), is_image, max_member):
                yield _checked_name(name, path), data
    except (tarfile.TarError, OSError, EOFError, zlib.error, zlib_ng.error) as exc:
        raise VlprepError(f"{path} is damaged or not a .tar.gz: {exc}",
                          fix="run: vlprep fetch imagenet  (a damaged file is fetched again)") from exc


def _checked_name(name: str, path: Path) -> str:
    """The member name, if its file name fits a shard member's header (a bucket piece's and a shard's)."""
    base = name.rpartition("/")[2]
    size = max(len(base.encode("utf-8")), len(key_of(base).encode("utf-8")))
    if size > MAX_NAME_BYTES:
        shown = name if len(name) <= 80 else name[:77] + "..."
        raise VlprepError(f"{path}: member {shown!r} has a file name of {size:,} bytes; ImageNet's are under 40 "
                          f"and a shard member's header holds at most {MAX_NAME_BYTES}",
                          fix="this is not the published tarball: run vlprep fetch imagenet, or rename the member")
    return name
