"""Shared fixtures: a small OpenWebText-format mirror (also served over real HTTP on 127.0.0.1), the
demo's data dir, and small COCO and Visual Genome mirrors. Shared helpers live in ``helpers.py``."""
from __future__ import annotations

from pathlib import Path

import pytest

from vlprep.pipeline.samples.images import build_coco_mirror, build_vg_mirror
from vlprep.pipeline.samples.serve import serve_directory
from vlprep.pipeline.samples.text import build_owt_mirror

from .helpers import run_cli

SUBSETS = (0, 1, 2, 3, 4, 5)


@pytest.fixture(scope="session")
def owt_mirror(tmp_path_factory) -> Path:
    """Six sample subsets (3 xz members × 20 documents each), dirty, with SHA256SUMS."""
    root = tmp_path_factory.mktemp("owt-mirror")
    build_owt_mirror(root, SUBSETS, chunks=3, docs_per_chunk=20, seed=7)
    return root


@pytest.fixture(scope="session")
def owt_mirror_url(owt_mirror):
    with serve_directory(owt_mirror) as url:
        yield url


@pytest.fixture
def fetched(tmp_path, owt_mirror) -> Path:
    """A data dir with the sample subsets fetched (from the folder mirror)."""
    data = tmp_path / "data"
    run_cli("fetch", "owt", "--data-dir", str(data), "--mirror", str(owt_mirror))
    return data


@pytest.fixture(scope="session")
def demo_data(tmp_path_factory) -> Path:
    """``vlprep demo``'s data dir: every dataset built from its sample (read it, do not change it)."""
    data = tmp_path_factory.mktemp("demo") / "vlprep-demo"  # the name docs/loader.md's example expects
    run_cli("demo", "--data-dir", str(data), timeout=600)
    return data


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> tuple[Path, dict]:
    """Sample COCO and VG mirrors under ``root/coco`` and ``root/vg``, and COCO's splits: ``(root, splits)``,
    built once per module (``helpers.copy_mirror`` gives a test its own copy to change)."""
    root = tmp_path_factory.mktemp("trust-base")
    splits = build_coco_mirror(root / "coco", n_train=12, n_val=8)
    build_vg_mirror(root / "vg", splits, n_images=12)
    return root, splits
