"""The report's single HTML page: inline CSS and a few lines of JS for table sorting, relative links only,
so the folder can be zipped, mailed or served as-is."""
from __future__ import annotations

import math
from html import escape
from urllib.parse import quote

from ..selection.rules import TIE_BREAK
from ..selection.run import identity_label
from .model import RunSection
from .scores import cell_sort_key, is_proxy, latest_scores, metric_label

THUMB_HEIGHT = 96  # grid thumbnails are drawn this tall (small demo samples are upscaled, pixelated)
GENERATOR_MARK = '<meta name="generator" content="stylegan-blend report">'

CSS = """
*, *::before, *::after { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, sans-serif; margin: 1.5em auto; max-width: 1500px; padding: 0 1em; color: #222; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 2px solid #ccc; padding-bottom: 0.2em; margin-top: 2em; }
.muted, .note { color: #666; } .note { font-size: 0.9em; }
code, .muted, .note, li { overflow-wrap: anywhere; }
img { max-width: 100%; height: auto; }
.table-box { overflow: auto; max-width: 100%; max-height: 36em; border: 1px solid #ddd; }
.table-box thead th { position: sticky; top: 0; z-index: 1; }
table { border-collapse: collapse; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.5em; }
.cells { border-bottom: 1px solid #ddd; }
.epoch-row { display: grid; grid-template-columns: 6.5em minmax(0, 1fr); gap: 0.5em; border-top: 1px solid #ddd;
             padding: 0.4em 0; }
.epoch-label { font-weight: bold; }
.cell-cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(190px, 1fr)); gap: 0.5em; }
.cell { margin: 0; padding: 0.25em; text-align: center; border: 1px solid transparent; min-width: 0; }
.cell figcaption { font-size: 0.85em; font-weight: 600; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
.cell img { display: block; margin: 0 auto; width: 100%; image-rendering: pixelated; }
.score { font-variant-numeric: tabular-nums; font-size: 0.9em; }
.missing { color: #999; font-style: italic; padding: 1em 0; }
.best-epoch { background: #fff7d6; } .best-overall { background: #ffe08a; outline: 3px solid #e4002b; }
table.sortable th { cursor: pointer; background: #f3f3f3; user-select: none; }
table.sortable th[data-order=asc]::after { content: " ▲"; } table.sortable th[data-order=desc]::after { content: " ▼"; }
table.sortable td { font-variant-numeric: tabular-nums; } tr.best-overall td { background: #ffe08a; }
tr.best-of-all td { background: #ffd0d6; font-weight: 600; }
small.proxy { display: block; font-weight: normal; color: #a33; }
pre.command { background: #272822; color: #f8f8f2; padding: 0.8em; overflow-x: auto; white-space: pre-wrap;
              overflow-wrap: anywhere; }
.figures { display: flex; flex-wrap: wrap; gap: 1em; align-items: flex-start; }
.figures img { border: 1px solid #eee; }
.figures > a { min-width: 0; }
.pair > a { flex: 1 1 40%; max-width: 900px; } .pair img { width: 100%; }
.side > a { flex: 1 1 30%; max-width: 50%; } .side img { width: 100%; }
.gallery { display: flex; flex-wrap: wrap; gap: 1em; } .gallery figure { margin: 0; text-align: center; min-width: 0; }
.gallery img { max-height: 420px; }
.sheets figcaption { font-size: 0.9em; color: #666; }
"""

# Sort on header click: numbers numerically, text alphabetically, empty cells always last.
JS = """
document.querySelectorAll('table.sortable').forEach(table => {
  const headers = Array.from(table.tHead.rows[0].cells);
  headers.forEach((th, col) => th.addEventListener('click', () => {
    const asc = th.dataset.order !== 'asc';
    headers.forEach(h => delete h.dataset.order);
    th.dataset.order = asc ? 'asc' : 'desc';
    const key = row => {
      const cell = row.cells[col];
      const raw = (cell.dataset.sort ?? cell.textContent).trim();
      const num = Number(raw);
      return raw === '' ? null : (Number.isNaN(num) ? raw : num);
    };
    const body = table.tBodies[0];
    Array.from(body.rows).sort((a, b) => {
      const x = key(a), y = key(b);
      if (x === null || y === null) return (x === null) - (y === null);
      const order = (typeof x === 'number' && typeof y === 'number') ? x - y : String(x).localeCompare(String(y));
      return asc ? order : -order;
    }).forEach(row => body.appendChild(row));
  }));
});
"""


