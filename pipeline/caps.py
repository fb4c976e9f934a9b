"""Caps on what one record may hold, so memory stays bounded whatever a verified archive contains.

A checksum proves a file is the published one, not that it is small: a 3 KB zip can expand to a
JSON nested 200,000 levels deep and a tiny ``.xz`` to gigabytes. Every reader streams and stops at
these caps. A *record* over a cap (one document, one caption, one image member) is skipped and
counted in ``errors.jsonl`` / ``stats.json``; a *file* whose structure breaks a cap (JSON nested
deeper than anything published) stops the stage with an error naming the archive, the member,
the cap and the option that raises it.

The defaults sit far above anything in the published datasets (their largest values are noted
beside each) and far below what would hurt a machine.
"""
from __future__ import annotations

from dataclasses import dataclass

MIB = 1 << 20


@dataclass(frozen=True)
class Caps:
    """The caps of one run; each field names the command-line option that changes it."""

    document_bytes: int = 64 * MIB
    """One OpenWebText ``.txt`` document (largest published: a few MB). ``--max-document-mb``."""

    text_bytes: int = 1 * MIB
    """One caption, region description or GLUE sentence (largest published: a few KB). ``--max-text-kb``."""

    member_bytes: int = 256 * MIB
    """One image member of a zip or tarball (largest ImageNet/COCO/VG image: ~16 MB). ``--max-member-mb``."""

    json_depth: int = 64
    """Nesting depth of an annotation JSON (the published files nest at most 5 levels). ``--max-json-depth``."""


DEFAULT_CAPS = Caps()

OPTION_OF = {
    "document_bytes": "--max-document-mb",
    "text_bytes": "--max-text-kb",
    "member_bytes": "--max-member-mb",
    "json_depth": "--max-json-depth",
}
"""The option that raises each cap, for error messages and ``errors.jsonl`` causes."""
