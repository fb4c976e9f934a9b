"""Conceptual 12M: Google's ``cc12m.tsv`` (url⇥caption, URL first, no header).

The 0-based line number is a pair's identity (its *row*), read as any caption/URL list is
(:class:`.urllist.TsvList`): a stray ``\\r`` does not shift later rows, and the caption keeps any
further tab.
"""
from __future__ import annotations

TSV_NAME = "cc12m.tsv"
ROWS = 12_423_374
