"""vlprep: the data of vision-language distillation, rebuilt byte for byte and ready for a GPU trainer.

Python users drive the same stages as the command line::

    from vlprep.pipeline import Layout
    from vlprep.pipeline.datasets import owt
    from vlprep.pipeline.engines import textbin
    layout = Layout.from_env("./data")
    owt.fetch_subsets(layout, (0, 1, 2, 3, 4, 5))
    textbin.binarize(layout, owt.corpus(), textbin.BinarizeConfig(owt.DEFAULT_SPLITS), workers=2)
"""
from __future__ import annotations

__version__ = "0.1.0"

from .errors import VlprepError  # noqa: E402
from .layout import Layout  # noqa: E402

__all__ = ["Layout", "VlprepError", "__version__"]
