"""Sample data built on this machine, and the demo that runs every dataset's chain on it.

``text`` (OpenWebText-format documents and GLUE parquet files), ``images`` (COCO, Visual Genome and
ImageNet archives of real JPEGs), ``web`` (a loopback web that fails as the real one does, for
CC3M), ``serve`` (a loopback file server with ``Range`` support) and ``demo`` (``vlprep demo``).
Used by the demo, the tests and the benchmarks; nothing in the rest of ``vlprep.pipeline`` imports
this package.
"""
