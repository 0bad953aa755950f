"""Labelled comparison sheets: tile placement, nearest-neighbour enlargement and label positions, checked
against hand-computed geometry and against what is actually drawn in the pixels."""
from __future__ import annotations

import numpy as np
import pytest

from stylegan_blend.reporting.sheet import (
    BACKGROUND,
    GAP,
    MARK,
    PAD,
    comparison_sheet,
    sheet_layout,
    upscale_factor,
    wrap,
)


def _tiles(n_rows, n_cols, native=8, seed=0):
    rng = np.random.default_rng(seed)
    return [[rng.integers(60, 200, (native, native, 3), dtype=np.uint8) for _ in range(n_cols)]
            for _ in range(n_rows)]


def _ink(a: np.ndarray) -> np.ndarray:
    """Pixels darker than the label ink threshold (tiles use 60..200 per channel, labels ~20, marks red)."""
    return a.max(-1) < 55


@pytest.mark.parametrize("native, factor", [(8, 16), (32, 4), (48, 3), (100, 2), (128, 1), (256, 1)])
def test_upscale_factor_is_the_smallest_integer_reaching_128(native, factor):
    assert upscale_factor(native) == factor


def test_tiles_sit_on_a_regular_grid_enlarged_nearest_neighbour():
    tiles = _tiles(3, 4)
    rows, cols = ["base", "swap 8\nlow_base", "fine-tuned"], [f"seed {s}" for s in range(4)]
    sheet = np.asarray(comparison_sheet(tiles, rows, cols, title="epoch 3", min_tile=64))
    lay = sheet_layout(8, 3, 4, rows, cols, title="epoch 3", min_tile=64)
    assert (lay.scale, lay.tile) == (8, 64)  # ceil(64 / 8) = 8
    assert sheet.shape == (lay.height, lay.width, 3)
    # hand-computed spacing: one tile plus one gap per step, margins of PAD
    x0, y0, x1, y1 = lay.tile_box(0, 0)
    assert (x1 - x0, y1 - y0) == (64, 64)
    assert lay.tile_box(0, 1)[0] - x0 == 64 + GAP and lay.tile_box(1, 0)[1] - y0 == 64 + GAP
    assert lay.width == x0 + 4 * 64 + 3 * GAP + PAD and lay.height == y0 + 3 * 64 + 2 * GAP + PAD
    for r in range(3):
        for c in range(4):
            bx0, by0, bx1, by1 = lay.tile_box(r, c)
            assert np.array_equal(sheet[by0:by1, bx0:bx1], np.kron(tiles[r][c], np.ones((8, 8, 1), np.uint8)))
    # the grid's corner is where the first tile's pixels really are (found by colour, not by the layout)
    tiles[0][0][0, 0] = (1, 2, 3)
    marked = np.asarray(comparison_sheet(tiles, rows, cols, title="epoch 3", min_tile=64))
    ys, xs = np.nonzero((marked == (1, 2, 3)).all(-1))
    assert (xs.min(), ys.min(), xs.max(), ys.max()) == (x0, y0, x0 + 7, y0 + 7)