def _src(rel: str) -> str:
    return escape(quote(rel), quote=True)


def _num(value: float | None, digits: int = 4) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}g}"


def _metric_header(metric: str, rows) -> str:
    if not is_proxy(metric):
        return escape(metric)
    note = metric_label(metric, rows).split(" — ", 1)[1]
    return f'{escape(metric)}<small class="proxy">{escape(note)}</small>'


def _best_block(s: RunSection) -> str:
    if s.overall is None and s.selection is not None and s.selection.points:
        return (f'<p class="note">No blend cell satisfies <code>{escape(str(s.selection.rule))}</code>: '
                f"{escape(s.selection.overall.note)}. Nothing to export; try another rule.</p>")
    if s.overall is None:
        return f'<p class="note">No blend cell has a {escape(s.metric)} score yet: nothing to export.</p>'
    b = s.overall
    parts = [f"<p><b>Best blend</b> ({escape(s.best_label)}, style = {escape(s.label)}): <b>{escape(b.cell)}</b> "
             f"at epoch {b.epoch} ({b.kimg:g} kimg), {escape(s.metric)} = {_num(s.style_of(b))}. Export it with:</p>"]
    parts.insert(0, _selection_note(s))
    if s.command:
        parts.append(f'<pre class="command"><code>{escape(s.command)}</code></pre>')
    if s.command_note:
        parts.append(f'<p class="note">Note: {escape(s.command_note)}</p>')
    return "\n".join(parts)


def _selection_note(s: RunSection) -> str:
    """The rule behind every "best", its pick's identity loss, and the one-sided minimum next to it."""
    if s.selection is None:
        return ('<p class="note">This run has no identity scores, so cells are ranked by one style distance '
                "only: that always favours the cell with most fine-tuned layers. Re-score it with "
                "<code>stylegan-blend-eval</code> to get the identity axis.</p>")
    sel, low = s.selection, s.lowest
    p = sel.overall.point
    chosen = (f"{escape(p.cell)} at epoch {p.epoch}: {escape(sel.identity_metric)} = {_num(p.identity)}"
              if p is not None else escape(sel.overall.note))
    one_sided = (f" The one-sided minimum of {escape(s.metric)} alone would be {escape(low.cell)} at epoch "
                 f"{low.epoch} ({_num(s.style_of(low))})." if low is not None else "")
    sure = ""
    unknown = f" Stability unknown: {escape(sel.uncertainty_note)}." if sel.bootstrap is None else ""
    if p is not None:
        u = sel.uncertainty(sel.overall)
        sure = f" <b>{escape(sel.summary())}</b>"
        sure += (f" over {sel.bootstrap.resamples} paired resamples of {sel.bootstrap.n_id} identity / "
                 f"{sel.bootstrap.n_gen} style seeds: the share in which the rule picks it again; \"also\" lists "
                 f"the cells whose 95 % intervals overlap it on both axes." if u is not None else ".")
        if u is not None and u.advice():
            sure += f" It is a toss-up: {escape(u.advice())}."
        if sel.overall.fallback:
            sure += f" No knee: {escape(sel.overall.fallback)}; the declared fallback picked."
    return (f'<p class="note"><b>Rule</b> <code>{escape(str(sel.rule))}</code>: {escape(sel.rule.describe())}; '
            f"ties: {escape(TIE_BREAK)}. Identity axis: {escape(identity_label(sel.identity_metric))}. "
            f"Chosen: {chosen}.{sure}{one_sided} Style reference: {escape(s.style_reference)}.{unknown}</p>")


