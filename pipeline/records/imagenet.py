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
from typing import BinaryIO, Iterator

from ..errors import VlprepError

REPO = "ILSVRC/imagenet-1k"
CLASSES_FILE = "classes.py"
TARBALLS = {
    "train": tuple(f"data/train_images_{i}.tar.gz" for i in range(5)),
    "val": ("data/val_images.tar.gz",),
    "test": ("data/test_images.tar.gz",),
}
IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png")


def parse_classes(text: str, source: str = CLASSES_FILE) -> list[tuple[str, str]]:
    """``[(synset, name), ...]`` in file order, read without executing the file."""
    try:
        tree = ast.parse(text)
    except SyntaxError as exc:
        raise VlprepError(f"{source} is not Python: {exc}", fix="fetch classes.py again") from exc
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "IMAGENET2012_CLASSES" for t in node.targets):
            value = node.value
            if isinstance(value, ast.Call) and value.args:  # OrderedDict({...}) or OrderedDict([...])
                value = value.args[0]
            try:
                literal = ast.literal_eval(value)
            except ValueError as exc:
                raise VlprepError(f"{source}: IMAGENET2012_CLASSES is not a literal mapping",
                                  fix="fetch classes.py again") from exc
            pairs = list(literal.items()) if isinstance(literal, dict) else [tuple(p) for p in literal]
            synsets = [s for s, _ in pairs]
            if len(set(synsets)) != len(synsets) or synsets != sorted(synsets):
                raise VlprepError(f"{source}: the synsets are repeated or not in sorted order, so class indices "
                                  "would not match torchvision's ImageFolder", fix="fetch classes.py again")
            return [(str(s), str(n)) for s, n in pairs]
    raise VlprepError(f"{source} defines no IMAGENET2012_CLASSES", fix="fetch classes.py again")


def synset_of(name: str) -> str:
    stem = Path(name).name.rsplit(".", 1)[0]
    return stem.rsplit("_", 1)[-1]


def key_of(name: str) -> str:
    return Path(name).name.rsplit(".", 1)[0].replace(".", "_")


def _check_trailer(stream: BinaryIO, path: Path) -> None:
    """Read what follows the end of the tar: it must be zeros (the end-of-archive blocks and padding).

    ``tarfile`` ends an archive quietly at the first damaged header, so without this a damaged
    tarball would lose every image after the damage without a word; reading on to the end also
    surfaces a damaged compressed stream.
    """
    while chunk := stream.read(1 << 20):
        if chunk.strip(b"\0"):
            raise VlprepError(f"{path} is damaged: its tar stops at an unreadable header but data follows",
                              fix="run: vlprep fetch imagenet  (a damaged file is fetched again)")


def iter_images(path: Path) -> Iterator[tuple[str, bytes]]:
    """``(member name, bytes)`` of every image file in a ``.tar.gz``, streamed in archive order.

    tarfile's own ``r|gz`` stream does not check the gzip CRC; the tarballs' sha256 is checked at
    fetch (hub LFS hash or the mirror's SHA256SUMS), and checking the CRC again here would cost ~7 %.
    What a sha256 cannot see, a tar that stops early, is checked by :func:`_check_trailer`.
    """
    try:
        with tarfile.open(path, mode="r|gz") as tar:
            for member in tar:
                if member.isfile() and member.name.lower().endswith(IMAGE_SUFFIXES):
                    handle = tar.extractfile(member)
                    yield member.name, handle.read() if handle else b""
            _check_trailer(tar.fileobj, path)
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise VlprepError(f"{path} is damaged or not a .tar.gz: {exc}",
                          fix="run: vlprep fetch imagenet  (a damaged file is fetched again)") from exc
