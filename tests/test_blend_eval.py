"""Blend-and-score at every checkpoint, post-hoc evaluation, the report on a real run, sweeps and multirun."""
from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from test_training import TINY_D, TINY_G, LossRecorder, _cfg, _fit, dataset  # noqa: F401  (fixture)

PROXY = ("fd_randcnn", "kd_randcnn")


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    from stylegan_blend.checkpoints import save_network
    from stylegan_blend.networks import Discriminator, Generator

    torch.manual_seed(3)
    G, D = Generator(**TINY_G), Discriminator(**TINY_D)
    path = tmp_path_factory.mktemp("base") / "base.pt"
    save_network(path, G, G=G, D=D, meta={"kimg": 50.0})
    return path


def _blend_cfg(out, data, base, *extra):
    return _cfg(out, data, f"model.init_from={base}", "trainer.max_epochs=2", "checkpoint.every_n_epochs=1",
                "callbacks.blend_eval=true", "blend.swap_res=[4,8]", "metrics.num_gen=8", "metrics.batch_size=8",
                "blend.sample_seeds=[0,1,2]", f"paths.cache_dir={Path(out).parent / 'cache'}", "logger=wandb", *extra)


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def blend_run(tmp_path_factory, dataset, base):  # noqa: F811
    root = tmp_path_factory.mktemp("blendrun")
    with_cb, without_cb = LossRecorder(), LossRecorder()
    _fit(_blend_cfg(root / "with", dataset, base), [with_cb])
    _fit(_blend_cfg(root / "without", dataset, base, "callbacks.blend_eval=false"), [without_cb])
    return root / "with", with_cb.rows, without_cb.rows


