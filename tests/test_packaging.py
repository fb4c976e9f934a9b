"""What a regular (non-editable) install ships: every package of the source tree."""
from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_package_of_the_tree_is_installed():
    declared = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {"vlprep"} | {"vlprep." + ".".join(init.parent.relative_to(ROOT).parts)
                          for init in (ROOT / "pipeline").rglob("__init__.py")}
    assert found <= declared, f"missing from pyproject.toml's packages: {sorted(found - declared)}"
