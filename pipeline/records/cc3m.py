"""Conceptual Captions 3M: Google's ``Train_GCC-training.tsv`` (caption⇥url, no header).

The 0-based line number is a pair's identity (its *row*); the lines are read as any caption/URL
list is (:mod:`.urllist`): a stray ``\\r`` inside a caption does not shift later rows, and a line
without a tab or without a URL keeps its row and fails as an invalid URL when it is tried.
"""
from __future__ import annotations

from .urllist import Row, TsvList, caption_hash

__all__ = ["ROWS", "READER", "Row", "TSV_NAME", "caption_hash", "count_rows", "iter_rows", "parse_line",
           "select_rows"]

TSV_NAME = "Train_GCC-training.tsv"
ROWS = 3_318_333
READER = TsvList(url_first=False)
"""The TSV's rows: caption first, then the URL."""

parse_line = READER.parse_line
iter_rows = READER.iter_rows
select_rows = READER.select_rows
count_rows = READER.count_rows