def test_callback_writes_every_checkpoint_cell(blend_run):
    run, _, _ = blend_run
    rows = _rows(run / "metrics.csv")
    assert list(rows[0]) == ["epoch", "kimg", "swap_res", "direction", "metric", "value", "n_gen", "n_ref", "extractor",
                             "network_sha256"]
    import hashlib

    for r in rows:  # each row names the network file it was computed from, by content
        net = run / "networks" / f"epoch={int(r['epoch']):04d}.pt" if r["swap_res"] != "base" else None
        if net is not None:
            assert r["network_sha256"] == hashlib.sha256(net.read_bytes()).hexdigest()
    cells = {(r["epoch"], r["swap_res"], r["direction"], r["metric"]) for r in rows}
    for epoch in ("1", "2"):
        for m in PROXY:
            assert (epoch, "4", "low_base", m) in cells and (epoch, "8", "low_base", m) in cells
            assert (epoch, "none", "", m) in cells
    style = [r for r in rows if r["metric"] in PROXY]
    assert sum(1 for r in style if r["swap_res"] == "base") == len(PROXY)  # the base model is scored once
    assert all(r["n_gen"] == "8" and r["extractor"] == "randcnn" and np.isfinite(float(r["value"])) for r in style)
    # identity axis, paired by seed against the base: every cell, the extractor named, base vs itself = 0
    ident = {(r["epoch"], r["swap_res"]): r for r in rows if r["metric"] == "idloss_proxy"}
    assert {k for k in ident} == {(r["epoch"], r["swap_res"]) for r in style}
    assert all(r["extractor"] == "proxy" and np.isfinite(float(r["value"])) for r in ident.values())
    assert [float(r["value"]) for k, r in ident.items() if k[1] == "base"] == [pytest.approx(0.0, abs=1e-9)]
    # and its scale: one another-person baseline for the run (same base seeds), idnorm = idloss / idbase, and the
    # base against itself retrieves every seed
    by = {(r["epoch"], r["swap_res"], r["metric"]): float(r["value"]) for r in rows}
    idbase = {v for (e, s, m), v in by.items() if m == "idbase_proxy"}
    assert len(idbase) == 1 and 0 < idbase.pop() < 1
    for (epoch, swap_res) in ident:
        assert by[(epoch, swap_res, "idnorm_proxy")] == pytest.approx(
            by[(epoch, swap_res, "idloss_proxy")] / by[(epoch, swap_res, "idbase_proxy")], rel=1e-5, abs=1e-9)
        assert 0 <= by[(epoch, swap_res, "idretr_proxy")] <= 1
    assert [v for (e, s, m), v in by.items() if s == "base" and m == "idretr_proxy"] == [1.0]
    for epoch in (1, 2):
        folder = run / "samples" / "blends" / f"epoch={epoch:04d}"
        assert {p.stem for p in folder.glob("*.png")} >= {"swap4_low_base", "swap8_low_base", "none"}
    # the offline W&B run holds the cumulative epoch x swap table and the sample strips
    tables = sorted((run / "wandb").glob("offline-run-*/files/media/table/blend/table_*.table.json"))
    import json

    last = max(tables, key=lambda p: len(json.loads(p.read_text())["data"]))
    assert {row[0] for row in json.loads(last.read_text())["data"]} == {1, 2}
    assert list((run / "wandb").glob("offline-run-*/files/media/images/blend/*.png"))
    # blend scores share the training values' x-axis: kimg (and epoch) in the same row, as in metrics.csv
    from wandb_records import offline_runs

    (wb,) = offline_runs(run)
    logged = {(h["epoch"], round(h["kimg"], 3)): h for h in wb.history if "blend/kd_randcnn/swap4_low_base" in h}
    for r in rows:
        if r["swap_res"] == "4" and r["metric"] == "kd_randcnn":
            h = logged[(int(r["epoch"]), round(float(r["kimg"]), 3))]
            assert h["blend/kd_randcnn/swap4_low_base"] == pytest.approx(float(r["value"]))
    assert list((run / "wandb").glob("offline-run-*/files/media/images/blend/samples_*.png"))
    # and the selection: every blend cell with its two axes, exactly one chosen, on the front; the scatter
    sel = max((run / "wandb").glob("offline-run-*/files/media/table/blend/selection_*.table.json"),
              key=lambda p: len(json.loads(p.read_text())["data"]))
    table = json.loads(sel.read_text())
    col = {c: i for i, c in enumerate(table["columns"])}
    data = table["data"]
    assert len(data) == 4 and [r[col["on_front"]] for r in data if r[col["chosen"]]] == [True]
    assert all(r[col["style_ci_lo"]] <= r[col["style_ci_hi"]] for r in data)  # the bootstrap's CIs ride along
    assert list((run / "wandb").glob("offline-run-*/files/media/images/blend/selection_scatter_*.png"))
    # every run leaves selection.json (the pick, its stability, B, seeds) and per-seed scores per cell
    record = json.loads((run / "selection.json").read_text())
    chosen = [r for r in data if r[col["chosen"]]][0]
    assert (record["chosen"]["epoch"], record["chosen"]["cell"]) == (chosen[col["epoch"]], chosen[col["cell"]])
    assert 0 < record["stability"] <= 1 and record["bootstrap"]["resamples"] == 200
    assert record["bootstrap"]["n_seeds"] == {"style": 8, "identity": 8}
    assert record["summary"].startswith(chosen[col["label"]] + " (stable ")
    assert wb.summary["best"] == f"best by knee: {record['summary']}"  # the W&B run's headline
    for epoch in (1, 2):
        assert {p.stem for p in (run / "scores" / f"epoch={epoch:04d}").glob("*.npz")} >= {
            "swap4_low_base", "swap8_low_base", "none"}
    # nothing from the callback in the Lightning checkpoint
    ck = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert not any("Blend" in k for k in ck.get("callbacks", {}))


def test_callback_leaves_training_untouched(blend_run):
    _, with_cb, without_cb = blend_run
    assert len(with_cb) == len(without_cb) > 0
    np.testing.assert_array_equal(np.array(with_cb), np.array(without_cb))


