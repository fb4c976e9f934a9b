"""The method's Table 1 for built image–text data: rows, total, Markdown, and a text-length histogram PNG.

Pure functions over the per-split statistics that the shard writers record (images, texts, the
histogram of untruncated BPE lengths), so the table is recomputed from what is on disk, never from
a run's memory. The PNG is drawn with Pillow alone (no plotting library is needed to look at it).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from ..fileio import atomic_path


@dataclass(frozen=True)
class TableRow:
    """One line of Table 1: what a split holds."""

    dataset: str
    split: str
    images: int
    texts_per_image: float
    tokens_per_text: float
    pairs: int
    in_total: bool = True

    @property
    def label(self) -> str:
        return f"{self.dataset} {self.split}"




def row_from_split(dataset: str, split: str, stats: dict, in_total: bool) -> TableRow:
    return TableRow(dataset, split, stats["images"], stats["texts_per_image"], stats["mean_text_tokens"],
                    stats["pairs"], in_total)


def total_row(rows: list[TableRow], label: str = "total") -> TableRow:
    """Sums of images and pairs; texts per image and tokens per text weighted as the sums imply."""
    counted = [r for r in rows if r.in_total]
    images = sum(r.images for r in counted)
    pairs = sum(r.pairs for r in counted)
    tokens = sum(r.tokens_per_text * r.pairs for r in counted)
    return TableRow(label, "", images, round(pairs / images, 3) if images else 0.0,
                    round(tokens / pairs, 3) if pairs else 0.0, pairs)


def as_json(rows: list[TableRow], method: list[TableRow]) -> dict:
    """``method``: the method's published rows (each recipe's ``method_row``), beneath ours."""
    return {"rows": [asdict(r) for r in rows], "total": asdict(total_row(rows)),
            "method": {"rows": [asdict(r) for r in method], "total": asdict(total_row(method))}}


def text_lines(rows: list[TableRow], method: list[TableRow]) -> list[str]:
    """The table as printed on the terminal, the method's rows beneath for comparison."""
    out = [f"{'dataset':30} {'images':>10} {'texts/img':>9} {'tokens/text':>11} {'pairs':>11}"]
    for row in rows + [total_row(rows)]:
        mark = "" if row.in_total else " *"
        out.append(f"{row.label + mark:30} {row.images:>10,} {row.texts_per_image:>9.2f} "
                   f"{row.tokens_per_text:>11.2f} {row.pairs:>11,}")
    method = [r for r in method if r.dataset in {row.dataset for row in rows}]
    if method:
        out.append("method's Table 1:")
        for row in method + [total_row(method, "total (method)")]:
            out.append(f"{row.label:30} {row.images:>10,} {row.texts_per_image:>9.2f} "
                       f"{row.tokens_per_text:>11.2f} {row.pairs:>11,}")
    if not all(r.in_total for r in rows):
        out.append("* not in the total (the total counts each dataset's pretraining split once)")
    return out


def markdown(rows: list[TableRow], method: list[TableRow], histogram_png: str | None = None) -> str:
    """``stats.md``: the built rows with the total, then the method's table, then the picture."""
    def table(body: list[TableRow]) -> list[str]:
        lines = ["| dataset | split | images | avg. texts per image | avg. text length (tokens) | pairs |",
                 "|---|---|---:|---:|---:|---:|"]
        for row in body:
            lines.append(f"| {row.dataset} | {row.split} | {row.images:,} | {row.texts_per_image:.2f} "
                         f"| {row.tokens_per_text:.2f} | {row.pairs:,} |")
        return lines

    built = [TableRow(r.dataset, r.split + ("" if r.in_total else " (not in total)"), r.images,
                      r.texts_per_image, r.tokens_per_text, r.pairs) for r in rows]
    method = [r for r in method if r.dataset in {row.dataset for row in rows}]
    parts = ["# Image–text statistics (Table 1)", "",
             "Text length is in GPT-2 BPE tokens before the 64-token cap, without `<s>`/`</s>`; "
             "pairs are image–text pairs (one per text). The total counts each dataset's "
             "pretraining split once.", ""]
    parts += table(built + [total_row(rows)])
    if method:
        parts += ["", "The method's Table 1, for comparison (differences explained in the vlprep "
                  "documentation, docs/image-text.md):", ""]
        parts += table(method + [total_row(method, "total")])
    if histogram_png:
        parts += ["", f"![text lengths]({histogram_png})"]
    return "\n".join(parts) + "\n"


def write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


COLORS = ((31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75))


def histogram_png(path: Path, histograms: dict[str, dict[int, int]], cap: int) -> None:
    """One panel per dataset split: share of texts by BPE length 1..cap, with one bar for longer ones.

    Bars beyond ``cap`` are the texts the 64-token limit truncates; the dashed line is the mean.
    """
    font = ImageFont.load_default(14)
    small = ImageFont.load_default(11)
    width, panel, left, right, top = 900, 220, 60, 20, 36
    image = Image.new("RGB", (width, 10 + panel * max(1, len(histograms))), "white")
    draw = ImageDraw.Draw(image)
    buckets = cap + 2  # 0..cap and one "> cap" bucket
    plot_w = width - left - right
    for index, (label, counts) in enumerate(histograms.items()):
        y0 = 10 + index * panel
        base = y0 + panel - 40
        total = sum(counts.values()) or 1
        shares = [0.0] * buckets
        for length, count in counts.items():
            shares[min(int(length), cap + 1)] += count / total
        peak = max(shares) or 1.0
        mean = sum(int(k) * v for k, v in counts.items()) / total
        color = COLORS[index % len(COLORS)]
        draw.text((left, y0 + 4), f"{label}: {total:,} texts, mean {mean:.2f} tokens, "
                  f"{sum(v for k, v in counts.items() if int(k) > cap):,} longer than {cap} (truncated)",
                  fill="black", font=font)
        bar_w = plot_w / buckets
        for bucket, share in enumerate(shares):
            height = (base - y0 - top) * share / peak
            x = left + bucket * bar_w
            draw.rectangle([x + 1, base - height, x + bar_w - 1, base],
                           fill=(200, 200, 200) if bucket > cap else color)
        draw.line([left, base, width - right, base], fill="black")
        draw.line([left, base, left, y0 + top], fill="black")
        draw.text((left - 8, y0 + top - 6), f"{peak:.0%}", fill="black", font=small, anchor="ra")
        draw.text((left - 8, base), "0", fill="black", font=small, anchor="rm")
        for tick in range(0, cap + 1, 8):
            x = left + (tick + 0.5) * bar_w
            draw.line([x, base, x, base + 4], fill="black")
            draw.text((x, base + 6), str(tick), fill="black", font=small, anchor="ma")
        draw.text((left + (cap + 1.5) * bar_w, base + 6), f">{cap}", fill="black", font=small, anchor="ma")
        mean_x = left + (min(mean, cap + 1) + 0.5) * bar_w
        for y in range(int(y0 + top), int(base), 8):
            draw.line([mean_x, y, mean_x, y + 4], fill="black")
        draw.text((left + plot_w / 2, base + 20), "text length (GPT-2 BPE tokens, before the cap)",
                  fill="black", font=small, anchor="ma")
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG", optimize=True)
