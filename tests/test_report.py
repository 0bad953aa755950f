"""Report: a hand-built run directory with hand-chosen scores, checked against hand-computed best cells."""
from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pytest
from PIL import Image

from stylegan_blend.app.cli import main
from stylegan_blend.errors import UserError
from stylegan_blend.reporting.report import build_report
from stylegan_blend.reporting.scores import best_cells
from stylegan_blend.run.tables import METRICS_REQUIRED as METRICS_COLUMNS

EPOCHS = {2: 4.0, 4: 8.0, 6: 12.0}  # epoch -> kimg
# kid per (epoch, cell). Hand-picked so that per-epoch winners differ and `none` (a reference) is lowest.
KID = {
    2: {"base": 0.90, "swap16_low_base": 0.30, "swap32_low_base": 0.25, "swap64_low_base": 0.28, "none": 0.05},
    4: {"base": 0.90, "swap16_low_base": 0.22, "swap32_low_base": 0.12, "swap64_low_base": 0.18, "none": 0.03},
    6: {"base": 0.90, "swap16_low_base": 0.20, "swap32_low_base": 0.15, "swap64_low_base": 0.11, "none": 0.02},
}
KID_BEST = {2: "swap32_low_base", 4: "swap32_low_base", 6: "swap64_low_base"}
KID_OVERALL = (6, "swap64_low_base", 0.11)
# fid ranks differently: swap16 at epoch 4 wins.
FID = {e: {c: 100 * v + (-20 if (e, c) == (4, "swap16_low_base") else 0) for c, v in cells.items()}
       for e, cells in KID.items()}


def _csv_row(epoch, cell, metric, value, extractor):
    swap_res, direction = (cell, "") if cell in ("base", "none") else (cell[4:6], cell[7:])
    return f"{epoch},{EPOCHS[epoch]},{swap_res},{direction},{metric},{value},64,100,{extractor}"


