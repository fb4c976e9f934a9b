"""``vlprep stats``: the method's Table 1 over every built image–text split.

Each dataset of kind ``pairs`` contributes one row per split it has built; the total counts each
dataset's pretraining split (its recipe's ``pretraining_split``) once, so building another split or
variant beside it never counts the same images twice. The table is always written over every built
pairs dataset, so asking for one never overwrites the table of the others.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import VlprepError
from ..fileio import read_json, write_json
from ..layout import Layout
from ..sinks import stats as stats_sink
from ..transforms.captions import MAX_BPE
from ..datasets.registry import of_kind, recipe
STATS_JSON, STATS_MD, HISTOGRAM_PNG = "stats.json", "stats.md", "text-lengths.png"


@dataclass(frozen=True)
class TableReport:
    rows: list[stats_sink.TableRow]
    written: list[Path]


def build_table(layout: Layout, datasets: tuple[str, ...]) -> TableReport:
    """Read each dataset's ``stats.json``; write ``out/stats.json``, ``out/stats.md`` and the PNG."""
    from ..datasets.folders import check_current_layout

    rows: list[stats_sink.TableRow] = []
    histograms: dict[str, dict[int, int]] = {}
    for dataset in datasets:
        path = layout.out(dataset) / "stats.json"
        if not path.exists():
            found = recipe(dataset)
            raise VlprepError(f"{path} is missing: {dataset} has not been built yet",
                              fix=f"run: {found.command(found.builder)}")
        found = recipe(dataset)
        check_current_layout(layout, found)
        for folder, _ in found.folders():  # a variant's folder gives rows, never counted in the total
            path = layout.out(folder) / "stats.json"
            if folder != dataset and not path.exists():
                continue
            splits = read_json(path)["splits"]
            main = found.pretraining_split if folder == dataset else None
            for split in sorted(splits, key=lambda s: (s != main, s)):
                row = stats_sink.row_from_split(folder, split, splits[split], in_total=split == main)
                rows.append(row)
                histograms[row.label] = {int(k): v for k, v in splits[split]["text_length_histogram"].items()}
    out = layout.out_root()
    out.mkdir(parents=True, exist_ok=True)
    stats_sink.histogram_png(out / HISTOGRAM_PNG, histograms, MAX_BPE)
    method = method_rows()
    write_json(out / STATS_JSON, {**stats_sink.as_json(rows, method), "histogram_png": HISTOGRAM_PNG,
                                  "text_length_histograms": {k: {str(n): c for n, c in sorted(v.items())}
                                                             for k, v in histograms.items()}})
    stats_sink.write_text(out / STATS_MD, stats_sink.markdown(rows, method, HISTOGRAM_PNG))
    return TableReport(rows, [out / STATS_JSON, out / STATS_MD, out / HISTOGRAM_PNG])


def built_pairs(layout: Layout) -> tuple[str, ...]:
    """Every dataset of kind ``pairs`` with an ``out/<name>/stats.json``, in registry order."""
    return tuple(r.name for r in of_kind("pairs") if (layout.out(r.name) / "stats.json").exists())


def summary_lines(report: TableReport) -> list[str]:
    return stats_sink.text_lines(report.rows, method_rows())


def method_rows() -> list[stats_sink.TableRow]:
    """The method's published Table 1 rows, from the recipes that state one, in registry order."""
    return [stats_sink.TableRow(r.name, "(method)", *r.method_row) for r in of_kind("pairs") if r.method_row]
