"""The report's single HTML page: inline CSS and a few lines of JS for table sorting, relative links only,
so the folder can be zipped, mailed or served as-is."""
from __future__ import annotations

import math
from html import escape
from typing import TYPE_CHECKING
from urllib.parse import quote

from .scores import cell_sort_key, is_proxy, latest_scores, metric_label

if TYPE_CHECKING:
    from .report import RunSection

THUMB_HEIGHT = 96  # grid thumbnails are drawn this tall (small demo samples are upscaled, pixelated)
GENERATOR_MARK = '<meta name="generator" content="stylegan-blend report">'

CSS = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 1.5em auto; max-width: 1500px; padding: 0 1em; color: #222; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 2px solid #ccc; padding-bottom: 0.2em; margin-top: 2em; }
.muted, .note { color: #666; } .note { font-size: 0.9em; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.5em; }
table.grid td { text-align: center; vertical-align: top; } table.grid th { white-space: nowrap; }
table.grid img { display: block; margin: 0 auto; height: THUMB_HEIGHTpx; image-rendering: pixelated; }
.score { font-variant-numeric: tabular-nums; font-size: 0.9em; }
.missing { color: #999; font-style: italic; padding: 1em 0; }
td.best-epoch { background: #fff7d6; } td.best-overall { background: #ffe08a; outline: 3px solid #e4002b; }
table.sortable th { cursor: pointer; background: #f3f3f3; user-select: none; }
table.sortable th[data-order=asc]::after { content: " ▲"; } table.sortable th[data-order=desc]::after { content: " ▼"; }
table.sortable td { font-variant-numeric: tabular-nums; } tr.best-overall td { background: #ffe08a; }
small.proxy { display: block; font-weight: normal; color: #a33; }
pre.command { background: #272822; color: #f8f8f2; padding: 0.8em; overflow-x: auto; white-space: pre-wrap; }
.figures { display: flex; flex-wrap: wrap; gap: 1em; align-items: flex-start; }
.figures img { max-width: 100%; border: 1px solid #eee; }
.pair > a { flex: 1 1 40%; max-width: 900px; } .pair img { width: 100%; }
.side > a { flex: 1 1 30%; max-width: 50%; } .side img { width: 100%; }
.gallery { display: flex; flex-wrap: wrap; gap: 1em; } .gallery figure { margin: 0; text-align: center; }
.gallery img { max-height: 256px; }
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
             f"at epoch {b.epoch} ({b.kimg:g} kimg), {escape(b.metric)} = {_num(b.value)}. Export it with:</p>"]
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
                 f"{low.epoch} ({_num(low.value)})." if low is not None else "")
    return (f'<p class="note"><b>Rule</b> <code>{escape(str(sel.rule))}</code>: {escape(sel.rule.describe())}. '
            f"Chosen: {chosen}.{one_sided}</p>")


def _grid(s: RunSection) -> str:
    best_epoch = {(b.epoch, b.cell) for b in s.per_epoch}
    front = s.selection.front_cells() if s.selection is not None else set()
    overall = (s.overall.epoch, s.overall.cell) if s.overall else None
    head = "".join(f"<th>{escape(c)}</th>" for c in s.grid.cells)
    rows = []
    for i, epoch in enumerate(s.grid.epochs):
        tds = []
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
                cls, score = "best-overall", score + f"<br>★ {escape(s.best_label)}"
            elif (epoch, cell) in best_epoch:
                cls, score = "best-epoch", score + "<br>☆ best of epoch"
            if (epoch, cell) in front:
                score += "<br>◆ Pareto front"
            tds.append(f'<td class="{cls}">{visual}<div class="score">{score}</div></td>')
        kimg = s.grid.kimg.get(epoch)
        label = f"epoch {epoch}" + (f"<br><small>{kimg:g} kimg</small>" if kimg is not None else "")
        rows.append(f"<tr><th>{label}</th>{''.join(tds)}</tr>")
    return (f'<div class="scroll"><table class="grid"><thead><tr><th></th>{head}</tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table></div>')


def _table(s: RunSection) -> str:
    """Every (epoch, cell) with every metric of the run, sortable by any column."""
    rows = s.run.metrics
    metrics = [s.metric] + sorted({r.metric for r in rows} - {s.metric})
    scores = {m: latest_scores(rows, m) for m in metrics}
    keys = sorted({k for table in scores.values() for k in table}, key=lambda k: (k[0], cell_sort_key(k[1])))
    cell_rank = {c: i for i, c in enumerate(sorted({c for _, c in keys}, key=cell_sort_key))}
    head = ["epoch", "kimg", "cell", "swap_res", "direction"]
    header = "".join(f"<th>{h}</th>" for h in head) + "".join(
        f"<th>{_metric_header(m, rows)}</th>" for m in metrics) + "<th>n_gen</th><th>n_ref</th>"
    body = []
    overall = (s.overall.epoch, s.overall.cell) if s.overall else None
    for epoch, cell in keys:
        first = next(scores[m][(epoch, cell)] for m in metrics if (epoch, cell) in scores[m])
        ref = scores[s.metric].get((epoch, cell), first)
        values = "".join(
            f"<td>{_num(scores[m][(epoch, cell)].value) if (epoch, cell) in scores[m] else ''}</td>"
            for m in metrics)
        body.append(
            f'<tr class="{"best-overall" if (epoch, cell) == overall else ""}"><td>{epoch}</td>'
            f"<td>{_num(first.kimg, 6)}</td><td data-sort=\"{cell_rank[cell]}\">{escape(cell)}</td>"
            f"<td>{'' if first.swap_res is None else first.swap_res}</td><td>{escape(first.direction)}</td>"
            f"{values}<td>{'' if ref.n_gen is None else ref.n_gen}</td>"
            f"<td>{'' if ref.n_ref is None else ref.n_ref}</td></tr>")
    return (f'<div class="scroll"><table class="sortable"><thead><tr>{header}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table></div>')


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
                        f"({escape(b.metric)} {_num(b.value)})</li>" for b in s.per_epoch)
    scatter = ("<h3>Style vs identity</h3><p class=\"note\">Every blend cell, one colour per epoch: further left "
               "is more stylised, lower keeps more of the base face (same seeds). The red line is the Pareto "
               "front; ringed cells are each epoch's pick, the star the overall pick.</p>"
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
<h2>{escape(run.name)}</h2>
<p class="muted">{escape(str(run.path))}</p>
{overrides}
{_best_block(s)}
<details><summary>Best blend per epoch</summary><ul>{per_epoch}</ul></details>
{scatter}
<h3>Epoch × swap grid</h3>
<p class="note">Rows are checkpoints, columns the base model, each swap resolution per direction
(<code>low_base</code>: coarse layers from the base model, the seed study's blend; <code>low_tuned</code>: the
reverse) and the unblended fine-tuned model (<code>none</code>). Each cell shows the first seeds of its sample
row (click for all) and its {escape(s.label)}.{base_note}</p>
{_grid(s)}
<h3>Heatmap</h3>
<p class="note">Colour scale spans the blend cells{" of all runs scored with this metric" if multi else ""};
base and none are references and may lie outside it. The box marks the best blend.</p>
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


def _comparison(sections: list[RunSection]) -> str:
    rows = []
    for s in sections:
        b = s.overall
        best = (f"<td>{escape(b.cell)} <small>({escape(s.best_label)})</small></td><td>{b.epoch}</td>"
                f"<td>{_num(b.value)}</td>" if b else
                "<td></td><td></td><td></td>")
        rows.append(f'<tr><td><a href="#{s.slug}">{escape(s.run.name)}</a></td>'
                    f'<td><code>{escape(" ".join(s.run.overrides))}</code></td>'
                    f"<td>{_metric_header(s.metric, s.run.metrics)}</td>{best}</tr>")
    heatmaps = "".join(_img(s.figures["heatmap"], f"{s.run.name} heatmap") for s in sections)
    return f"""
<section id="comparison">
<h2>Runs side by side</h2>
<div class="scroll"><table class="sortable"><thead><tr><th>run</th><th>overrides</th><th>metric</th>
<th>best cell</th><th>epoch</th><th>value</th></tr></thead><tbody>{"".join(rows)}</tbody></table></div>
<p class="note">Runs scored with the same metric share the heatmap colour scale and the curves' y axis.</p>
<div class="figures side">{heatmaps}</div>
</section>"""


def render(sections: list[RunSection], shared_stylized: list[tuple[str, str]]) -> str:
    runs = ", ".join(escape(s.run.name) for s in sections)
    comparison = _comparison(sections) if len(sections) > 1 else ""
    shared = f"<section><h2>Stylised faces</h2>{_gallery(shared_stylized)}</section>" if shared_stylized else ""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
{GENERATOR_MARK}
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>stylegan-blend report: {runs}</title>
<style>{CSS.replace("THUMB_HEIGHT", str(THUMB_HEIGHT))}</style></head>
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
