"""Labelled comparison sheets (PNG): the figure this field shares, rows = generators, columns = seeds.

Pillow only (no matplotlib), so `generate --grid` and `stylize` can draw them at CLI speed. Small
images are enlarged by an integer factor with nearest-neighbour (pixels stay pixels, no invented detail);
labels are drawn into the image so the PNG explains itself wherever it is pasted.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..run.files import atomic_write

MIN_TILE = 128  # tiles are enlarged to at least this many pixels (integer factor)
PAD = 8  # outer margin and the space between a label and what it names
GAP = 4  # between tiles; also the width of the frame around a marked tile
FONT_SIZE = 15
BACKGROUND = (255, 255, 255)
INK = (20, 20, 20)
MARK = (228, 0, 43)  # frame around marked (best) tiles
MARK_WIDTH = 4


def font(size: int = FONT_SIZE) -> ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def upscale_factor(native: int, min_tile: int = MIN_TILE) -> int:
    """Smallest integer factor that makes a `native`-pixel tile at least `min_tile` pixels (1 if it already is)."""
    return max(1, math.ceil(min_tile / max(1, native)))


def _text_size(draw: ImageDraw.ImageDraw, text: str, fnt) -> tuple[int, int]:
    if not text:
        return 0, 0
    left, _, right, bottom = draw.multiline_textbbox((0, 0), text, font=fnt, spacing=2)
    return right - left, bottom  # height from the ascender line: what "la"-anchored text occupies


def fit_text(text: str, width: int, fnt=None) -> str:
    """Greedy word wrap so every line is at most `width` pixels (a single long word stays whole)."""
    fnt = fnt or font()
    draw = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    lines = []
    for paragraph in text.split("\n"):
        line = ""
        for word in paragraph.split(" "):
            trial = f"{line} {word}" if line else word
            if line and _text_size(draw, trial, fnt)[0] > width:
                lines.append(line)
                line = word
            else:
                line = trial
        lines.append(line)
    return "\n".join(lines)


@dataclass(frozen=True)
class SheetLayout:
    """Pixel geometry of a sheet; `tile_box(r, c)` is where tile (r, c) is pasted."""
    tile: int          # displayed tile size (native x scale)
    scale: int
    n_rows: int
    n_cols: int
    label_w: int       # width of the row-label column (0 without row labels)
    title_h: int
    header_h: int      # height of the column-label band (0 without column labels)
    caption_h: int     # height of the per-tile caption band above every row (0 without captions)
    width: int
    height: int

    def tile_box(self, r: int, c: int) -> tuple[int, int, int, int]:
        x = PAD + self.label_w + c * (self.tile + GAP)
        y = PAD + self.title_h + self.header_h + r * (self.caption_h + self.tile + GAP) + self.caption_h
        return x, y, x + self.tile, y + self.tile


def sheet_layout(native: int, n_rows: int, n_cols: int, row_labels=None, col_labels=None, captions=None,
                 title: str | None = None, min_tile: int = MIN_TILE, fnt=None) -> SheetLayout:
    fnt = fnt or font()
    draw = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    scale = upscale_factor(native, min_tile)
    tile = native * scale
    col_labels = [fit_text(t, tile, fnt) for t in col_labels or ()]
    captions = [[fit_text(t, tile, fnt) for t in row] for row in captions or ()]
    row_w = max((_text_size(draw, t, fnt)[0] for t in row_labels or ()), default=0)
    label_w = row_w + PAD if row_w else 0
    col_h = max((_text_size(draw, t, fnt)[1] for t in col_labels or ()), default=0)
    cap_h = max((_text_size(draw, t, fnt)[1] for row in captions or () for t in row), default=0)
    title_h = _text_size(draw, title, fnt)[1] + PAD if title else 0
    header_h = col_h + PAD if col_h else 0
    caption_h = cap_h + PAD if cap_h else 0
    grid_w = n_cols * tile + (n_cols - 1) * GAP
    width = 2 * PAD + label_w + max(grid_w, _text_size(draw, title or "", fnt)[0] - label_w)
    height = 2 * PAD + title_h + header_h + n_rows * (caption_h + tile) + (n_rows - 1) * GAP
    return SheetLayout(tile, scale, n_rows, n_cols, label_w, title_h, header_h, caption_h, width, height)


def _as_image(tile) -> Image.Image:
    if isinstance(tile, Image.Image):
        return tile.convert("RGB")
    array = np.asarray(tile)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    return Image.fromarray(array).convert("RGB")


def comparison_sheet(tiles, row_labels=None, col_labels=None, captions=None, title: str | None = None,
                     marked=(), min_tile: int = MIN_TILE) -> Image.Image:
    """`tiles[r][c]`: square HxWx3 uint8 arrays or PIL images, all the same size; None leaves a blank cell.

    row_labels: one per row (left, vertically centred); col_labels: one per column (top, centred);
    captions: `captions[r][c]` above each tile (for wrapped single-list grids); marked: (r, c) framed in red.
    """
    rows = [list(r) for r in tiles]
    first = next(t for r in rows for t in r if t is not None)
    native = _as_image(first).height
    n_cols = max(len(r) for r in rows)
    fnt = font()
    lay = sheet_layout(native, len(rows), n_cols, row_labels, col_labels, captions, title, min_tile, fnt)
    sheet = Image.new("RGB", (lay.width, lay.height), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    if title:
        draw.text((PAD, PAD), title, font=fnt, fill=INK, anchor="la")
    for r, row in enumerate(rows):
        for c, tile in enumerate(row):
            x0, y0, x1, y1 = lay.tile_box(r, c)
            if tile is not None:
                im = _as_image(tile)
                sheet.paste(im.resize((lay.tile, lay.tile), Image.NEAREST) if lay.scale > 1 else im, (x0, y0))
            if (r, c) in set(marked):
                draw.rectangle((x0 - MARK_WIDTH, y0 - MARK_WIDTH, x1 - 1 + MARK_WIDTH, y1 - 1 + MARK_WIDTH),
                               outline=MARK, width=MARK_WIDTH)  # in the gap: the tile stays intact
            if captions and r < len(captions) and c < len(captions[r]) and captions[r][c]:
                draw.multiline_text(((x0 + x1) / 2, y0 - PAD // 2), fit_text(captions[r][c], lay.tile, fnt),
                                    font=fnt, fill=INK, anchor="md", align="center", spacing=2)
        if row_labels and r < len(row_labels):
            _, y0, _, y1 = lay.tile_box(r, 0)
            draw.multiline_text((PAD, (y0 + y1) / 2), row_labels[r], font=fnt, fill=INK, anchor="lm", spacing=2)
    for c, text in enumerate(col_labels or ()):
        x0, _, x1, _ = lay.tile_box(0, c)
        draw.multiline_text(((x0 + x1) / 2, PAD + lay.title_h + lay.header_h - PAD), fit_text(text, lay.tile, fnt),
                            font=fnt, fill=INK, anchor="md", align="center", spacing=2)
    return sheet


def split_strip(strip) -> list[Image.Image]:
    """A sample row (n square images side by side) -> its n tiles."""
    im = _as_image(strip)
    h = im.height
    return [im.crop((i * h, 0, (i + 1) * h, h)) for i in range(im.width // h)]


def wrap(items: list, n_cols: int) -> list[list]:
    """A flat list -> rows of at most n_cols (the last row shorter: no filler cells)."""
    return [items[i:i + n_cols] for i in range(0, len(items), n_cols)]


def save_sheet(path: Path, sheet: Image.Image) -> Path:
    """Write via a temp file + rename: a reader never sees half a PNG."""
    atomic_write(Path(path), lambda f: sheet.save(f, format="PNG"))
    return Path(path)
