"""The preview's contact sheet tells the truth: non-ASCII captions are drawn as their glyphs, not as
boxes, and a truncated caption's warning and mark are inside its cell however many captions it has."""
from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from vlprep.pipeline.reports.preview import sample_cell
from vlprep.pipeline.sinks import contact_sheet
from vlprep.pipeline.sinks.contact_sheet import Cell, draw_sheet, font_chain, grid, wrap
from vlprep.pipeline.transforms.bpe import get_backend
from vlprep.pipeline.transforms.captions import MAX_BPE, CaptionEncoder
from vlprep.pipeline.transforms.dictionary import load_dictionary

SIZE = contact_sheet.TEXT_SIZE
PAD_BELOW_PICTURE = contact_sheet.PAD
# Pairs that Pillow's default font (the sheet's before) draws as one and the same missing-glyph box.
TOFU_PAIRS = [("猫", "中"), ("が", "好"), ("中", "文"), ("한", "국"), ("🙂", "🐶")]


def rendered(text: str, font: ImageFont.FreeTypeFont | None = None) -> np.ndarray:
    """``text`` drawn black on white, with the sheet's font chain or with one Pillow font."""
    image = Image.new("L", (120, 2 * SIZE), 255)
    draw = ImageDraw.Draw(image)
    if font is None:
        font_chain(SIZE).draw(draw, (0, 0), text, "black")
    else:
        draw.text((0, 0), text, fill=0, font=font)
    return np.asarray(image)


def grey(size: tuple[int, int] = (64, 48)) -> Image.Image:
    return Image.new("RGB", size, "#777777")


def red_mask(pixels: np.ndarray) -> np.ndarray:
    """Where the sheet's warning red is (anti-aliased edges included)."""
    r, g, b = (pixels[..., k].astype(int) for k in range(3))
    return (r > 150) & (g < 110) & (b < 110)


def row_top(layout: contact_sheet.Grid, n: int, k: int) -> int:
    """The top of text row ``k`` (0: the first under the title) of cell ``n``."""
    return layout.origin(n)[1] + layout.box + PAD_BELOW_PICTURE + layout.line_h * (1 + k)


