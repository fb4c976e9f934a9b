"""Every Python snippet of ``docs/use-with/`` runs as it is on the demo's outputs, as a user would run it.

Each page's snippets are run in order in one fresh interpreter, from the folder holding
``vlprep-demo/`` (the demo fixture's name), with the hub offline. A page whose reader needs hardware
this machine lacks (DALI needs an NVIDIA GPU) runs only where that reader imports.
"""
from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs" / "use-with"
PAGES = sorted(p.name for p in DOCS.glob("*.md") if p.name != "README.md")
NEEDS = {"dali.md": "nvidia.dali"}
"""Pages whose snippet needs a module this machine may not have."""


def snippets(page: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", page.read_text(encoding="utf-8"), flags=re.S)


def test_every_reader_has_a_page_with_a_snippet():
    assert {"webdataset.md", "wids.md", "hf-datasets.md", "energon.md", "dali.md", "croissant.md",
            "fairseq.md", "torchdata.md"} <= set(PAGES)
    for name in PAGES:
        assert snippets(DOCS / name), f"{name} has no python snippet"
        assert name in (DOCS / "README.md").read_text(), f"{name} is not listed in docs/use-with/README.md"


@pytest.mark.parametrize("page", PAGES)
def test_the_snippets_of_a_page_run_on_the_demo(page, demo_data, tmp_path):
    needed = NEEDS.get(page)
    if needed and importlib.util.find_spec(needed.split(".")[0]) is None:
        pytest.skip(f"{page} needs {needed}")
    code = "\n".join(snippets(DOCS / page))
    env = {**os.environ, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"),
           "PYTHONWARNINGS": "ignore"}
    result = subprocess.run([sys.executable, "-c", code], cwd=demo_data.parent, env=env, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, f"{page}:\n{result.stderr[-3000:]}"
    assert result.stdout.strip(), f"{page} printed nothing"