def test_blend_cells_match_an_independent_rescore(blend_run):
    """Re-score one cell from the exported network by hand: blend + generate + features + FD."""
    import yaml

    from stylegan_blend.blending import blend_generators
    from stylegan_blend.checkpoints import load_network
    from stylegan_blend.evaluation import evaluate_generator, make_extractor, reference_features

    run, _, _ = blend_run
    cfg = yaml.safe_load((run / ".hydra" / "config.yaml").read_text())
    base = load_network(cfg["model"]["init_from"]).G_ema
    tuned = load_network(run / "networks" / "epoch=0002.pt").G_ema
    ext = make_extractor("randcnn")
    ref = reference_features(ext, cfg["data"]["path"], 16, cache_dir=run.parent / "cache")
    want = evaluate_generator(blend_generators(base, tuned, 8), ref, ext, num_gen=8, batch_size=8)
    got = {r["metric"]: float(r["value"]) for r in _rows(run / "metrics.csv")
           if r["epoch"] == "2" and r["swap_res"] == "8"}
    for m in PROXY:
        assert got[m] == pytest.approx(want[m], rel=1e-4, abs=1e-7)


def test_posthoc_eval_fills_a_new_swap_column_and_skips_existing(blend_run, capsys):
    from omegaconf import OmegaConf

    from stylegan_blend.app.evaluate import evaluate_run

    run, _, _ = blend_run
    # Hydra itself saves the config unresolved: make the saved one look like that
    cfg_file = run / ".hydra" / "config.yaml"
    cfg_file.write_text(cfg_file.read_text().replace("resolution: 16\n  mirror", "resolution: ${model.resolution}\n  mirror", 1))
    assert "${model.resolution}" in cfg_file.read_text()
    before = _rows(run / "metrics.csv")
    overrides = OmegaConf.create({"blend": {"swap_res": [8, 4]}, "metrics": {}})
    assert evaluate_run(run, overrides) == 0  # every cell present already
    overrides = OmegaConf.create({"blend": {"swap_res": [4, 8], "directions": ["low_base", "low_tuned"]},
                                  "metrics": {}})
    added = evaluate_run(run, overrides)
    after = _rows(run / "metrics.csv")
    assert len(after) == len(before) + added
    assert sum(r["metric"] in PROXY for r in after[len(before):]) == 2 * 2 * len(PROXY)
    new = {(r["epoch"], r["swap_res"], r["direction"]) for r in after[len(before):]}
    assert new == {(e, s, "low_tuned") for e in ("1", "2") for s in ("4", "8")}
    out = capsys.readouterr().out  # progress: one line per checkpoint, with the time left
    assert "[1/2] epoch 1: 2 cell(s) to score" in out and "[2/2] epoch 2 scored;" in out and "s left" in out
    # the new cells keep their per-seed scores, so the re-made pick (selection.json, the W&B run's summary) has
    # its bootstrap over every cell, old and new
    import json

    from wandb_records import offline_runs

    assert (run / "scores" / "epoch=0001" / "swap4_low_tuned.npz").is_file()
    record = json.loads((run / "selection.json").read_text())
    assert record["stability"] is not None and record["uncertainty_note"] is None
    assert offline_runs(run)[-1].summary["best"] == f"best by knee: {record['summary']}"
    assert record["summary"] in out


