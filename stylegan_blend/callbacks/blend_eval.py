"""Blend the base model with the current G_ema at every checkpoint and score every cell.

A cell is (epoch, swap_res, direction); `none` is the unblended fine-tuned G_ema and `base` the base
model (scored once). Rows go to metrics.csv (long format, DESIGN §3), fixed-seed sample strips to
samples/blends/epoch=NNNN/<cell>.png, per-seed scores (for the bootstrap behind every pick) to
scores/epoch=NNNN/<cell>.npz, scalars and a table to the logger. Style is scored against the data's held-out
val split when it has at least `style_min_val` images (else the training split, said in scores/
style_reference.json and the report); then the fine-tuned model is also scored against the training split
(`train_` rows), and the gap is a memorisation signal beside D's. The work runs inside an
isolated RNG so training is bit-for-bit the same with or without this callback. Under DDP every rank
scores its share of the cells (each cell's seeds are fixed, so the split does not change a value) and
rank 0 writes the gathered rows; a rank loads the base network and reference features only when it
scores a cell that needs them.
"""
from __future__ import annotations

import contextlib
import csv
import logging
import os
import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch

from ..errors import UserError
from .export import is_checkpoint_epoch, network_path, skip_bad_epoch

log = logging.getLogger(__name__)


@contextlib.contextmanager
def isolated_rng():
    """Run a block without consuming or changing torch / numpy / python global RNG state."""
    np_state, py_state = np.random.get_state(), random.getstate()
    devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        try:
            yield
        finally:
            np.random.set_state(np_state)
            random.setstate(py_state)


def cell_name(swap_res, direction: str | None) -> str:
    return str(swap_res) if swap_res in ("base", "none") else f"swap{swap_res}_{direction}"


