"""The report in a real browser: headless Chromium at 1280 and 1920 px, the page never wider than the window.

A wide sweep (two runs, 12 cells per epoch, long folder names, long overrides and paths) is the case that
used to need horizontal scrolling. Needs Debian's `chromium` (`.ci/run` installs it when missing)."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from html import unescape
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from stylegan_blend.reporting.report import build_report
from stylegan_blend.run.tables import METRICS_REQUIRED as METRICS_COLUMNS

CELLS = (["base"] + [f"swap{r}_{d}" for d in ("low_base", "low_tuned") for r in (4, 8, 16, 32, 64)] + ["none"])
EPOCHS = (5, 10, 15)

# Runs after load: the page's widths, and every element that sticks out of the window (to say what broke).
MEASURE = """<script>
window.addEventListener('load', () => {
  const vw = document.documentElement.clientWidth;
  // sticking out of the window, or hidden in a scroll box: only tables (their own box) and commands may scroll
  const free = e => !e.closest('.table-box, pre');
  const wide = Array.from(document.querySelectorAll('body *')).filter(e => free(e) && (
      e.getBoundingClientRect().right > vw + 0.5 ||
      (['auto', 'scroll'].includes(getComputedStyle(e).overflowX) && e.scrollWidth > e.clientWidth + 1)))
    .slice(0, 8).map(e => e.tagName + '.' + e.className + ' ' + Math.round(e.getBoundingClientRect().right));
  document.body.setAttribute('data-measure', JSON.stringify(
    {scroll: document.documentElement.scrollWidth, viewport: vw, inner: window.innerWidth, wide: wide}));
});
</script>"""


def chromium() -> str:
    found = os.environ.get("CHROMIUM") or next(
        (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
    if found is None:
        pytest.fail("headless Chromium not found: install Debian's package with `sudo apt-get install -y chromium` "
                    "(or set CHROMIUM=/path/to/chrome); CI gets it from .ci/run", pytrace=False)
    return found


def wide_run(root: Path, name: str, r1: float, scale: float) -> Path:
    run = root / name
    (run / ".hydra").mkdir(parents=True)
    lines = [",".join(METRICS_COLUMNS)]
    rng = np.random.default_rng(int(r1))
    for epoch in EPOCHS:
        folder = run / "samples" / "blends" / f"epoch={epoch:04d}"
        folder.mkdir(parents=True)
        for cell in CELLS:
            if cell == "base" and epoch != EPOCHS[0]:
                continue
            swap, direction = (cell, "") if cell in ("base", "none") else (cell[4:].split("_", 1))
            lines.append(f"{epoch},{epoch * 1.5},{swap},{direction},kd_randcnn,{scale * rng.uniform(0.01, 0.05)},"
                         f"200,300,randcnn")
            Image.fromarray(rng.integers(0, 256, (32, 6 * 32, 3), dtype=np.uint8)).save(folder / f"{cell}.png")
    (run / "metrics.csv").write_text("\n".join(lines) + "\n")
    (run / "diagnostics.csv").write_text("epoch,kimg,metric,value\n" + "".join(
        f"{e},{e * 0.3},{m},{v}\n" for e in range(1, 16) for m, v in (("r_t", 0.5), ("loss_G", 2.0), ("d_real", 1.0))))
    (run / ".hydra" / "config.yaml").write_text(
        "model:\n  init_from: /very/long/path/to/some/base/network/" + "nested/" * 12 + "ffhq256.pkl\n"
        "blend:\n  base: ${model.init_from}\n  swap_res: [4, 8, 16, 32, 64]\n")
    overrides = [f"train.r1_gamma={r1}", "experiment=anime", "data.path=/data/" + "x" * 120,
                 "model.init_from=/models/" + "deeply/" * 15 + "ffhq.pkl", "augment=ada", "trainer.max_epochs=15"]
    (run / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    return run


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = tmp_path_factory.mktemp("browser")
    runs = [wide_run(root, "2026-12-03_08-00-00_anime_r1_sweep_member_number_" + "0" * 30 + str(i), r1, s)
            for i, (r1, s) in enumerate(((1.0, 1.0), (10.0, 0.6)))]
    index = build_report(runs, out_dir=root / "report")
    probe = index.with_name("measure.html")  # same folder: the relative image links still resolve
    probe.write_text(index.read_text().replace("</body>", MEASURE + "</body>"))
    return probe


@pytest.mark.parametrize("width", [1280, 1920])
def test_report_fits_the_window(report, width, tmp_path):
    browser = chromium()
    common = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
              f"--window-size={width},1000", "--virtual-time-budget=5000", f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run(common + ["--dump-dom", report.as_uri()], capture_output=True, text=True, timeout=120)
    match = re.search(r'data-measure="([^"]+)"', dom.stdout)
    assert match, f"no measurement from {browser}: {dom.stderr[-2000:]}"
    measure = json.loads(unescape(match.group(1)))
    assert measure["viewport"] == width, measure
    assert measure["scroll"] <= measure["viewport"], f"page wider than the {width} px window: {measure}"
    assert measure["wide"] == [], f"content off-screen or scrolled away at {width} px: {measure}"
    shot = tmp_path / f"report_{width}.png"  # what it looks like (kept with the test's tmp folder)
    subprocess.run(common + [f"--screenshot={shot}", report.as_uri()], capture_output=True, timeout=120)
    with Image.open(shot) as im:
        assert im.width == width