def test_posthoc_cells_are_keyed_by_extractor_and_rescore_replaces_only_when_done(blend_run, tmp_path):
    import shutil

    from omegaconf import OmegaConf

    from stylegan_blend.app.evaluate import evaluate_run
    from stylegan_blend.errors import UserError

    run = tmp_path / "run"
    shutil.copytree(blend_run[0], run)
    rows = [r for r in _rows(run / "metrics.csv") if r["direction"] in ("", "low_base")]  # the run's own grid
    # scores of another feature space do not make a randcnn cell "done"
    other = [dict(r, extractor="inception", metric=r["metric"].replace("randcnn", "x")) for r in rows]
    with open(run / "metrics.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]), lineterminator="\n")
        w.writeheader()
        w.writerows(other)
    plain = OmegaConf.create({"blend": {}, "metrics": {}})
    added = evaluate_run(run, plain)
    assert added == len(rows) and len(_rows(run / "metrics.csv")) == 2 * len(rows)
    # rescore with an extractor whose weights are missing: fails before anything is dropped
    before = (run / "metrics.csv").read_bytes()
    missing = OmegaConf.create({"blend": {}, "metrics": {"extractor": "inception",
                                                        "inception_path": str(tmp_path / "nope.pt")}})
    with pytest.raises(UserError):
        evaluate_run(run, missing, rescore=True)
    assert (run / "metrics.csv").read_bytes() == before
    # rescore replaces the randcnn rows in place: same count, same (deterministic) values, hashes kept
    n_base = sum(r["swap_res"] == "base" for r in rows)
    assert n_base >= len(PROXY)
    assert evaluate_run(run, plain, rescore=True) == len(rows) - n_base  # the base cell is kept
    after = _rows(run / "metrics.csv")
    assert len(after) == 2 * len(rows)
    key = lambda r: (r["epoch"], r["swap_res"], r["direction"], r["metric"], r["extractor"])  # noqa: E731
    assert sorted(map(key, after)) == sorted(map(key, other + rows))
    want = {key(r): float(r["value"]) for r in rows}
    for r in after:
        if r["extractor"] == "randcnn":
            assert float(r["value"]) == pytest.approx(want[key(r)], rel=1e-4, abs=1e-7)
            assert len(r["network_sha256"]) == 64


def test_report_renders_from_the_run(blend_run):
    from stylegan_blend.reporting.report import build_report
    from stylegan_blend.reporting.scores import best_cells

    run, _, _ = blend_run
    index = build_report([run])
    html = index.read_text()
    assert "not comparable with published FID" in html
    best = best_cells(run / "metrics.csv")
    assert best[-1].scope == "overall" and best[-1].swap_res not in ("base", "none")


def test_sweep_configs_compose():
    from hydra import compose, initialize_config_dir

    from stylegan_blend.app.train import CONF_DIR

    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(config_name="train", overrides=["sweep=epochs_x_swap", "data.path=x"])
        assert cfg.trainer.max_epochs == 96 and cfg.checkpoint.every_n_epochs == 24
        assert cfg.blend.swap_res == [4, 8]  # R/16, R/8, R/4 of the default 32 px model, from 4 px up
        for exp in ("anime", "animation", "demo", "demo_base", "cpu_bench"):
            c = compose(config_name="train", overrides=[f"experiment={exp}"], return_hydra_config=True)
            assert c.model.resolution in (32, 64, 256)
        c = compose(config_name="train", overrides=["sweep=data_x_augment"], return_hydra_config=True)
        assert c.hydra.mode.name == "MULTIRUN"
        assert set(c.hydra.sweeper.params) == {"data.path", "augment"}
        c = compose(config_name="train", overrides=["hydra/launcher=cluster", "hydra.launcher.partition=gpu",
                                                    "trainer=ddp"], return_hydra_config=True)
        assert c.hydra.launcher._target_.endswith("SlurmLauncher") and c.hydra.launcher.partition == "gpu"
        assert c.trainer.strategy.find_unused_parameters and c.trainer.strategy.start_method == "spawn"


def test_multirun_of_two_tiny_jobs(tmp_path, dataset):  # noqa: F811
    sweep_dir = tmp_path / "sweep"
    args = [sys.executable, "-m", "stylegan_blend.app.train", "-m", f"data.path={dataset}", "model.resolution=16",
            "model.G_kwargs.synthesis_kwargs.channel_base=128", "model.G_kwargs.synthesis_kwargs.channel_max=16",
            "model.D_kwargs.channel_base=128", "model.D_kwargs.channel_max=16", "model.G_kwargs.z_dim=16",
            "model.G_kwargs.w_dim=16", "model.D_kwargs.epilogue_kwargs.mbstd_group_size=2", "train.batch_size=4",
            "trainer.max_epochs=1", "callbacks.blend_eval=false", "logger=wandb", "trainer.enable_progress_bar=false",
            "train.diagnostics.num_images=4", "train.diagnostics.grid_size=4", "augment=none,diffaug",
            f"hydra.sweep.dir={sweep_dir}"]
    r = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    jobs = sorted(p.parent for p in sweep_dir.glob("*/networks"))
    assert [j.name for j in jobs] == ["0_augment-none", "1_augment-diffaug"]  # only the swept key
    from wandb_records import offline_runs

    for j in jobs:
        assert (j / "networks" / "epoch=0001.pt").is_file()
        (run,) = offline_runs(j)  # one offline W&B run per job, named like its folder, grouped by the sweep
        assert run.run.display_name == j.name and run.run.run_group == f"{tmp_path.name}/sweep"
        assert run.exit_code == 0
    table = (sweep_dir / "summary.txt").read_text()
    assert table.splitlines()[1].split()[:3] == ["0", "completed", "0_augment-none"]


def test_failing_sweep_job_does_not_stop_the_others(tmp_path, dataset):  # noqa: F811
    sweep_dir = tmp_path / "sweep"
    args = [sys.executable, "-m", "stylegan_blend.app.train", "-m", f"data.path={tmp_path / 'missing'},{dataset}",
            "model.resolution=16", "model.G_kwargs.synthesis_kwargs.channel_base=128",
            "model.G_kwargs.synthesis_kwargs.channel_max=16", "model.D_kwargs.channel_base=128",
            "model.D_kwargs.channel_max=16", "model.G_kwargs.z_dim=16", "model.G_kwargs.w_dim=16",
            "model.D_kwargs.epilogue_kwargs.mbstd_group_size=2", "train.batch_size=4", "trainer.max_epochs=1",
            "callbacks.blend_eval=false", "logger=none", "trainer.enable_progress_bar=false", "augment=none",
            "train.diagnostics.num_images=4", "train.diagnostics.grid_size=4", f"hydra.sweep.dir={sweep_dir}"]
    r = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert r.returncode == 1, r.stderr[-3000:]  # Seen 2: a sweep with a failed job used to exit 0
    assert len(list(sweep_dir.glob("*/FAILED"))) == 1
    assert len(list(sweep_dir.glob("*/networks/epoch=0001.pt"))) == 1
    rows = _rows(sweep_dir / "summary.csv")
    assert [(r["job"], r["status"], r["folder"]) for r in rows] == [("0", "failed", "0_path-missing"),
                                                                     ("1", "completed", f"1_path-{dataset.name}")]
    assert rows[0]["error"].startswith(f"error: data.path={tmp_path / 'missing'}: no such dataset folder")
    assert "0_path-missing" in r.stdout and "1 of 2 job(s) completed" in r.stdout


def test_optuna_search_minimises_the_best_blend(tmp_path, dataset, base):  # noqa: F811
    sweep_dir = tmp_path / "optuna"
    args = [sys.executable, "-m", "stylegan_blend.app.train", "hparams_search=best_blend", "hydra.sweeper.n_trials=2",
            f"data.path={dataset}", f"model.init_from={base}", "model.resolution=16",
            "model.G_kwargs.synthesis_kwargs.channel_base=128", "model.G_kwargs.synthesis_kwargs.channel_max=16",
            "model.D_kwargs.channel_base=128", "model.D_kwargs.channel_max=16", "model.G_kwargs.z_dim=16",
            "model.G_kwargs.w_dim=16", "model.D_kwargs.epilogue_kwargs.mbstd_group_size=2", "train.batch_size=4",
            "trainer.max_epochs=1", "blend.swap_res=[4,8]", "metrics.num_gen=8", "metrics.batch_size=8",
            f"paths.cache_dir={tmp_path / 'cache'}", "logger=none", "trainer.enable_progress_bar=false",
            "train.diagnostics.num_images=4", "train.diagnostics.grid_size=4", f"hydra.sweep.dir={sweep_dir}"]
    r = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    import yaml

    result = yaml.safe_load((sweep_dir / "optimization_results.yaml").read_text())
    runs = sorted(sweep_dir.glob("*/metrics.csv"))
    assert len(runs) == 2
    from stylegan_blend.evaluation.run_selection import run_selection

    values = [run_selection(p.parent).overall.value for p in runs]  # the rule's value of each run's chosen blend
    import re  # Seen 3: trials all read `...hparams_search=best_~hash`; now each names its sampled values

    for p in runs:
        assert re.fullmatch(r"\d+_augment-(ada|diffaug)_g_lr-[0-9.e-]+_r1_gamma-[0-9.e-]+_freeze_d-[024]",
                            p.parent.name), p.parent.name
    summary = {r["folder"]: r for r in _rows(sweep_dir / "summary.csv")}
    for p in runs:  # the summary's best cell is the cell the run's selection rule picks
        assert summary[p.parent.name]["status"] == "completed"
        m = re.fullmatch(r"best by knee: (e1·s[48]) \(stable (\d+) %(; also e1·s[48])?\)", summary[p.parent.name]["best"])
        sel = run_selection(p.parent)
        assert m and m.group(1) == sel.overall.point.label, summary[p.parent.name]
        assert int(m.group(2)) == round(100 * sel.bootstrap.overall.stability)
    assert result["best_value"] == pytest.approx(min(values))


def test_style_is_scored_against_the_val_split_when_it_is_large_enough(tmp_path, base):
    """50 held-out images: style against val, the fine-tuned model also against train (the memorisation gap),
    said in scores/style_reference.json and the report; one image fewer and train is the reference."""
    import json

    from test_evaluation import flat_blobs, write_pngs

    from stylegan_blend.checkpoints import load_network
    from stylegan_blend.evaluation import make_extractor, reference_features, score
    from stylegan_blend.evaluation.blend_scorer import BlendScorer, style_gaps
    from stylegan_blend.reporting.report import load_sections, style_gap_series

    data = tmp_path / "data"
    names = write_pngs(data / "images", flat_blobs(62, 0, res=16))
    entries = [dict(file=f"images/{n}", split="val" if i >= 12 else "train", sha256=str(i), source=n, time_s=None)
               for i, n in enumerate(names)]
    (data / "manifest.json").write_text(json.dumps(dict(format="stylegan_blend.dataset", version=1, settings={},
                                                        val_fraction=0.8, seed=0, images=entries)))
    tuned = load_network(base).G_ema
    ext = make_extractor("randcnn")
    for min_val, split, n_ref in ((50, "val", 50), (51, "train", 12)):
        run = tmp_path / f"run{min_val}"
        scorer = BlendScorer(run_dir=run, base_path=str(base), data_dir=str(data), resolution=16, swap_res=[4],
                             num_gen=8, batch_size=8, identity_name=None, cache_dir=str(tmp_path / "cache"),
                             style_min_val=min_val)
        rows = scorer.score_checkpoint(tuned, 1, 0.5)
        kd = {r["swap_res"]: r for r in rows if r["metric"] == "kd_randcnn"}
        assert {int(r["n_ref"]) for r in kd.values()} == {n_ref}
        note = json.loads((run / "scores" / "style_reference.json").read_text())
        assert note["split"] == split and note["n"] == n_ref
        meta = json.loads(str(np.load(run / "scores" / "epoch=0001" / "swap4_low_base.npz")["meta"]))
        assert meta["reference_split"] == split
        ref = reference_features(ext, data, 16, cache_dir=tmp_path / "cache", split=split)
        feats = np.load(run / "scores" / "epoch=0001" / "none.npz")["style_features"]
        assert float(kd["none"]["value"]) == pytest.approx(score(feats, ref, ext)["kd_randcnn"], rel=1e-4, abs=1e-7)
        train_rows = {r["metric"]: r for r in rows if r["metric"].startswith("train_")}
        if split == "val":  # the memorisation signal: the fine-tuned model against its own training images
            train = reference_features(ext, data, 16, cache_dir=tmp_path / "cache", split="train")
            assert {r["swap_res"] for r in train_rows.values()} == {"none"}
            assert float(train_rows["train_kd_randcnn"]["value"]) == pytest.approx(
                score(feats, train, ext)["kd_randcnn"], rel=1e-4, abs=1e-7)
            gap = style_gaps(rows)["blend/style_gap/kd_randcnn"]
            assert gap == pytest.approx(float(kd["none"]["value"]) - float(train_rows["train_kd_randcnn"]["value"]))
        else:
            assert not train_rows and not style_gaps(rows)
    (section,) = load_sections([tmp_path / "run50"])
    assert section.style_reference == "held-out val split (50 images)"
    assert style_gap_series(section)["style_gap"][0] == [1]
    (section,) = load_sections([tmp_path / "run51"])
    assert section.style_reference == "training split (the val split has 50 < 51 images)"
    assert style_gap_series(section) == {}