def _epoch_verdict(s: RunSection, epoch: int) -> str:
    """` — e9·s8 (stable 71 %; also e9·s16) [only 3 swap points …]` for one epoch's pick."""
    if s.selection is None:
        return ""
    choice = next((c for c in s.selection.per_epoch if c.point is not None and c.point.epoch == epoch), None)
    if choice is None:
        return ""
    notes = [t for t in (choice.fallback and f"no knee: {choice.fallback}", choice.caveat) if t]
    return f" — {escape(s.selection.summary(choice))}" + (f" <small>[{escape('; '.join(notes))}]</small>"
                                                          if notes else "")


def _grid(s: RunSection) -> str:
    """Epoch rows; each row's cells wrap onto as many lines as the window needs (each cell names itself),
    so any number of swap points fits any width."""
    best_epoch = {(b.epoch, b.cell) for b in s.per_epoch}
    front = s.selection.front_cells() if s.selection is not None else set()
    overall = (s.overall.epoch, s.overall.cell) if s.overall else None
    rows = []
    for i, epoch in enumerate(s.grid.epochs):
        cards = []
        for j, cell in enumerate(s.grid.cells):
            image = s.images.get((epoch, cell))
            if image is not None and image.thumb:
                visual = (f'<a href="{_src(image.full)}"><img src="{_src(image.thumb)}" '
                          f'alt="epoch {epoch} {escape(cell)}" loading="lazy"></a>')
            else:
                visual = f'<div class="missing">{escape(image.problem if image else "no image")}</div>'
            value = s.grid.values[i, j]
            score = f"{escape(s.metric)} {_num(value)}" if math.isfinite(value) else "no score"
            cls = ""
            if (epoch, cell) == overall:
                cls, score = "best-overall", score + f"<br>★ {escape(s.best_label)}" + (
                    " · best of all runs" if s.best_of_all else "")
            elif (epoch, cell) in best_epoch:
                cls, score = "best-epoch", score + "<br>☆ best of epoch"
            if (epoch, cell) in front:
                score += "<br>◆ Pareto front"
            cards.append(f'<figure class="cell {cls}"><figcaption title="{escape(cell)}">{escape(cell)}'
                         f'</figcaption>{visual}<div class="score">{score}</div></figure>')
        kimg = s.grid.kimg.get(epoch)
        label = f"epoch {epoch}" + (f"<br><small>{kimg:g} kimg</small>" if kimg is not None else "")
        rows.append(f'<div class="epoch-row"><div class="epoch-label">{label}</div>'
                    f'<div class="cell-cards">{"".join(cards)}</div></div>')
    return f'<div class="cells">{"".join(rows)}</div>'


def _table(s: RunSection) -> str:
    """Every (epoch, cell) with every metric of the run, sortable by any column; the key columns (cell,
    epoch, the ranking metric) first, in a box that scrolls by itself."""
    rows = s.run.metrics
    metrics = [s.metric] + sorted({r.metric for r in rows} - {s.metric})
    scores = {m: latest_scores(rows, m) for m in metrics}
    keys = sorted({k for table in scores.values() for k in table}, key=lambda k: (k[0], cell_sort_key(k[1])))
    cell_rank = {c: i for i, c in enumerate(sorted({c for _, c in keys}, key=cell_sort_key))}
    header = ("<th>cell</th><th>epoch</th>" + "".join(f"<th>{_metric_header(m, rows)}</th>" for m in metrics)
              + "<th>kimg</th><th>swap_res</th><th>direction</th><th>n_gen</th><th>n_ref</th>")
    body = []
    overall = (s.overall.epoch, s.overall.cell) if s.overall else None
    for epoch, cell in keys:
        first = next(scores[m][(epoch, cell)] for m in metrics if (epoch, cell) in scores[m])
        ref = scores[s.metric].get((epoch, cell), first)
        values = "".join(
            f"<td>{_num(scores[m][(epoch, cell)].value) if (epoch, cell) in scores[m] else ''}</td>"
            for m in metrics)
        body.append(
            f'<tr class="{"best-overall" if (epoch, cell) == overall else ""}">'
            f"<td data-sort=\"{cell_rank[cell]}\">{escape(cell)}</td><td>{epoch}</td>{values}"
            f"<td>{_num(first.kimg, 6)}</td>"
            f"<td>{'' if first.swap_res is None else first.swap_res}</td><td>{escape(first.direction)}</td>"
            f"<td>{'' if ref.n_gen is None else ref.n_gen}</td>"
            f"<td>{'' if ref.n_ref is None else ref.n_ref}</td></tr>")
    return (f'<div class="table-box"><table class="sortable"><thead><tr>{header}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table></div>')


