"""A PNG contact sheet: a grid of cells, each one or more pictures above a few lines of text.

Drawn with Pillow. Text is set in a chain of fonts installed as dependencies (Noto Sans, WenQuanYi
Micro Hei for Chinese, Japanese and Korean, Noto Emoji, Noto Sans Symbols and Noto Sans for other
scripts), each character in the first font that has it: a caption is shown as it is, not as boxes.
Text is wrapped to the cell by measured width. A cell's warnings (a truncated caption, an image that
does not decode) are drawn in red and always fit: the sheet is made tall enough for them and the
captions are cut instead, ending in a visible …; a line that is itself a truncated caption is drawn
red too, with a red bar beside it.
"""
from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from ..fileio import atomic_path

PAD = 8
LINE_GAP = 3
TEXT_SIZE = 13
HEADING_SIZE = 18
INK = "#333333"
WARNING = "#c00000"
WARNING_ROWS = 4  # the most rows one warning takes; an exception's message can be long
ELLIPSIS = "…"
REPLACEMENT = "\ufffd"  # drawn for a character that no font of the chain has
NOT_A_CHARACTER = "\uffff"  # a noncharacter: no font maps it, so it draws the font's missing-glyph box

# The chain, tried in this order for each character: (package, file inside it). Noto Sans first for
# Latin, Greek and Cyrillic; WenQuanYi Micro Hei for Han, kana and Hangul; then emoji and symbols.
FONT_FILES = (
    ("manimgx_fonts", "NotoSans[wght].ttf"),
    ("paperang_p2_fonts_cjk", "fonts/wqy-microhei.ttc"),
    ("manimgx_fonts", "NotoEmoji[wght].ttf"),
    ("manimgx_fonts", "NotoSansSymbols[wght].ttf"),
)
# After those, the other upright Noto Sans faces this package ships (Arabic, Devanagari, Thai, ...).
SCRIPTS_PACKAGE = "manimgx_fonts"


def packaged_file(package: str, name: str) -> Path | None:
    """A font file inside an installed package, or None when the package is not installed (the
    sheet is still drawn, and a character no remaining font has shows as U+FFFD, not as a box)."""
    try:
        path = Path(str(resources.files(package) / name))
    except ModuleNotFoundError:
        return None
    return path if path.is_file() else None


def font_files() -> list[Path]:
    """The chain's font files in the order they are tried."""
    paths = [path for package, name in FONT_FILES if (path := packaged_file(package, name))]
    try:
        scripts = sorted(Path(str(resources.files(SCRIPTS_PACKAGE))).glob("NotoSans*.ttf"))
    except ModuleNotFoundError:
        scripts = []
    return paths + [p for p in scripts if p not in paths and "Italic" not in p.name]


def is_attached(char: str) -> bool:
    """Whether a character belongs with the one before it rather than being a glyph of its own: a
    format control (zero-width joiner, soft hyphen) or a variation selector (the emoji one after
    ☺). It goes into the preceding character's font, where the shaper joins or hides it, or is left
    out where that font would draw it as a box."""
    code = ord(char)
    return (unicodedata.category(char) == "Cf" or 0xFE00 <= code <= 0xFE0F
            or 0xE0100 <= code <= 0xE01EF)


def glyph_key(font: ImageFont.FreeTypeFont, char: str) -> tuple[tuple[int, int], bytes]:
    """The character's rendering in ``font``, to compare with the font's missing-glyph box: FreeType
    draws that box for any character the font does not map, and Pillow gives no other way to ask."""
    mask = font.getmask(char)
    return mask.size, bytes(mask)


