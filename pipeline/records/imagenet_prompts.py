"""ImageNet-1k zero-shot prompts, shipped as data: open_clip's class names and the 80 OpenAI templates.

``data/imagenet-zeroshot.json`` holds, with the package, version and sha256 of each source file:
``IMAGENET_CLASSNAMES`` and ``OPENAI_IMAGENET_TEMPLATES`` of open_clip_torch 3.3.0
(``open_clip/zero_shot_metadata.py``; a template is stored as its text with ``{}`` where the class
name goes), and the 1,000 ILSVRC-2012 synsets in sorted order (timm 1.0.31's
``imagenet_synsets.txt``), the order of torchvision's ``ImageFolder`` and of the hub's
``classes.py``: class index i is the same class in these prompts and in ``vlprep shard imagenet``.
Prompt (c, t) is template t filled with class c's name; items are ordered class-major (item =
c × 80 + t).
"""
from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass
from importlib import resources

from ..errors import VlprepError

DATA_FILE = "data/imagenet-zeroshot.json"
CLASSES, TEMPLATES = 1000, 80


@dataclass(frozen=True)
class ZeroShotPrompts:
    synsets: tuple[str, ...]
    names: tuple[str, ...]
    templates: tuple[str, ...]
    source: dict
    sha256: str
    """Of the shipped data file: part of the binaries' work key and of their stats."""

    def prompt(self, class_index: int, template_index: int) -> str:
        return self.templates[template_index].replace("{}", self.names[class_index])

    def items(self) -> list[tuple[int, int, str]]:
        """``(class index, template index, prompt)`` of every prompt, class-major."""
        return [(c, t, self.prompt(c, t)) for c in range(len(self.names)) for t in range(len(self.templates))]


@functools.lru_cache(maxsize=1)
def load() -> ZeroShotPrompts:
    """The shipped prompts, checked for the shape every reader relies on."""
    data = resources.files(__package__).joinpath(DATA_FILE).read_bytes()
    parsed = json.loads(data)
    classes = parsed["classes"]
    prompts = ZeroShotPrompts(tuple(c["synset"] for c in classes), tuple(c["name"] for c in classes),
                              tuple(parsed["templates"]), parsed["source"], hashlib.sha256(data).hexdigest())
    if (len(prompts.synsets), len(prompts.templates)) != (CLASSES, TEMPLATES) or \
            list(prompts.synsets) != sorted(set(prompts.synsets)) or \
            [c["index"] for c in classes] != list(range(CLASSES)) or \
            any(t.count("{}") != 1 for t in prompts.templates):
        raise VlprepError(f"{DATA_FILE} in the vlprep package is damaged", fix="reinstall vlprep")
    return prompts