@dataclass
class BlendScorer:
    """Everything needed to score one checkpoint's cells; shared by the callback and post-hoc eval."""
    run_dir: Path
    base_path: str
    data_dir: str
    resolution: int
    swap_res: list[int]
    directions: list[str] = field(default_factory=lambda: ["low_base"])
    width: float = 0.0
    mapping: str = "low"
    extractor_name: str = "randcnn"
    num_gen: int = 200
    batch_size: int = 32
    inception_path: str | None = None
    source_data: str | None = None
    cache_dir: str | None = None
    sample_seeds: list[int] = field(default_factory=lambda: list(range(6)))
    device: str = "cpu"
    identity_name: str | None = "auto"  # identity extractor (evaluation/identity.py); None: style only
    identity_weights: str | None = None
    num_identity: int = 100  # seeds 0..n-1 of each cell paired with the base model's same seeds
    style_min_val: int = 50  # score style against the val split when it has at least this many images

    def __post_init__(self):
        self.run_dir = Path(self.run_dir)
        self._ready = False
        self.base = None

    @classmethod
    def from_config(cls, cfg: dict, run_dir: Path, device="cpu") -> "BlendScorer":
        b, m = cfg["blend"], cfg["metrics"]
        return cls(run_dir=run_dir, base_path=b["base"], data_dir=cfg["data"]["path"],
                   resolution=int(cfg["data"]["resolution"]), swap_res=[int(r) for r in b["swap_res"]],
                   directions=list(b.get("directions") or ["low_base"]), width=float(b.get("width", 0.0)),
                   mapping=b.get("mapping", "low"), extractor_name=m["extractor"], num_gen=int(m["num_gen"]),
                   batch_size=int(m.get("batch_size", 32)), inception_path=m.get("inception_path"),
                   source_data=m.get("source_data"), cache_dir=cfg.get("paths", {}).get("cache_dir"),
                   sample_seeds=list(b.get("sample_seeds") or range(6)), device=str(device),
                   identity_name=m.get("identity", "auto"), identity_weights=m.get("identity_weights"),
                   num_identity=int(m.get("identity_num", 100)), style_min_val=int(m.get("style_min_val", 50)))

    # -------------------------------------------------------------- setup
    def prepare(self, device=None, base: bool = True, features: bool = True) -> None:
        """Load the base model (validating the grid) and/or the extractor and the (cached) reference features."""
        if device is not None:
            self.device = str(device)
        from ..blending.swap import check_mapping, check_swap_res, check_width
        from ..checkpoints import load_network
        from ..evaluation import make_extractor, reference_features

        if base and self.base is None:
            if not self.base_path:
                raise UserError("blend.base is not set: point it at the base (real-face) network to blend with")
            self.base = load_network(self.base_path, device=self.device).G_ema.eval()
            for r in self.swap_res:
                check_swap_res(r, self.base.synthesis.block_resolutions)
            check_width(self.width)
            check_mapping(self.mapping)
        if not features or self._ready:
            return
        from ..evaluation.per_seed import StyleReference, style_reference_split

        self.extractor = make_extractor(self.extractor_name, device=self.device, inception_path=self.inception_path)
        self.ref_split, self.ref_why = style_reference_split(self.data_dir, self.style_min_val)
        self.ref = reference_features(self.extractor, self.data_dir, self.resolution, cache_dir=self.cache_dir,
                                      split=self.ref_split)
        self.style_reference = StyleReference(self.ref, self.extractor.name, self.ref_split)
        self.train_ref = None  # the memorisation check: the fine-tuned model against the images it trained on
        if self.ref_split == "val":
            self.train_ref = reference_features(self.extractor, self.data_dir, self.resolution,
                                                cache_dir=self.cache_dir, split="train")
        self.src_ref = None
        if self.source_data:
            self.src_ref = reference_features(self.extractor, self.source_data, self.resolution,
                                              cache_dir=self.cache_dir, split="all")
        self.identity = None
        if self.identity_name:
            from ..evaluation.identity import make_identity

            self.identity = make_identity(self.identity_name, device=self.device, weights=self.identity_weights,
                                          resolution=self.resolution)
        self._base_identity = None
        self._ready = True

    # -------------------------------------------------------------- scoring
    def cells(self, include_base: bool):
        """(swap_res, direction) pairs in report order."""
        out = [("base", "")] if include_base else []
        out += [(r, d) for d in self.directions for r in self.swap_res]
        return out + [("none", "")]

    def generator_for(self, tuned, swap_res, direction):
        from ..blending import blend_generators, direction_pair

        if swap_res == "base":
            return self.base
        if swap_res == "none":
            return tuned
        low, high = direction_pair(self.base, tuned, direction)
        return blend_generators(low, high, int(swap_res), width=self.width, mapping=self.mapping)

    def pending_cells(self, skip: set | None = None) -> list:
        """The cells of one checkpoint not in `skip` ({(swap_res_str, direction)}), in report order."""
        skip = skip or set()
        return [c for c in self.cells(("base", "") not in skip) if (str(c[0]), c[1]) not in skip]

    @torch.no_grad()
    def score_checkpoint(self, tuned, epoch: int, kimg: float, skip: set | None = None,
                         network_file: Path | None = None, replace: bool = False) -> list[dict]:
        """Score every cell of one checkpoint not in `skip` ({(swap_res_str, direction)}); write samples and
        the metrics.csv rows.

        Rows carry the SHA-256 of `network_file` (the file `tuned` came from) and, for the base cell, of the
        base network. `replace`: the new rows supersede rows of the same cell, metric and extractor, in one
        atomic rewrite once all of them exist (nothing is dropped before)."""
        from ..evaluation.metrics_csv import append_metrics_rows, cell_key

        rows = self.score_cells(tuned, epoch, kimg, self.pending_cells(skip), network_file=network_file)
        keys = {cell_key(r) for r in rows}
        append_metrics_rows(self.run_dir / "metrics.csv", rows, replace=(lambda r: cell_key(r) in keys)
                            if replace else None)
        return rows

    @torch.no_grad()
    def score_cells(self, tuned, epoch: int, kimg: float, cells: list,
                    network_file: Path | None = None) -> list[dict]:
        """metrics.csv rows of the given cells (samples written, nothing appended); loads only what they need
        (the base model is needed by blends, the base cell and the paired identity scores)."""
        from ..checkpoints.network import file_sha256
        from ..evaluation import per_seed
        from ..evaluation.scoring import evaluate_cell, identity_features, score

        if not cells:
            return []
        self.prepare(base=bool(self.identity_name) or any(swap_res != "none" for swap_res, _ in cells))
        hashes = {"tuned": file_sha256(network_file) if network_file and Path(network_file).is_file() else ""}
        num_identity = min(self.num_identity, self.num_gen)
        if self.identity is not None and self._base_identity is None:
            self._base_identity = identity_features(self.base, self.identity, num_identity, self.batch_size,
                                                    self.device)
        self.style_reference.write(self.run_dir)
        self.write_reference_note()
        rows = []
        for swap_res, direction in cells:
            G = self.generator_for(tuned, swap_res, direction)
            keep = {}
            scores, ident = evaluate_cell(G, self.ref, self.extractor, self.num_gen, batch_size=self.batch_size,
                                          device=self.device, source_ref_features=self.src_ref,
                                          identity=self.identity, base_identity=self._base_identity,
                                          num_identity=num_identity, keep=keep)
            if swap_res == "none" and self.train_ref is not None:
                scores.update(score(keep["style_features"], self.train_ref, self.extractor, prefix="train_"))
            self.save_samples(G, epoch, cell_name(swap_res, direction))
            if swap_res == "base" and "base" not in hashes:
                hashes["base"] = file_sha256(self.base_path)
            sha = hashes["base"] if swap_res == "base" else hashes["tuned"]
            per_seed.write_cell(self.run_dir, epoch, cell_name(swap_res, direction), keep["style_features"],
                                self.style_reference, keep.get("identity"),
                                {k: v for k, (v, _) in ident.items() if k.startswith("idbase_")}, sha,
                                self.identity.name if self.identity is not None else None)
            cell = dict(epoch=epoch, kimg=f"{kimg:.3f}", swap_res=swap_res, direction=direction)
            for metric, value in scores.items():
                n_ref = len(self.src_ref) if metric.startswith("src_") else len(
                    self.train_ref if metric.startswith("train_") else self.ref)
                rows.append(dict(cell, metric=metric, value=f"{value:.6g}", n_gen=self.num_gen, n_ref=n_ref,
                                 extractor=self.extractor.name, network_sha256=sha))
            for metric, (value, n) in ident.items():  # paired: n cell images against the same n base seeds
                rows.append(dict(cell, metric=metric, value=f"{value:.6g}", n_gen=n, n_ref=n,
                                 extractor=self.identity.name, network_sha256=sha))
        return rows

    def write_reference_note(self) -> Path:
        """scores/style_reference.json: which split style is scored against, and why (the report says so)."""
        import json

        from ..checkpoints.network import atomic_write

        note = {"split": self.ref_split, "why": self.ref_why, "n": len(self.ref), "extractor": self.extractor.name,
                "min_val": self.style_min_val, "train_gap": self.train_ref is not None}
        path = self.run_dir / "scores" / "style_reference.json"
        atomic_write(path, lambda f: f.write((json.dumps(note, indent=1) + "\n").encode()))
        return path

    def save_samples(self, G, epoch: int, cell: str) -> Path:
        from PIL import Image

        from ..sampling import generate_images

        imgs = generate_images(G, self.sample_seeds, noise_mode="const", batch_size=len(self.sample_seeds),
                               device=self.device)
        strip = torch.cat(list(imgs), dim=1).cpu().numpy()  # [H, N*W, C]
        path = self.run_dir / "samples" / "blends" / f"epoch={epoch:04d}" / f"{cell}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.stem + ".tmp.png")
        Image.fromarray(strip).save(tmp)
        os.replace(tmp, path)
        return path