class FontChain:
    """Fonts tried in order for each character, so that one line can mix Latin, CJK and emoji.

    Pillow draws a character its font lacks as that font's missing-glyph box (tofu), which looks like
    text and hides what the text is; so a line is cut into runs, each drawn in the first font that has
    its characters, and a character no font has is drawn as U+FFFD, which says so.
    """

    def __init__(self, fonts: list[ImageFont.FreeTypeFont]) -> None:
        self.fonts = fonts
        self._missing = [glyph_key(font, NOT_A_CHARACTER) for font in fonts]
        self._choice: dict[str, int | None] = {}
        self._lengths: dict[str, float] = {}
        replacement = self.font_index(REPLACEMENT)
        self._replacement = (REPLACEMENT, replacement) if replacement is not None else ("?", 0)
        # From the line's top to its baseline: room for accented capitals, the tallest of the text.
        self.baseline = -fonts[0].getbbox("ÉÅ", anchor="ls")[1]

    def has_glyph(self, index: int, char: str) -> bool:
        """Whether font ``index`` of the chain has a glyph for ``char``."""
        return glyph_key(self.fonts[index], char) != self._missing[index]

    def font_index(self, char: str) -> int | None:
        """The first font that has ``char`` (cached: a sheet repeats its characters), or None."""
        if char not in self._choice:
            if char.isspace():
                self._choice[char] = 0
            else:
                self._choice[char] = next((i for i in range(len(self.fonts)) if self.has_glyph(i, char)), None)
        return self._choice[char]

    def runs(self, text: str) -> list[tuple[str, ImageFont.FreeTypeFont]]:
        """``text`` (NFC, so é is one character) cut into runs that share a font."""
        runs: list[tuple[str, int]] = []
        for char in unicodedata.normalize("NFC", text):
            if is_attached(char):  # kept where its font has it or hides it, else it would be a box
                if runs and self.has_glyph(runs[-1][1], char):
                    runs[-1] = (runs[-1][0] + char, runs[-1][1])
                continue
            index = self.font_index(char)
            if index is None:
                char, index = self._replacement
            if runs and runs[-1][1] == index:
                runs[-1] = (runs[-1][0] + char, index)
            else:
                runs.append((char, index))
        return [(part, self.fonts[index]) for part, index in runs]

    def length(self, text: str) -> float:
        """The width of ``text`` in pixels, as :meth:`draw` sets it (cached: captions repeat words,
        and measuring shapes the text, which costs more than drawing a short line)."""
        width = self._lengths.get(text)
        if width is None:
            width = sum(font.getlength(part) for part, font in self.runs(text))
            if len(self._lengths) < 65536:
                self._lengths[text] = width
        return width

    def draw(self, draw: ImageDraw.ImageDraw, xy: tuple[float, float], text: str, fill: str) -> None:
        """Draw ``text`` with its top-left at ``xy``, every run on one baseline."""
        x, y = xy
        for part, font in self.runs(text):
            draw.text((x, y + self.baseline), part, fill=fill, font=font, anchor="ls")
            x += font.getlength(part)


def load_font(path: Path, size: int, first: bool) -> ImageFont.FreeTypeFont:
    """One font of the chain. The first (Latin, Greek, Cyrillic) is laid out glyph by glyph: shaped
    through Raqm, Noto Sans at 13 px gets hinted glyphs at unhinted advances ("so m e"); the others
    keep Raqm where Pillow has it, which joins emoji sequences and Arabic or Devanagari letters."""
    return ImageFont.truetype(str(path), size, layout_engine=ImageFont.Layout.BASIC if first else None)


@lru_cache(maxsize=None)
def font_chain(size: int) -> FontChain:
    """The chain at ``size`` pixels, loaded once per process; Pillow's own font when none is installed."""
    fonts = [load_font(path, size, n == 0) for n, path in enumerate(font_files())]
    return FontChain(fonts or [ImageFont.load_default(size)])


@dataclass
class Cell:
    """One sample: its pictures side by side, a title line, and wrapped text lines.

    ``marked`` holds the indices of ``lines`` that are themselves a warning (a caption cut at the
    token cap): drawn in the warning colour, with a bar beside them.
    """

    pictures: list[Image.Image]
    title: str
    lines: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    marked: set[int] = field(default_factory=set)


@dataclass(frozen=True)
class Row:
    """One drawn line of a cell's text."""

    text: str
    colour: str
    marked: bool = False


