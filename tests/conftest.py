"""Shared fixtures: a small OpenWebText-format mirror, served over real HTTP on 127.0.0.1."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from vlprep.pipeline.samples.serve import serve_directory
from vlprep.pipeline.samples.text import build_owt_mirror

SUBSETS = (0, 1, 2, 3, 4, 5)


def run_cli(*args: str, env: dict | None = None, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``vlprep`` in a real subprocess, as a user would."""
    full_env = {**os.environ, "VLPREP_HTTP_BACKOFF": "0.01", **(env or {})}
    result = subprocess.run([sys.executable, "-m", "vlprep.cli", *args], capture_output=True, text=True,
                            env=full_env, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"vlprep {' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


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