def style_gaps(rows: list[dict]) -> dict[str, float]:
    """{blend/style_gap/<metric>: style distance of the fine-tuned model to the held-out val split minus to the
    training split}: > 0 when it is closer to the images it trained on (memorising); only when style is scored
    against val (the `train_` rows exist)."""
    none = {r["metric"]: float(r["value"]) for r in rows if str(r["swap_res"]) == "none"}
    return {f"blend/style_gap/{m}": none[m] - none[f"train_{m}"] for m in none
            if f"train_{m}" in none and (m in ("fid", "kid") or m.startswith(("fd_", "kd_")))}


def scored_cells(metrics_csv: Path, extractor: str | None = None) -> dict[int, set]:
    """{epoch: {(swap_res, direction), ...}} already scored in metrics.csv (with `extractor` when given: another
    feature space does not count); base rows under key -1."""
    from ..evaluation.metrics_csv import read_metrics_rows

    done: dict[int, set] = {}
    for row in read_metrics_rows(metrics_csv):
        if extractor is not None and row["extractor"] != extractor:
            continue
        key = -1 if row["swap_res"] == "base" else int(float(row["epoch"]))
        done.setdefault(key, set()).add((row["swap_res"], row["direction"]))
    return done


class BlendEvalCallback(pl.Callback):
    def __init__(self, scorer: BlendScorer, every_n_epochs: int, selection: dict | None = None):
        self.scorer, self.every_n_epochs, self.selection = scorer, int(every_n_epochs), selection
        self._table: list[list] = []  # all epochs so far: each logged table is the whole epoch x swap grid

    @classmethod
    def from_config(cls, cfg: dict, run_dir: Path, every_n_epochs: int) -> "BlendEvalCallback":
        return cls(BlendScorer.from_config(cfg, run_dir), every_n_epochs, cfg.get("selection"))

    def on_fit_start(self, trainer, pl_module) -> None:
        # here the module is on its final device; fail before training on a bad grid or a damaged metrics.csv,
        # without shifting the seed. Rank 0 checks and loads; every rank raises the same error (one rank alone
        # would hang the others)
        from ..evaluation.metrics_csv import read_metrics_rows

        self.scorer.device = str(pl_module.device)
        error = None
        if trainer.global_rank == 0:
            with isolated_rng():
                try:
                    read_metrics_rows(self.scorer.run_dir / "metrics.csv")
                    self.scorer.prepare()
                except UserError as e:
                    error = str(e)
        error = trainer.strategy.broadcast(error, src=0)
        if error:
            raise UserError(error)

    def on_train_epoch_end(self, trainer: pl.Trainer, module) -> None:
        if not is_checkpoint_epoch(trainer, self.every_n_epochs):
            return
        if skip_bad_epoch(trainer, module):
            return
        epoch = trainer.current_epoch + 1
        skip = None
        if trainer.global_rank == 0:
            done = scored_cells(self.scorer.run_dir / "metrics.csv", self.scorer.extractor.name)
            skip = set(done.get(epoch, set())) | (done.get(-1, set()))
        skip = trainer.strategy.broadcast(skip, src=0)
        cells = self.scorer.pending_cells(skip)
        world, rank = trainer.world_size, trainer.global_rank
        if world > 1:  # the same G_ema everywhere (its w_avg buffer follows each rank's last batch)
            for t in module.G_ema.state_dict().values():
                torch.distributed.broadcast(t, src=0)
        exported = network_path(self.scorer.run_dir, epoch)  # NetworkExport ran first: the npz get its hash
        with isolated_rng():
            rows = self.scorer.score_cells(module.G_ema, epoch, module.kimg, cells[rank::world],
                                           network_file=exported if exported.is_file() else None)
        if world > 1:
            parts = [None] * world
            torch.distributed.all_gather_object(parts, rows)
            rows = [r for part in parts for r in part]
            order = {(str(c[0]), c[1]): i for i, c in enumerate(cells)}
            rows.sort(key=lambda r: order[(str(r["swap_res"]), r["direction"])])  # stable: metric order kept
        if trainer.global_rank == 0:
            from ..evaluation.metrics_csv import append_metrics_rows
            from ..checkpoints.network import file_sha256

            exported = network_path(self.scorer.run_dir, epoch)  # written by rank 0's NetworkExport
            sha = file_sha256(exported) if exported.is_file() else ""
            for r in rows:
                if r["swap_res"] != "base":
                    r["network_sha256"] = sha
            append_metrics_rows(self.scorer.run_dir / "metrics.csv", rows)
            self._log(trainer, epoch, rows)
            with isolated_rng():
                self._log_selection(trainer)

    def _log(self, trainer, epoch: int, rows: list[dict]) -> None:
        if not trainer.loggers:
            return
        scalars = {f"blend/{r['metric']}/{cell_name(r['swap_res'], r['direction'])}": float(r["value"]) for r in rows}
        scalars.update(style_gaps(rows))
        metrics = sorted({r["metric"] for r in rows})
        values = {(cell_name(r["swap_res"], r["direction"]), r["metric"]): float(r["value"]) for r in rows}
        self._table += [[epoch, c] + [values.get((c, m)) for m in metrics] for c in sorted({c for c, _ in values})]
        folder = self.scorer.run_dir / "samples" / "blends" / f"epoch={epoch:04d}"
        paths = sorted(folder.glob("*.png"))
        for lg in trainer.loggers:
            lg.log_metrics(scalars, step=trainer.global_step)
            if hasattr(lg, "log_table") and hasattr(lg, "log_image"):  # W&B: epoch x swap table + image strips
                lg.log_table(key="blend/table", columns=["epoch", "cell"] + metrics, data=list(self._table))
                lg.log_image(key="blend/samples", images=[str(p) for p in paths], caption=[p.stem for p in paths])

    def _log_selection(self, trainer) -> None:
        """The rule's pick so far with its bootstrap (selection.json), and (W&B) the summary line, the
        style-vs-identity scatter with error bars and the cell table behind it."""
        from ..reporting.figures import selection_scatter
        from ..selection.run import run_selection

        sel = run_selection(self.scorer.run_dir, self.selection, write=True)
        if sel is None or sel.overall.point is None:
            return
        front, chosen = sel.front_cells(), (sel.overall.point.epoch, sel.overall.point.cell)

        def ci(p, axis):
            got = sel.ci(p)
            return list(got[axis]) if got else [None, None]

        table = [[p.epoch, p.cell, p.label, p.style, *ci(p, 0), p.identity, *ci(p, 1), (p.epoch, p.cell) in front,
                  (p.epoch, p.cell) == chosen] for p in sel.points]
        summary = f"best by {sel.rule}: {sel.summary()}"
        path = self.scorer.run_dir / "samples" / "selection.png"
        tmp = path.with_name("selection.tmp.png")
        selection_scatter(tmp, sel, summary)
        os.replace(tmp, path)
        u = sel.uncertainty(sel.overall)
        for lg in trainer.loggers:
            values = {f"blend/best_by_{sel.rule.kind}/value": sel.overall.value}
            if u is not None:
                values[f"blend/best_by_{sel.rule.kind}/stability"] = u.stability
            lg.log_metrics(values, step=trainer.global_step)
            run_summary = getattr(getattr(lg, "experiment", None), "summary", None)
            if run_summary is not None and hasattr(run_summary, "__setitem__"):  # W&B: the run's headline
                run_summary["best"] = summary
            if hasattr(lg, "log_table") and hasattr(lg, "log_image"):
                lg.log_table(key="blend/selection", columns=[
                    "epoch", "cell", "label", sel.style_metric, "style_ci_lo", "style_ci_hi", sel.identity_metric,
                    "identity_ci_lo", "identity_ci_hi", "on_front", "chosen"], data=table)
                lg.log_image(key="blend/selection_scatter", images=[str(path)], caption=[summary])