def split_word(word: str, fonts: FontChain, width: int) -> list[str]:
    """A word wider than the line cut between characters: Chinese and Japanese sentences have no
    spaces, so without this a caption in them would run off the cell as one word."""
    pieces, current = [], ""
    for char in word:
        if current and fonts.length(current + char) > width:
            pieces.append(current)
            current = ""
        current += char
    return pieces + [current] if current else pieces


def ellipsize(line: str, fonts: FontChain, width: int) -> str:
    """``line`` ending in … , shortened until both fit: the mark that text was left out."""
    line = line.rstrip()
    while line and fonts.length(f"{line} {ELLIPSIS}") > width:
        line = line[:-1].rstrip()
    return f"{line} {ELLIPSIS}" if line else ELLIPSIS


def wrap(text: str, fonts: FontChain, width: int, max_lines: int) -> list[str]:
    """Greedy word wrap by pixel width; the last kept line ends in … when text is left over.

    A line's width is summed word by word (a space does not kern), so each word is measured once.
    """
    lines: list[str] = []
    current, current_w = "", 0.0
    space = fonts.length(" ")
    for word in text.split():
        word_w = fonts.length(word)
        if current and current_w + space + word_w <= width:
            current, current_w = f"{current} {word}", current_w + space + word_w
            continue
        if current:
            lines.append(current)
        if word_w <= width:
            current, current_w = word, word_w
            continue
        *whole, current = split_word(word, fonts, width)
        lines.extend(whole)
        current_w = fonts.length(current)
    if current:
        lines.append(current)
    if len(lines) > max_lines:
        lines = lines[:max_lines]
        if lines:
            lines[-1] = ellipsize(lines[-1], fonts, width)
    return lines


def warning_rows(cell: Cell, fonts: FontChain, width: int) -> list[Row]:
    """The cell's warnings, wrapped: they are why a cell is looked at twice, so they always show."""
    return [Row(part, WARNING) for warning in cell.warnings for part in wrap(warning, fonts, width, WARNING_ROWS)]


def share_rows(needs: list[int], budget: int) -> list[int]:
    """How many of ``budget`` rows each line gets, from the rows it ``needs``: one each first, in
    order, then the rest in order; so a short line after a long caption (how many more captions
    there are) is not pushed off the cell by it."""
    given, left = [], budget
    for need in needs:
        take = min(need, 1, left)
        given.append(take)
        left -= take
    for n, need in enumerate(needs):
        more = min(need - given[n], left)
        given[n] += more
        left -= more
    return given


def body_rows(cell: Cell, fonts: FontChain, width: int, rows: int) -> list[Row]:
    """The cell's text in at most ``rows`` rows: its lines, cut with … where they would leave no room
    for its warnings, then the warnings (the captions give way, never the warnings)."""
    warnings = warning_rows(cell, fonts, width)
    budget = max(0, rows - len(warnings))
    # one row more than fits, so that a cut is seen; the … goes on the last row kept
    wrapped = [wrap(line, fonts, width, budget + 1) for line in cell.lines]
    given = share_rows([len(parts) for parts in wrapped], budget)
    text: list[Row] = []
    for n, (parts, count) in enumerate(zip(wrapped, given)):
        marked = n in cell.marked
        kept = [Row(part, WARNING if marked else INK, marked) for part in parts[:count]]
        if 0 < count < len(parts):
            kept[-1] = Row(ellipsize(kept[-1].text, fonts, width), kept[-1].colour, marked)
        text.extend(kept)
    if text and any(parts and not count for parts, count in zip(wrapped, given)):  # whole lines left out
        last = text[-1]
        text[-1] = Row(last.text if last.text.endswith(ELLIPSIS) else ellipsize(last.text, fonts, width),
                       last.colour, last.marked)
    return text + warnings


def fit(picture: Image.Image, box: int) -> Image.Image:
    """The picture scaled to fit a box×box square, as RGB (small images are enlarged to be seen)."""
    picture = picture.convert("RGB")
    scale = box / max(picture.size)
    if scale != 1.0:
        picture = picture.resize((max(1, round(picture.width * scale)), max(1, round(picture.height * scale))),
                                 Image.Resampling.BICUBIC)
    return picture