def _sheets(s: RunSection) -> str:
    if not s.sheets:
        return ""
    (best_rel, _), *rest = s.sheets if s.sheets[0][1] == "best cells" else [(None, None), *s.sheets]
    best = (f'<div class="figures">{_img(best_rel, "best cells sheet")}</div>' if best_rel else "")
    others = "".join(f'<figure><a href="{_src(rel)}"><img src="{_src(rel)}" alt="{escape(caption)}" '
                     f'loading="lazy"></a><figcaption>{escape(caption)}</figcaption></figure>' for rel, caption in rest)
    return (f"<h3>Comparison sheets</h3><p class=\"note\">Labelled PNGs to share: rows are generators, columns "
            f"the same seeds; small samples are enlarged without smoothing. The best blend of each epoch:</p>"
            f"{best}<details><summary>One sheet per checkpoint ({len(rest)})</summary>"
            f'<div class="gallery sheets">{others}</div></details>')


def _gallery(images: list[tuple[str, str]]) -> str:
    return '<div class="gallery">' + "".join(
        f'<figure><a href="{_src(rel)}"><img src="{_src(rel)}" alt="{escape(caption)}"></a>'
        f"<figcaption>{escape(caption)}</figcaption></figure>" for rel, caption in images) + "</div>"


def _img(rel: str, alt: str) -> str:
    return f'<a href="{_src(rel)}"><img src="{_src(rel)}" alt="{escape(alt)}"></a>'


def _section(s: RunSection, multi: bool) -> str:
    run = s.run
    overrides = (f'<p class="muted">overrides: <code>{escape(" ".join(run.overrides))}</code></p>'
                 if run.overrides else "")
    per_epoch = "".join(f"<li>epoch {b.epoch}: {escape(s.best_label)}: {escape(b.cell)} "
                        f"({escape(s.metric)} {_num(s.style_of(b))}){_epoch_verdict(s, b.epoch)}</li>" for b in s.per_epoch)
    scatter = ("<h3>Style vs identity</h3><p class=\"note\">Every blend cell, one colour per epoch: further left "
               "is more stylised, lower keeps more of the base face (same seeds). The red line is the Pareto "
               "front; ringed cells are each epoch's pick, the star the overall pick, dashed red rings the cells "
               "indistinguishable from it. Error bars: the 95 % interval of each cell's score over paired "
               "bootstrap resamples of the seeds; cells whose bars overlap on both axes could swap places with "
               "other seeds (see docs/selection.md).</p>"
               f'<div class="figures">{_img(s.figures["scatter"], "style vs identity scatter")}</div>'
               if "scatter" in s.figures else "")
    diagnostics = (_img(s.figures["diagnostics"], "overfitting diagnostics") if "diagnostics" in s.figures else
                   f'<p class="note">No diagnostics.csv in {escape(str(run.path))}.</p>')
    base_note = (f" The base model does not change during fine-tuning: it was scored once, at epoch "
                 f"{s.grid.base_epoch}, and that score and sample stand in every row."
                 if s.grid.base_epoch is not None and len(s.grid.epochs) > 1 else "")
    stylized = (f"<h3>Stylised faces</h3>{_gallery(s.stylized)}" if s.stylized else "")
    return f"""
<section id="{s.slug}">
<h2>{escape(s.name or run.name)}</h2>
<p class="muted">{escape(str(run.path))}</p>
{overrides}
{_best_block(s)}
<details><summary>Best blend per epoch</summary><ul>{per_epoch}</ul></details>
{scatter}
{_sheets(s)}
<h3>Epoch × swap grid</h3>
<p class="note">One row per checkpoint; in each, the base model, each swap resolution per direction
(<code>low_base</code>: coarse layers from the base model, the seed study's blend; <code>low_tuned</code>: the
reverse) and the unblended fine-tuned model (<code>none</code>), wrapping onto more lines in a narrow window.
Each cell shows the first seeds of its sample row (click for all) and its {escape(s.label)}.{base_note}</p>
{_grid(s)}
<h3>Heatmap</h3>
<p class="note">Colour scale spans the blend cells{" of all runs scored with this metric" if multi else ""};
base and none are references and may lie outside it. {"Each cell prints both axes, the style distance (the colour) over the identity loss; the box and star mark the rule's pick, which weighs both." if s.selection is not None else "The box marks the lowest style distance (no identity scores: not a choice)."}</p>
<div class="figures">{_img(s.figures["heatmap"], "heatmap of " + s.metric)}</div>
<h3>Score vs epoch and overfitting diagnostics</h3>
<p class="note">The red line marks the epoch of the best blend: compare it with where D starts to tell training
reals from held-out reals (d_gap rising, r_t above 0.6, memorisation falling below 1).</p>
<div class="figures pair">{_img(s.figures["curves"], s.metric + " vs epoch")}{diagnostics}</div>
<h3>All cells</h3>
<p class="note">Click a header to sort. Lower is better for every distance and identity loss
(<code>idloss_*</code>); higher is better for density, coverage and face_detect_rate.</p>
{_table(s)}
{stylized}
</section>"""


