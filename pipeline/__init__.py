"""vlprep: the data of vision-language distillation, rebuilt byte for byte and ready for a GPU trainer.

Python users drive the same stages as the command line::

    from vlprep.pipeline.datasets.registry import run_stage
    run_stage("owt", "fetch", "./data", subsets=(0, 1, 2, 3, 4, 5))
    run_stage("owt", "binarize", "./data", workers=2)
"""
from __future__ import annotations

__version__ = "0.1.0"

from .errors import VlprepError  # noqa: E402
from .layout import Layout  # noqa: E402

__all__ = ["Layout", "VlprepError", "__version__"]