@dataclass(frozen=True)
class Grid:
    """Where the cells go: the geometry :func:`draw_sheet` draws with, for callers that look inside."""

    columns: int
    rows: int
    cell_w: int
    cell_h: int
    text_rows: int
    box: int
    top: int
    line_h: int

    def origin(self, n: int) -> tuple[int, int]:
        """The top-left corner of cell ``n``."""
        return PAD + (n % self.columns) * (self.cell_w + PAD), self.top + (n // self.columns) * (self.cell_h + PAD)

    def bounds(self, n: int) -> tuple[int, int, int, int]:
        """Cell ``n``'s box as (left, top, right, bottom), right and bottom excluded."""
        x0, y0 = self.origin(n)
        return x0, y0, x0 + self.cell_w, y0 + self.cell_h

    @property
    def size(self) -> tuple[int, int]:
        """The sheet's width and height."""
        return self.columns * (self.cell_w + PAD) + PAD, self.top + self.rows * (self.cell_h + PAD)


def grid(cells: list[Cell], columns: int = 4, box: int = 224, text_lines: int = 5) -> Grid:
    """The sheet's layout: ``text_lines`` rows of text under the title and one more per cell, or as
    many as the cell with the most warnings needs to show them all beneath one row of caption."""
    fonts = font_chain(TEXT_SIZE)
    per_row = max(len(cell.pictures) for cell in cells) if cells else 1
    cell_w = per_row * box + (per_row - 1) * PAD
    needed = max((len(warning_rows(cell, fonts, cell_w)) + 1 for cell in cells), default=0)
    text_rows = max(text_lines + 1, needed)
    line_h = TEXT_SIZE + LINE_GAP
    columns = max(1, min(columns, len(cells)))
    return Grid(columns=columns, rows=max(1, -(-len(cells) // columns)), cell_w=cell_w,
                cell_h=box + PAD + line_h * (1 + text_rows), text_rows=text_rows, box=box,
                top=HEADING_SIZE + 2 * PAD, line_h=line_h)


def draw_cell(sheet: Image.Image, draw: ImageDraw.ImageDraw, cell: Cell, layout: Grid, n: int) -> None:
    """Cell ``n``: its pictures centred in their boxes, its title, then its text rows."""
    fonts = font_chain(TEXT_SIZE)
    x0, y0 = layout.origin(n)
    for k, picture in enumerate(cell.pictures):
        thumb = fit(picture, layout.box)
        px = x0 + k * (layout.box + PAD) + (layout.box - thumb.width) // 2
        sheet.paste(thumb, (px, y0 + (layout.box - thumb.height) // 2))
    y = y0 + layout.box + PAD
    if cell.title:
        fonts.draw(draw, (x0, y), wrap(cell.title, fonts, layout.cell_w, 1)[0], "black")
    y += layout.line_h
    for row in body_rows(cell, fonts, layout.cell_w, layout.text_rows):
        if row.marked:  # in the gutter left of the cell, so the text keeps its place
            draw.rectangle((x0 - 5, y, x0 - 3, y + layout.line_h - 2), fill=WARNING)
        fonts.draw(draw, (x0, y), row.text, row.colour)
        y += layout.line_h


def draw_sheet(path: Path, cells: list[Cell], title: str, columns: int = 4, box: int = 224,
               text_lines: int = 5) -> Path:
    """Write the sheet to ``path`` (atomically) and return it."""
    layout = grid(cells, columns, box, text_lines)
    sheet = Image.new("RGB", layout.size, "white")
    draw = ImageDraw.Draw(sheet)
    font_chain(HEADING_SIZE).draw(draw, (PAD, PAD), title, "black")
    for n, cell in enumerate(cells):
        draw_cell(sheet, draw, cell, layout, n)
    with atomic_path(Path(path)) as tmp:
        sheet.save(tmp, format="PNG")
    return Path(path)