def _comparison(sections: list[RunSection], runs_sheet: str | None) -> str:
    """Key columns first (run, best cell, epoch, value), the full overrides last; the best of all runs
    (per metric) marked."""
    rows = []
    for s in sections:
        b = s.overall
        best = (f"<td>{escape(b.cell)} <small>({escape(s.best_label)})</small></td><td>{b.epoch}</td>"
                f"<td>{_num(s.style_of(b))}</td>" if b else
                "<td></td><td></td><td></td>")
        star = f" ★ {escape(s.best_of_all_text)}" if s.best_of_all else ""
        rows.append(f'<tr class="{"best-of-all" if s.best_of_all else ""}"><td><a href="#{s.slug}">'
                    f'{escape(s.name or s.run.name)}</a>{star}</td>{best}'
                    f"<td>{_metric_header(s.metric, s.run.metrics)}</td>"
                    f'<td><code>{escape(" ".join(s.run.overrides))}</code></td></tr>')
    heatmaps = "".join(_img(s.figures["heatmap"], f"{s.name} heatmap") for s in sections)
    sheet = f'<div class="figures">{_img(runs_sheet, "best blend of each run")}</div>' if runs_sheet else ""
    return f"""
<section id="comparison">
<h2>Runs side by side</h2>
<p class="note">Runs are named by the overrides that differ between them.</p>
<div class="table-box"><table class="sortable"><thead><tr><th>run</th><th>best cell</th><th>epoch</th>
<th>value</th><th>metric</th><th>all overrides</th></tr></thead><tbody>{"".join(rows)}</tbody></table></div>
{sheet}
<p class="note">Runs scored with the same metric share the heatmap colour scale and the curves' y axis.</p>
<div class="figures side">{heatmaps}</div>
</section>"""


def render(sections: list[RunSection], shared_stylized: list[tuple[str, str]], runs_sheet: str | None = None) -> str:
    runs = ", ".join(escape(s.name or s.run.name) for s in sections)
    comparison = _comparison(sections, runs_sheet) if len(sections) > 1 else ""
    shared = f"<section><h2>Stylised faces</h2>{_gallery(shared_stylized)}</section>" if shared_stylized else ""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
{GENERATOR_MARK}
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>stylegan-blend report: {runs}</title>
<style>{CSS}</style></head>
<body>
<h1>stylegan-blend report</h1>
<p class="muted">{len(sections)} run(s): {runs}. Each blended generator is scored on two axes: style (distance
to the target set) and identity (paired against the base model, same seeds). The best blend is the cell a declared
selection rule picks on their Pareto front, named wherever it is shown; a run without identity scores shows only
the lowest style distance, labelled as such (base and none are shown for reference).</p>
{comparison}
{"".join(_section(s, len(sections) > 1) for s in sections)}
{shared}
<script>{JS}</script>
</body></html>
"""