def make_run(root: Path, name: str = "run", metrics=(("kid", KID), ("fid", FID)), extractor: str = "inception",
             base: str | None = "/models/ffhq256.pkl", images: bool = True, direction: str = "low_base") -> Path:
    run = root / name
    lines = [",".join(METRICS_COLUMNS)]
    for metric, table in metrics:
        for epoch, cells in table.items():
            for cell, value in cells.items():
                if cell == "base" and epoch != 2:
                    continue  # like the blend callback: the base model is scored once
                lines.append(_csv_row(epoch, cell.replace("low_base", direction), metric, value, extractor))
    (run / ".hydra").mkdir(parents=True)
    (run / "metrics.csv").write_text("\n".join(lines) + "\n")
    diag = ["epoch,kimg,metric,value"]
    for i, (epoch, kimg) in enumerate(EPOCHS.items()):
        for metric, value in {"r_t": 0.3 + 0.15 * i, "ada_p": 0.1 * i, "d_real_train": 1 + i, "d_real_val": 1 - i,
                              "d_fake": -1 - i, "d_gap": 2 * i, "memorisation": 0.5 - 0.1 * i,
                              "loss_G": 2 + i, "loss_D": 1 - 0.1 * i}.items():
            diag.append(f"{epoch},{kimg},{metric},{value}")
    (run / "diagnostics.csv").write_text("\n".join(diag) + "\n")
    config = (f"model:\n  init_from: {base}\nblend:\n  base: ${{model.init_from}}\n" if base else "blend:\n")
    config += "  swap_res: [16, 32, 64]\n  width: 0.0\n  mapping: low\n"
    (run / ".hydra" / "config.yaml").write_text(config)
    (run / ".hydra" / "overrides.yaml").write_text(f"- data={name}\n")
    if images:
        rng = np.random.default_rng(0)
        for epoch, cells in KID.items():
            folder = run / "samples" / "blends" / f"epoch={epoch:04d}"
            folder.mkdir(parents=True)
            for cell in cells if epoch == 2 else [c for c in cells if c != "base"]:  # 4 seeds, 16 px each
                pixels = rng.integers(0, 256, (16, 64, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{cell.replace('low_base', direction)}.png")
    return run


def linked_paths(html: str) -> list[str]:
    return [unquote(m) for m in re.findall(r'(?:src|href)="([^"]+)"', html) if not m.startswith("#")]


def assert_self_contained(index: Path) -> str:
    html = index.read_text()
    links = linked_paths(html)
    assert links
    for link in links:
        assert not re.match(r"^[a-z]+:|^/", link), link  # relative only
        assert (index.parent / link).is_file(), link
    return html


def test_best_cells_hand_computed(tmp_path):
    run = make_run(tmp_path)
    best = best_cells(run / "metrics.csv", "kid")
    assert [(b.scope, b.epoch, b.cell) for b in best[:-1]] == [("epoch", e, c) for e, c in KID_BEST.items()]
    assert best[-1].scope == "overall"
    assert (best[-1].epoch, best[-1].cell) == KID_OVERALL[:2]
    assert best[-1].value == pytest.approx(KID_OVERALL[2]) and best[-1].swap_res == 64
    # default metric is kid; dict rows work too; fid ranks swap16 @ epoch 4 first (100*0.22-20 = 2)
    rows = [dict(zip(METRICS_COLUMNS, line.split(","))) for line in
            (run / "metrics.csv").read_text().splitlines()[1:]]
    assert best_cells(rows)[-1] == best[-1]
    fid = best_cells(rows, "fid")
    assert (fid[-1].epoch, fid[-1].cell, fid[-1].value) == (4, "swap16_low_base", pytest.approx(2.0))


def test_single_run_report(tmp_path, capsys):
    run = make_run(tmp_path)
    index = build_report([run])
    assert index == run / "report" / "index.html"
    html = assert_self_contained(index)
    # best cell: marked in the grid and named in the exact export command
    assert re.search(r'class="cell best-overall"><figcaption[^>]*>swap64_low_base</figcaption>'
                     r'<a href="img/run0/full/e0006_swap64_low_base.png"', html)
    command = (f"stylegan-blend blend --low /models/ffhq256.pkl --high {(run / 'networks').resolve()}"
               f"/epoch=0006.pt --swap-res 64 --mapping low --out best_blend.pt")
    assert command in html
    assert "not comparable with published FID" not in html  # kid/fid are the real thing
    for name in ("run0_heatmap.png", "run0_curves.png", "run0_diagnostics.png"):
        with Image.open(run / "report" / "fig" / name) as im:
            assert im.width > 300 and im.height > 200
    # each score is printed under its cell
    assert "kid 0.28" in html and "kid 0.11<br>★ lowest kid" in html
    assert html.count('class="cell best-epoch"') == 2  # epochs 2 and 4; epoch 6 holds the overall best
    # the base model, scored and drawn once at epoch 2, stands in every row
    assert html.count("kid 0.9<") == 3 and 'src="img/run0/e0006_base.png"' in html
    assert "scored once, at epoch 2" in html

    assert main(["report", str(run), "--metric", "fid"]) == 0
    out = capsys.readouterr().out
    assert f"report: {index}" in out
    epoch_lines = [line.split(": ", 1)[1] for line in out.splitlines() if line.strip().startswith("lowest fid: epoch")]
    assert [line.split()[2] for line in epoch_lines] == ["swap32_low_base", "swap16_low_base", "swap64_low_base"]
    assert "no identity scores in this run: one-sided minima only, not a choice" in out
    assert "--swap-res 16" in out


def test_proxy_metrics_are_labelled(tmp_path):
    run = make_run(tmp_path, metrics=(("fd_tiny", FID), ("kd_tiny", KID)), extractor="tinycnn")
    html = build_report([run]).read_text()
    label = "proxy (tinycnn), not comparable with published FID"
    assert html.count(label) >= 3  # default metric kd_tiny: heatmap note, table header kd_ and fd_
    assert re.search(r"fd_tiny<small class=\"proxy\">" + re.escape(label), html)
    assert "kd_tiny" in best_cells(run / "metrics.csv")[-1].metric


def test_malformed_and_missing_inputs(tmp_path, capsys):
    run = make_run(tmp_path)
    (run / "metrics.csv").write_text("epoch,kimg,metric,value\n2,4.0,kid,0.1\n")
    with pytest.raises(UserError, match=r"metrics\.csv: missing column\(s\) swap_res, direction.*expected columns"):
        build_report([run])
    assert main(["report", str(run)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and str(run / "metrics.csv") in err
    assert not (run / "report").exists()  # nothing half-written

    (run / "metrics.csv").write_text(",".join(METRICS_COLUMNS) + "\n2,4.0,16,low_base,kid,oops,1,1,x\n")
    with pytest.raises(UserError, match=r"metrics\.csv:2: column value = 'oops' is not a number"):
        build_report([run])
    with pytest.raises(UserError, match="run directory not found"):
        build_report([tmp_path / "nope"])
    (run / "metrics.csv").unlink()
    with pytest.raises(UserError, match=r"metrics\.csv: not found"):
        build_report([run])
    with pytest.raises(UserError, match="no metric 'kid'"):
        build_report([make_run(tmp_path, "proxy", metrics=(("kd_x", KID),))], metric="kid")


def test_missing_images_base_and_low_tuned(tmp_path):
    run = make_run(tmp_path, base=None, images=False, direction="low_tuned")
    folder = run / "samples" / "blends" / "epoch=0002"
    folder.mkdir(parents=True)
    (folder / "swap16_low_tuned.png").write_bytes(b"not a png")
    Image.new("RGB", (8, 8)).save(folder / "none.tmp.png")  # the callback's temp file, mid-write
    html = assert_self_contained(build_report([run]))
    assert html.count(">no image<") == 14 and html.count(">unreadable image<") == 1  # 3 epochs × 5 cells
    assert html.count("kid 0.9<") == 3  # base score fills its column
    tuned = (run / "networks" / "epoch=0006.pt").resolve()
    assert f"--low {tuned} --high &#x27;&lt;BASE&gt;&#x27; --swap-res 64" in html  # low_tuned: fine-tuned model low
    assert "blend.base is not set in" in html


def test_two_runs_side_by_side(tmp_path, capsys):
    a = make_run(tmp_path, "anime")
    b = make_run(tmp_path, "disney", metrics=(("kid", {e: {c: v / 2 for c, v in cells.items()}
                                                       for e, cells in KID.items()}),))
    with pytest.raises(UserError, match="needs --out"):
        build_report([a, b])
    assert main(["report", str(a), str(b), "--out", str(tmp_path / "sweep_report")]) == 0
    assert capsys.readouterr().out.count("overall") == 2
    html = assert_self_contained(tmp_path / "sweep_report" / "index.html")
    assert 'id="comparison"' in html and 'id="run0"' in html and 'id="run1"' in html
    assert "data=anime" in html and "data=disney" in html
    assert 'href="img/run1/full/e0006_swap64_low_base.png"' in html
    # both heatmaps side by side, each with its own best cell (disney's kids are anime's halved: same cell)
    assert html.count("★ lowest kid") == 2 and "kid 0.055<br>★ lowest kid" in html


def test_rebuild_keeps_stylized_and_refuses_foreign_folder(tmp_path):
    run = make_run(tmp_path)
    stylized = run / "report" / "stylized"
    stylized.mkdir(parents=True)  # `stylize` may write here before any report exists
    Image.new("RGB", (8, 8), "red").save(stylized / "me smiling.png")
    build_report([run])
    html = assert_self_contained(build_report([run]))  # rebuild over the previous report
    assert (stylized / "me smiling.png").is_file()
    assert "Stylised faces" in html and "<figcaption>me smiling.png</figcaption>" in html
    assert not [p for p in run.iterdir() if p.name.startswith(".report")]  # temp folders cleaned up

    with pytest.raises(UserError, match="refusing to replace"):
        build_report([run], out_dir=run)  # the run directory itself is not a report
    assert (run / "metrics.csv").is_file()


# identity loss per blend cell (paired against the base): swap16 keeps the face best, and less so later on
IDL = {2: {"base": 0.0, "swap16_low_base": 0.10, "swap32_low_base": 0.20, "swap64_low_base": 0.40, "none": 0.7},
       4: {"swap16_low_base": 0.15, "swap32_low_base": 0.30, "swap64_low_base": 0.50, "none": 0.8},
       6: {"swap16_low_base": 0.25, "swap32_low_base": 0.45, "swap64_low_base": 0.60, "none": 0.9}}


def test_report_selection_by_rule(tmp_path, capsys, monkeypatch):
    """Overall front (by hand): e6·s64, e4·s32, e6·s16, e4·s16, e2·s16. Scaled to [0, 1] over the run
    (kid 0.11..0.30, identity 0.10..0.60) they sit at (0, 1), (.053, .4), (.474, .3), (.579, .1), (1, 0);
    the farthest from x + y = 1 is e4·s32 (1 − 0.453), the knee. The one-sided kid minimum is e6·s64."""
    from stylegan_blend.reporting import figures, sheet

    drawn, row_labels, heatmaps = [], [], []  # the title and row labels of every sheet; the heatmaps' axes
    real, real_heatmap = sheet.comparison_sheet, figures.heatmap

    def record(tiles, labels, cols, title="", marked=()):
        drawn.append(title)
        row_labels.extend(labels)
        return real(tiles, labels, cols, title=title, marked=marked)

    def record_heatmap(path, grid, title, best, vrange, identity=None):
        heatmaps.append((grid.metric, identity.metric if identity is not None else None, title))
        return real_heatmap(path, grid, title, best, vrange, identity)

    monkeypatch.setattr(sheet, "comparison_sheet", record)
    monkeypatch.setattr(figures, "heatmap", record_heatmap)
    run = make_run(tmp_path, metrics=(("kid", KID), ("idloss_proxy", IDL)))
    html = assert_self_contained(build_report([run]))
    # sheets and heatmap show both axes, not style alone: e4·s32 is kid 0.12, identity loss 0.30
    assert "swap 32 (low_base)\nkid 0.12 · idloss_proxy 0.3  (best)" in row_labels
    assert heatmaps and heatmaps[0][:2] == ("kid", "idloss_proxy") and "each cell: kid over idloss_proxy" in heatmaps[0][2]
    epoch4 = [title for title in drawn if ": epoch 4" in title]  # the frame is the rule's pick, and says so
    assert epoch4 and all(t.endswith("framed = the epoch's blend best by knee") for t in epoch4), drawn
    assert "kid 0.12<br>★ best by knee" in html and html.count("★ best by knee") == 1
    assert "one-sided minimum of kid alone would be swap64_low_base at epoch 6" in html
    # front cells: the overall front plus each epoch's (e2: s16, s32; e4: s16, s32; e6: all three)
    assert html.count("◆ Pareto front") == 7
    assert (run / "report" / "fig" / "run0_selection.png").is_file() and "Style vs identity" in html
    # most stylised cell keeping identity >= 0.8 (loss <= 0.2): e2·s16 .30, e4·s16 .22, e2·s32 .25 -> e4·s16
    assert main(["report", str(run), "--rule", "min_identity=0.8"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"overall\s+best by min_identity=0.8: swap16_low_base\s+style=0.22 identity_loss=0.15", out)
    assert "one-sided lowest kid (ignores identity)" in out
    assert "stability unknown: 9 of 9 cells have no usable per-seed scores" in out  # a hand-made run: no npz
    assert "(e4·s16, 8 kimg)  → e4·s16 (stability unknown)" in out
    # an infeasible rule: the CLI says what the page says
    assert main(["report", str(run), "--rule", "min_identity=0.99"]) == 0
    out = capsys.readouterr().out
    reason = "no cell keeps identity ≥ 0.99; highest is 0.9"
    assert f"best by min_identity=0.99: no cell ({reason})" in out and "no blend cell scored" not in out
    assert reason in (run / "report" / "index.html").read_text()


def test_diagnostics_figure_shows_every_logged_epoch_with_integer_ticks(tmp_path, monkeypatch):
    """Diagnostics logged every epoch from 1 (checkpoints every 2): epoch 1 is inside the axes, ticks are
    whole epochs, a never-logged value (pl_penalty = nan with pl_weight 0) has no legend entry, a value
    missing in one epoch leaves no gap, d_real sits in the D panel, and every panel has a title."""
    from stylegan_blend.reporting import figures

    run = make_run(tmp_path)
    diag = ["epoch,kimg,metric,value"]
    for epoch in range(1, 7):
        for metric, value in {"r_t": 0.5, "ada_p": 0.01 * epoch, "d_real": 1.0, "d_fake": -1.0, "loss_G": 2.0,
                              "loss_D": 1.0, "pl_penalty": "nan", "r1_penalty": "nan" if epoch == 3 else 0.1,
                              "memorisation": 1.2, "d_real_train": 1.1, "d_real_val": 0.9, "d_gap": 0.2}.items():
            diag.append(f"{epoch},{2.0 * epoch},{metric},{value}")
    (run / "diagnostics.csv").write_text("\n".join(diag) + "\n")
    drawn = []
    original = figures.diagnostics
    monkeypatch.setattr(figures, "diagnostics", lambda *a, **k: drawn.append(original(*a, **k)) or drawn[-1])
    build_report([run])
    (fig,) = drawn
    visible = [ax for ax in fig.axes if ax.get_visible()]
    main_axes = [ax for ax in visible if ax.get_title()]
    assert len(main_axes) == 4  # no "other" panel: everything logged has its place
    titles = [ax.get_title() for ax in main_axes]
    assert all(titles) and not any("other" in t for t in titles)
    for ax in main_axes:
        low, high = ax.get_xlim()
        assert low < 1 and high > 6
        ticks = [t for t in ax.get_xticks() if low <= t <= high]
        assert ticks and all(float(t).is_integer() for t in ticks), ticks
    labels = [t.get_text() for ax in visible if ax.get_legend() for t in ax.get_legend().get_texts()]
    assert "pl_penalty" not in labels and all(labels)
    assert any(l.startswith("d_real (training") for l in labels)
    losses = next(ax for ax in main_axes if ax.get_title().startswith("losses"))
    r1 = next(line for line in losses.get_lines() if line.get_label() == "r1_penalty")
    assert list(r1.get_xdata()) == [1, 2, 4, 5, 6] and np.isfinite(r1.get_ydata()).all()


def _tile_tops(a: np.ndarray) -> np.ndarray:
    """Top edges of a sheet's tile rows, found from its pixels: bands that are neither background nor the
    red frame, in a column inside the last seed column."""
    col = a[:, -12]
    tile = (col != 255).any(-1) & ~(col == (228, 0, 43)).all(-1)
    return np.flatnonzero(np.diff(tile.astype(int)) == 1) + 1


def _n_rows(path) -> int:
    return len(_tile_tops(np.asarray(Image.open(path).convert("RGB"))))


def test_comparison_sheets_per_checkpoint_and_best_cells(tmp_path):

    run = make_run(tmp_path)
    build_report([run])
    sheets = run / "report" / "sheets"
    assert sorted(p.name for p in sheets.iterdir()) == ["run0_best.png", "run0_epoch=0002.png",
                                                        "run0_epoch=0004.png", "run0_epoch=0006.png"]
    # epoch 2: base, three swaps, none = 5 rows of 4 seeds (16 px samples enlarged 8x to 128)
    assert _n_rows(sheets / "run0_epoch=0002.png") == 5
    # best cells: base, the best of epochs 2, 4, 6, and the last fine-tuned model
    assert _n_rows(sheets / "run0_best.png") == 5
    with Image.open(sheets / "run0_epoch=0004.png") as im:
        a = np.asarray(im.convert("RGB"))
    # rows at epoch 4 are base, swap16, swap32, swap64, none; swap32 (row 2) is the best of the epoch
    source = np.asarray(Image.open(run / "samples" / "blends" / "epoch=0004" / "swap32_low_base.png"))
    heights = _tile_tops(a)
    top = heights[2]
    x_last = a.shape[1] - 8 - 128  # PAD from the right edge, one 128 px tile
    np.testing.assert_array_equal(a[top:top + 128, x_last:x_last + 128],
                                  np.kron(source[:, 48:64], np.ones((8, 8, 1), np.uint8)))
    red = (a == (228, 0, 43)).all(-1)
    assert red[top - 1, x_last:x_last + 128].all() and not red[heights[1] - 1].any()
    html = (run / "report" / "index.html").read_text()
    assert 'src="sheets/run0_best.png"' in html and "One sheet per checkpoint (3)" in html


def test_run_labels_are_the_swept_keys_and_best_of_all_runs_is_marked(tmp_path):
    from stylegan_blend.reporting.report import run_labels
    from stylegan_blend.run.reader import load_run

    # both runs have identity scores; b's style distances are a's halved, so its knee pick (the same cell,
    # e4·s32) dominates a's and the rule prefers it
    a = make_run(tmp_path, "2026-12-01_10-00-00_anime_long_folder_name", metrics=(("kid", KID), ("idloss_proxy", IDL)))
    b = make_run(tmp_path, "2026-12-01_11-00-00_disney_long_folder_name",
                 metrics=(("kid", {e: {c: v / 2 for c, v in cells.items()} for e, cells in KID.items()}),
                          ("idloss_proxy", IDL)))
    for run, r1 in ((a, 1), (b, 10)):
        (run / ".hydra" / "overrides.yaml").write_text(f"- experiment=anime\n- train.r1_gamma={r1}\n")
    assert run_labels([load_run(a), load_run(b)]) == ["train.r1_gamma=1", "train.r1_gamma=10"]
    assert run_labels([load_run(a)]) == [a.name]
    html = build_report([a, b], out_dir=tmp_path / "cmp").read_text()
    comparison = html[html.index('id="comparison"'):html.index('id="run0"')]
    # key columns first; b (kid halved) holds the best of all runs
    assert comparison.index("<th>run</th>") < comparison.index("<th>value</th>") < comparison.index("overrides</th>")
    assert re.search(r'<tr class="best-of-all"><td><a href="#run1">train.r1_gamma=10</a> ★ best of all runs by '
                     r'knee: train.r1_gamma=10 \(stability unknown: a run has no bootstrap\)', html)
    assert html.count("best of all runs") == 2  # the comparison row and run1's grid cell
    assert "<h2>train.r1_gamma=1</h2>" in html
    assert (tmp_path / "cmp" / "sheets" / "runs_best.png").is_file()
    # a run without identity scores has no pick to compare: the lowest style alone never wins "best of all"
    c = make_run(tmp_path, "2026-12-01_12-00-00_style_only", metrics=(("kid", {e: {k: v / 10 for k, v in cells.items()}
                                                                               for e, cells in KID.items()}),))
    html = build_report([a, b, c], out_dir=tmp_path / "cmp3").read_text()
    assert re.search(r'<tr class="best-of-all"><td><a href="#run1">', html) and html.count('class="best-of-all"') == 1
