"""A PNG contact sheet: a grid of cells, each one or more pictures above a few lines of text.

Drawn with Pillow alone. Text is wrapped to the cell by measured width; a line marked as a warning
(a truncated caption) is drawn in red so it is seen before it is read.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from ..fileio import atomic_path

PAD = 8
LINE_GAP = 3


@dataclass
class Cell:
    """One sample: its pictures side by side, a title line, and wrapped text lines."""

    pictures: list[Image.Image]
    title: str
    lines: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def wrap(text: str, font: ImageFont.ImageFont, width: int, max_lines: int) -> list[str]:
    """Greedy word wrap by pixel width; the last kept line ends in … when text is left over."""
    lines: list[str] = []
    current = ""
    for word in text.split():
        candidate = f"{current} {word}".strip()
        if font.getlength(candidate) <= width or not current:
            current = candidate
            continue
        lines.append(current)
        current = word
    if current:
        lines.append(current)
    if len(lines) > max_lines:
        lines = lines[:max_lines]
        lines[-1] = lines[-1].rstrip() + " …"
    return lines


def fit(picture: Image.Image, box: int) -> Image.Image:
    """The picture scaled to fit a box×box square, as RGB (small images are enlarged to be seen)."""
    picture = picture.convert("RGB")
    scale = box / max(picture.size)
    if scale != 1.0:
        picture = picture.resize((max(1, round(picture.width * scale)), max(1, round(picture.height * scale))),
                                 Image.Resampling.BICUBIC)
    return picture


def draw_sheet(path: Path, cells: list[Cell], title: str, columns: int = 4, box: int = 224,
               text_lines: int = 5) -> Path:
    """Write the sheet to ``path`` (atomically) and return it."""
    font = ImageFont.load_default(13)
    heading = ImageFont.load_default(18)
    per_row = max(len(cell.pictures) for cell in cells) if cells else 1
    cell_w = per_row * box + (per_row - 1) * PAD
    line_h = 13 + LINE_GAP
    cell_h = box + PAD + line_h * (1 + text_lines + 1)
    columns = max(1, min(columns, len(cells)))
    rows = max(1, -(-len(cells) // columns))
    top = 18 + 2 * PAD
    sheet = Image.new("RGB", (columns * (cell_w + PAD) + PAD, top + rows * (cell_h + PAD)), "white")
    draw = ImageDraw.Draw(sheet)
    draw.text((PAD, PAD), title, fill="black", font=heading)
    for n, cell in enumerate(cells):
        x0 = PAD + (n % columns) * (cell_w + PAD)
        y0 = top + (n // columns) * (cell_h + PAD)
        for k, picture in enumerate(cell.pictures):
            thumb = fit(picture, box)
            px = x0 + k * (box + PAD) + (box - thumb.width) // 2
            sheet.paste(thumb, (px, y0 + (box - thumb.height) // 2))
        y = y0 + box + PAD
        draw.text((x0, y), wrap(cell.title, font, cell_w, 1)[0] if cell.title else "", fill="black", font=font)
        y += line_h
        body: list[tuple[str, str]] = []
        for line in cell.lines:
            body.extend((part, "#333333") for part in wrap(line, font, cell_w, text_lines))
        for line in cell.warnings:
            body.extend((part, "#c00000") for part in wrap(line, font, cell_w, 1))
        for text, colour in body[: text_lines + 1]:
            draw.text((x0, y), text, fill=colour, font=font)
            y += line_h
    with atomic_path(Path(path)) as tmp:
        sheet.save(tmp, format="PNG")
    return Path(path)