def read_sheet(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def test_every_font_of_the_chain_comes_from_an_installed_package():
    files = contact_sheet.font_files()
    names = [path.name for path in files]
    assert names[:4] == ["NotoSans[wght].ttf", "wqy-microhei.ttc", "NotoEmoji[wght].ttf", "NotoSansSymbols[wght].ttf"]
    assert all("site-packages" in str(path) or "dist-packages" in str(path) for path in files)
    assert font_chain(SIZE) is font_chain(SIZE)  # loaded once


@pytest.mark.parametrize("a,b", TOFU_PAIRS + [("é", "e")])
def test_the_chain_draws_different_glyphs_where_the_default_font_draws_one_box(a, b):
    if (a, b) in TOFU_PAIRS:  # the comparison can tell tofu from glyphs
        default = ImageFont.load_default(SIZE)
        assert np.array_equal(rendered(a, default), rendered(b, default))
    ours_a, ours_b = rendered(a), rendered(b)
    assert (ours_a < 128).any() and (ours_b < 128).any()
    assert not np.array_equal(ours_a, ours_b)


@pytest.mark.parametrize("char,font", [("é", 0), ("猫", 1), ("が", 1), ("中", 1), ("文", 1), ("한", 1), ("🙂", 2)])
def test_each_character_is_set_in_the_first_font_that_has_it(char, font):
    chain = font_chain(SIZE)
    assert chain.font_index(char) == font
    assert chain.has_glyph(font, char)
    if font:  # Noto Sans lacks it: drawn alone it would be its missing-glyph box
        assert not chain.has_glyph(0, char)


def test_a_character_no_font_has_is_drawn_as_the_replacement_character_and_joiners_stay_attached():
    chain = font_chain(SIZE)
    private = "\U000f0000"  # private use: in no font
    assert chain.font_index(private) is None
    assert "".join(part for part, _ in chain.runs(f"a{private}b")) == "a\ufffdb"
    runs = chain.runs("ok 👩\u200d💻\ufe0f")
    assert [part for part, _ in runs] == ["ok ", "👩\u200d💻\ufe0f"]
    assert runs[1][1] is chain.fonts[2]


def test_a_cjk_sentence_without_spaces_wraps_inside_the_cell():
    chain = font_chain(SIZE)
    text = "猫が好きです。とても長い日本語の文はスペースがないので文字の間で折り返す必要があります"
    lines = wrap(text, chain, 224, 10)
    assert len(lines) > 1 and "".join(lines) == text
    assert all(chain.length(line) <= 224 for line in lines)
    cut = wrap(text, chain, 224, 1)
    assert len(cut) == 1 and cut[0].endswith("…") and chain.length(cut[0]) <= 224


def test_a_sheet_of_non_ascii_captions_shows_each_caption_as_its_own_glyphs(tmp_path):
    captions = ["猫", "中", "文", "好", "é", "e", "🙂", "🐶"]
    cells = [Cell([grey()], "k", [caption]) for caption in captions]
    path = draw_sheet(tmp_path / "sheet.png", cells, "captions", columns=4, box=64)
    pixels = read_sheet(path)
    layout = grid(cells, columns=4, box=64)
    crops = []
    for n in range(len(cells)):
        x0, y0, x1, _ = layout.bounds(n)
        row = row_top(layout, n, 0)
        crop = pixels[row:row + layout.line_h, x0:x1]
        assert (crop < 128).any(), captions[n]  # something is drawn
        crops.append(crop)
    for i in range(len(crops)):
        for j in range(i + 1, len(crops)):
            assert not np.array_equal(crops[i], crops[j]), (captions[i], captions[j])


def test_a_multi_caption_cell_keeps_its_truncation_mark_and_cuts_the_captions(tmp_path):
    long = "[1/5] " + "a caption that goes on and on and on " * 8
    cells = [Cell([grey()], "truncated", [long, "(+4 more captions)"], ["truncated: 97 BPE tokens, 62 kept"], {0}),
             Cell([grey()], "clean", ["[1/5] a cat on a mat", "(+4 more captions)"])]
    layout = grid(cells, columns=2)
    rows = contact_sheet.body_rows(cells[0], font_chain(SIZE), layout.cell_w, layout.text_rows)
    assert len(rows) == layout.text_rows  # the caption fills what the others leave, and is cut
    assert rows[-1].text == "truncated: 97 BPE tokens, 62 kept" and rows[-1].colour == contact_sheet.WARNING
    assert rows[-2].text == "(+4 more captions)" and not rows[-2].marked
    assert rows[-3].text.endswith("…") and all(row.marked for row in rows[:-2])

    pixels = read_sheet(draw_sheet(tmp_path / "sheet.png", cells, "coco", columns=2))
    x0, _, x1, y1 = layout.bounds(0)
    warning = row_top(layout, 0, len(rows) - 1)
    assert warning + layout.line_h <= y1  # inside the cell
    assert red_mask(pixels[warning:warning + layout.line_h, x0:x1]).sum() > 20
    caption = row_top(layout, 0, 0)
    assert red_mask(pixels[caption:caption + layout.line_h, x0:x1]).sum() > 20  # the caption itself is red
    assert red_mask(pixels[caption:caption + layout.line_h, x0 - PAD_BELOW_PICTURE:x0]).any()  # and has its bar
    cx0, cy0, cx1, cy1 = layout.bounds(1)
    assert not red_mask(pixels[cy0:cy1, cx0 - PAD_BELOW_PICTURE:cx1]).any()


def jpeg(picture: Image.Image) -> bytes:
    out = io.BytesIO()
    picture.save(out, format="JPEG")
    return out.getvalue()


@pytest.mark.parametrize("needs,budget,given", [([9, 1], 6, [5, 1]), ([2, 1], 6, [2, 1]), ([1, 1, 1], 2, [1, 1, 0]),
                                                ([0, 3], 2, [0, 2]), ([4, 4], 5, [4, 1])])
def test_rows_are_shared_one_per_line_first(needs, budget, given):
    assert contact_sheet.share_rows(needs, budget) == given


def test_lines_left_out_whole_are_signalled_with_an_ellipsis():
    cell = Cell([grey()], "k", ["one", "two", "three"], ["warned"])
    rows = contact_sheet.body_rows(cell, font_chain(SIZE), 224, 3)
    assert [row.text for row in rows] == ["one", "two …", "warned"]


def test_a_stored_sample_with_a_truncated_non_ascii_caption_is_drawn_marked(tmp_path):
    dictionary = load_dictionary()
    encoded = CaptionEncoder(dictionary, get_backend()).encode(
        ["猫が好き 中文 café 🙂 " * 12, "a cat", "un chat", "一只猫", "a cat on a mat"])
    assert encoded[0].truncated and not any(e.truncated for e in encoded[1:])
    meta = {"tokens": [e.ids for e in encoded], "lengths": [e.length for e in encoded]}
    sample = {"__key__": "000001", "jpg": jpeg(grey((80, 60))), "json": json.dumps(meta).encode()}
    cell = sample_cell(sample, "coco", labelled=False, augmented=False, seed=0, dictionary=dictionary)
    assert cell.marked == {0} and cell.lines[0].startswith("[1/5] 猫が好き 中文 café 🙂")
    assert cell.warnings == [f"truncated: {encoded[0].length} BPE tokens, {MAX_BPE} kept"]

    layout = grid([cell], columns=1)
    rows = contact_sheet.body_rows(cell, font_chain(SIZE), layout.cell_w, layout.text_rows)
    assert [row.text for row in rows if not row.marked] == ["(+4 more captions)", cell.warnings[0]]
    pixels = read_sheet(draw_sheet(tmp_path / "sheet.png", [cell], "coco", columns=1))
    x0, _, x1, y1 = layout.bounds(0)
    warning = row_top(layout, 0, len(rows) - 1)
    assert warning + layout.line_h <= y1 and red_mask(pixels[warning:warning + layout.line_h, x0:x1]).sum() > 20