def test_labels_are_drawn_next_to_what_they_name():
    tiles = _tiles(3, 4)
    rows, cols = ["base", "swap 8", "fine-tuned"], ["seed 0", "seed 1", "seed 2", "seed 3"]
    sheet = np.asarray(comparison_sheet(tiles, rows, cols, title="epoch 3", min_tile=64))
    lay = sheet_layout(8, 3, 4, rows, cols, title="epoch 3", min_tile=64)
    x0, y0 = lay.tile_box(0, 0)[:2]
    ink = _ink(sheet)
    # row labels: left of the grid, starting PAD from the edge, each inside its row's band
    for r in range(3):
        _, ty0, _, ty1 = lay.tile_box(r, 0)
        band = ink[ty0:ty1, :x0]
        ys, xs = np.nonzero(band)
        assert xs.size > 20, f"row label {r} not drawn"
        assert PAD - 1 <= xs.min() <= PAD + 2 and xs.max() < x0 - PAD + 3
        assert abs((ys.min() + ys.max()) / 2 - (ty1 - ty0) / 2) < 6  # vertically centred
    for r in range(2):  # nothing in the gaps between rows
        assert not ink[lay.tile_box(r, 0)[3]:lay.tile_box(r + 1, 0)[1], :x0].any()
    # column labels: above the grid, below the title, each centred on its column
    for c in range(4):
        cx0, _, cx1, _ = lay.tile_box(0, c)
        ys, xs = np.nonzero(ink[PAD + lay.title_h:y0, cx0:cx1])
        assert xs.size > 20, f"column label {c} not drawn"
        assert abs((xs.min() + xs.max()) / 2 - (cx1 - cx0) / 2) < 3
    ys, xs = np.nonzero(ink[:PAD + lay.title_h])  # the title, top left
    assert xs.min() <= PAD + 2 and ys.min() >= PAD - 1
    # nothing is drawn in the margins
    assert (sheet[:, -PAD:] == BACKGROUND).all() and (sheet[-PAD:] == BACKGROUND).all()
    assert (sheet[:PAD] == BACKGROUND).all() and (sheet[:, :PAD - 1] == BACKGROUND).all()


def test_marked_cell_is_framed_in_red_and_others_are_not():
    tiles = _tiles(2, 3)
    sheet = np.asarray(comparison_sheet(tiles, ["a", "b"], ["1", "2", "3"], marked=[(1, 2)], min_tile=64))
    lay = sheet_layout(8, 2, 3, ["a", "b"], ["1", "2", "3"], min_tile=64)
    red = (sheet == MARK).all(-1)
    ys, xs = np.nonzero(red)
    bx0, by0, bx1, by1 = lay.tile_box(1, 2)
    assert xs.min() >= bx0 - GAP and xs.max() <= bx1 + GAP and ys.min() >= by0 - GAP and ys.max() <= by1 + GAP
    assert red[by0 - 1, bx0:bx1].all() and red[by1, bx0:bx1].all()  # frame hugs the tile
    assert np.array_equal(sheet[by0:by1, bx0:bx1], np.kron(tiles[1][2], np.ones((8, 8, 1), np.uint8)))  # intact


def test_wrapped_grid_has_captions_and_no_filler_tile():
    items = [t for row in _tiles(1, 7) for t in row]
    captions = wrap([f"seed {s}" for s in range(7)], 3)
    sheet = np.asarray(comparison_sheet(wrap(items, 3), captions=captions, min_tile=64))
    lay = sheet_layout(8, 3, 3, captions=captions, min_tile=64)
    assert sheet.shape[:2] == (lay.height, lay.width) and lay.caption_h > 0
    # the two missing cells of the last row are background, not black
    for c in (1, 2):
        x0, y0, x1, y1 = lay.tile_box(2, c)
        assert (sheet[y0:y1, x0:x1] == BACKGROUND).all()
    for r, c in [(0, 0), (1, 2), (2, 0)]:  # each caption sits in the band just above its tile
        x0, y0, x1, _ = lay.tile_box(r, c)
        ys, xs = np.nonzero(_ink(sheet[y0 - lay.caption_h:y0, x0:x1]))
        assert xs.size > 10 and abs((xs.min() + xs.max()) / 2 - (x1 - x0) / 2) < 3


def test_long_column_labels_wrap_within_their_column():
    tiles = _tiles(1, 3)
    cols = ["base reconstruction of the photo", "swap 16 (low_base)", "fine-tuned (epoch 18)"]
    sheet = np.asarray(comparison_sheet(tiles, col_labels=cols))
    lay = sheet_layout(8, 1, 3, col_labels=cols)
    assert lay.tile == 128
    y0 = lay.tile_box(0, 0)[1]
    ink = _ink(sheet[:y0])
    for c in range(3):
        x0, _, x1, _ = lay.tile_box(0, c)
        assert ink[:, x0:x1].sum() > 20
    gaps = [ink[:, lay.tile_box(0, c)[2]:lay.tile_box(0, c + 1)[0]] for c in range(2)]
    assert not any(g.any() for g in gaps)  # no label runs into the next column
    assert lay.header_h > 2 * 15  # 128 px tiles force the first label onto several lines
